"""An agent's first player-is-ready waits for the server's answer to its join.

On the real server (master 92735655) a join and a ready that arrive in one read are both tested for "phase 0
complete" once the ready is in, so the last seat to join made the game advance twice: phase 1 was skipped and the
game crashed at game-over without writing its log (seen with handler.py --create on loopback, game 25)."""

from __future__ import annotations

from lib.games.voting.policy import BaselinePolicy
from tests.helpers.agent_games import assert_clean_game, play


def test_the_first_ready_goes_out_only_after_the_join_was_acknowledged(tmp_path):
    played = play(tmp_path, BaselinePolicy())

    assert_clean_game(played, rounds=[1])
    for seat, records in played.transcripts.items():
        first_ready = next(i for i, r in enumerate(records)
                           if r["kind"] == "send" and r["msg"].get("type") == "player-is-ready")
        acknowledged = next(i for i, r in enumerate(records) if r["kind"] == "recv" and r["msg"].get("type") == "info"
                            and "joined" in r["msg"].get("message", ""))
        assert acknowledged < first_ready, f"seat {seat} sent ready before its join was acknowledged"


def test_a_ready_re_sent_as_the_round_started_is_a_race_and_any_other_ready_error_a_refusal(tmp_path):
    # The last seat's ready ends phase 0; a seat whose re-send left before it saw the new phase gets "could not find
    # an handler for player-is-ready" after the phase-1 transition (seen beside a second copy of the suite: two
    # readies out, one ready-received, the phase moves on, then the error). No client can avoid that: it is named as
    # a race, not counted as a refusal. An error for a ready that was already answered is a refusal.
    import json

    from lib.agents.agent import Agent
    from lib.agents.transcript import Transcript, read_transcript

    error = json.dumps({"type": "error", "message": "Game 1: could not find an handler for player-is-ready"})
    ready_received = json.dumps({"type": "event", "eventType": "ready-received", "data": {}})
    path = tmp_path / "agent.jsonl"
    with Transcript(path) as transcript:
        agent = Agent("ws://127.0.0.1:1", 1, "code", BaselinePolicy(), transcript)
        agent._readies_unanswered = 2  # what _ready_loop counts as it sends the ready and its re-send
        agent._on_text(ready_received)
        for phase in (1, 2):
            agent._on_text(json.dumps({"type": "event", "eventType": "phase-transition",
                                       "data": {"round": 1, "phase": phase}}))
        agent._on_text(error)  # the re-send, answered after the round started
        assert agent.refusals == 0 and sum(agent.races.values()) == 1
        agent._on_text(error)  # every ready out has had its answer: this one is not ours to excuse
    assert agent.refusals == 1 and sum(agent.races.values()) == 1
    [race] = [r for r in read_transcript(path) if r.get("race")]
    assert race["kind"] == "server-error" and "ready" in race["race"] and race["phase"] == 2
