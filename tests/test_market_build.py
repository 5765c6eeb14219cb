"""constructDataset.py with Harberger and futarchy logs (the real-server games of tests/fixtures/market_logs.json.gz):
their examples (lib/marketdataset.py) join the voting examples in the same sets, split, report and checks, and the
state sidecar holds what lets finetune.py --evaluate rebuild each prompt and score a policy on it."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lib import evalcli
from lib.dataset import BuildOptions, build_dataset
from lib.marketactions import build_market_action_required
from lib.marketdataset import KINDS, market_examples
from lib.marketevaluate import score_market
from lib.marketpolicy import MarketBaseline
from lib.marketprompts import build_market_messages
from lib.sessions import load_sessions
from lib.sidecar import read_set

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
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
        from_sidecar = score_market([e.market_example() for e in evalset.examples], MarketBaseline(seed=0).decide)
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
    market = [e for e in evalset.examples if e.market]
    voting = [e for e in evalset.examples if not e.market]
    assert market and voting  # the split put a market game and voting games into validation

    code = finetune.main(["--evaluate", "--data-dir", str(out), "--policies", "baseline,fitted"])
    printed = capsys.readouterr().out
    report = json.loads((out / "evaluation_report.json").read_text())

    assert code == 0
    assert report["dataset"]["examples"] == len(evalset.examples)
    assert sum(s["n"] for s in report["policies"]["baseline"].values()) == len(voting)  # voting scores: voting only
    section = report["market"]
    assert section["examples"] == len(market) and set(section["policies"]) == {"baseline"}
    expected = score_market([e.market_example() for e in market], MarketBaseline(seed=0).decide)
    expected.pop("not_scored")
    assert section["policies"]["baseline"] == json.loads(json.dumps(evalcli._clean(expected)))  # as the report rounds
    assert any(reason.startswith("cancel-order") for reason in section["not_scored"])
    assert any(reason.startswith("policy fitted: no market version") for reason in section["not_scored"])
    assert f"market decisions (n={len(market)}" in printed and "not scored: cancel-order" in printed
    assert (out / "evaluation.png").is_file()


def test_evaluate_on_a_market_only_set_writes_the_report_without_a_picture(tmp_path, market_dir, capsys, no_model):
    import finetune

    out = tmp_path / "out"
    build([market_dir], out, validation_fraction=0.5)

    code = finetune.main(["--evaluate", "--data-dir", str(out), "--policies", "baseline"])
    printed = capsys.readouterr().out

    assert code == 0
    report = json.loads((out / "evaluation_report.json").read_text())
    assert report["market"]["policies"]["baseline"]["declare"]["n"] > 0
    assert "no voting decision, so no picture" in printed and not (out / "evaluation.png").exists()
