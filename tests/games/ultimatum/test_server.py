"""The ultimatum game's own rules on the local server's core (server.py), played by hand through recording
connections: what --strict refuses, the payoffs, and the examples its log gives (examples.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from lib.games import register, unregister
from lib.ibex.log import parse_log
from lib.ibex.sessions import load_sessions
from lib.localserver.server import DEFAULT_SESSIONS
from tests.games.ultimatum.examples import NOT_MADE
from tests.games.ultimatum.game import GAME
from tests.games.ultimatum.server import UltimatumGame

# Phases 1 and 4 end by their timers at once; the proposal and the response wait for the seats (or a test's hand).
TIMERS = {"timer_phase_1": 0.01, "timer_phase_2": 600, "timer_phase_3": 600, "timer_phase_4": 0.01}


class Conn:
    """A client connection that keeps every frame it is sent."""

    def __init__(self) -> None:
        self.number: int | None = None
        self.game_id: int | None = None
        self.frames: list[dict[str, Any]] = []

    def send(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)

    def send_text(self, text: str) -> None:
        self.frames.append(json.loads(text))

    def errors(self) -> list[str]:
        return [f["message"] for f in self.frames if f.get("type") == "error"]

    def events(self, kind: str) -> list[Any]:
        return [f["data"] for f in self.frames if f.get("type") == "event" and f.get("eventType") == kind]


async def _until(game: UltimatumGame, phase: int) -> None:
    while game.phase != phase and not game.over:
        await asyncio.sleep(0.005)


async def _started(strict: bool, **flat: Any) -> tuple[UltimatumGame, Conn, Conn, asyncio.Future[Any]]:
    over: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    params = GAME.server.parameters({"round_count": 1, **TIMERS, **flat})
    game = GAME.server.new_game(5, params, load_sessions(DEFAULT_SESSIONS), strict=strict,
                                on_over=over.set_result)
    proposer, responder = Conn(), Conn()
    for k, conn in enumerate((proposer, responder)):
        game.on_frame(conn, {"gameId": 5, "type": "join", "recovery": f"code-{k}"})
    for conn in (proposer, responder):
        game.on_frame(conn, {"gameId": 5, "type": "player-is-ready"})
    await _until(game, 2)
    return game, proposer, responder, over


def _round(offer: int | None, accept: bool | None) -> tuple[UltimatumGame, Conn, Conn]:
    async def play() -> tuple[UltimatumGame, Conn, Conn]:
        game, proposer, responder, over = await _started(strict=True, timer_phase_3=0.05)
        if offer is not None:
            game.on_frame(proposer, {"gameId": 5, "type": "make-offer", "offer": offer})
        await _until(game, 3)
        if accept is not None:
            game.on_frame(responder, {"gameId": 5, "type": "respond-offer", "accept": accept})
        await asyncio.wait_for(over, 10)
        return game, proposer, responder

    return asyncio.run(play())


@pytest.fixture
def registered() -> Iterator[None]:
    register(GAME)
    yield
    unregister(GAME.name)


def test_strict_refuses_the_wrong_seat_and_an_offer_beyond_the_pie_naming_the_field():
    async def play() -> tuple[UltimatumGame, Conn, Conn, int | None]:
        game, proposer, responder, _ = await _started(strict=True, pie=50)
        game.on_frame(responder, {"gameId": 5, "type": "make-offer", "offer": 10})
        game.on_frame(proposer, {"gameId": 5, "type": "make-offer", "offer": 51})
        game.on_frame(proposer, {"gameId": 5, "type": "make-offer", "offer": "10"})
        phase = game.phase
        game.close()
        return game, proposer, responder, phase

    game, proposer, responder, phase = asyncio.run(play())

    assert responder.errors() == ["Game 5: make-offer is the proposer's action"]
    assert proposer.errors() == ['Game 5: "offer" must be a whole number from 0 to 50, got 51',
                                 'Game 5: "offer" must be a whole number from 0 to 50, got "10"']
    assert phase == 2 and game.offer is None  # nothing refused counts


def test_without_strict_a_malformed_offer_is_ignored_without_an_error_frame():
    async def play() -> tuple[UltimatumGame, Conn]:
        game, proposer, _, _ = await _started(strict=False)
        game.on_frame(proposer, {"gameId": 5, "type": "make-offer", "offer": -1})
        game.close()
        return game, proposer

    game, proposer = asyncio.run(play())

    assert proposer.errors() == [] and game.offer is None and game.phase == 2


def test_an_accepted_offer_splits_the_pie_and_a_rejected_one_pays_nobody():
    _, proposer, responder = _round(30, True)
    assert proposer.events("round-result") == [{"round": 1, "offer": 30, "accepted": True, "payoff": 70}]
    assert responder.events("round-result") == [{"round": 1, "offer": 30, "accepted": True, "payoff": 30}]
    assert responder.events("offer-made") == [{"offer": 30}]
    assert [r["profit"] for r in proposer.events("reward")] == [70]

    _, proposer, responder = _round(30, False)
    assert [r["payoff"] for r in proposer.events("round-result") + responder.events("round-result")] == [0, 0]


def test_the_log_gives_one_example_per_decision_made_and_counts_the_one_never_made(registered):
    game, _, _ = _round(45, None)  # the responder lets the response phase run out
    assert game.recorded is not None
    log = parse_log(json.loads(json.dumps(game.recorded)), "game5.log.json")

    result = GAME.data.examples(log, sessions=None, include_chat=False, sink=None)

    assert [json.loads(line)["messages"][2]["content"] for line in result.lines] == [
        '{"gameId":5,"type":"make-offer","offer":45}']
    assert result.skipped == {NOT_MADE: {"respond-offer": 1}}
    assert [json.loads(state)["seat"] for state in result.states] == [1]
