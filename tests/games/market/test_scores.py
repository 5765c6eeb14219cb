"""The market games' section of `finetune.py --evaluate` (lib/games/market/scores.py, lib/games/market/fidelity.py):
named for the recorded players, with a warning, intervals consistent with the means they bound, and the paired
differences, sign tests and out-of-sample reference on hand-computed items."""

from __future__ import annotations

import csv
import gzip
import json

import pytest

import finetune
from lib.dataset.build import BuildOptions, build_dataset
from lib.games.market import fidelity
from lib.games.market.fidelity import Item
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
                          "--policies", "baseline,fitted"])
    printed, err = capsys.readouterr()
    assert code == 0, err
    market = json.loads(next((out / "evaluations").glob("*/evaluation_report.json")).read_text())["market"]
    uncertainty = market["uncertainty"]
    assert list(uncertainty) == ["level", "resamples", "seed", "clusters", "notes", "policies", "references",
                                 "differences"]  # as voting's
    spread = uncertainty["policies"]["baseline"]
    declare = spread["declare"]
    assert declare["n"] > 0 and declare["persons"] >= 1
    # the same mean as lib.games.market.scores's, now with its interval
    assert declare["mean_rel_error"]["persons"]["estimate"] == pytest.approx(
        market["policies"]["baseline"]["declare"]["mean_rel_error"], abs=1e-6)
    assert market["compared_with"] == "the recorded players"
    assert "baseline: declarations / value (n=" in printed and "against the recorded players" in printed
    # every snipe choice counts for both (an invalid answer disagrees), so the paired difference is the difference of
    # score_market's agreements
    snipes = next(d for d in uncertainty["differences"]
                  if (d["a"], d["b"], d["action"]) == ("fitted", "baseline", "done-speculating"))
    agreement = {name: market["policies"][name]["done-speculating"]["agreement"] for name in ("fitted", "baseline")}
    assert snipes["persons"]["estimate"] == pytest.approx(agreement["fitted"] - agreement["baseline"])
    assert snipes["n"] == market["policies"]["baseline"]["done-speculating"]["choices"]
    assert set(snipes["sign_test_persons"]) == {"positive", "negative", "ties", "p_value"}
    assert {(d["a"], d["b"]) for d in uncertainty["differences"]} == {
        ("fitted", "baseline"), ("baseline", fidelity.REFERENCE), ("fitted", fidelity.REFERENCE)}
    assert uncertainty["notes"] == [line.strip() for line in printed.splitlines() if "interval over games" in line]
    assert "2 games: an interval over games is not meaningful" in printed
    market_lines = printed[printed.index("market decisions (n="):]
    assert "human" not in market_lines.replace("not with humans", "").replace("no human Harberger", "")
    # the per-decision CSV holds a row per policy and comparable market choice, its score the report's per-choice one
    with next((out / "evaluations").glob("*/decisions.csv")).open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["action"] in ("declare", "done-speculating", "post-order")]
    assert {r["policy"] for r in rows} == {"baseline", "fitted"}
    snipe_rows = [r for r in rows if r["policy"] == "baseline" and r["action"] == "done-speculating"]
    assert len(snipe_rows) == market["policies"]["baseline"]["done-speculating"]["choices"]
    valid = [r for r in snipe_rows if r["valid"] == "1"]
    assert sum(float(r["agree"]) for r in valid) / len(snipe_rows) == pytest.approx(agreement["baseline"])
    declare_rows = [r for r in rows if r["policy"] == "baseline" and r["action"] == "declare" and r["abs_error"]]
    assert sum(float(r["abs_error"]) for r in declare_rows) / len(declare_rows) == pytest.approx(
        declare["mean_rel_error"]["persons"]["estimate"], abs=1e-6)
    assert all(r["recorded_answer"] and r["value_0"] for r in declare_rows)
    assert "negative = a closer to the recorded players" in printed
    assert "snipe choices: fitted - baseline (agreement, n=" in printed and "sign test" in printed


def item(key, person, recorded, policy, side=""):
    return Item((key, 0, -1), person, person.split("/")[0], side, recorded, policy)


def test_declarations_paired_and_against_the_other_games_by_hand():
    # recorded declarations over value: game 1's seat 1 0.9 and 0.8, game 2's seats 1 and 2 1.0 and 0.7
    a = [item(0, "1/1", 0.9, 0.9), item(1, "1/1", 0.8, 0.6), item(2, "2/1", 1.0, 0.9), item(3, "2/2", 0.7, None)]
    b = [item(0, "1/1", 0.9, 1.0), item(1, "1/1", 0.8, 0.8), item(2, "2/1", 1.0, 0.9), item(3, "2/2", 0.7, 0.7)]
    summary = fidelity.summarize("declare", a)
    assert (summary["n"], summary["persons"], summary["games"]) == (3, 2, 2)  # the invalid answer has no ratio
    assert summary["mean_rel_error"]["persons"]["estimate"] == pytest.approx((0 + 0.2 + 0.1) / 3)
    assert summary["within_10pct"] == pytest.approx(2 / 3)  # 0.9 of 0.9 and 0.9 of 1.0; 0.6 is 0.2 from 0.8
    # a minus b on the three both answered: errors 0, 0.2, 0.1 against 0.1, 0, 0.1
    d = fidelity.paired("declare", a, b)
    assert d["measure"] == "absolute error" and d["n"] == 3
    assert d["persons"]["estimate"] == pytest.approx(0.1 / 3)
    # seat 1/1: mean(-0.1, 0.2) > 0; seat 2/1: 0, a tie
    assert d["sign_test_persons"] == {"positive": 1, "negative": 0, "ties": 1, "p_value": 1.0}
    # the reference: each game gets the median of the other's recorded ratios (0.85 both ways)
    ref = fidelity.reference({"declare": a})["declare"]
    assert [r.policy for r in ref] == pytest.approx([0.85, 0.85, 0.85, 0.85])
    assert fidelity.summarize("declare", ref)["mean_rel_error"]["persons"]["estimate"] == pytest.approx(0.1)


def test_order_references_keep_the_side():
    orders = [item(0, "1/1", 1.1, None, "bid"), item(1, "1/2", 1.3, None, "ask"), item(2, "2/1", 1.2, None, "bid"),
              item(3, "2/1", 1.0, None, "bid"), item(4, "2/2", 1.5, None, "ask"), item(5, "3/1", 2.0, None, "ask")]
    ref = fidelity.reference({"post-order": orders})["post-order"]
    # game 1's bid: games 2's bids 1.2, 1.0; game 1's ask: 1.5, 2.0; game 2's bids: 1.1; asks: 1.3, 2.0; game 3's ask
    assert [r.policy for r in ref] == pytest.approx([1.1, 1.75, 1.1, 1.1, 1.65, 1.4])
    assert fidelity.reference({"post-order": orders[:1]})["post-order"][0].policy is None  # no other game


def test_snipe_agreement_counts_an_invalid_answer_as_a_disagreement():
    def snipes(answers):
        return [Item((i // 2, 0, i % 2 + 1), person, person[0], "", recorded, answer)
                for i, (person, recorded, answer) in enumerate(zip(["1/1", "1/1", "2/1", "2/1"], [1.0, 0.0, 1.0, 0.0],
                                                                    answers, strict=True))]

    a, b = snipes([1.0, 0.0, None, None]), snipes([1.0, 1.0, 1.0, 0.0])
    summary = fidelity.summarize("done-speculating", a)
    assert summary["agreement"]["persons"]["estimate"] == 0.5 and summary["n"] == 4
    assert (summary["recorded_snipe_rate"], summary["policy_snipe_rate"]) == (0.5, 0.5)
    # agreements 1, 1, 0, 0 against 1, 0, 1, 1: every choice is paired, invalid or not; seat 1/1 +0.5, 2/1 -1
    d = fidelity.paired("done-speculating", a, b)
    assert d["measure"] == "agreement" and d["n"] == 4 and d["persons"]["estimate"] == pytest.approx(-0.25)
    assert d["sign_test_persons"] == {"positive": 1, "negative": 1, "ties": 0, "p_value": 1.0}
    # the other game's recorded players sniped one lot of two: a tie is no snipe
    assert [r.policy for r in fidelity.reference({"done-speculating": a})["done-speculating"]] == [0.0] * 4
    lines = fidelity.format_lines("fitted", {"done-speculating": summary})
    assert lines == ["  fitted: snipe choices (n=4, 2 persons, 2 games): agreement 50.0% [0.0%, 100.0%] over persons, "
                     "[0.0%, 100.0%] over games; snipe rate recorded players 50.0% / answers 50.0%"]
