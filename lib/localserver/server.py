"""A local IBEX game server for tests, demos and dry runs: the real server's games, without Node or SQL.

It speaks the real server's WebSocket protocol and REST API as recorded in docs/protocol.md and in the frames of
recorded games, quirks included, and records every finished game as `<id>.log.json` in the real format. It plays
every registered game (lib.games), each by the rules its folder gives (lib.games.protocols.ServerRules: its
parameters, its create-for-llm checks, its game on lib/localserver/core.py). In-process:

    async with LocalServer(records_dir=tmp) as server:
        game_id = server.create_game({"round_count": 2, "timer_phase_1": 0.1})
        ...  # players connect to server.ws_url and send {"gameId": game_id, "type": "join", ...}
        log = await server.wait_game_over(game_id, timeout=30)

Standalone: `python -m lib.localserver.server --ws-port 3088 --api-port 3080 [--records DIR] [--sessions FILE]
[--agent-manager HOST:PORT] [--strict] [--fast] [--ready-race-window S] [--host H] [--admin-user U]
[--admin-password P]`.

`restart()` closes every socket and listener and listens again; the games' timers keep running during the pause,
as they would behind a proxy that drops connections (a restart of the real Node process would instead lose every
game in memory, which no test needs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from lib.games import DEFAULT_GAME, UnknownGame, game_for, game_types
from lib.games.protocols import Game
from lib.ibex import js
from lib.ibex.params import GameParams, ParamError
from lib.ibex.sessions import SessionsError, SessionsTable, load_sessions, parse_sessions
from lib.localserver import create as creation
from lib.localserver.core import CoreGame, new_recovery_code
from lib.localserver.http import Request, Response, json_response, serve_http
from lib.localserver.memory import MemoryConnection
from lib.util.atomic import write_text_atomic

log = logging.getLogger("lib.localserver.server")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SESSIONS = ROOT / "jsonFiles" / "sessions.json"
DEFAULT_ADMIN_USER = "admin"
DEFAULT_ADMIN_PASSWORD = "admin"  # local use only; set IBEX_PASSWORD or --admin-password for anything shared
PING_INTERVAL = 5.0  # the real server pings every 5 s and drops a client that has not answered by the next ping
SPAWN_TIMEOUT = 5.0
API_PREFIX = "/api/v1"


class _Client:
    """One WebSocket connection: an ordered outgoing queue, and the seat it joined as."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.number: int | None = None
        self.game_id: int | None = None
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def send(self, frame: dict[str, Any]) -> None:
        self.queue.put_nowait(js.stringify(frame))

    def send_text(self, text: str) -> None:
        self.queue.put_nowait(text)

    async def write_loop(self) -> None:
        try:
            while True:
                text = await self.queue.get()
                await self.ws.send(text)
        except ConnectionClosed:
            pass

    def abort(self) -> None:
        transport = self.ws.transport
        if transport is not None:
            transport.abort()


class _MemoryClient(_Client):
    """An in-memory connection (lib.localserver.memory): a frame is in the peer's queue as soon as it is sent, in
    order, so no queue and writing task of our own stand between (one task step per frame less)."""

    def __init__(self, ws: MemoryConnection) -> None:
        super().__init__(ws)  # type: ignore[arg-type]  # the part of a ServerConnection it uses
        self.end = ws

    def send_text(self, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):  # as the writing task stops at a closed connection
            self.end.send_nowait(text)

    def send(self, frame: dict[str, Any]) -> None:
        self.send_text(js.stringify(frame))

    async def write_loop(self) -> None:
        return None


class LocalServer:
    """WebSocket and REST listeners in front of any number of concurrent games."""

    def __init__(
        self,
        records_dir: str | Path | None = None,
        sessions: SessionsTable | str | Path | None = None,
        strict: bool = False,
        ready_race_window: float = 0.0,
        agent_manager: str | None = None,
        host: str = "127.0.0.1",
        ws_port: int = 0,
        api_port: int = 0,
        admin_username: str = DEFAULT_ADMIN_USER,
        admin_password: str = DEFAULT_ADMIN_PASSWORD,
        fast: bool = False,
    ) -> None:
        self.records_dir = Path(records_dir) if records_dir is not None else None
        if sessions is None:
            sessions = DEFAULT_SESSIONS
        self.sessions = sessions if isinstance(sessions, SessionsTable) else load_sessions(sessions)
        self.strict = strict
        self.ready_race_window = ready_race_window
        self.fast = fast  # the default of create_game's `fast`, and the mode of create-for-llm games
        self.agent_manager = _parse_address(agent_manager) if agent_manager else None
        self.host = host
        self.ws_port = ws_port
        self.api_port = api_port
        self.admin_username = admin_username
        self.admin_password = admin_password
        self._tokens: set[str] = set()
        self._games: dict[int, CoreGame] = {}
        self._waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ws_server: Server | None = None
        self._http_server: asyncio.Server | None = None
        self._next_game_id = 1
        self._next_player_id = 1

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.records_dir is not None:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            # Game ids go on from the logs already there, as the real server's database ids do: none is overwritten.
            names = (re.fullmatch(r"(\d+)\.log\.json", p.name) for p in self.records_dir.iterdir())
            ids = [int(m.group(1)) for m in names if m]
            self._next_game_id = max([self._next_game_id - 1, *ids]) + 1
        await self._listen()

    async def _listen(self) -> None:
        self._ws_server = await serve(
            self._ws_handler, self.host, self.ws_port, ping_interval=PING_INTERVAL, ping_timeout=PING_INTERVAL
        )
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]
        self._http_server = await serve_http(self._route, self.host, self.api_port)
        self.api_port = self._http_server.sockets[0].getsockname()[1]

    async def _close_listeners(self) -> None:
        for client in list(self._clients):
            client.abort()
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
            self._ws_server = None
        if self._http_server is not None:
            self._http_server.close()
            await self._http_server.wait_closed()
            self._http_server = None

    async def stop(self) -> None:
        await self._close_listeners()
        for game in self._games.values():
            game.close()
        for task in list(self._tasks):
            task.cancel()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.cancel()

    async def restart(self, pause: float = 0.2) -> None:
        """Test hook: drop every socket and listener, wait `pause` seconds (games go on), listen again."""
        await self._close_listeners()
        await asyncio.sleep(pause)
        await self._listen()

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}{API_PREFIX}"

    # ------------------------------------------------------------------ games

    def create_game(self, parameters: dict[str, Any] | GameParams | None = None, title: str | None = None,
                    spawn: bool = True, *, sessions: SessionsTable | list[dict[str, Any]] | None = None,
                    session_number: int | None = None, fast: bool | None = None) -> int:
        """Create and start a game (phase 0 of its first round); overrides apply to its game's defaults
        (ServerRules.parameters of the game `game_type` names, lib.games.DEFAULT_GAME without one).

        Private values: session `session_number` (else the parameters' `session_number`, else 1) of `sessions`,
        this game's own table (a SessionsTable, or a list in sessions.json's format such as lib.study.values makes),
        else of the server's table. So a study gives game k of every arm the same values: one table per study and
        session k + 1, or a fresh table per game.

        `fast` (default: the server's): a phase that only its timer ends and in which nobody can act (the game's
        ServerRules.idle_phases: presentation, results...) ends at once; the timers of every other phase stay as
        configured.

        This is the in-process way, with flat parameters (and fractional timers) for tests and --local; the REST
        create-for-llm takes the real server's nested gameParameters. An agents-only game asks the agent manager
        for agents in the background (unless `spawn` is False: the caller then awaits `spawn_agents` itself).
        Raises ParamError or ValueError (naming the parameter or the sessions table) when the game cannot start.
        """
        if isinstance(parameters, GameParams):
            params = parameters
            _played(params.game_type)
            if session_number is not None:
                params = GameParams({**params.values, "session_number": session_number})
        else:
            flat = dict(parameters or {})
            if session_number is not None:
                flat["session_number"] = session_number
            params = _played(flat.get("game_type", DEFAULT_GAME)).server.parameters(flat)
        table = sessions if sessions is None or isinstance(sessions, SessionsTable) else parse_sessions(
            sessions, f"game {self._next_game_id}'s sessions table")
        game_id = self._next_game_id
        self._start_game(game_id, params, title, None, table, fast)
        self._next_game_id += 1
        if params.agents_only and spawn:
            self._background(self.spawn_agents(game_id))
        return game_id

    def _start_game(self, game_id: int, params: GameParams, title: str | None,
                    rows: list[dict[str, str]] | None, sessions: SessionsTable | None = None,
                    fast: bool | None = None) -> None:
        rules = game_for(params.game_type).server
        fast = self.fast if fast is None else fast
        game = rules.new_game(
            game_id, params, sessions or self.sessions, strict=self.strict,
            instant_phases=rules.idle_phases(params) if fast else frozenset(),
            ready_race_window=self.ready_race_window,
            first_player_id=self._next_player_id, title=title, on_over=self._on_game_over, parameter_rows=rows,
        )
        self._next_player_id += len(game.players)
        self._games[game_id] = game
        self._waiters[game_id] = asyncio.get_running_loop().create_future()

    def game(self, game_id: int) -> CoreGame:
        return self._games[game_id]

    def log_path(self, game_id: int) -> Path:
        if self.records_dir is None:
            raise ValueError("this server records no files (records_dir is None)")
        return self.records_dir / f"{game_id}.log.json"

    async def wait_game_over(self, game_id: int, timeout: float | None = None) -> dict[str, Any]:
        """The recorded log of the game once it is over (a copy)."""
        recorded = await asyncio.wait_for(asyncio.shield(self._waiters[game_id]), timeout)
        return json.loads(json.dumps(recorded))

    async def game_over(self, game_id: int, timeout: float | None = None) -> None:
        """Wait until the game is over (and its log written), without copying its log as wait_game_over does."""
        await asyncio.wait_for(asyncio.shield(self._waiters[game_id]), timeout)

    async def drop_connection(self, game_id: int, seat: int) -> None:
        """Test hook: abort every socket that joined `game_id` as `seat`, without a close frame."""
        for client in list(self._clients):
            if client.game_id == game_id and client.number == seat:
                client.abort()
        await asyncio.sleep(0)

    def send_to(self, game_id: int, seat: int, frame: dict[str, Any]) -> bool:
        """Test hook: send `frame` to the socket that currently gets `seat`'s events; False if none has joined."""
        conn = self._games[game_id].sockets.get(seat)
        if conn is None:
            return False
        conn.send(frame)
        return True

    async def delete_game(self, game_id: int) -> None:
        """Forget a game, as the real server's /games/delete does: its timers stop, its players' sockets are cut,
        and from then on REST and WebSocket answer that the game is not found."""
        game = self._games.pop(game_id)
        game.close()
        # The game-over waiter holds the whole recorded log: a server that plays many games (a study) must let it go.
        waiter = self._waiters.pop(game_id, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()
        for client in list(self._clients):
            if client.game_id == game_id:
                client.abort()
        await asyncio.sleep(0)

    def _on_game_over(self, game: CoreGame) -> None:
        assert game.recorded is not None
        if self.records_dir is not None:
            # The server log is recorded by value (CoreGame._record): it alone needs no second deep copy.
            text = js.stringify_value({key: value if key == "server-log" else js.to_json_value(value)
                                       for key, value in game.recorded.items()})
            _write_atomically(self.log_path(game.id), text)
        waiter = self._waiters.get(game.id)
        if waiter is not None and not waiter.done():
            waiter.set_result(game.recorded)

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def spawn_agents(self, game_id: int) -> str | None:
        """POST /spawn-agents to the agent manager, as the real server does for agents-only games.

        Returns the error as the real server's axios words it ("connect ECONNREFUSED HOST:PORT", "Request failed
        with status code 500") when the call fails; the game goes on regardless.
        """
        game = self._games[game_id]
        if self.agent_manager is None:
            game.spawn_error = "no agent manager configured (--agent-manager HOST:PORT)"
        else:
            host, port = self.agent_manager
            url = f"http://{host}:{port}/spawn-agents"
            body = json.dumps({"game_id": game_id, "game_type": game.params.game_type,
                               "agents": len(game.players)}).encode()
            try:
                await asyncio.to_thread(_post_json, url, body)
                game.spawn_error = None
            except urllib.error.HTTPError as exc:
                game.spawn_error = f"Request failed with status code {exc.code}"
            except (OSError, urllib.error.URLError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                refused = isinstance(reason, ConnectionRefusedError)
                game.spawn_error = f"connect ECONNREFUSED {host}:{port}" if refused else f"{reason}"
        if game.spawn_error:
            log.warning("game %s (agents only): %s; the game starts anyway", game_id, game.spawn_error)
        return game.spawn_error

    # ------------------------------------------------------------------ WebSocket

    async def connect_in_memory(self) -> MemoryConnection:
        """A connection to this server's WebSocket handler that passes its frames in memory (lib.localserver.memory:
        an in-process study's agents); ConnectionRefusedError while the server does not listen, as a socket gets."""
        if self._ws_server is None:
            raise ConnectionRefusedError("the local server is not listening")
        client, end = MemoryConnection.pair()
        self._background(self._memory_handler(end))
        return client

    async def _memory_handler(self, end: MemoryConnection) -> None:
        code = 1011  # websockets closes with 1011 after a handler's error, and with 1000 once it returns
        try:
            await self._serve_client(_MemoryClient(end))
            code = 1000
        finally:
            await end.close(code)

    async def _ws_handler(self, ws: ServerConnection) -> None:
        await self._serve_client(_Client(ws))

    async def _serve_client(self, client: _Client) -> None:
        ws = client.ws
        self._clients.add(client)
        writer = asyncio.create_task(client.write_loop())
        try:
            async for data in ws:
                text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                self._on_text(client, text)
                # Frames already buffered are handed over without a pause: without this yield one socket's flood
                # would run back to back and hold every other game's sockets (and their keepalive pings) waiting.
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            writer.cancel()

    def _on_text(self, client: _Client, text: str) -> None:
        try:
            message = js.parse(text)
        except js.JSONParseError as exc:
            client.send({"error": str(exc)})
            return
        if message is None:
            client.send({"error": "Cannot read properties of null (reading 'gameId')"})
            return
        game_id = js.get(message, "gameId")
        game = self._games.get(game_id) if _is_int(game_id) else None
        if game is None:
            client.send({"error": f"Game {js.to_string(game_id)} not found"})
            return
        try:
            game.on_frame(client, message)
        except Exception:  # the real server logs an unhandled rejection and answers nothing
            log.exception("game %s: frame %s failed", game_id, text[:200])

    # ------------------------------------------------------------------ REST

    async def _route(self, request: Request) -> Response:
        path = request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX + "/") else None
        routes = {
            ("POST", "/auth/login"): self._login,
            ("POST", "/games/create-for-llm"): self._create_for_llm,
            ("GET", "/games/get-recovery"): self._get_recovery,
            ("GET", "/games/status"): self._status,
            ("GET", "/games/started"): self._started,
            ("GET", "/games/json"): self._json,
        }
        route = routes.get((request.method, path)) if path is not None else None
        if route is None:
            return Response(404, f"Cannot {request.method} {request.path}".encode(), "text/html; charset=utf-8")
        return await route(request)

    @staticmethod
    def _ok(data: Any, message: str) -> Response:
        return json_response(200, {"data": data, "status": True, "message": message})

    @staticmethod
    def _fail(status: int, message: Any, data: Any = None) -> Response:
        return json_response(status, {"data": {} if data is None else data, "status": True, "message": message})

    def _credentials_ok(self, body: Any) -> bool:
        return (isinstance(body, dict)
                and secrets.compare_digest(str(body.get("username", "")), self.admin_username)
                and secrets.compare_digest(str(body.get("password", "")), self.admin_password))

    def _admin_body(self, request: Request) -> Any:
        """The JSON body of a request that carries the admin credentials, or the error Response to send."""
        try:
            body = request.json()
        except ValueError as exc:
            return self._fail(400, f"Request body is not JSON: {exc}")
        if not self._credentials_ok(body):
            return self._fail(401, "Login failed")
        return body

    async def _login(self, request: Request) -> Response:
        body = self._admin_body(request)
        if isinstance(body, Response):
            return body
        token = secrets.token_hex(32)
        self._tokens.add(token)
        return self._ok({"token": token, "username": self.admin_username, "role": 0}, "Login successful")

    async def _create_for_llm(self, request: Request) -> Response:
        """The real server's create-for-llm (lib/localserver/create.py): nested gameParameters only; a game id is
        used as soon as the games row would be inserted, even when creation then fails."""
        body = self._admin_body(request)
        if isinstance(body, Response):
            return body
        game_parameters = js.get(body, "gameParameters")
        try:
            title = creation.title_of(game_parameters)
        except creation.CreateRefused as exc:
            return self._fail(400, str(exc))
        game_id = self._next_game_id
        self._next_game_id += 1
        try:
            created = creation.create(game_parameters, game_id, strict=self.strict)
            self._start_game(game_id, created.params, title, created.rows)
        except (creation.CreateRefused, ParamError, ValueError) as exc:
            return self._fail(400, str(exc))
        if created.params.agents_only:
            error = await self.spawn_agents(game_id)
            if error:  # the game is created and started all the same, and the answer does not say which it is
                return self._fail(400, error)
        return self._ok({"id": game_id}, "Game created and started")

    async def _get_recovery(self, request: Request) -> Response:
        game_id = _parse_int(request.query.get("game_id"))
        game = self._games.get(game_id) if game_id is not None else None
        if game is None:
            return self._fail(400, f"Game {_int_text(game_id)} was not found")
        recovery = new_recovery_code()
        while any(p.recovery == recovery for p in game.players.values()):
            recovery = new_recovery_code()
        return self._ok({"recovery": recovery}, "Data available")

    async def _status(self, request: Request) -> Response:
        game_id = _parse_int(request.query.get("id"))
        game = self._games.get(game_id) if game_id is not None else None
        if game is None:
            return self._fail(400, f"Game with id {_int_text(game_id)} not found")
        recovery = request.query.get("recovery", js.MISSING)
        player = game.find_by_recovery(recovery)
        data: dict[str, Any] = {"found": False, "canJoin": True, "gameData": None, "ruleset": game.RULESET}
        if player is None:
            if game.assigned < len(game.players):
                message = f"Player not found but game {game_id} can still be joined"
            else:
                message = f"Game {game_id} is full"
                data["canJoin"] = False
        else:
            data["found"] = True
            data["gameData"] = game.recovery_data(player.number)
            message = f"Game {game_id}: player found, recovery data will be returned"
        return self._ok(data, message)

    async def _started(self, _request: Request) -> Response:
        games = [game.lobby_entry() for game in self._games.values() if not game.over]
        return self._ok(games, "Data available")

    async def _json(self, request: Request) -> Response:
        if request.query.get("token") not in self._tokens:
            return self._fail(401, "Could not verify your token")
        game_id = _parse_int(request.query.get("gameId"))
        game = self._games.get(game_id) if game_id is not None else None
        text = None
        if game is not None and game.finished:
            path = self.records_dir / f"{game_id}.log.json" if self.records_dir is not None else None
            text = path.read_text(encoding="utf-8") if path is not None and path.exists() else js.stringify(
                game.recorded)
        if text is None:
            missing = f"../records/{_int_text(game_id)}.log.json"
            return self._fail(500, f"ENOENT: no such file or directory, open '{missing}'")
        return self._ok(text, "Data available")


# ---------------------------------------------------------------------- helpers


def _played(game_type: Any) -> Game:
    """The registered game `game_type` names; ParamError naming the games played otherwise."""
    try:
        return game_for(game_type)
    except UnknownGame:
        played = creation.listed(tuple(repr(name) for name in game_types()))
        raise ParamError(f"gameParameters: game_type {game_type!r} is not played here (only {played})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_int(text: str | None) -> int | None:
    """JavaScript's parseInt on a query value: the leading integer, or None for NaN."""
    match = re.match(r"\s*([+-]?\d+)", text or "")
    return int(match.group(1)) if match else None


def _int_text(value: int | None) -> str:
    return "NaN" if value is None else str(value)


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"agent manager address must be HOST:PORT, got {text!r}")
    return host, int(port)


def _post_json(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=SPAWN_TIMEOUT) as answer:  # noqa: S310 (loopback by config)
        answer.read()


_write_atomically = write_text_atomic


# ---------------------------------------------------------------------- command line


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lib.localserver.server",
        description=f"A local IBEX server ({', '.join(game_types())}; WebSocket and REST) for tests and dry runs.",
    )
    parser.add_argument("--ws-port", type=int, default=3088, help="WebSocket port (default 3088, 0: any free port)")
    parser.add_argument("--api-port", type=int, default=3080, help="REST port (default 3080, 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--records", metavar="DIR", help="write each finished game as DIR/<id>.log.json")
    parser.add_argument("--sessions", metavar="FILE",
                        help=f"private values (and signals, where a game has them) table (default {DEFAULT_SESSIONS})")
    parser.add_argument("--agent-manager", metavar="HOST:PORT", help="where agents-only games POST /spawn-agents")
    parser.add_argument("--strict", action="store_true",
                        help="refuse, with an error frame, what the real server wrongly accepts (see README)")
    parser.add_argument("--ready-race-window", type=float, default=0.0, metavar="SECONDS",
                        help="drop frames that arrive this long after a round's phase-0 transition (test switch)")
    parser.add_argument("--fast", action="store_true",
                        help="end at once every phase that only its timer ends and in which nobody can act")
    parser.add_argument("--admin-user", default=None, help="admin user (default: $IBEX_USERNAME or 'admin')")
    parser.add_argument("--admin-password", default=None, help="admin password (default: $IBEX_PASSWORD or 'admin')")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    server = LocalServer(
        records_dir=args.records,
        sessions=args.sessions,
        strict=args.strict,
        ready_race_window=args.ready_race_window,
        fast=args.fast,
        agent_manager=args.agent_manager,
        host=args.host,
        ws_port=args.ws_port,
        api_port=args.api_port,
        admin_username=args.admin_user or os.environ.get("IBEX_USERNAME") or DEFAULT_ADMIN_USER,
        admin_password=args.admin_password or os.environ.get("IBEX_PASSWORD") or DEFAULT_ADMIN_PASSWORD,
    )
    try:
        await server.start()
    except OSError as exc:
        print(f"localserver: cannot listen on {args.host}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    print(f"IBEX local server: {server.ws_url}  api {server.api_url}", flush=True)
    await stopping.wait()
    await server.stop()
    print("IBEX local server stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        from dotenv import load_dotenv

        load_dotenv()
    except ImportError:
        pass
    logging.basicConfig(level=logging.INFO, format="localserver: %(message)s")
    try:
        if args.agent_manager:
            _parse_address(args.agent_manager)
        if args.sessions:
            load_sessions(args.sessions)
    except (SessionsError, ValueError) as exc:
        print(f"localserver: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
