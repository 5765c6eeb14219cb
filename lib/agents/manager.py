"""The agent manager: the HTTP endpoint the IBEX server calls to get agents for an agents-only game.

When a game is created with `agents_only: true`, the server POSTs `{"game_id": 6, "game_type": "voting",
"agents": 6}` to `http://AGENT_MANAGER_HOST:AGENT_MANAGER_PORT/spawn-agents` (docs/protocol.md section 2). This module
answers at once and plays the game in the background through the caller's `spawn(game_id, n_agents)` coroutine,
any number of games at a time:

- 200 `{"data": {"game_id", "agents"}, "status": true, "message": "..."}`: accepted, the agents are on their way;
- 400 with the reason: not JSON, not an object, a missing or mistyped field;
- 200 with `"already_playing": true` when that game is being (or was) played here: a repeated call is answered
  as a success (the caller's retry must not look like a failure) but never puts twelve agents in six seats;
- 422: a game type this project cannot play (`game_type 'goods-market' is not supported (voting, harberger,
  futarchy only)`);
- 503: shutting down, or already playing `max_games` games;
- 404 / 405: another path or method.

`run_agent_manager` is the whole `--serve` mode: listen, print the ready line serverStarter.sh waits for, play
until SIGTERM or SIGINT, then stop every game cleanly (the spawn coroutines are cancelled and awaited, so they
close their sockets and transcripts) and return 0. A port in use is a one-line error and exit code 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from lib.games import GAMES, game_for, game_types
from lib.localserver.http import Request, Response, json_response, serve_http

log = logging.getLogger("agentmanager")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10341
DEFAULT_MAX_GAMES = 100
STOP_TIMEOUT = 20.0  # seconds the games get to leave cleanly on shutdown

Spawn = Callable[[int, int], Awaitable[Any]]


class RequestError(ValueError):
    """A /spawn-agents request that is refused; `status` is the HTTP code to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_spawn_request(body: bytes) -> tuple[int, str, int]:
    """(game_id, game_type, agents) of a /spawn-agents body, or RequestError saying what is wrong with it."""
    try:
        payload = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise RequestError(400, 'the body must be a JSON object {"game_id", "game_type", "agents"}')
    missing = [key for key in ("game_id", "game_type", "agents") if key not in payload]
    if missing:
        raise RequestError(400, f"missing field(s): {', '.join(missing)}")
    game_id, game_type, agents = payload["game_id"], payload["game_type"], payload["agents"]
    if not _is_int(game_id) or game_id < 1:
        raise RequestError(400, f"game_id must be a positive integer, got {json.dumps(game_id)[:40]}")
    if not isinstance(game_type, str) or not game_type:
        raise RequestError(400, f"game_type must be a non-empty string, got {json.dumps(game_type)[:40]}")
    if game_type.lower() not in GAMES:
        raise RequestError(422, f"game_type {game_type!r} is not supported ({', '.join(game_types())} only)")
    most = game_for(game_type.lower()).play.seats
    if not _is_int(agents) or not 1 <= agents <= most:
        raise RequestError(400, f"agents must be an integer from 1 to {most}, got {json.dumps(agents)[:40]}")
    return game_id, game_type.lower(), agents


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _answer(status: int, message: str, data: Any = None) -> Response:
    return json_response(status, {"data": data if data is not None else {}, "status": status == 200,
                                  "message": message})


class AgentManager:
    """Listens for /spawn-agents and runs one `spawn` task per accepted game."""

    def __init__(self, spawn: Spawn, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 max_games: int = DEFAULT_MAX_GAMES) -> None:
        self.spawn = spawn
        self.host = host
        self.port = port
        self.max_games = max(1, max_games)
        self.games: dict[int, asyncio.Task[Any]] = {}  # game id -> the task playing it
        self.finished: dict[int, str] = {}  # game id -> "done" / "failed: ..." / "cancelled"
        self._server: asyncio.Server | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; OSError when the address cannot be bound (port in use, unknown host)."""
        self._server = await serve_http(self._route, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Refuse new games, cancel the running ones and give them `timeout` seconds to leave cleanly."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks = list(self.games.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning("%d game(s) did not stop within %.0f s; leaving them", len(pending), timeout)

    async def wait_idle(self) -> None:
        """Until no game is being played (for tests and for a manager that should end with its games)."""
        while self.games:
            await asyncio.wait(list(self.games.values()))

    async def __aenter__(self) -> AgentManager:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def _route(self, request: Request) -> Response:
        if request.path.rstrip("/") != "/spawn-agents":
            return _answer(404, f"no such endpoint: {request.path} (POST /spawn-agents)")
        if request.method != "POST":
            return _answer(405, f"{request.method} is not allowed here (POST /spawn-agents)")
        try:
            game_id, game_type, agents = parse_spawn_request(request.body)
        except RequestError as exc:
            log.warning("refused /spawn-agents (HTTP %s): %s", exc.status, exc)
            return _answer(exc.status, str(exc))
        if self._stopping:
            return _answer(503, "the agent manager is shutting down")
        if game_id in self.games or game_id in self.finished:
            state = "being played" if game_id in self.games else "played"
            log.info("game %s: repeated /spawn-agents; its agents are already %s", game_id, state)
            return _answer(200, f"game {game_id} is already {state} here; no new agents",
                           {"game_id": game_id, "game_type": game_type, "agents": 0, "already_playing": True})
        if len(self.games) >= self.max_games:
            return _answer(503, f"already playing {len(self.games)} games (the limit); try again later")
        task = asyncio.create_task(self._play(game_id, agents), name=f"game-{game_id}")
        self.games[game_id] = task
        log.info("game %s (%s): spawning %s agents", game_id, game_type, agents)
        return _answer(200, f"spawning {agents} agents for game {game_id}",
                       {"game_id": game_id, "game_type": game_type, "agents": agents})

    async def _play(self, game_id: int, agents: int) -> None:
        """One game's agents; a failure ends that game only, never the manager."""
        try:
            await self.spawn(game_id, agents)
            self.finished[game_id] = "done"
            log.info("game %s: agents finished", game_id)
        except asyncio.CancelledError:
            self.finished[game_id] = "cancelled"
            raise
        except Exception as exc:
            self.finished[game_id] = f"failed: {exc}"
            log.error("game %s: agents failed: %s", game_id, exc)
        finally:
            self.games.pop(game_id, None)


async def run_agent_manager(spawn: Spawn, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                            max_games: int = DEFAULT_MAX_GAMES, stop_timeout: float = STOP_TIMEOUT,
                            stop: asyncio.Event | None = None) -> int:
    """The `--serve` mode: serve until SIGTERM/SIGINT (or `stop` is set), leave every game cleanly, return 0.

    Returns 1, after a one-line error on stderr, when the address cannot be bound.
    """
    manager = AgentManager(spawn, host, port, max_games=max_games)
    try:
        await manager.start()
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 1
    stopping = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stopping.set()

    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests), or no signals on this platform: `stop` ends the loop
    print(f"agent manager listening on {manager.url}", flush=True)
    try:
        await stopping.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        why = f"got signal {received[0]}" if received else "stopping"
        running = len(manager.games)
        print(f"{why}: leaving {running} game(s), flushing transcripts", flush=True)
        await manager.stop(stop_timeout)
        print("agent manager stopped cleanly", flush=True)
    return 0
