"""The local IBEX server behaves like the real one: frames, logs, REST, bad inputs, rejoins and the start race.

Real sockets on loopback, real files in tmp_path. The central test replays every frame six players sent to the
real server (tests/fixtures/game5_replay.json, built from this project's recording) and checks that each player
receives the same sequence of frames, modulo values, timestamps and names.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from lib.localserver import LocalServer
from lib.localserver_game import new_recovery_code
from tests.fixtures.build_game5_fixture import counts, log_skeleton, server_log_skeleton, skeleton
from tests.players import Client

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "game5_replay.json"

# Sub-second phases; phases 3, 4 and 6 end early when everyone has acted.
FAST = {
    "timer_phase_1": 0.05, "timer_phase_2": 0.05, "timer_phase_3": 2, "timer_phase_4": 2,
    "timer_phase_5": 0.05, "timer_phase_6": 2, "timer_phase_7": 0.05,
}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def codes(n: int = 6) -> list[str]:
    return [new_recovery_code() for _ in range(n)]


async def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """An HTTP call from a worker thread (the server runs on this loop); returns (status, JSON body or text)."""

    def call() -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, text = answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    return await asyncio.to_thread(call)


def expand(entries: list[str]) -> list[str]:
    out = []
    for entry in entries:
        text, star, count = entry.rpartition(" *")
        out += [text] * int(count) if star and count.isdigit() else [entry]
    return out


def diff(expected: list[str], actual: list[str]) -> str:
    return "\n".join(difflib.unified_diff(expected, actual, "real server", "local server", lineterm="", n=2))


# ---------------------------------------------------------------------------------------------- replay of game 5

REPLAY = {
    "practice_round": True, "round_count": 2, "session_number": 1,
    "timer_phase_1": 0.25, "timer_phase_2": 0.5, "timer_phase_3": 0.6, "timer_phase_4": 2,
    "timer_phase_5": 0.5, "timer_phase_6": 0.6, "timer_phase_7": 0.25,
}


async def replay(fixture: dict[str, Any], server: LocalServer) -> tuple[int, dict[str, list[str]], list[str]]:
    """Play every recorded step when all players have received what they had then; return the skeletons."""
    game_id = server.create_game(REPLAY)
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
                await asyncio.wait_for(arrived.wait_for(lambda: all(received(m) >= c for m, c in at.items())), 10)
            except TimeoutError:
                have = {m: received(m) for m in at}
                raise AssertionError(f"player {n} waited in vain to {what}: needs {at}, has {have}") from None

    async def play(n: str) -> None:
        for step in fixture["players"][n]["steps"]:
            await until(n, step["at"], f"{step['do']} {step.get('msg', step.get('raw', ''))}")
            if step["do"] == "connect":
                conns[n][step["conn"]] = await Client(server.ws_url, arrived).connect()
            elif step["do"] == "close":
                await conns[n][step["conn"]].close()
            elif step["do"] == "send":
                await conns[n][step["conn"]].send(step["raw"] if "raw" in step else fill(step["msg"], n))
            elif step["do"] == "status":
                query = urllib.parse.urlencode({"id": game_id, "recovery": recovery[n]})
                status, body = await http("GET", f"{server.api_url}/games/status?{query}")
                data = body["data"]
                shape = {"data": list(data), "game": list(data["gameData"]["game"]),
                         "player": list(data["gameData"]["player"]),
                         "message": body["message"].replace(f"Game {game_id}", "Game <game>")}
                if status != 200 or shape != step["expect"]:
                    problems.append(f"player {n} REST status ({step.get('note')}): {status} {shape}")
        expected = len(expand(fixture["players"][n]["expect"]))
        await until(n, {n: expected}, "receive the rest of its frames")
        for client in conns[n].values():
            await client.close()

    await asyncio.gather(*(play(n) for n in fixture["players"]))
    skeletons = {}
    for n, sockets in conns.items():
        stamped = [(c.arrival[i], k, f) for k, c in sockets.items() for i, f in enumerate(c.frames)]
        skeletons[n] = [("" if k == 1 else f"c{k} ") + skeleton(f, game_id) for _, k, f in sorted(stamped)]
    return game_id, skeletons, problems


def test_replaying_the_recorded_game_gives_every_player_the_real_servers_frames(tmp_path: Path) -> None:
    fixture = json.loads(FIXTURE.read_text())

    async def scenario() -> None:
        async with LocalServer(records_dir=tmp_path) as server:
            game_id, skeletons, problems = await replay(fixture, server)
            recorded = await server.wait_game_over(game_id, timeout=10)
            for n, player in fixture["players"].items():
                expected = expand(player["expect"])
                assert skeletons[n] == expected, f"player {n}:\n{diff(expected, skeletons[n])}"
            assert problems == []
            assert [p["key"] for p in recorded["parameters"]] == fixture["parameter keys"]
            assert counts([log_skeleton(e) for e in recorded["log"]]) == fixture["log"]
            assert counts([server_log_skeleton(e) for e in recorded["server-log"]]) == fixture["server-log"]
            assert json.loads(server.log_path(game_id).read_text()) == recorded

    run(scenario())
