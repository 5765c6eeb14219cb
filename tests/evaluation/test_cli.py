"""finetune.py --evaluate with the rule-based policies: every number of a small set checked against a hand
computation (tests/evalsets.py), the fitted policy's leave-one-game-out, the builder's sidecars, bad input."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

import finetune
import handler
from constructDataset import main as build_main
from lib.dataset.sidecar import read_set, sidecar_path
from lib.evaluation import cli as evalcli
from lib.evaluation.scores import Decision, cohen_kappa, ranks, references, score, spearman
from lib.games.voting import fitted
from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST
from lib.games.voting.kinds import KINDS
from lib.games.voting.policy import BaselinePolicy
from lib.training import jobrecord
from tests.helpers.evalsets import HAND_SET, write_set
from tests.helpers.paths import REPO

ROOT = REPO


@pytest.fixture(autouse=True)
def no_model(monkeypatch):
    """No model configured: the default policies are baseline and fitted."""
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")


def evaluate(capsys, data: Path, *args: str) -> tuple[int, str, str]:
    code = finetune.main(["--evaluate", "--data-dir", str(data), *args])
    out, err = capsys.readouterr()
    return code, out, err


def out_dir(data: Path) -> Path:
    """The one evaluation folder under data/evaluations/."""
    found = sorted((data / "evaluations").iterdir())
    assert len(found) == 1, found
    return found[0]


def report_of(data: Path) -> dict:
    return json.loads((out_dir(data) / "evaluation_report.json").read_text())


# ----------------------------------------------------------------------------------------------- statistics


def test_statistics_by_hand():
    assert ranks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1]
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [5, 5, 5]) is None
    assert spearman([1], [2]) is None
    # 3 of 4 agree; human 2x1 2x0, policy 3x1 1x0: p_e = (2*3 + 2*1) / 16 = 0.5; kappa = (0.75 - 0.5) / 0.5
    assert cohen_kappa([1, 1, 0, 0], [1, 1, 1, 0]) == pytest.approx(0.5)
    assert cohen_kappa([1, 1], [1, 1]) is None  # chance agreement is 1: undefined


# ----------------------------------------------------------------------------------------------- the hand set


def test_every_number_of_the_hand_set(tmp_path, capsys):
    write_set(tmp_path / "training_set.jsonl")
    code, out, err = evaluate(capsys, tmp_path, "--evaluate-on", str(tmp_path / "training_set.jsonl"))
    assert code == 0, err
    report = report_of(tmp_path)
    base, fit, refs = report["policies"]["baseline"], report["policies"]["fitted"], report["references"]

    # baseline: requests 220k, 110k, 440k, 55k against 250k, 100k, 500k, 40k
    assert base[REQUEST] == {"n": 4, "invalid": 0, "mae": 28750, "median_ae": 22500, "bias": -16250, "spearman": 1.0}
    # offers 199k, 99k against 150k, 90k
    assert base[OFFER] == {"n": 2, "invalid": 0, "mae": 29000, "median_ae": 29000, "bias": 29000, "spearman": 1.0}
    # votes: 5 of 6 agree; human 3x1 3x0, baseline 4x1 2x0: p_e = 0.5, kappa = (5/6 - 1/2) / (1/2) = 2/3
    assert base[DECISION]["n"] == 6 and base[DECISION]["invalid"] == 0
    assert base[DECISION]["agreement"] == pytest.approx(5 / 6, abs=1e-6)
    assert base[DECISION]["kappa"] == pytest.approx(2 / 3, abs=1e-6)
    assert base[CHAT] == {"n": 1}  # counted, not scored

    # references: median request 175k, median offer 120k, majority vote (a 3-3 tie: 0 first)
    assert refs[REQUEST] == {"reference": "constant median", "value": 175000, "n": 4, "invalid": 0, "mae": 152500,
                             "median_ae": 105000, "bias": -47500, "spearman": None}
    assert refs[OFFER] == {"reference": "constant median", "value": 120000, "n": 2, "invalid": 0, "mae": 30000,
                           "median_ae": 30000, "bias": 0, "spearman": None}
    assert refs[DECISION] == {"reference": "majority class", "value": 0, "n": 6, "invalid": 0, "agreement": 0.5,
                              "kappa": 0.0}

    # fitted, leave one game out. Game 1 is scored with game 2's fit: markup 0.25 (the loss-weighted median of
    # 500/400 and 40/50), offer share 0.9 (90k / 100k), threshold 0 (any t in (-310k, 40k] fits; 0 is nearest the
    # baseline). Game 2 with game 1's: markup 0.25 (250/200 weighs 200k, 100/100 weighs 100k), share 0.75
    # (150k / 200k), threshold 20,001 (the whole t in (20k, 50k] nearest 0).
    info = report["policy_info"]["fitted"]["scored_with"]
    assert info["1"]["parameters"] == {"markup": 0.25, "offer_share": 0.9, "vote_threshold": 0}
    assert info["2"]["parameters"] == {"markup": 0.25, "offer_share": 0.75, "vote_threshold": 20001}
    # requests 250k, 125k | 500k, 62.5k -> 63k: errors 0, +25k, 0, +23k
    assert fit[REQUEST] == {"n": 4, "invalid": 0, "mae": 12000, "median_ae": 11500, "bias": 12000, "spearman": 1.0}
    # offers 180k | 75k: errors +30k, -15k
    assert fit[OFFER] == {"n": 2, "invalid": 0, "mae": 22500, "median_ae": 22500, "bias": 7500, "spearman": 1.0}
    assert fit[DECISION]["agreement"] == pytest.approx(5 / 6, abs=1e-6)  # game 1 as the baseline; game 2 all agree

    # the table on stdout shows the same numbers
    assert "28,750" in out and "12,000" in out and "152,500" in out and "5/6" in out and "0.667" in out
    assert "chat-with-players (n=1): counted, not scored" in out

    # the dataset, and the parameters fitted on all games for handler.py
    dataset = report["dataset"]
    assert dataset["sha256"] == jobrecord.sha256_file(tmp_path / "training_set.jsonl")
    assert dataset["games"] == ["1", "2"] and dataset["examples"] == len(HAND_SET)
    folder = out_dir(tmp_path)
    assert folder.name == f"training_set-{dataset['sha256'][:12]}"  # named for the set and its content
    saved = json.loads((folder / "fitted_policy.json").read_text())
    assert saved["parameters"] == {"markup": 0.25, "offer_share": 0.75, "vote_threshold": 20001}
    assert saved["fitted_on"]["sha256"] == dataset["sha256"]
    assert (folder / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "owners ask their loss + 25.0 %; the developer offers 75.0 % of the median request" in out


def test_scores_keep_the_issue_s_keys_and_add_a_policy_s_own_numbers(tmp_path):
    s = read_set(write_set(tmp_path / "v.jsonl"), jobrecord.sha256_file(tmp_path / "v.jsonl"))
    decisions = [Decision(e.human, extra={"nll": 2.0 if e.action == REQUEST else 1.0}) for e in s.examples]
    scores = score(s.examples, decisions, KINDS)
    assert set(scores[REQUEST]) == {"n", "invalid", "mae", "median_ae", "bias", "spearman", "nll"}
    assert set(scores[DECISION]) == {"n", "invalid", "agreement", "kappa", "nll"}
    assert scores[REQUEST]["mae"] == 0 and scores[REQUEST]["nll"] == 2.0 and scores[DECISION]["kappa"] == 1.0


def test_an_invalid_vote_is_a_disagreement_and_an_invalid_amount_is_left_out(tmp_path):
    s = read_set(write_set(tmp_path / "v.jsonl"), jobrecord.sha256_file(tmp_path / "v.jsonl"))
    decisions = []
    for e in s.examples:
        first_of_kind = e is next(x for x in s.examples if x.action == e.action)
        decisions.append(Decision(None, "invalid answer") if first_of_kind else Decision(e.human))
    scores = score(s.examples, decisions, KINDS)
    assert scores[DECISION]["invalid"] == 1 and scores[DECISION]["agreement"] == pytest.approx(5 / 6)
    assert scores[REQUEST]["invalid"] == 1 and scores[REQUEST]["mae"] == 0  # over the 3 valid ones
    assert references(s.examples, KINDS)[REQUEST]["n"] == 4


# ----------------------------------------------------------------------------------------------- fitted


def test_leave_one_game_out_never_sees_the_game_it_scores(tmp_path):
    """A game of extreme askers among ordinary ones: its own requests must not move the markup it is scored with."""
    rows = []
    for game in (1, 2, 3):
        ratio = 3.0 if game == 3 else 1.2
        for seat, loss in ((1, 100000), (3, 200000), (4, 300000)):
            rows.append((game, seat, REQUEST, [500000, 500000 - loss], int(loss * ratio), {}))
    path = write_set(tmp_path / "training_set.jsonl", rows)
    s = read_set(path, jobrecord.sha256_file(path))
    fits = fitted.fits_for_games(s.games, s.examples)
    for game, fit in fits.items():
        assert game not in fit.games and fit.left_out == [game]
    assert fits["3"].params["markup"] == pytest.approx(0.2)  # the two ordinary games only
    assert fits["1"].params["markup"] == pytest.approx(0.2)  # games 2 and 3: ties broken towards the baseline
    assert fitted.fit(s.examples).params["markup"] == pytest.approx(0.2)


def test_a_validation_set_is_scored_with_the_fit_on_all_training_games(tmp_path, capsys):
    write_set(tmp_path / "training_set.jsonl", [r for r in HAND_SET if r[0] == 1])
    write_set(tmp_path / "validation_set.jsonl", [r for r in HAND_SET if r[0] == 2])
    code, _, err = evaluate(capsys, tmp_path)
    assert code == 0, err
    info = report_of(tmp_path)["policy_info"]["fitted"]
    assert info["scored_with"]["2"]["games"] == ["1"] and info["scored_with"]["2"]["left_out"] == []
    assert info["leave_one_game_out"] == []
    assert info["scored_with"]["2"]["parameters"] == {"markup": 0.25, "offer_share": 0.75, "vote_threshold": 20001}


def test_fit_scale_is_exact_against_a_fine_grid():
    observed, targets, caps = [500, 40, 0, 90, 10], [400, 50, 20, 100, 30], [1000, 1000, 1000, 60, 1000]
    best = fitted.fit_scale(observed, targets, caps, 1.0)

    def total(s):
        return sum(abs(o - min(s * t, m)) for o, t, m in zip(observed, targets, caps, strict=True))

    assert total(best) <= min(total(k / 1000) for k in range(0, 5001)) + 1e-9
    assert fitted.fit_scale([], [], [], 1.1) == 1.1  # no data: the baseline's value


def test_handler_plays_the_saved_fitted_parameters(tmp_path):
    path = tmp_path / "fitted_policy.json"
    fit = fitted.Fit({"markup": 0.25, "offer_share": 0.75, "vote_threshold": 20001}, {}, ["1"])
    fitted.save(path, fit, {"path": "x"})
    args = argparse.Namespace(policy="fitted", fitted_params=path, seed=0)
    policy, line = handler.choose_policy(args, {})
    assert isinstance(policy, BaselinePolicy) and policy.name == "fitted"
    assert (policy.markup, policy.offer_share, policy.vote_threshold) == (0.25, 0.75, 20001)
    assert line.startswith("policy: fitted (markup 0.25, offer_share 0.75, vote_threshold 20001")
    with pytest.raises(handler.UsageError, match="no fitted parameters yet"):
        handler.choose_policy(argparse.Namespace(policy="fitted", fitted_params=tmp_path / "none.json", seed=0), {})
    path.write_text('{"parameters": {"markup": "high"}}')
    with pytest.raises(handler.UsageError, match="parameters.markup must be a number"):
        handler.choose_policy(args, {})


# ----------------------------------------------------------------------------------------------- the builder's sets


def test_the_builder_writes_a_sidecar_the_evaluation_reads(tmp_path, capsys):
    out = tmp_path / "data"
    assert build_main(["-q", "--input", str(ROOT / "jsonFiles"), "--output-dir", str(out), "--include-chat",
                       "--sessions", str(ROOT / "jsonFiles" / "sessions.json"), "--workers", "1"]) == 0
    for name in ("training_set.jsonl", "validation_set.jsonl"):
        s = read_set(out / name, jobrecord.sha256_file(out / name))
        for example in s.examples:
            assert example.human["type"] == example.action and example.human["gameId"] == int(example.game)
            view = example.view()
            assert view.number == example.state["seat"] and example.state["cap"] > 0
    capsys.readouterr()
    code, stdout, err = evaluate(capsys, out)
    assert code == 0, err
    report = report_of(out)
    assert report["dataset"]["path"] == str(out / "validation_set.jsonl")
    assert set(report["policies"]) == {"baseline", "fitted"}
    assert report["policy_info"]["fitted"]["leave_one_game_out"] == []

    # a build without a validation set takes the old validation set's sidecar away with it
    assert build_main(["-q", "--input", str(ROOT / "jsonFiles"), "--output-dir", str(out), "--workers", "1",
                       "--validation-fraction", "0"]) == 0
    assert not (out / "validation_set.jsonl").exists() and not (out / "validation_set.state.jsonl").exists()
    read_set(out / "training_set.jsonl", jobrecord.sha256_file(out / "training_set.jsonl"))


# ----------------------------------------------------------------------------------------------- bad input


def _unchanged(data: Path) -> None:
    assert not (data / "evaluations").exists()
    assert not (data / "evaluation_report.json").exists() and not (data / "evaluation.png").exists()
    assert not (data / "fitted_policy.json").exists()
    assert not [p for p in data.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    cases = []

    code, _, err = evaluate(capsys, data)  # no set at all
    cases.append((code, err, "validation_set.jsonl: no such set"))

    foreign = data / "foreign.jsonl"
    foreign.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    shutil.copy(foreign, sidecar_path(foreign))
    code, _, err = evaluate(capsys, data, "--evaluate-on", str(foreign))
    cases.append((code, err, "not a state sidecar written by constructDataset.py"))

    lonely = write_set(data / "lonely.jsonl")
    sidecar_path(lonely).unlink()
    code, _, err = evaluate(capsys, data, "--evaluate-on", str(lonely))
    cases.append((code, err, "no state sidecar lonely.state.jsonl beside it"))

    edited = write_set(data / "edited.jsonl")
    edited.write_text(edited.read_text().replace("250000", "260000"))
    code, _, err = evaluate(capsys, data, "--evaluate-on", str(edited))
    cases.append((code, err, "belongs to another version of edited.jsonl"))

    empty = data / "empty.jsonl"
    empty.write_text("")
    code, _, err = evaluate(capsys, data, "--evaluate-on", str(empty))
    cases.append((code, err, "the set is empty"))

    good = write_set(data / "good.jsonl")
    code, _, err = evaluate(capsys, data, "--evaluate-on", str(good), "--policies", "baseline,oracle")
    cases.append((code, err, "--policies: unknown policy oracle"))

    code, _, err = evaluate(capsys, data, "--evaluate-on", str(good), "--policies", "fitted")
    cases.append((code, err, "training_set.jsonl: no training set to fit the fitted policy on"))

    code, _, err = evaluate(capsys, data, "--evaluate-on", str(good), "--policies", "llm")
    cases.append((code, err, "the llm policy needs OPENAI_API_KEY"))

    for code, err, expected in cases:
        assert code == 2, err
        assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for p in (foreign, lonely, edited, empty, good):
        p.unlink()
        sidecar_path(p).unlink(missing_ok=True)
    _unchanged(data)


def test_without_a_training_set_the_default_policies_leave_fitted_out(tmp_path, capsys):
    write_set(tmp_path / "validation_set.jsonl")
    code, out, err = evaluate(capsys, tmp_path)
    assert code == 0, err
    assert "fitted is not evaluated" in err
    assert list(report_of(tmp_path)["policies"]) == ["baseline"]
    assert not (out_dir(tmp_path) / "fitted_policy.json").exists()


def test_is_local_endpoint_and_prices():
    assert evalcli.is_local_endpoint("http://127.0.0.1:8000/v1")
    assert evalcli.is_local_endpoint("http://localhost:11434/v1")
    assert evalcli.is_local_endpoint("http://192.168.1.20:8000/v1")
    assert not evalcli.is_local_endpoint("https://api.openai.com/v1")
    assert evalcli.prices("gpt-4.1-mini-2025-04-14") == (0.40, 1.60)
    assert evalcli.prices("ft:gpt-4.1-mini-2025-04-14:lab::abc123") == (0.80, 3.20)
    assert evalcli.prices("gpt-4.1-mini") == (0.40, 1.60)
    assert evalcli.prices("llama3.1:8b") is None


class _Pipe:
    def isatty(self) -> bool:
        return False


def test_a_paid_call_without_a_terminal_needs_yes():
    with pytest.raises(evalcli.EvalError, match="pass --yes"):
        evalcli.confirm("Make these calls? [y/N]", _Pipe())
