"""constructDataset.py with Harberger and futarchy logs (the real-server games of tests/fixtures/market_logs.json.gz):
their examples (lib/games/market/examples.py) join the voting examples in the same sets, split, report and checks, and
the
state sidecar holds what lets finetune.py --evaluate rebuild each prompt and score a policy on it."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lib.dataset.build import BuildOptions, build_dataset
from lib.dataset.sidecar import read_set
from lib.evaluation import cli as evalcli
from lib.games.market.actions import build_market_action_required
from lib.games.market.examples import KINDS, market_examples
from lib.games.market.policy import MarketBaseline
from lib.games.market.prompts import build_market_messages
from lib.games.market.scores import score_market
from lib.games.market.sidecar import is_market, market_example
from lib.ibex.sessions import load_sessions
from tests.helpers.paths import FIXTURES, REPO

VOTING_LOGS = FIXTURES / "dataset" / "logs"
MARKET_SESSIONS = FIXTURES / "market_sessions.json"


@pytest.fixture(scope="module")
def logs() -> dict:
    with gzip.open(FIXTURES / "market_logs.json.gz", "rt") as f:
        return json.load(f)["logs"]


@pytest.fixture
def market_dir(tmp_path, logs) -> Path:
    folder = tmp_path / "market"
    folder.mkdir()
    for name, log in logs.items():
        (folder / f"{name}.log.json").write_text(json.dumps(log))
    return folder


def build(inputs: list[Path], out: Path, **options) -> object:
    return build_dataset(BuildOptions(inputs=inputs, output_dir=out, sessions=load_sessions(MARKET_SESSIONS),
                                      **options))


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_market_examples_join_the_voting_sets_and_leave_the_voting_lines_as_they_were(tmp_path, market_dir, logs):
    voting = build([VOTING_LOGS], tmp_path / "voting", validation_fraction=0)
    both = build([VOTING_LOGS, market_dir], tmp_path / "both", validation_fraction=0)

    made = {name: market_examples(log, sessions=json.loads(MARKET_SESSIONS.read_text())).examples
            for name, log in logs.items()}
    n_market = sum(len(examples) for examples in made.values())
    assert both.errors == [] and both.n_examples == voting.n_examples + n_market
    train, before = lines(tmp_path / "both" / "training_set.jsonl"), lines(tmp_path / "voting" / "training_set.jsonl")
    assert train[:len(before)] == before  # the voting games' lines, byte for byte
    market_answers = [json.loads(line)["messages"][2]["content"] for line in train[len(before):]]
    assert market_answers == [ex.messages[2]["content"] for name in sorted(made) for ex in made[name]]
    side, side_before = (lines(tmp_path / d / "training_set.state.jsonl") for d in ("both", "voting"))
    assert side[1:len(side_before)] == side_before[1:]
    assert json.loads(side_before[0])["game"] == "voting"
    assert json.loads(side[0])["game"] == "voting+harberger+futarchy"
    report = both.report
    assert report["per_role_action"]["speculator"] == {
        action: sum(1 for exs in made.values() for ex in exs if ex.role == 1 and ex.action_type == action)
        for action in ("done-speculating", "post-order", "cancel-order")}
    assert report["examples"]["total"] == both.n_examples and report["checks"]["training"]["ok"]
    assert report["skipped"]["refused by the server"]["count"] > 0
    assert {f["game_type"] for f in report["per_file"] if "game_type" in f} == {"harberger", "futarchy"}


def test_the_sidecar_rebuilds_each_market_prompt_and_the_same_evaluation(tmp_path, market_dir, logs):
    result = build([market_dir], tmp_path / "out", validation_fraction=0.5)
    for side in ("training", "validation"):
        path = result.outputs[side]
        evalset = read_set(path, hashlib.sha256(path.read_bytes()).hexdigest())
        head = json.loads(lines(result.outputs[f"{side}_state"])[0])
        assert head["game"] in ("harberger", "futarchy") and head["game"] == evalset.examples[0].game_type
        for example in evalset.examples:
            view = example.view()
            rebuilt = build_market_messages(view, build_market_action_required(view, KINDS[example.action]))
            assert rebuilt == example.messages, (side, example.line)
        game = {"harberger": "harberger-12", "futarchy": "futarchy-13"}[head["game"]]
        original = market_examples(logs[game], sessions=json.loads(MARKET_SESSIONS.read_text())).examples
        from_sidecar = score_market([market_example(e) for e in evalset.examples], MarketBaseline(seed=0).decide)
        assert from_sidecar == score_market(original, MarketBaseline(seed=0).decide)
        assert from_sidecar["declare"]["n"] > 0 and from_sidecar["post-order"]["n"] > 0


def test_constructdataset_takes_market_logs(tmp_path, market_dir):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "constructDataset.py"), "--input", str(market_dir),
                           "--output-dir", str(out), "--sessions", str(MARKET_SESSIONS)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 log file(s): 2 used, 0 unusable" in proc.stdout
    assert "speculator: " in proc.stdout and "declare" in proc.stdout
    assert "only voting" not in proc.stderr and "Traceback" not in proc.stderr


# --- finetune.py --evaluate on sets holding market examples -----------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")


def test_evaluate_scores_the_market_examples_apart_and_says_what_it_does_not_score(tmp_path, market_dir, logs,
                                                                                   capsys, no_model):
    import finetune

    out = tmp_path / "out"
    build([VOTING_LOGS, market_dir], out, validation_fraction=0.5)
    evalset = read_set(out / "validation_set.jsonl",
                       hashlib.sha256((out / "validation_set.jsonl").read_bytes()).hexdigest())
    market = [e for e in evalset.examples if is_market(e)]
    voting = [e for e in evalset.examples if not is_market(e)]
    assert market and voting  # the split put a market game and voting games into validation

    code = finetune.main(["--evaluate", "--data-dir", str(out), "--output-dir", str(out),
                          "--policies", "baseline,fitted"])
    printed = capsys.readouterr().out
    report = json.loads((out / "evaluation_report.json").read_text())

    assert code == 0
    assert report["dataset"]["examples"] == len(evalset.examples)
    assert sum(s["n"] for s in report["policies"]["baseline"].values()) == len(voting)  # voting scores: voting only
    section = report["market"]
    assert section["examples"] == len(market) and set(section["policies"]) == {"baseline", "fitted"}
    expected = score_market([market_example(e) for e in market], MarketBaseline(seed=0).decide)
    expected.pop("not_scored")
    assert section["policies"]["baseline"] == json.loads(json.dumps(evalcli._clean(expected)))  # as the report rounds
    assert any(reason.startswith("cancel-order") for reason in section["not_scored"])
    assert not any(reason.startswith("policy fitted") for reason in section["not_scored"])  # fitted is scored
    assert f"market decisions (n={len(market)}" in printed and "not scored: cancel-order" in printed
    assert (out / "evaluation.png").is_file()


def test_evaluate_on_a_market_only_set_writes_the_report_without_a_picture(tmp_path, market_dir, capsys, no_model):
    import finetune

    out = tmp_path / "out"
    build([market_dir], out, validation_fraction=0.5)

    code = finetune.main(["--evaluate", "--data-dir", str(out), "--output-dir", str(out), "--policies", "baseline"])
    printed = capsys.readouterr().out

    assert code == 0
    report = json.loads((out / "evaluation_report.json").read_text())
    assert report["market"]["policies"]["baseline"]["declare"]["n"] > 0
    assert "no voting decision, so no picture" in printed and not (out / "evaluation.png").exists()


# --- the llm policy on market examples: the real openai SDK against the fake OpenAI server -----------------------


def test_the_llm_answers_market_examples_checked_strictly_scored_beside_the_baseline_and_cached(
        tmp_path, market_dir, capsys, monkeypatch):
    import finetune
    from lib.games.market.actions import ACTION_TYPES, declaration_max
    from tests.helpers.fakeopenai import FakeOpenAI

    out = tmp_path / "out"
    build([market_dir], out, validation_fraction=0)
    path = out / "training_set.jsonl"
    examples = read_set(path, hashlib.sha256(path.read_bytes()).hexdigest()).examples
    asked = [e for e in examples if e.action != "cancel-order"]  # cancels are counted, not scored: never asked
    declares = [e for e in examples if e.action == "declare" and e.state["state"].get("values") is not None]
    orders = [e for e in examples if e.action == "post-order"]
    # one declaration in words and one trade that would end the phase for everyone: both invalid, as at play time
    bad = {declares[0].messages[1]["content"]: "I declare 300000 on both, thanks.",
           orders[0].messages[1]["content"]: None}

    def model(body: dict) -> str:
        """Declares half of each condition's maximum, snipes nothing, waits in the market."""
        schema = body["response_format"]["json_schema"]
        props, user = schema["schema"]["properties"], body["messages"][1]["content"]
        game = props["gameId"]["enum"][0]
        if user in bad:
            return bad[user] or json.dumps({"gameId": game, "type": "complete-current-phase", "order": None})
        if schema["name"] == "SubmitDeclaration":
            maxima = [item["maximum"] for item in props["declaration"]["items"]["anyOf"][:2]]
            return json.dumps({"gameId": game, "type": "declare", "declaration": [m // 2 for m in maxima] + [0]})
        if schema["name"] == "SubmitSnipes":
            return json.dumps({"gameId": game, "type": "done-speculating", "snipe": [[], [], []]})
        return json.dumps({"gameId": game, "type": "wait", "order": None})

    with FakeOpenAI() as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")
        fake.chat_default = model
        argv = ["--evaluate", "--data-dir", str(out), "--output-dir", str(out),
                "--evaluate-on", str(path), "--policies", "baseline,llm",
                "--model", "test-model", "--max-retries", "0"]
        assert finetune.main([*argv, "--dry-run"]) == 0  # the estimate counts the market calls; nothing asked
        assert f"llm: {len(asked)} call(s) to test-model" in capsys.readouterr().out
        assert fake.calls_to("POST", "/chat/completions") == [] and not (out / "evaluation_report.json").exists()
        assert finetune.main(argv) == 0
        printed = capsys.readouterr().out
        calls = fake.calls_to("POST", "/chat/completions")
        report = json.loads((out / "evaluation_report.json").read_text())

        # each example asked once with its exact system and user messages and play time's schema for its decision
        assert sorted(json.dumps(c["json"]["messages"]) for c in calls) == sorted(json.dumps(e.messages)
                                                                                  for e in asked)
        by_prompt = {json.dumps(c["json"]["messages"]): c["json"] for c in calls}
        assert all(by_prompt[json.dumps(e.messages)]["response_format"]["json_schema"]["name"]
                   == ACTION_TYPES[KINDS[e.action]] for e in asked)
        section = report["market"]
        assert set(section["policies"]) == {"baseline", "llm"}
        assert not any(reason.startswith("policy llm") for reason in section["not_scored"])
        base, llm = section["policies"]["baseline"], section["policies"]["llm"]

        # declarations: the same examples; the one in words is invalid; the error of max/2 against the human's
        # declaration relative to the true value, by hand over the others
        errors, shading = [], []
        for e in declares[1:]:
            view, values, human = e.view(), e.state["state"]["values"], e.human["declaration"]
            for c in (0, 1):
                if values[c] and isinstance(human[c], int | float):
                    d = declaration_max(view, c) // 2
                    errors.append(abs(d - human[c]) / values[c])
                    shading.append((values[c] - d) / values[c])
        assert llm["declare"]["n"] == base["declare"]["n"] == len(declares) and llm["declare"]["invalid"] == 1
        assert llm["declare"]["mean_rel_error"] == pytest.approx(sum(errors) / len(errors), abs=1e-6)
        assert llm["declare"]["policy_shading"] == pytest.approx(sum(shading) / len(shading), abs=1e-6)
        assert llm["declare"]["human_shading"] == base["declare"]["human_shading"]
        # snipes: sniping nothing agrees exactly where the human did not snipe
        snipes = llm["done-speculating"]
        assert snipes["n"] == base["done-speculating"]["n"] > 0 and snipes["invalid"] == 0
        assert snipes["policy_snipe_rate"] == 0 and snipes["human_snipe_rate"] > 0
        assert snipes["agreement"] == pytest.approx(1 - snipes["human_snipe_rate"], abs=1e-6)
        # orders: waiting is valid and never on the human's side; the phase-ending answer is invalid
        assert llm["post-order"]["n"] == base["post-order"]["n"] > 0
        assert llm["post-order"]["invalid"] == 1 and llm["post-order"]["same_side"] == 0
        assert llm["post-order"]["mean_rel_price_error"] is None
        info = report["policy_info"]["llm"]
        assert info["answers_from_model"] == len(asked) and sum(info["invalid_reasons"].values()) == 2
        assert "  llm: declarations n=" in printed

        # again: every answer from the cache, the same numbers
        assert finetune.main(argv) == 0
        printed = capsys.readouterr().out
        assert len(fake.calls_to("POST", "/chat/completions")) == len(asked)
        again = json.loads((out / "evaluation_report.json").read_text())
        assert again["market"]["policies"]["llm"] == llm
        assert again["policy_info"]["llm"]["answers_from_cache"] == len(asked)
        assert f"0 call(s) to test-model at {fake.base_url} ({len(asked)} answer(s) already cached)" in printed
