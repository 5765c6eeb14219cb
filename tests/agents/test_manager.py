"""lib.agents.manager: the /spawn-agents endpoint, over real loopback HTTP, with a recording spawn callback, and the
local IBEX server's own agents-only call."""

from __future__ import annotations

import asyncio
import socket

import httpx2
import pytest

from lib.agents.manager import AgentManager, run_agent_manager
from lib.agents.realserver import create_payload
from lib.ibex.api import IbexApi
from lib.localserver.server import LocalServer

FAST = create_payload({"round_count": 1, "practice_round": False, **{f"timer_phase_{n}": 0.05 for n in range(1, 8)}})[0]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class RecordingSpawn:
    """A spawn callback that records its calls and plays each game until the test releases it."""

    def __init__(self, fail_for: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.running: set[int] = set()
        self.most_at_once = 0
        self.closed: list[int] = []
        self.release = asyncio.Event()
        self.fail_for = fail_for

    async def __call__(self, game_id: int, agents: int) -> None:
        self.calls.append((game_id, agents))
        self.running.add(game_id)
        self.most_at_once = max(self.most_at_once, len(self.running))
        try:
            if game_id == self.fail_for:
                raise RuntimeError(f"game {game_id} vanished")
            await self.release.wait()
        finally:
            self.running.discard(game_id)
            self.closed.append(game_id)  # where the real agents close sockets and transcripts


async def post(manager: AgentManager, body, path: str = "/spawn-agents", method: str = "POST") -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=5) as client:
        if isinstance(body, bytes):
            return await client.request(method, manager.url + path, content=body)
        return await client.request(method, manager.url + path, json=body)


def test_a_spawn_call_is_answered_at_once_and_the_game_played_in_the_background():
    async def scenario():
        spawn = RecordingSpawn()
        async with AgentManager(spawn, "127.0.0.1", 0) as manager:
            answer = await post(manager, {"game_id": 6, "game_type": "voting", "agents": 6})
            await asyncio.sleep(0)
            playing = set(manager.games)
            spawn.release.set()
            await manager.wait_idle()
        return answer, playing, spawn, manager

    answer, playing, spawn, manager = run(scenario())

    assert answer.status_code == 200
    assert answer.json() == {"data": {"game_id": 6, "game_type": "voting", "agents": 6}, "status": True,
                             "message": "spawning 6 agents for game 6"}
    assert playing == {6}, "the answer came while the game was still being played"
    assert spawn.calls == [(6, 6)]
    assert manager.finished == {6: "done"}


def test_several_games_are_played_at_once():
    async def scenario():
        spawn = RecordingSpawn()
        async with AgentManager(spawn, "127.0.0.1", 0) as manager:
            answers = await asyncio.gather(*(post(manager, {"game_id": g, "game_type": "voting", "agents": 6})
                                             for g in (1, 2, 3)))
            while len(spawn.running) < 3:
                await asyncio.sleep(0.01)
            spawn.release.set()
            await manager.wait_idle()
        return answers, spawn

    answers, spawn = run(scenario())

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert sorted(spawn.calls) == [(1, 6), (2, 6), (3, 6)]
    assert spawn.most_at_once == 3


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "the body is not JSON"),
        (b"", 400, "must be a JSON object"),
        ([6, "voting", 6], 400, "must be a JSON object"),
        ({"game_id": 6, "game_type": "voting"}, 400, "missing field(s): agents"),
        ({"agents": 6}, 400, "missing field(s): game_id, game_type"),
        ({"game_id": "6", "game_type": "voting", "agents": 6}, 400, 'game_id must be a positive integer, got "6"'),
        ({"game_id": 0, "game_type": "voting", "agents": 6}, 400, "game_id must be a positive integer"),
        ({"game_id": True, "game_type": "voting", "agents": 6}, 400, "game_id must be a positive integer"),
        ({"game_id": 6, "game_type": 3, "agents": 6}, 400, "game_type must be a non-empty string"),
        ({"game_id": 6, "game_type": "voting", "agents": 7}, 400, "agents must be an integer from 1 to 6, got 7"),
        ({"game_id": 6, "game_type": "voting", "agents": 2.5}, 400, "agents must be an integer from 1 to 6"),
        ({"game_id": 6, "game_type": "goods-market", "agents": 6}, 422,
         "game_type 'goods-market' is not supported (voting, harberger, futarchy only)"),
        ({"game_id": 6, "game_type": "harberger", "agents": 13}, 400, "agents must be an integer from 1 to 12"),
    ],
)
def test_bad_requests_are_refused_with_a_reason_and_nothing_is_spawned(body, status, reason):
    async def scenario():
        spawn = RecordingSpawn()
        async with AgentManager(spawn, "127.0.0.1", 0) as manager:
            answer = await post(manager, body)
        return answer, spawn

    answer, spawn = run(scenario())

    assert answer.status_code == status
    assert reason in answer.json()["message"]
    assert answer.json()["status"] is False
    assert spawn.calls == []


def test_other_paths_and_methods_are_refused():
    async def scenario():
        async with AgentManager(RecordingSpawn(), "127.0.0.1", 0) as manager:
            return (await post(manager, {}, path="/spawn"), await post(manager, None, method="GET"))

    other_path, get = run(scenario())

    assert other_path.status_code == 404 and "POST /spawn-agents" in other_path.json()["message"]
    assert get.status_code == 405


def test_a_repeated_call_for_a_game_being_played_succeeds_without_new_agents():
    async def scenario():
        spawn = RecordingSpawn()
        async with AgentManager(spawn, "127.0.0.1", 0) as manager:
            body = {"game_id": 4, "game_type": "voting", "agents": 6}
            first, second = await post(manager, body), await post(manager, body)
            spawn.release.set()
            await manager.wait_idle()
        return first, second, spawn

    first, second, spawn = run(scenario())

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["data"]["already_playing"] is True
    assert "already being played" in second.json()["message"]
    assert spawn.calls == [(4, 6)]


def test_a_failing_game_does_not_take_the_manager_down():
    async def scenario():
        spawn = RecordingSpawn(fail_for=1)
        async with AgentManager(spawn, "127.0.0.1", 0) as manager:
            await post(manager, {"game_id": 1, "game_type": "voting", "agents": 6})
            while 1 not in manager.finished:
                await asyncio.sleep(0.01)
            spawn.release.set()
            later = await post(manager, {"game_id": 2, "game_type": "voting", "agents": 6})
            await manager.wait_idle()
        return manager, later

    manager, later = run(scenario())

    assert manager.finished[1] == "failed: game 1 vanished"
    assert later.status_code == 200 and manager.finished[2] == "done"


def test_the_game_limit_answers_503():
    async def scenario():
        spawn = RecordingSpawn()
        async with AgentManager(spawn, "127.0.0.1", 0, max_games=1) as manager:
            first = await post(manager, {"game_id": 1, "game_type": "voting", "agents": 6})
            second = await post(manager, {"game_id": 2, "game_type": "voting", "agents": 6})
            spawn.release.set()
        return first, second

    first, second = run(scenario())

    assert (first.status_code, second.status_code) == (200, 503)


def test_stopping_cancels_running_games_and_lets_them_clean_up():
    async def scenario():
        spawn = RecordingSpawn()
        manager = AgentManager(spawn, "127.0.0.1", 0)
        await manager.start()
        await post(manager, {"game_id": 1, "game_type": "voting", "agents": 6})
        await post(manager, {"game_id": 2, "game_type": "voting", "agents": 3})
        while len(spawn.running) < 2:
            await asyncio.sleep(0.01)
        await manager.stop()
        return spawn, manager

    spawn, manager = run(scenario())

    assert sorted(spawn.closed) == [1, 2]
    assert manager.finished == {1: "cancelled", 2: "cancelled"}
    assert manager.games == {}


def test_serve_prints_the_ready_line_and_stops_cleanly(capsys):
    async def scenario():
        spawn = RecordingSpawn()
        stop = asyncio.Event()
        port = free_port()
        serving = asyncio.create_task(run_agent_manager(spawn, "127.0.0.1", port, stop=stop))
        printed = ""
        while f"agent manager listening on http://127.0.0.1:{port}\n" not in printed:
            await asyncio.sleep(0.01)
            printed += capsys.readouterr().out
        async with httpx2.AsyncClient() as client:
            answer = await client.post(f"http://127.0.0.1:{port}/spawn-agents",
                                       json={"game_id": 3, "game_type": "voting", "agents": 6})
        stop.set()
        return answer, await serving, spawn

    answer, code, spawn = run(scenario())

    assert answer.status_code == 200
    assert code == 0
    assert spawn.closed == [3]
    assert "agent manager stopped cleanly" in capsys.readouterr().out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_port_in_use_is_a_one_line_error(capsys):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        code = run(run_agent_manager(RecordingSpawn(), "127.0.0.1", port))

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert err.count("\n") == 1


def test_the_local_servers_agents_only_call_reaches_the_manager():
    async def scenario():
        recoveries: list[str] = []

        async def spawn(game_id: int, agents: int) -> None:
            async with IbexApi(server.api_url) as api:
                for _ in range(agents):
                    recoveries.append(await api.get_recovery(game_id, wait_for_start=5))

        async with AgentManager(spawn, "127.0.0.1", 0) as manager:
            async with LocalServer(agent_manager=f"127.0.0.1:{manager.port}") as server:
                async with IbexApi(server.api_url) as api:
                    created = await api.create_for_llm("admin", "admin", {**FAST, "agents_only": True})
                await manager.wait_idle()
        return created, recoveries, manager

    created, recoveries, manager = run(scenario())

    assert created.warning is None
    assert manager.finished == {created.id: "done"}
    assert len(set(recoveries)) == 6
