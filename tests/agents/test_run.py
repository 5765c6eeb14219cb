"""lib.agents.run: the stop, the fallback limit, the verdict, the default safety margin, the policy choice."""

from __future__ import annotations

import asyncio
import io
import signal

import pytest

from lib.agents import decisions
from lib.agents.llm import LLMPolicy
from lib.agents.run import (
    DEFAULT_MAX_FALLBACK_SHARE,
    EXIT_FALLBACKS,
    EXIT_OK,
    MAX_SAFETY_MARGIN,
    Stop,
    UsageError,
    choose_policy,
    fallback_limit,
    safety_margin,
    verdict,
)
from lib.games import game_for


def test_the_stop_remembers_the_first_signal_for_its_exit_code():
    async def scenario() -> Stop:
        stop = Stop()
        stop.set(signal.SIGTERM)
        stop.set(signal.SIGINT)
        await stop.wait()
        return stop

    stop = asyncio.run(scenario())
    assert stop.is_set() and stop.exit_code == 143 and stop.name == "SIGTERM"
    assert Stop().exit_code == 130


def test_only_a_model_has_a_fallback_limit():
    model = LLMPolicy(api_key="k", model="m", base_url="http://127.0.0.1:9/v1")
    assert fallback_limit(game_for("voting").seat.baseline_policy(), 0.5) is None
    assert fallback_limit(model, None) == DEFAULT_MAX_FALLBACK_SHARE
    assert fallback_limit(model, 1.0) == 1.0


def _row(made_by: str) -> decisions.Decision:
    return decisions.Decision(game=1, round=1, phase=3, seat=2, role="owner", agent="agent2",
                              action_type="compensation-request", made_by=made_by,
                              fallback_reason="timeout" if made_by == decisions.FALLBACK else None)


def test_the_verdict_ends_with_the_shares_and_fails_past_the_limit(tmp_path, capsys):
    with decisions.DecisionLog(tmp_path / "decisions.csv") as log:
        log.add(_row(decisions.FALLBACK))
        log.add(_row("model"))
        out = io.StringIO()
        assert verdict(log, 0.6, out) == EXIT_OK
        assert verdict(log, None, io.StringIO()) == EXIT_OK
        assert verdict(log, 0.2, io.StringIO()) == EXIT_FALLBACKS
    assert out.getvalue().splitlines()[0] == f"decisions table: {tmp_path / 'decisions.csv'}"
    assert "more than --max-fallback-share 0.2" in capsys.readouterr().err


def test_the_default_safety_margin_is_a_quarter_of_the_shortest_action_phase_at_most_two_seconds():
    voting = game_for("voting")
    fast = voting.rules.parameters(voting.rules.local_parameters(1, False, 0.005))
    shortest = min(fast.timer(p) for p in voting.play.action_phases)
    assert safety_margin(voting.play.action_phases, fast) == pytest.approx(shortest / 4)
    assert safety_margin(voting.play.action_phases, voting.rules.parameters()) == MAX_SAFETY_MARGIN
    assert safety_margin(voting.play.action_phases, None) == MAX_SAFETY_MARGIN


def test_a_policy_without_a_key_or_saved_parameters_is_a_usage_error(tmp_path):
    common = {"seed": 0, "params_path": None, "data_dir": tmp_path, "job_record": tmp_path / "job.json",
              "max_retries": 0, "max_concurrent_calls": 1}
    policy, line = choose_policy(None, {}, **common)
    assert policy.name == "baseline" and line == "policy: baseline (no OPENAI_API_KEY set)"
    assert choose_policy("baseline", {"OPENAI_API_KEY": "k"}, **common)[1] == "policy: baseline (--policy baseline)"
    with pytest.raises(UsageError, match="needs OPENAI_API_KEY"):
        choose_policy("llm", {}, **common)
    with pytest.raises(UsageError, match="no fitted parameters yet"):
        choose_policy("fitted", {}, **common)
