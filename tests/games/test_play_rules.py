"""Every game's PlayRules (lib.games.protocols): what the run modes ask of it agrees with its other parts, and the
market games' versions of the run's policy, agents' options and round report."""

from __future__ import annotations

import pytest

from lib.agents.llm import LLMPolicy
from lib.games import GAMES, game_for
from lib.games.market.policy import MarketBaselinePolicy
from lib.games.protocols import PolicyRefused


@pytest.mark.parametrize("name", list(GAMES))
def test_the_play_part_agrees_with_the_games_rules(name):
    game = game_for(name)
    play = game.play
    assert play.seats == len(game.rules.seat_roles()) == sum(play.seat_counts.values())
    assert play.action_phases and all(1 <= p <= game.rules.last_phase for p in play.action_phases)
    defaults = game.rules.default_parameters()
    assert {key: defaults.get(key, 0) for key in play.seat_counts} == dict(play.seat_counts)
    assert play.timer_scale("baseline") < play.timer_scale("llm")
    assert play.policy_refusal("baseline") is None and play.policy_refusal("llm") is None


def test_the_voting_game_plays_the_runs_policy_itself_and_announces_a_deciding_model():
    play = game_for("voting").play
    chosen = game_for("voting").seat.baseline_policy()
    assert play.policy(chosen, 3) is chosen
    assert play.policy_refusal("fitted") is None and play.chat
    assert play.deciding_line(1, 3) == "  round 1, phase 3 (compensation request): the model is deciding ..."


@pytest.mark.parametrize("name", ["harberger", "futarchy"])
def test_a_market_game_has_its_own_version_of_every_policy_but_fitted(name, tmp_path):
    game = game_for(name)
    play = game.play
    voting_baseline = game_for("voting").seat.baseline_policy()
    assert isinstance(play.policy(voting_baseline, 1), MarketBaselinePolicy)
    model = LLMPolicy(api_key="k", model="m", base_url="http://127.0.0.1:9/v1")
    mine = play.policy(model, 1)
    assert isinstance(mine, LLMPolicy) and mine.semaphore is model.semaphore and mine.model == "m"
    assert mine.answers is game.answers
    fitted = game_for("voting").play.rule_policy("baseline", seed=0, path=None, data_dir=tmp_path)[0]
    fitted.name = "fitted"
    with pytest.raises(PolicyRefused, match="has no market-game version"):
        play.policy(fitted, 1)
    assert play.policy_refusal("fitted") == (f"--policy fitted plays voting games only; {name} has no fitted "
                                             "version (use --policy baseline or llm)")
    assert not play.chat and play.deciding_line(1, 6) is None


def test_market_agents_trade_at_the_pace_of_the_markets_timer():
    game = game_for("harberger")
    play = game.play
    short = game.rules.parameters({"timer_phase_6": 4})
    local = play.agent_options(short, seed=0, local=True)
    assert (local["game_type"], local["trade_interval"], local["trade_seconds"]) == ("harberger", 0.1, 1.0)
    long = game.rules.parameters({"timer_phase_6": 400})
    # a real server's long market is traded at most every 5 s, a decision at most 20 s; a local one is not capped
    assert (play.agent_options(long, seed=0, local=False)["trade_interval"],
            play.agent_options(long, seed=0, local=False)["trade_seconds"]) == (5.0, 20.0)
    assert play.agent_options(long, seed=0, local=True)["trade_interval"] == 10.0
    unknown = play.agent_options(None, seed=0, local=False, known=False)
    assert unknown["game_type"] is None and "trade_interval" not in unknown


def test_the_compact_line_of_each_game_keeps_the_rounds_gist():
    voting = ["round 1", "  requests: Owner 1 5", "  offer:    261000", "  votes:    Owner 1 Project",
              "  outcome:  Project (3 votes)", "  profit:   -"]
    assert game_for("voting").play.compact_line(voting) == "round 1: offer: 261000, outcome: Project (3 votes)"
    market = ["round 1: winning condition 1 (Project)", "  first snipes: none", "  market 1 (Project): 2 trades",
              "  final share price 10", "  profit: -"]
    assert game_for("futarchy").play.compact_line(market) == ("round 1: winning condition 1 (Project); market 1 "
                                                              "(Project): 2 trades; final share price 10")
