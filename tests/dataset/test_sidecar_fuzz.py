"""A sidecar's lines are checked (issue #20): valid JSON of the wrong types gets one line naming the file, line
and field, never a traceback from whatever reads the state later; an edited sidecar is refused by its hash."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import pytest

from lib.dataset.build import BuildOptions, build_dataset
from lib.dataset.sidecar import SetError, header, read_set, sidecar_path
from lib.evaluation.policies import RulesPolicy
from lib.games.market.policy import MarketBaseline
from lib.games.market.scores import score_market
from lib.games.market.sidecar import is_market, market_example
from lib.ibex.sessions import load_sessions
from tests.helpers.evalsets import write_set
from tests.helpers.paths import FIXTURES

WRONG = ("abc", {}, [], 1.5, True, None, -3, {"x": 1}, ["x"])


@pytest.fixture(scope="module")
def real_lines(tmp_path_factory) -> list[tuple[str, str]]:
    """(set line, sidecar line) pairs: voting ones as the builder writes them, and market ones the builder made
    from the recorded Harberger game (a declaration, a snipe, posts and a cancel)."""
    tmp = tmp_path_factory.mktemp("sets")
    voting = write_set(tmp / "voting" / "set.jsonl")
    states = sidecar_path(voting).read_text().splitlines()[1:]
    pairs = list(zip(voting.read_text().splitlines(), states, strict=True))[:3]
    logs = tmp / "market"
    logs.mkdir()
    with gzip.open(FIXTURES / "market_logs.json.gz", "rt") as f:
        (logs / "h.log.json").write_text(json.dumps(json.load(f)["logs"]["harberger-12"]))
    result = build_dataset(BuildOptions(inputs=[logs], output_dir=tmp / "out", validation_fraction=0,
                                        sessions=load_sessions(FIXTURES / "market_sessions.json")))
    lines = result.outputs["training"].read_text().splitlines()
    states = result.outputs["training_state"].read_text().splitlines()[1:]
    seen: dict[str, int] = {}
    for line, state in zip(lines, states, strict=True):
        action = json.loads(state)["action"]
        if seen.get(action, 0) < 2:
            seen[action] = seen.get(action, 0) + 1
            pairs.append((line, state))
    assert {"declare", "done-speculating", "post-order", "cancel-order"} <= set(seen)
    return pairs


def write(path: Path, pairs: list[tuple[str, str]]) -> str:
    data = "".join(line + "\n" for line, _ in pairs).encode("utf-8")
    body = "".join(state + "\n" for _, state in pairs)
    path.write_bytes(data)
    head = header(path.name, len(pairs), hashlib.sha256(data).hexdigest(), ("voting", "harberger"),
                  states_sha256=hashlib.sha256(body.encode("utf-8")).hexdigest())
    sidecar_path(path).write_text(json.dumps(head) + "\n" + body, encoding="utf-8")
    return hashlib.sha256(data).hexdigest()


def paths(value, prefix=()):
    """Every field path of a JSON value (objects' keys, lists' indexes), the shallow ones first."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value[:3])
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def mutated(state: dict, path: tuple, wrong) -> dict:
    copy = json.loads(json.dumps(state))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = wrong
    return copy


def evaluate(evalset) -> None:
    """What finetune.py --evaluate does with the examples' states: the rules and the market baseline."""
    policy = RulesPolicy("baseline")
    for example in evalset.examples:
        if is_market(example):
            score_market([market_example(example)], MarketBaseline(seed=0).decide)
        else:
            policy.decide(example)


def test_wrong_types_in_real_sidecar_lines_give_one_line_naming_the_field(tmp_path, real_lines):
    rng = random.Random(20)
    cases = [(i, path, wrong) for i, (_, state) in enumerate(real_lines) for path in paths(json.loads(state))
             for wrong in WRONG]
    rng.shuffle(cases)
    named = 0
    for i, path, wrong in cases[:300]:
        pairs = list(real_lines)
        pairs[i] = (pairs[i][0], json.dumps(mutated(json.loads(pairs[i][1]), path, wrong)))
        target = tmp_path / "set.jsonl"
        sha = write(target, pairs)
        try:
            evaluate(read_set(target, sha))
        except SetError as exc:
            message = str(exc)
            # The sidecar's line, or the set's example it goes with (one line below the sidecar's header).
            assert "\n" not in message, (path, wrong, message)
            assert f"state.jsonl line {i + 2}:" in message or f"set.jsonl line {i + 1}:" in message, (path, message)
            named += ".".join(map(str, path)).split(".")[-1] in message or str(path[-1]) in message
    assert named > 50


@pytest.mark.parametrize("field, wrong", [("view.current.requests", "abc"), ("view.role", {})])
def test_the_issues_cases_name_the_file_line_and_field(tmp_path, field, wrong):
    target = write_set(tmp_path / "set.jsonl")
    side = sidecar_path(target)
    lines = side.read_text().splitlines()
    state = json.loads(lines[1])
    node = state
    *parents, last = field.split(".")
    for key in parents:
        node = node[key]
    node[last] = wrong
    body = "".join(line + "\n" for line in [json.dumps(state), *lines[2:]])
    head = json.loads(lines[0])
    head["states_sha256"] = hashlib.sha256(body.encode()).hexdigest()
    side.write_text(json.dumps(head) + "\n" + body)
    with pytest.raises(SetError, match=rf"^{side} line 2: field {field} must be "):
        read_set(target, hashlib.sha256(target.read_bytes()).hexdigest())


def test_an_edited_sidecar_is_refused(tmp_path):
    target = write_set(tmp_path / "set.jsonl")
    side = sidecar_path(target)
    side.write_text(side.read_text().replace('"values": [', '"values": [1', 1))
    with pytest.raises(SetError, match="state lines were changed after the build"):
        read_set(target, hashlib.sha256(target.read_bytes()).hexdigest())
