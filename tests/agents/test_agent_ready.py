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
