"""The market games' section of `finetune.py --evaluate` (lib/games/market/scores.py, lib/games/market/fidelity.py):
named for the recorded players, with a warning, and intervals consistent with the means they bound."""

from __future__ import annotations

import gzip
import json

import pytest

import finetune
from lib.dataset.build import BuildOptions, build_dataset
from lib.games.market.scores import market_table
from lib.ibex.sessions import load_sessions
from tests.helpers.paths import FIXTURES


@pytest.fixture(autouse=True)
def no_model(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")


def test_market_scores_are_named_for_the_recorded_players_with_a_warning():
    section = {"examples": 0, "per_action": {}, "policies": {}, "not_scored": []}
    printed = market_table(section)
    assert "compared with the recorded players" in printed and "not with humans" in printed
    assert "human" not in printed.replace("not with humans", "").replace("no human Harberger", "")


def test_market_scores_get_intervals_and_distributions_consistent_with_their_means(tmp_path, capsys):
    with gzip.open(FIXTURES / "market_logs.json.gz", "rt") as f:
        logs = json.load(f)["logs"]
    folder = tmp_path / "market"
    folder.mkdir()
    for name, log in logs.items():
        (folder / f"{name}.log.json").write_text(json.dumps(log))
    out = tmp_path / "out"
    sessions = load_sessions(FIXTURES / "market_sessions.json")
    build_dataset(BuildOptions(inputs=[folder], output_dir=out, sessions=sessions, validation_fraction=0))
    capsys.readouterr()
    code = finetune.main(["--evaluate", "--data-dir", str(out), "--evaluate-on", str(out / "training_set.jsonl"),
                          "--policies", "baseline"])
    printed, err = capsys.readouterr()
    assert code == 0, err
    market = json.loads(next((out / "evaluations").glob("*/evaluation_report.json")).read_text())["market"]
    spread = market["uncertainty"]["baseline"]
    declare = spread["declare"]
    assert declare["n"] > 0 and declare["persons"] >= 1
    # the same mean as lib.games.market.scores's, now with its interval
    assert declare["mean_rel_error"]["persons"]["estimate"] == pytest.approx(
        market["policies"]["baseline"]["declare"]["mean_rel_error"], abs=1e-6)
    assert market["compared_with"] == "the recorded players"
    assert "baseline: declarations / value (n=" in printed and "against the recorded players" in printed
