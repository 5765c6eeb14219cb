"""The empirical voting policy (lib/games/voting/empirical.py) and the market fitted and empirical versions
(lib/games/market/fitted.py):
determinism, draws that reproduce the samples (tolerances from the Dvoretzky-Kiefer-Wolfowitz and Hoeffding bounds,
not guessed), fits on hand-made data with known answers, --evaluate, and games played with them."""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lib.agents import decisions
from lib.dataset.sidecar import read_set
from lib.evaluation import saved as samplesfile
from lib.games.market import fitted as marketfitted
from lib.games.market.actions import DECLARE, SPECULATE, TRADE, validate_market_action
from lib.games.market.examples import market_examples
from lib.games.voting import empirical
from lib.games.voting.actions import DECISION, OFFER, REQUEST
from tests.helpers.evalsets import CAP, view_for, write_set
from tests.helpers.paths import FIXTURES, REPO

ALPHA = 1e-9  # the chance that a bound below fails for a truly random sample; the draws are seeded, so it is fixed


def dkw(n: int) -> float:
    """Dvoretzky-Kiefer-Wolfowitz (Massart): P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2) = ALPHA."""
    return math.sqrt(math.log(2 / ALPHA) / (2 * n))


def quantile(sorted_values: list[float], p: float) -> float:
    """The lower p-quantile: the smallest value with at least a share p of the values at or below it."""
    p = min(max(p, 0.0), 1.0)
    return sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)]


def assert_same_distribution(draws: list[float], sample: list[float]) -> None:
    """Each quantile of the draws lies between the sample's quantiles at p -/+ the DKW bound of the draws."""
    draws, sample = sorted(draws), sorted(sample)
    eps = dkw(len(draws))
    for p in (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95):
        assert quantile(sample, p - eps) <= quantile(draws, p) <= quantile(sample, p + eps), p


def loaded_set(tmp_path: Path, name: str = "training_set.jsonl"):
    path = write_set(tmp_path / name)
    return read_set(path, hashlib.sha256(path.read_bytes()).hexdigest())


# ----------------------------------------------------------------------------------------------------- voting

def test_samples_of_the_hand_set_are_the_humans_own_markups_shares_and_margins(tmp_path):
    s = loaded_set(tmp_path)
    samples = empirical.collect(s.examples)
    # requests: 250k over a 200k loss, 100k over 100k; game 2: 500k over 400k, 40k over 50k
    assert sorted(samples.markup) == [-0.2, 0.0, 0.25, 0.25]
    # offers over the median request received: 150k / 200k and 90k / 100k
    assert sorted(samples.offer_share) == [0.75, 0.9]
    # votes: (v_project + offer - v_noProject) / v_noProject, with the human's vote
    assert sorted(samples.vote) == sorted([(-0.1, 0), (0.125, 1), (round(20000 / 450000, 9), 0),
                                           (round(-310000 / 600000, 9), 0), (round(40000 / 300000, 9), 1),
                                           (round(40000 / 350000, 9), 1)])
    left = empirical.samples_for_games(["1"], s.examples)["1"]  # leave one game out: game 2's only
    assert sorted(left.markup) == [-0.2, 0.25] and left.offer_share == [0.9] and left.left_out == ["1"]


def test_isotonic_noise_around_the_margin_has_the_known_answer():
    points = [(-0.2, 0), (-0.1, 1), (0.0, 0), (0.1, 1), (0.2, 1)]
    steps = empirical.isotonic_steps(points)
    assert steps == [(-0.2, 0.0), (-0.1, 0.5), (0.1, 1.0)]  # the yes at -0.1 and the no at 0 are pooled
    assert [empirical.step_value(steps, x) for x in (-1.0, -0.15, 0.05, 5.0)] == [0.0, 0.0, 0.5, 1.0]
    assert empirical.isotonic_steps([(1.0, 1), (2.0, 0)], increasing=False) == [(1.0, 1.0), (2.0, 0.0)]


def test_a_decision_is_determined_by_seed_game_round_and_seat():
    samples = empirical.Samples(markup=[i / 100 for i in range(50)], offer_share=[0.5, 1.0],
                                vote=[(-0.1, 0), (0.0, 1), (0.1, 1)])
    view = view_for(7, 1, REQUEST, [500000, 300000])

    def request(seed: int, view=view) -> int:
        return empirical.empirical_action(view, REQUEST, CAP, samples, seed=seed)["compensationRequests"][1]

    assert request(3) == request(3)  # the same seed, game, round and seat: the same request
    assert len({request(seed) for seed in range(40)}) > 10  # other seeds: other draws
    later = view_for(7, 1, REQUEST, [500000, 300000], round_number=2)
    assert any(request(seed, later) != request(seed) for seed in range(40))  # another round draws anew
    # as agents play it: the same answer for the same moment, whatever was asked before
    policy = empirical.EmpiricalPolicy(samples, seed=3)
    answers = [asyncio.run(policy.decide(view, REQUEST, cap=CAP, action_required={}, deadline=0, transcript=None))
               for _ in range(3)]
    assert answers[0] == answers[1] == answers[2] == empirical.empirical_action(view, REQUEST, CAP, samples, seed=3)


def test_drawn_markups_and_offer_shares_reproduce_the_training_samples():
    markups = [round(0.037 * i - 0.2, 3) for i in range(30)] + [0.1] * 10 + [0.25] * 5  # with ties
    shares = [round(0.5 + 0.011 * i, 3) for i in range(40)]
    samples = empirical.Samples(markup=markups, offer_share=shares)
    n = 3000
    drawn_markups, drawn_shares = [], []
    for k in range(n):
        # a loss of 1,000,000 and 3-decimal markups: loss x (1 + m) is a multiple of 1000, so no rounding hides m
        view = view_for(k, 1, REQUEST, [1_300_000, 300_000])
        request = empirical.empirical_action(view, REQUEST, CAP * 10, samples)["compensationRequests"][1]
        drawn_markups.append(round(request / 1_000_000 - 1, 3))
        dev = view_for(k, 2, OFFER, [0, 10_000_000], requests={1: 1_000_000, 3: 1_000_000, 4: 1_000_000})
        offer = empirical.empirical_action(dev, OFFER, CAP * 10, samples)["compensationOffers"][1]
        drawn_shares.append(round(offer / 1_000_000, 3))
    assert_same_distribution(drawn_markups, markups)
    assert_same_distribution(drawn_shares, shares)


def test_drawn_votes_follow_the_humans_noise_around_the_margin():
    votes = [(-0.3, 0), (-0.2, 0), (-0.1, 1), (-0.05, 0), (0.0, 1), (0.0, 0), (0.05, 1), (0.2, 1)]
    samples = empirical.Samples(vote=votes)
    n = 4000
    bound = math.sqrt(math.log(2 / ALPHA) / (2 * n))  # Hoeffding, for the share of yes votes
    for offer, v_no, v_project in ((0, 1_000_000, 970_000), (0, 1_000_000, 1_000_000), (0, 1_000_000, 600_000)):
        x = (v_project + offer - v_no) / v_no
        p = samples.yes_probability(x)
        yes = sum(empirical.empirical_action(view_for(k, 3, DECISION, [v_no, v_project], offer=offer), DECISION,
                                             CAP, samples)["compensationDecisions"][0] for k in range(n))
        assert abs(yes / n - p) <= bound, (x, p, yes / n)
    # by hand: -0.3 and -0.2 pool at 0; the yes at -0.1, the no at -0.05 and the two at 0 pool at 2/4; 0.05 and 0.2
    # pool at 1
    assert [samples.yes_probability(x) for x in (-0.4, -0.25, -0.03, 0.0, 0.1)] == [0.0, 0.0, 0.5, 0.5, 1.0]


def test_without_samples_each_decision_is_the_baselines():
    from lib.games.voting.policy import baseline_action

    for action, values, extra in ((REQUEST, [500000, 300000], {}), (DECISION, [500000, 300000], {"offer": 250000}),
                                  (OFFER, [300000, 1300000], {"requests": {1: 200000, 3: 100000}})):
        view = view_for(1, 2 if action == OFFER else 1, action, values, **extra)
        assert empirical.empirical_action(view, action, CAP, empirical.Samples()) == baseline_action(view, action, CAP)


def market_section(market: marketfitted.MarketSamples) -> dict:
    """The market games' section of a samples file, as an evaluation writes it beside the voting one."""
    return {marketfitted.SECTION: marketfitted.section(market)}


def test_saved_samples_load_and_bad_files_say_which_field(tmp_path):
    s = loaded_set(tmp_path)
    market = marketfitted.MarketSamples([(0, 100000.0, 90000.0)], [(0.9, 1)], {"bid": [-0.1], "ask": []})
    path = tmp_path / "empirical_policy.json"
    empirical.save(path, empirical.collect(s.examples), {"path": "x"}, market_section(market))
    voting = empirical.load(path)
    loaded_market = marketfitted.from_saved(samplesfile.read(path))
    assert sorted(voting.markup) == [-0.2, 0.0, 0.25, 0.25] and len(voting.vote) == 6
    assert loaded_market.declarations == market.declarations and loaded_market.markups == market.markups
    record = json.loads(path.read_text())
    assert list(record["sections"]) == ["voting", "market"] and record["version"] == samplesfile.VERSION
    record["sections"]["voting"]["samples"]["markup"] = ["a lot"]
    path.write_text(json.dumps(record))
    with pytest.raises(empirical.EmpiricalError,
                       match=r"empirical_policy.json: section voting: samples.markup must be a list"):
        empirical.load(path)
    with pytest.raises(empirical.EmpiricalError, match="no empirical samples yet"):
        empirical.load(tmp_path / "missing.json")
    path.write_text(json.dumps({**record, "version": 3}))
    with pytest.raises(empirical.EmpiricalError, match="of version 3; this toolkit reads version 2") as refused:
        empirical.load(path)
    assert "\n" not in str(refused.value)


def test_a_samples_file_of_before_the_sections_is_still_played_by_every_game(tmp_path):
    """Version 1 (before each game had its section): the voting samples at the top, the market's under "market";
    each game still finds its own part of it."""
    legacy = {"policy": "empirical", "rules": "lib/games/voting/policy.py",
              "samples": {"markup": [0.5], "offer_share": [0.8], "vote": [[-0.1, 0], [0.0, 1]]},
              "n": {REQUEST: 1, OFFER: 1, DECISION: 2}, "games": ["1"], "left_out": [],
              "draws_per_decision_in_evaluation": empirical.DRAWS,
              "market": marketfitted.MarketSamples([(0, 100000.0, 90000.0)], [(0.9, 1)],
                                                   {"bid": [-0.1], "ask": []}).to_dict(),
              "fitted_on": {"path": "x"}, "created_at": "2025-01-01T00:00:00+00:00"}
    path = tmp_path / "empirical_policy.json"
    path.write_text(json.dumps(legacy))
    assert empirical.load(path).markup == [0.5]
    assert marketfitted.from_saved(samplesfile.read(path)).declarations == [(0, 100000.0, 90000.0)]
    _policy, line = empirical.playing(path, seed=0)
    assert line == (f"policy: empirical (draws from 1 requests, 1 offers, 2 votes of training humans; seed 0, from "
                    f"{path})")


def test_evaluate_scores_draw_zero_and_the_expected_error_over_draws(tmp_path, monkeypatch, capsys):
    import finetune

    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")
    loaded_set(tmp_path, "training_set.jsonl")
    evaluated = loaded_set(tmp_path, "validation_set.jsonl")
    assert finetune.main(["--evaluate", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path),
                          "--policies", "baseline,empirical"]) == 0
    report = json.loads((tmp_path / "evaluation_report.json").read_text())
    scores = report["policies"]["empirical"]
    assert all(scores[a]["invalid"] == 0 for a in (REQUEST, OFFER, DECISION))
    # offers, leave one game out: game 1's developer draws game 2's share 0.9 (0.9 x 200k = 180k against 150k),
    # game 2's draws game 1's 0.75 (75k against 90k): every draw is that, so the expected error is the error
    assert scores[OFFER]["exp_ae"] == scores[OFFER]["mae"] == 22500
    # requests and votes: the mean over DRAWS seeded draws, recomputed here
    per_game = empirical.samples_for_games(evaluated.games, evaluated.examples)
    for action, key in ((REQUEST, "exp_ae"), (DECISION, "exp_agree")):
        mine = [empirical.expected_score(e, per_game[e.game])[key] for e in evaluated.examples if e.action == action]
        assert scores[action][key] == pytest.approx(sum(mine) / len(mine))
    assert "exp_ae" in capsys.readouterr().out
    voting = empirical.load(tmp_path / empirical.PARAMS_FILE)  # saved for handler.py, all training games
    assert sorted(voting.markup) == [-0.2, 0.0, 0.25, 0.25]
    assert report["policy_info"]["empirical"]["draws_per_decision"] == empirical.DRAWS


def test_handler_refuses_missing_samples_in_one_line(tmp_path):
    import handler

    args = argparse.Namespace(policy="empirical", empirical_params=tmp_path / "none.json", seed=0)
    with pytest.raises(handler.UsageError, match="none.json: no empirical samples yet"):
        handler.choose_policy(args, {})


# ----------------------------------------------------------------------------------------------------- market

@pytest.fixture(scope="module")
def recorded() -> list:
    with gzip.open(FIXTURES / "market_logs.json.gz", "rt") as f:
        logs = json.load(f)["logs"]
    sessions = json.loads((FIXTURES / "market_sessions.json").read_text())
    return [(name, ex) for name in ("harberger-12", "futarchy-13")
            for ex in market_examples(logs[name], sessions=sessions).examples]


def test_market_fit_on_hand_made_samples_has_the_known_answer():
    samples = marketfitted.MarketSamples(
        declarations=[(0, 100000.0, 80000.0), (0, 100000.0, 80000.0), (1, 100000.0, 100000.0)],
        snipes=[(0.5, 1), (0.7, 1), (0.9, 0), (1.1, 0)],
        markups={"bid": [-0.1, -0.05, 0.0], "ask": [0.1]})
    fit = marketfitted.fit(samples)
    assert fit.shading == pytest.approx(0.2)  # the value-weighted median of d / v is 0.8
    assert fit.snipe_threshold == pytest.approx(0.9)  # every t in (0.7, 0.9] agrees with all four; 0.9 is nearest 0.95
    assert fit.markup == {"bid": -0.05, "ask": 0.1}
    empty = marketfitted.fit(marketfitted.MarketSamples())  # nothing recorded: the baseline's rules
    assert (empty.shading, empty.snipe_threshold, empty.markup) == (0.0, 0.95, {"bid": None, "ask": None})


def test_market_fitted_and_empirical_answer_every_recorded_decision_validly_and_deterministically(recorded):
    samples = marketfitted.collect(recorded)
    assert samples.declarations and samples.snipes and samples.markups["bid"] and samples.markups["ask"]
    policies = [marketfitted.MarketFitted(marketfitted.fit(samples)), marketfitted.MarketEmpirical(samples, seed=4)]
    kinds = {"declare": DECLARE, "done-speculating": SPECULATE, "post-order": TRADE, "cancel-order": TRADE}
    for _, ex in recorded:
        for policy in policies:
            answer = policy.decide(ex.view, kinds[ex.action_type])
            validate_market_action(answer, ex.view, kinds[ex.action_type])  # strict, as at play time
            assert policy.decide(ex.view, kinds[ex.action_type]) == answer


def test_market_empirical_draws_reproduce_the_recorded_shadings_and_markups(recorded):
    samples = marketfitted.collect(recorded)
    declare = next(ex for _, ex in recorded if ex.action_type == "declare" and ex.view.current.values)
    v = declare.view.current.values
    n = 3000
    drawn = [marketfitted.MarketEmpirical(samples, seed=k).decide(declare.view, DECLARE)["declaration"]
             for k in range(n)]
    for c in (0, 1):
        # a declaration is v (1 - h) rounded down to 1000 and capped: a monotone map of the drawn shading h, so the
        # draws' quantiles are the map of the sample's
        cap = marketfitted.declaration_max(declare.view, c)
        mapped = [min(max(0, int(v[c] * (1 - h) // 1000 * 1000)), cap) for h in samples.shadings(c)]
        assert_same_distribution([d[c] for d in drawn], mapped)
    trade = next(ex for _, ex in recorded if ex.action_type == "post-order" and ex.view.current.signals)
    posted = {"bid": [], "ask": []}
    for k in range(n):
        answer = marketfitted.MarketEmpirical(samples, seed=k).decide(trade.view, TRADE)
        if answer["type"] == "post-order" and answer["order"]["type"] == "bid":  # a bid is capped by the money
            s = trade.view.current.signals[answer["order"]["condition"]]
            posted["bid"].append((answer["order"]["price"], s, answer["order"]["condition"]))
    assert len(posted["bid"]) > 500
    _, s, condition = posted["bid"][0]
    money = int(trade.view.uncommitted(condition)[0])
    mapped = [min(max(0, round(s * (1 + m))), marketfitted.price_cap(trade.view, condition), money)
              for m in samples.markups["bid"]]
    assert all(sig == s and c == condition for _, sig, c in posted["bid"])
    assert_same_distribution([p for p, _, _ in posted["bid"]], mapped)


def test_evaluate_scores_market_fitted_and_empirical_and_names_the_recorded_players(tmp_path, monkeypatch):
    import finetune
    from tests.games.market.test_build import VOTING_LOGS, build

    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")
    market_dir = tmp_path / "market"
    market_dir.mkdir()
    with gzip.open(FIXTURES / "market_logs.json.gz", "rt") as f:
        for name, log in json.load(f)["logs"].items():
            (market_dir / f"{name}.log.json").write_text(json.dumps(log))
    out = tmp_path / "out"
    build([VOTING_LOGS, market_dir], out, validation_fraction=0.5)
    assert finetune.main(["--evaluate", "--data-dir", str(out), "--output-dir", str(out),
                          "--policies", "baseline,fitted,empirical"]) == 0
    report = json.loads((out / "evaluation_report.json").read_text())
    section = report["market"]
    assert set(section["policies"]) == {"baseline", "fitted", "empirical"}
    assert not any(r.startswith(("policy fitted", "policy empirical")) for r in section["not_scored"])
    for name in ("fitted", "empirical"):
        assert all(section["policies"][name][kind]["invalid"] == 0
                   for kind in ("declare", "done-speculating", "post-order"))
        assert "recorded players" in json.dumps(report["policy_info"][name]["market"])
    # never called humans: the one mention is the warning that no human market data exists
    assert "human" not in json.dumps(report["policy_info"]["fitted"]["market"]).replace(marketfitted.RECORDED, "")
    saved = samplesfile.read(out / samplesfile.SAMPLES_FILE)
    assert list(saved.sections) == ["voting", "market"]  # one file: each game's section, in the registry's order
    assert marketfitted.from_saved(saved).snipes and empirical.from_saved(saved).games


# ----------------------------------------------------------------------------------------------------- play

def run_local(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "PYTHON_DOTENV_DISABLED": "1"}
    return subprocess.run([sys.executable, str(REPO / "handler.py"), "--local", *args, "--rounds", "1",
                           "--no-practice", "--records", str(tmp_path / "rec"), "--logs-dir", str(tmp_path / "logs")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)


def assert_checked_answers(folder: Path) -> None:
    """Every answer passed the play-time checks: no fallback for an invalid answer or a policy error (a loaded
    machine may still miss a scaled-down deadline, which says nothing about the policy)."""
    [table] = (folder / "logs").glob("*/decisions.csv")
    with table.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["made_by"] == "empirical" for r in rows) > len(rows) / 2
    assert not [r for r in rows if r["fallback_reason"] in (decisions.INVALID, decisions.POLICY_ERROR)]


def test_handler_plays_the_empirical_policy_in_a_voting_and_a_market_game(tmp_path, recorded):
    samples = empirical.Samples(markup=[0.5], offer_share=[0.8], vote=[(-0.1, 0), (0.0, 1)])
    path = tmp_path / "empirical_policy.json"
    empirical.save(path, samples, {"path": "hand-made"}, market_section(marketfitted.collect(recorded)))

    voting = run_local(tmp_path, "--policy", "empirical", "--empirical-params", str(path), "--timer-scale", "0.005")
    assert voting.returncode == 0, voting.stderr
    lines = voting.stdout.splitlines()
    assert lines[0].startswith("policy: empirical (draws from 1 requests, 1 offers, 2 votes of training humans; "
                               "market: ") and lines[0].endswith(f"seed 0, from {path})")
    assert_checked_answers(tmp_path)
    # the one markup in the samples, 0.5, on each owner's own loss (rounded up to 1000), as the decisions table shows
    [table] = (tmp_path / "logs").glob("*/decisions.csv")
    with table.open(encoding="utf-8") as f:
        asked = [r for r in csv.DictReader(f) if r["action_type"] == REQUEST and r["made_by"] == "empirical"]
    assert asked
    for row in asked:
        v_no, v_project = json.loads(row["private_values"])
        request = json.loads(row["action"])["compensationRequests"][1]
        assert request == math.ceil(max(0, v_no - v_project) * 1.5 / 1000) * 1000

    (tmp_path / "m").mkdir()
    market = run_local(tmp_path / "m", "--game-type", "harberger", "--policy", "empirical", "--empirical-params",
                       str(path), "--timer-scale", "0.01", "--sessions", str(FIXTURES / "market_sessions.json"))
    assert market.returncode == 0, market.stderr
    assert "round 1: winning condition" in market.stdout
    assert_checked_answers(tmp_path / "m")


def test_without_a_path_the_newest_evaluations_samples_are_played(tmp_path):
    # handler.py --policy empirical with no --empirical-params: the newest data/evaluations/*/empirical_policy.json
    from lib.games import game_for

    samples = empirical.Samples()
    for name in ("old-set", "new-set"):
        (tmp_path / "evaluations" / name).mkdir(parents=True)
        empirical.save(tmp_path / "evaluations" / name / empirical.PARAMS_FILE, samples, {"set": name})
    newest = tmp_path / "evaluations" / "new-set" / empirical.PARAMS_FILE
    import os

    os.utime(newest, (newest.stat().st_mtime + 10, newest.stat().st_mtime + 10))
    policy, line = game_for("voting").play.rule_policy("empirical", seed=1, path=None, data_dir=tmp_path)
    assert policy.name == "empirical" and str(newest) in line


def test_a_market_game_takes_its_own_section_whichever_game_loaded_the_file(tmp_path, recorded):
    """The run's empirical policy may come from the default game's play part (handler.py) or from the market's own
    (a study's market seat): either way the market game draws from the market section of the same file."""
    from lib.games import game_for

    market = marketfitted.collect(recorded)
    path = tmp_path / "empirical_policy.json"
    empirical.save(path, empirical.Samples(markup=[0.5]), {"path": "hand-made"}, market_section(market))
    harberger = game_for("harberger").play
    own, line = harberger.rule_policy("empirical", seed=3, path=path, data_dir=tmp_path)
    assert line.startswith("policy: empirical (draws from market: ") and "; 1 requests, 0 offers" in line
    from_voting, _ = game_for("voting").play.rule_policy("empirical", seed=3, path=path, data_dir=tmp_path)
    for chosen in (own, from_voting):
        played = harberger.policy(chosen, 3)  # what a study seat and handler.py do with the chosen policy
        assert played.name == "empirical" and played.rules.samples.declarations == market.declarations
