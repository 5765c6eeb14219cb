"""Voting logs made up for tests: long games in the 2023 format, for the builder's limits and the prompts' bounds."""

from __future__ import annotations


def long_game(rounds: int, game_id: int = 7001, chats: tuple[tuple[int, int, str], ...] = (),
              round_count: str | None = None) -> dict:
    """A game in the 2023 format (client messages only; lib.games.voting.examples rebuilds the rest): every owner
    requests, the developer offers, every owner votes, in each of `rounds` paid rounds; `chats` are (round, sender,
    text)."""
    from tests.fixtures.dataset.make_fixtures import parameters

    def message(seat: int, r: int, phase: int, content: dict) -> dict:
        return {"content": {"gameId": game_id, **content}, "number": seat, "phase": phase, "round": r,
                "type": "message"}

    log = []
    for r in range(1, rounds + 1):
        for chat_round, sender, text in chats:
            if chat_round == r:
                to = [s for s in range(1, 7) if s != sender]
                log.append(message(sender, r, 2, {"type": "chat-with-players", "to": to, "text": text}))
        for seat in (1, 3, 4, 5, 6):
            log.append(message(seat, r, 3, {"type": "compensation-request",
                                            "compensationRequests": [None, 100000 + 1000 * (r % 50)]}))
        log.append(message(2, r, 4, {"type": "compensation-offer", "compensationOffers": [None, 90000]}))
        for seat in (1, 3, 4, 5, 6):
            log.append(message(seat, r, 6, {"type": "compensation-decision", "compensationDecisions": [r % 2]}))
    params = parameters(practice_round="false", round_count=round_count or str(rounds), session_number="1")
    return {"parameters": params, "log": log}
