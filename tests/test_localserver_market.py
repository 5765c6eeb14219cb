"""The local IBEX server plays Harberger and futarchy as the real one does.

The central tests replay the two probe games this project recorded on the real server (tests/fixtures/
probes_{harberger,futarchy}_replay.json, built by tests/fixtures/record_market_probes.py and build_game5_fixture.py):
every seat's client frames are re-sent, each when every seat has received as many frames as it had when the
recorded player sent it, and every seat must receive the same sequence of frames (kinds, data keys, texts). The game
uses the real server's values and signals (tests/fixtures/market_sessions.json), so the deterministic numbers
(values, declarations, trades, snipes, profits, the final price, summaries and rewards) are compared too.
Then: refusals, --strict checks, create-for-llm, status and agents-only games.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from lib.localserver import LocalServer
from lib.localserver_game import new_recovery_code
from tests.fixtures.build_game5_fixture import counts, log_skeleton, server_log_skeleton, skeleton
from tests.fixtures.build_market_fixture import MARKET_EVENTS
from tests.fixtures.record_market_probes import payload
from tests.players import Client
from tests.test_localserver import diff, expand, http

FIXTURES = Path(__file__).parent / "fixtures"
SESSIONS = FIXTURES / "market_sessions.json"  # the real server's sessions.json, sessions 1 and 2, rounds 0..2
# Short phases; 2 and 7 end by their timer (seat 4 never declares), 3 and 8 when every speculator has sent.
FAST_TIMERS = {"phase_0": None, "phase_1": 0.2, "phase_2": 1.0, "phase_3": 3, "phase_4": 0.2, "phase_5": 0.2,
               "phase_6": 4, "phase_7": 1.0, "phase_8": 3, "phase_9": 0.2}
DECLARED = re.compile(r"^info Player \S+ submitted")


def run(coro: Any, timeout: float = 90) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def fast_payload(game_type: str, **changes: Any) -> dict[str, Any]:
    nested = payload(game_type)
    nested["timers"] = dict(FAST_TIMERS)
    nested["title"] = f"{game_type} test"
    nested.update(changes)
    return nested


async def create(server: LocalServer, nested: dict[str, Any]) -> tuple[int, Any]:
    body = {"username": "admin", "password": "admin", "gameParameters": nested}
    return await http("POST", f"{server.api_url}/games/create-for-llm", body)


def js_type(message: Any) -> Any:
    return message.get("type") if isinstance(message, dict) else None


def blank(frames: list[str]) -> list[str]:
    return [DECLARED.sub("info Player <name> submitted", f) for f in frames]


def server_order(recording: str) -> dict[str, list[tuple[int, int, int]]]:
    """Per message kind, the (seat, round, phase) of each declare, done-speculating and market frame in the order the
    real server processed them (from its log, kept in tests/fixtures/market_probes.json). Frames that several seats send
    at once reach a server in any order; the replay sends each in its recorded turn, so that the outcome (who
    completed a phase, which snipes counted, which order met which) is the recorded one."""
    recorded = json.loads((FIXTURES / "market_probes.json").read_text())["games"][recording]
    order: dict[str, list[tuple[int, int, int]]] = {"declare": [], "done-speculating": [], "market": []}
    for round_data in recorded["rounds"]:
        number = round_data["round"]
        for key, messages in sorted(round_data["rules"]["messages"].items(), key=lambda item: int(item[0][6:])):
            phase = int(key.split()[1])
            for seat, message in messages:
                if message.get("type") in ("declare", "done-speculating"):
                    order[message["type"]].append((seat, number, phase))
        order["market"] += [(seat, number, 6) for seat, _ in round_data["messages"]]
    return order


MARKET_KINDS = ("post-order", "cancel-order")
GATED = ("declare", "done-speculating", "post-order", "cancel-order", "complete-current-phase")


async def replay(fixture: dict[str, Any], server: LocalServer, game_id: int,
                 order: dict[str, list[tuple[int, int, int]]]) -> tuple[dict, dict, list[str]]:
    """Play every recorded step when all seats have received what they had then, and (declarations, snipes and
    orders) when the frames the real server processed before it have been logged; (skeletons, frames, problems)."""
    game = server.game(game_id)
    turns = {kind: list(items) for kind, items in order.items()}
    recovery = {n: new_recovery_code() for n in fixture["players"]}
    arrived = asyncio.Condition()
    conns: dict[str, dict[int, Client]] = {n: {} for n in fixture["players"]}
    problems: list[str] = []

    def received(n: str) -> int:
        return sum(len(c.frames) for c in conns[n].values())

    def fill(value: Any, n: str) -> Any:
        marks = {"$game": game_id, "$game-as-text": str(game_id), "$recovery": recovery[n]}
        if isinstance(value, dict):
            return {k: marks.get(v, v) if isinstance(v, str) else v for k, v in value.items()}
        return value

    async def until(n: str, at: dict[str, int], what: str) -> None:
        async with arrived:
            try:
                await asyncio.wait_for(arrived.wait_for(lambda: all(received(m) >= c for m, c in at.items())), 15)
            except TimeoutError:
                have = {m: received(m) for m in at}
                raise AssertionError(f"seat {n} waited in vain to {what}: needs {at}, has {have}") from None

    def logged(kind: str, round_number: int, phase: int) -> int:
        kinds = MARKET_KINDS if kind == "market" else (kind,)
        return sum(1 for e in game.log if e.get("type") == "message" and e.get("phase") == phase
                   and e.get("round") == round_number and isinstance(e.get("content"), dict)
                   and e["content"].get("type") in kinds)

    gated = [(seat, kind) for seat, kind in fixture.get("log order", []) if kind in GATED]
    taken: set[int] = set()

    def logged_gated() -> int:
        return sum(1 for e in game.log if e.get("type") == "message" and e.get("number") is not None
                   and isinstance(e.get("content"), dict) and e["content"].get("type") in GATED)

    async def my_turn_in_log(n: str, message: Any) -> None:
        """A whole recorded game: the frame waits until every gated frame the real server logged before it is
        logged here."""
        kind = js_type(message)
        if kind not in GATED:
            return
        index = next((i for i, item in enumerate(gated) if item == (int(n), kind) and i not in taken), None)
        if index is None:
            return
        taken.add(index)
        for _ in range(1500):
            if logged_gated() >= index:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"seat {n} waited in vain for its turn to send {message}")

    async def my_turn(n: str, message: Any) -> None:
        if gated:
            await my_turn_in_log(n, message)
            return
        kind = js_type(message)
        kind = "market" if kind in MARKET_KINDS else kind
        if kind not in turns:
            return
        index = next((i for i, (seat, _, _) in enumerate(turns[kind]) if seat == int(n)), None)
        if index is None:
            return  # a frame the real server did not log where it is counted (e.g. sent in another phase)
        _, round_number, phase = turns[kind][index]
        turns[kind][index] = (0, round_number, phase)  # taken
        before = sum(1 for _, r, p in order[kind][:index] if (r, p) == (round_number, phase))
        for _ in range(1500):
            if logged(kind, round_number, phase) >= before:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"seat {n} waited in vain for its turn to send {message}")

    async def play(n: str) -> None:
        for step in fixture["players"][n]["steps"]:
            await until(n, step["at"], f"{step['do']} {step.get('msg', '')}")
            if step["do"] == "send" and "msg" in step:
                await my_turn(n, step["msg"])
            if step["do"] == "connect":
                conns[n][step["conn"]] = await Client(server.ws_url, arrived).connect()
            elif step["do"] == "send":
                await conns[n][step["conn"]].send(step["raw"] if "raw" in step else fill(step["msg"], n))
            else:
                problems.append(f"seat {n}: step {step['do']} is not replayed")
        await until(n, {n: len(expand(fixture["players"][n]["expect"]))}, "receive the rest of its frames")
        for client in conns[n].values():
            await client.close()

    try:
        await asyncio.gather(*(play(n) for n in fixture["players"]))
    except AssertionError as exc:  # say where the frames parted from the recording
        parted = []
        for n, sockets in conns.items():
            got = blank([skeleton(f, game_id) for f in sockets[1].frames])
            expected = blank(expand(fixture["players"][n]["expect"]))[:len(got)]
            if got != expected:
                parted.append(f"seat {n}:\n{diff(expected, got)}")
        raise AssertionError("\n".join([str(exc), *parted])) from None
    skeletons = {n: blank([skeleton(f, game_id) for f in sockets[1].frames]) for n, sockets in conns.items()}
    frames = {n: sockets[1].frames for n, sockets in conns.items()}
    return skeletons, frames, problems


def replay_game(game_type: str, tmp_path: Path, recording: str | None = None,
                **changes: Any) -> tuple[dict, dict, dict, Any]:
    """Replay a recorded game: a probe game (tests/fixtures/probes_TYPE_replay.json) or, with `recording`, one of
    the complete games of tests/fixtures/market_replay.json (tests/fixtures/RECORDING_replay.json)."""
    name = f"{recording.replace('-', '')}_replay.json" if recording else f"probes_{game_type}_replay.json"
    fixture = json.loads((FIXTURES / name).read_text())
    # a whole game's fixture holds the real server's log order; a probe game's comes from market_probes.json
    order = {} if recording else server_order(f"probes-{game_type}")

    async def scenario() -> tuple[dict, dict, dict, Any]:
        async with LocalServer(records_dir=tmp_path, sessions=SESSIONS) as server:
            status, body = await create(server, fast_payload(game_type, **changes))
            assert status == 200, body
            game_id = body["data"]["id"]
            skeletons, frames, problems = await replay(fixture, server, game_id, order)
            recorded = await server.wait_game_over(game_id, timeout=10)
            assert problems == []
            assert json.loads(server.log_path(game_id).read_text()) == recorded
            return fixture, skeletons, frames, recorded

    return run(scenario())


@pytest.mark.parametrize("game_type", ["harberger", "futarchy"])
def test_replaying_a_recorded_game_gives_every_seat_the_real_servers_frames(game_type: str, tmp_path: Path) -> None:
    fixture, skeletons, frames, recorded = replay_game(game_type, tmp_path)

    for n, player in fixture["players"].items():
        expected = blank(expand(player["expect"]))
        assert skeletons[n] == expected, f"seat {n}:\n{diff(expected, skeletons[n])}"
    assert [p["key"] for p in recorded["parameters"]] == fixture["parameter keys"]
    assert_values_are_the_real_servers(game_type, frames, recorded)
    assert counts([log_skeleton(e) for e in recorded["log"]]) == fixture["log"]
    assert counts([server_log_skeleton(e) for e in recorded["server-log"]]) == fixture["server-log"]


RESULTS = {"declaration-above-max", "winning-condition", "profit", "first-snipes", "final-price", "tax-income",
           "total-profit", "second-snipes", "round-summary", "reward"}


def assert_values_are_the_real_servers(game_type: str, frames: dict[str, list[dict]], recorded: dict) -> None:
    """Same session, declarations, snipes and orders as the recording: the same values, signals, trades, profits,
    prices, summaries and rewards (names and payment tokens are drawn at random on both servers)."""
    real = json.loads((FIXTURES / "market_probes.json").read_text())["games"][f"probes-{game_type}"]
    (round_data,) = real["rounds"]
    for n, told in round_data["rules"]["seats"].items():
        events = [(f["eventType"], f["data"]) for f in frames[n] if f.get("type") == "event"]
        (role,) = [data for kind, data in events if kind == "assign-role"]
        expected_role = json.loads(json.dumps(told["assign-role"]))
        for data in (role, expected_role):
            data.get("property", {}).pop("name", None)
        assert role == expected_role, f"seat {n} assign-role"
        assert [d for k, d in events if k == "value-signals"] == [told["value-signals"]], f"seat {n} value-signals"
        results = [[k, {**d}] for k, d in events if k in RESULTS]
        expected = [[k, {**d}] for k, d in told["results"]]
        for _, data in results + expected:
            data.pop("paymentToken", None)
        assert results == expected, f"seat {n} results"
    market = [[e["meta"]["recipient"], e["sent"]["type"], e["sent"]["data"]] for e in recorded["server-log"]
              if e["meta"]["phase"] == 6 and e["sent"]["type"] in MARKET_EVENTS]
    assert market == round_data["server-log"]


@pytest.mark.parametrize(("game_type", "recording", "session"), [("harberger", "harberger-12", 1),
                                                                ("futarchy", "futarchy-13", 2)])
def test_replaying_a_whole_recorded_game_with_a_practice_round_gives_every_seat_the_real_servers_frames(
        game_type: str, recording: str, session: int, tmp_path: Path) -> None:
    # Practice round and two paid rounds; in round 1 the players sent the harmless probes (wrong phase, wrong role,
    # chat, complete-current-phase, bad orders); every round has its own values, signals, winner and market.
    fixture, skeletons, _frames, recorded = replay_game(game_type, tmp_path, recording, session_number=session,
                                                        round_count=2, practice=True)
    for n, player in fixture["players"].items():
        expected = blank(expand(player["expect"]))
        assert skeletons[n] == expected, f"seat {n}:\n{diff(expected, skeletons[n])}"
    assert counts([log_skeleton(e) for e in recorded["log"]]) == fixture["log"]
    assert counts([server_log_skeleton(e) for e in recorded["server-log"]]) == fixture["server-log"]
