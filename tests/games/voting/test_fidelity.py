"""finetune.py --evaluate's honest uncertainty on voting sets (lib/games/voting/fidelity.py): out-of-sample references
and contested votes by hand on tests/helpers/evalsets.py's HAND_SET, the per-decision CSV, one folder per evaluation,
the fitted file handler.py plays, and the default policies without a key."""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import pytest

import finetune
import handler
from lib.dataset.sidecar import read_set
from lib.games.voting import fidelity as evalstats
from lib.games.voting import fitted
from lib.games.voting.actions import DECISION, OFFER, REQUEST
from lib.games.voting.kinds import KINDS
from lib.training import jobrecord
from tests.helpers.evalsets import HAND_SET, write_set


@pytest.fixture(autouse=True)
def no_model(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")


def evaluate(capsys, data: Path, *args: str) -> tuple[int, str, str]:
    code = finetune.main(["--evaluate", "--data-dir", str(data), *args])
    out, err = capsys.readouterr()
    return code, out, err


def hand_examples(tmp_path: Path) -> list:
    path = write_set(tmp_path / "hand.jsonl")
    return read_set(path, jobrecord.sha256_file(path)).examples


def test_references_come_from_the_other_games(tmp_path):
    examples = hand_examples(tmp_path)
    refs = evalstats.loo_references(examples, examples)
    constant = refs["out of sample: median / majority of the other games"]
    markup = refs["out of sample: loss (break-even) + median markup of the other games"]

    def answers(decisions, game, action):
        return [KINDS[action].value(d.action) if d.action else None
                for e, d in zip(examples, decisions, strict=True) if e.game == game and e.action == action]

    # game 1 from game 2: requests 500k, 40k (median 270k; over the losses 400k, 50k: +100k and -10k, median +45k)
    assert answers(constant, "1", REQUEST) == [270000, 270000]
    assert answers(markup, "1", REQUEST) == [245000, 145000]  # losses 200k and 100k + 45k
    # game 1's offer from game 2's 90k, 10k below that developer's break-even (700k - 200k) / 5
    assert answers(constant, "1", OFFER) == [90000]
    assert answers(markup, "1", OFFER) == [190000]  # (1,300k - 300k) / 5 - 10k
    # votes: game 2's humans voted 0, 1, 1; game 1's 0, 1, 0
    assert answers(constant, "1", DECISION) == [1, 1, 1]
    assert answers(constant, "2", DECISION) == [0, 0, 0]
    assert answers(markup, "1", DECISION) == [None, None, None]  # no markup rule for votes: not its action type
    assert all(d.error == evalstats.NOT_APPLICABLE for e, d in zip(examples, markup, strict=True)
               if e.action == DECISION)


def test_contested_votes_by_hand(tmp_path):
    examples = hand_examples(tmp_path)
    votes = [e for e in examples if e.action == DECISION]
    # game 1: seat 1's margin -50k is within 10 % of its value 500k; seat 4's rule says 1, the human 0
    assert [evalstats.contested(e, evalstats.facts(e)) for e in votes] == [True, False, True, False, False, False]


def test_the_evaluation_reports_intervals_differences_and_a_csv_in_its_own_folder(tmp_path, capsys):
    write_set(tmp_path / "training_set.jsonl")
    code, out, err = evaluate(capsys, tmp_path, "--evaluate-on", str(tmp_path / "training_set.jsonl"))
    assert code == 0, err
    folder = next((tmp_path / "evaluations").iterdir())
    report = json.loads((folder / "evaluation_report.json").read_text())
    section = report["uncertainty"]
    assert section["clusters"][REQUEST] == {"n": 4, "persons": 4, "games": 2}
    assert section["clusters"][DECISION]["contested"] == 2
    mae = section["policies"]["baseline"][REQUEST]["mae"]
    assert mae["persons"]["estimate"] == 28750 and mae["persons"]["clusters"] == 4 and mae["games"]["clusters"] == 2
    assert mae["persons"]["low"] <= 28750 <= mae["persons"]["high"]
    # fitted minus baseline on requests: absolute errors 0, 25k, 0, 23k against 30k, 10k, 60k, 15k
    diff = next(d for d in section["differences"] if (d["a"], d["b"], d["action"]) == ("fitted", "baseline", REQUEST))
    assert diff["persons"]["estimate"] == pytest.approx((0 + 15000 - 60000 + 8000 - 30000) / 4)
    assert diff["sign_test_persons"] == {"positive": 2, "negative": 2, "ties": 0, "p_value": 1.0}
    assert "2 games: an interval over games is not meaningful" in out
    assert "fitted - baseline (absolute error, n=4): -16,750" in out
    assert "out of sample: median / majority of the other games" in out and "'-': undefined here" in out
    assert "constant median (hindsight reference)" in out  # the in-sample constant is never passed off as honest

    rows = list(csv.DictReader((folder / "decisions.csv").open()))
    # 12 scored examples for baseline, fitted, the constant and the hindsight reference; the markup rule: 6 amounts
    assert len(rows) == 12 * 4 + 6
    first = next(r for r in rows if r["policy"] == "baseline" and r["action"] == REQUEST)
    assert {k: first[k] for k in ("game", "round", "seat", "person", "role", "v_noProject", "v_project", "loss",
                                  "human", "policy_answer", "valid", "error", "abs_error", "within_10pct")} == {
        "game": "1", "round": "1", "seat": "1", "person": "1/1", "role": "owner", "v_noProject": "500000",
        "v_project": "300000", "loss": "200000", "human": "250000", "policy_answer": "220000", "valid": "1",
        "error": "-30000", "abs_error": "30000", "within_10pct": "0"}
    assert not any("{" in value for r in rows for value in r.values())  # flat columns, no JSON


def test_evaluations_of_two_sets_keep_their_own_folders(tmp_path, capsys):
    write_set(tmp_path / "training_set.jsonl", [r for r in HAND_SET if r[0] == 1])
    write_set(tmp_path / "validation_set.jsonl", [r for r in HAND_SET if r[0] == 2])
    assert evaluate(capsys, tmp_path)[0] == 0
    assert evaluate(capsys, tmp_path, "--evaluate-on", str(tmp_path / "training_set.jsonl"))[0] == 0
    folders = sorted(p.name.split("-")[0] for p in (tmp_path / "evaluations").iterdir())
    assert folders == ["training_set", "validation_set"]
    for folder in (tmp_path / "evaluations").iterdir():
        assert {p.name for p in folder.iterdir()} == {"evaluation_report.json", "evaluation.png", "decisions.csv",
                                                      "fitted_policy.json"}
    assert not (tmp_path / "evaluation_report.json").exists() and not (tmp_path / "fitted_policy.json").exists()

    mine = tmp_path / "mine"
    code, out, _ = evaluate(capsys, tmp_path, "--output-dir", str(mine), "--policies", "baseline")
    assert code == 0 and f"in {mine}" in out
    assert {p.name for p in mine.iterdir()} == {"evaluation_report.json", "evaluation.png", "decisions.csv"}


def test_handler_plays_the_newest_fitted_file_and_says_which(tmp_path, monkeypatch):
    data = tmp_path / "data"
    old, new = data / "evaluations" / "a" / "fitted_policy.json", data / "evaluations" / "b" / "fitted_policy.json"
    fitted.save(old, fitted.Fit({"markup": 0.5, "offer_share": 1, "vote_threshold": 0}, {}, ["1"]), {})
    fitted.save(new, fitted.Fit({"markup": 0.25, "offer_share": 1, "vote_threshold": 0}, {}, ["1"]), {})
    os.utime(old, (2_000_000_000, 2_000_000_000))  # the newest by time, whatever the names say
    assert fitted.newest_params(data) == old
    monkeypatch.setattr(handler, "ROOT", tmp_path)
    policy, line = handler.choose_policy(argparse.Namespace(policy="fitted", fitted_params=None, seed=0), {})
    assert policy.markup == 0.5 and line.endswith(f"from {old}, the newest)")
    policy, line = handler.choose_policy(argparse.Namespace(policy="fitted", fitted_params=new, seed=0), {})
    assert policy.markup == 0.25 and line.endswith(f"from {new})")
    assert fitted.newest_params(tmp_path / "none") == tmp_path / "none" / "fitted_policy.json"


def test_default_policies_do_not_resolve_a_model_without_a_key(tmp_path, capsys, monkeypatch):
    """A job recorded at another endpoint stopped the default evaluation, which never calls a model (#22 item 7)."""
    write_set(tmp_path / "training_set.jsonl")
    jobrecord.write_record(tmp_path / "finetune_job.json",
                           {"job_id": "ftjob-1", "status": "succeeded", "fine_tuned_model": "ft:gpt-4.1-mini:x::y",
                            "base_url": "http://127.0.0.1:9/v1"})
    code, _, err = evaluate(capsys, tmp_path, "--evaluate-on", str(tmp_path / "training_set.jsonl"))
    assert code == 0, err
    report = json.loads(next((tmp_path / "evaluations").glob("*/evaluation_report.json")).read_text())
    assert list(report["policies"]) == ["baseline", "fitted"]
    monkeypatch.setenv("OPENAI_MODEL", "some-model")
    code, _, err = evaluate(capsys, tmp_path, "--evaluate-on", str(tmp_path / "training_set.jsonl"))
    assert code == 0 and "OPENAI_API_KEY is not set: llm is not evaluated" in err


def test_fitted_parameters_in_words():
    words = fitted.in_words({"markup": 0.246, "offer_share": 0.9, "vote_threshold": 20001})
    assert words.startswith("owners ask their loss + 24.6 %; the developer offers 90.0 % of the median request")
    assert "at least 20,001 more than no Project" in words
