"""An async client for the IBEX server's REST API (docs/protocol.md section 2), for the agents and the agent manager.

Base URL: `IBEX_API_URL`, e.g. http://HOST:3080/api/v1 or https://HOST/api/v1 behind a reverse proxy.

The server wraps every answer in `{"data", "status", "message"}` and says `status: true` even on errors, so the HTTP
code decides: any code outside 2xx raises IbexApiError naming the call, the code and the server's message.
Failures that may pass (connection refused, timeouts, 502/503/504, and 500 for reads) are retried a bounded number
of times with exponential backoff; after that the error says the server is unreachable and how often it was tried.
`create-for-llm` creates a game, so it is retried only when the request never reached the server.

Secrets never appear in errors: passwords are not echoed, recovery codes are shortened to a prefix (`short`), and
the admin token stays out of every message.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass
from typing import Any

import httpx2

from lib.util.redact import public_url

DEFAULT_TIMEOUT = 10.0  # seconds per request
DEFAULT_RETRIES = 3  # extra attempts after a failure that may pass
BACKOFF_SECONDS = 0.5  # first pause; doubles each time
MAX_BACKOFF_SECONDS = 4.0
NOT_STARTED_POLL = 0.25  # get-recovery answers 400 until the game has started: ask again this often
RETRY_STATUSES_READ = frozenset({500, 502, 503, 504})
RETRY_STATUSES_WRITE = frozenset({502, 503})  # the gateway never reached the server; a 504 may have
MESSAGE_CHARS = 300  # how much of an unexpected answer an error quotes


def short(secret: str | None, keep: int = 6) -> str:
    """A recovery code (or any secret) as a short prefix that identifies it in logs without giving it away."""
    if not secret:
        return "<none>"
    return secret[:keep] + "…" if len(secret) > keep else "…"


_public_url = public_url  # the URL without user:password@ (a base URL may carry them): lib.util.redact's


class IbexApiError(Exception):
    """A REST call failed. `call` names it, `status` is the HTTP code (None: no answer), `message` the reason."""

    def __init__(self, call: str, message: str, status: int | None = None, body: Any = None) -> None:
        self.call = call
        self.status = status
        self.message = message
        self.body = body  # the parsed answer, when there was one
        where = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"IBEX API {call}: {where}{message}")


class IbexUnreachable(IbexApiError):
    """No usable answer after every retry (connection refused, timeouts, gateway errors)."""


class GameNotFound(IbexApiError):
    """The server does not know the game (never existed, or gone: finished long ago, server restarted)."""


@dataclass(frozen=True)
class Status:
    """GET /games/status: whether the code is bound to a seat, whether a new player can still join, and the
    rejoin snapshot `gameData` (None unless found)."""

    found: bool
    can_join: bool
    game_data: dict[str, Any] | None
    ruleset: str | None
    message: str


@dataclass(frozen=True)
class CreatedGame:
    """POST /games/create-for-llm. `warning` holds the server's message when the game was created and started but
    its agents-only call to the agent manager failed: the real server then answers HTTP 400 with that message and
    no id, and the game is found in the lobby by its title."""

    id: int
    warning: str | None = None


class IbexApi:
    """One HTTP connection pool to one IBEX server. Use as `async with IbexApi(url) as api:` or call close()."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = BACKOFF_SECONDS,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        base = (base_url or "").strip().rstrip("/")
        if not re.match(r"^https?://[^/]+", base):
            raise ValueError(f"IBEX_API_URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base
        self.retries = max(0, retries)
        self.backoff = max(0.0, backoff)
        self._timeout, self._transport = timeout, transport
        # Made at the first call: an httpx client loads the system's CA certificates (about 60 ms of CPU) even for
        # plain http, and most local games (a study's, a --local one's) never call the API at all.
        self._client: httpx2.AsyncClient | None = None

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=self._timeout, transport=self._transport, follow_redirects=True)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def __aenter__(self) -> IbexApi:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ calls

    async def login(self, username: str, password: str) -> str:
        """The admin token (a JWT) for calls that need one."""
        status, body = await self._call("login", "POST", "/auth/login",
                                        json_body={"username": username, "password": password}, write=False)
        token = _data(body).get("token") if isinstance(_data(body), dict) else None
        if not isinstance(token, str) or not token:
            raise IbexApiError("login", f"the answer holds no token ({_message(body)})", status)
        return token

    async def create_for_llm(self, username: str, password: str, game_parameters: dict[str, Any]) -> CreatedGame:
        """Create and start a game; its id. The credentials are the admin's (IBEX_USERNAME, IBEX_PASSWORD).

        `game_parameters` is the nested object the real server reads (lib.ibex.createparams.nested_payload). Give it a
        title nobody else uses: when the server answers 400 after starting an agents-only game (its call to the agent
        manager failed), the game is the one with that title that the lobby did not list before the call; it is
        returned with the server's message as a warning.
        """
        body_in = {"username": username, "password": password, "gameParameters": game_parameters}
        nested = game_parameters if isinstance(game_parameters, dict) else {}
        title = nested.get("title")
        titled_before: set[Any] | None = None
        if nested.get("agents_only") is True and isinstance(title, str) and title:
            titled_before = await self._titled(title)  # a spawn failure's game is one that was not there before
        try:
            status, body = await self._call("create-for-llm", "POST", "/games/create-for-llm", json_body=body_in,
                                            write=True)
        except IbexApiError as exc:
            if exc.status != 400 or titled_before is None or not isinstance(title, str):
                raise
            new = (await self._titled(title) or set()) - titled_before
            if len(new) != 1 or not isinstance(game_id := next(iter(new)), int):
                raise
            return CreatedGame(game_id, warning=exc.message)
        game_id = _game_id(body)
        if game_id is None:
            raise IbexApiError("create-for-llm", f"the answer holds no game id ({_message(body)})", status)
        return CreatedGame(game_id)

    async def _titled(self, title: str) -> set[Any] | None:
        """Ids of the lobby's games with this title; None when the lobby cannot be read."""
        try:
            return {game.get("id") for game in await self.started() if game.get("title") == title}
        except IbexApiError:
            return None

    async def get_recovery(self, game_id: int, *, wait_for_start: float = 0.0) -> str:
        """A fresh recovery code for `game_id` (random, reserves nothing: the join binds it to a seat).

        The server answers 400 until the game has started; with `wait_for_start` seconds it asks again meanwhile.
        """
        call = f"get-recovery (game {game_id})"
        loop = asyncio.get_running_loop()
        give_up = loop.time() + max(0.0, wait_for_start)
        while True:
            try:
                status, body = await self._call(call, "GET", "/games/get-recovery", params={"game_id": game_id})
                break
            except IbexApiError as exc:
                if exc.status != 400:
                    raise
                if loop.time() + NOT_STARTED_POLL > give_up:
                    raise GameNotFound(call, f"{exc.message} (the game does not exist or has not started)",
                                       400) from None
                await asyncio.sleep(NOT_STARTED_POLL)
        recovery = _data(body).get("recovery") if isinstance(_data(body), dict) else None
        if not isinstance(recovery, str) or not recovery:
            raise IbexApiError(call, f"the answer holds no recovery code ({_message(body)})", status)
        return recovery

    async def status(self, game_id: int, recovery: str) -> Status:
        """GET /games/status for one player. GameNotFound when the server does not know the game."""
        call = f"status (game {game_id}, recovery {short(recovery)})"
        try:
            _status, body = await self._call(call, "GET", "/games/status", params={"id": game_id, "recovery": recovery})
        except IbexApiError as exc:
            if exc.status in (400, 404) and "not found" in exc.message.lower():
                raise GameNotFound(call, exc.message, exc.status) from None
            raise
        data = _data(body)
        if not isinstance(data, dict):
            raise IbexApiError(call, f"unexpected answer: {_quote(body)}", _status)
        game_data = data.get("gameData")
        return Status(
            found=data.get("found") is True,
            can_join=data.get("canJoin") is not False,
            game_data=game_data if isinstance(game_data, dict) else None,
            ruleset=data.get("ruleset") if isinstance(data.get("ruleset"), str) else None,
            message=_message(body),
        )

    async def started(self) -> list[dict[str, Any]]:
        """The lobby: games in memory, each with `currentRound {number, phase}`."""
        status, body = await self._call("started", "GET", "/games/started")
        data = _data(body)
        if not isinstance(data, list):
            raise IbexApiError("started", f"expected a list of games, got {_quote(data)}", status)
        return [game for game in data if isinstance(game, dict)]

    async def game_json(self, game_id: int, token: str) -> dict[str, Any]:
        """The recorded `.log.json` of a finished game (the server sends it as a JSON string in `data`)."""
        return (await self.game_log(game_id, token))[1]

    async def game_log(self, game_id: int, token: str) -> tuple[str, dict[str, Any]]:
        """(the text, the parsed log) of a finished game's recorded `.log.json`: the text as the server recorded
        it, so that a copy here is the server's file byte for byte."""
        call = f"json (game {game_id})"
        status, body = await self._call(call, "GET", "/games/json", params={"gameId": game_id, "token": token})
        data = _data(body)
        text = data if isinstance(data, str) else None
        if text is not None:
            try:
                data = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise IbexApiError(call, f"the recorded log is not JSON ({why})", status) from None
        if not isinstance(data, dict):
            raise IbexApiError(call, f"expected the recorded log, got {_quote(data)}", status)
        return (text if text is not None else json.dumps(data, ensure_ascii=False)), data

    # ------------------------------------------------------------------ transport

    async def _call(self, call: str, method: str, path: str, *, params: dict[str, Any] | None = None,
                    json_body: Any = None, write: bool = False) -> tuple[int, Any]:
        """(HTTP code, parsed body) of a 2xx answer, after bounded retries; IbexApiError otherwise.

        `write`: the call changes server state, so it is repeated only when it never reached the server.
        """
        url = self.base_url + path
        attempts = self.retries + 1
        last = ""
        # What must never show in a message, even if a library quotes the request: codes, tokens, passwords.
        hidden = {v: short(v) for v in (params or {}).values() if isinstance(v, str) and len(v) >= 6}
        if isinstance(json_body, dict) and json_body.get("password"):
            hidden[str(json_body["password"])] = "[redacted]"
        for attempt in range(1, attempts + 1):
            try:
                response = await self._http().request(method, url, params=params, json=json_body)
            except httpx2.TransportError as exc:
                sent = not isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)
                last = _hide(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, hidden)
                if write and sent:
                    raise IbexApiError(call, f"no answer ({last}); the server may have acted on it, so it is not "
                                             "repeated") from None
            else:
                body = _parse(response)
                if 200 <= response.status_code < 300:
                    return response.status_code, body
                retry_on = RETRY_STATUSES_WRITE if write else RETRY_STATUSES_READ
                message = _hide(_message(body) or response.reason_phrase or "error", hidden)
                error = IbexApiError(call, message, response.status_code, body)
                if response.status_code not in retry_on:
                    raise error
                last = f"HTTP {response.status_code}: {error.message}"
            if attempt < attempts:
                await asyncio.sleep(self._pause(attempt))
        raise IbexUnreachable(call, f"no usable answer from {_public_url(self.base_url)} after {attempts} attempts "
                                    f"(last: {last})")

    def _pause(self, attempt: int) -> float:
        pause = min(MAX_BACKOFF_SECONDS, self.backoff * 2 ** (attempt - 1))
        return pause * random.uniform(0.8, 1.2)  # spread many agents' retries apart


def _parse(response: httpx2.Response) -> Any:
    """The JSON body, or the text when it is not JSON (an HTML 404 page, a proxy's error page)."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text


def _hide(text: str, secrets: dict[str, str]) -> str:
    for secret, shown in secrets.items():
        text = text.replace(secret, shown)
    return text


def _data(body: Any) -> Any:
    return body.get("data") if isinstance(body, dict) else None


def _game_id(body: Any) -> int | None:
    data = _data(body)
    game_id = data.get("id") if isinstance(data, dict) else None
    return game_id if isinstance(game_id, int) and not isinstance(game_id, bool) else None


def _message(body: Any) -> str:
    """The envelope's message as one line (the server sometimes puts an object there)."""
    if isinstance(body, dict):
        message = body.get("message")
        if message is None:
            return ""
        text = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
    else:
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        text = re.sub(r"<[^>]+>", " ", text)  # an HTML error page: keep its words
    return " ".join(text.split())[:MESSAGE_CHARS]


def _quote(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:MESSAGE_CHARS]
