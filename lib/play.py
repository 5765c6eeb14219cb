"""Playing on a real IBEX server: where it is, which seats to take, which parameters a new game gets.

handler.py's real-server modes are built from these pieces:
- `server_urls`: IBEX_WS_URL (ws://HOST:3088, or wss://HOST/wss behind a reverse proxy) and IBEX_API_URL
  (http://HOST:3080/api/v1 or https://HOST/api/v1), from flags or the environment, checked.
- `load_game_parameters`: the parameters of a game to create (`--create --params FILE`).
- `prepare_seats`: the recovery codes the agents join with (`--game ID [--players N] [--recovery CODE ...]`):
  given codes first (a code the server knows resumes its seat), then fresh codes from get-recovery.
Nothing here prints: errors are PlayError with a one-line message for the user.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.game import SEATS, GameParams, ParamError, parameters_from_dict, parse_parameters
from lib.ibexapi import GameNotFound, IbexApi, short

NOT_STARTED_WAIT = 10.0  # seconds get-recovery may answer "not started" before a game counts as missing


class PlayError(Exception):
    """A game cannot be played as asked; the message says why in one line (no secret in it)."""


@dataclass(frozen=True)
class ServerUrls:
    ws_url: str
    api_url: str


def server_urls(env: Mapping[str, str], ws_url: str | None = None, api_url: str | None = None) -> ServerUrls:
    """The server's WebSocket and REST URLs: flags first, then IBEX_WS_URL / IBEX_API_URL."""
    ws = (ws_url or env.get("IBEX_WS_URL", "")).strip()
    api = (api_url or env.get("IBEX_API_URL", "")).strip().rstrip("/")
    if not ws:
        raise PlayError("missing setting IBEX_WS_URL (e.g. ws://HOST:3088 or wss://HOST/wss; set it in .env or "
                        "pass --ws-url)")
    if not api:
        raise PlayError("missing setting IBEX_API_URL (e.g. http://HOST:3080/api/v1 or https://HOST/api/v1; set it "
                        "in .env or pass --api-url)")
    if not re.match(r"^wss?://[^/\s]+(/\S*)?$", ws):
        raise PlayError(f"IBEX_WS_URL must be ws://HOST:PORT or wss://HOST/PATH, got {ws!r}")
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", api):
        raise PlayError(f"IBEX_API_URL must be http://HOST:PORT/api/v1 or https://HOST/api/v1, got {api!r}")
    return ServerUrls(ws, api)


def load_game_parameters(path: Path | None, *, agents_only: bool) -> tuple[dict[str, Any], GameParams]:
    """(the gameParameters to send, the same typed) for a new game.

    Defaults: the real server's voting-game defaults (lib.game.DEFAULT_PARAMETERS: five rounds after a practice
    round, phase timers 15/180/120/120/120/120/60/15 s). The file, JSON, overrides any of them: either an object
    {"round_count": 3, "timer_phase_3": 60, ...} or a recorded log's list [{"key", "type", "value"}, ...].
    `agents_only` (from --agents-only) is applied last.
    """
    overrides: dict[str, Any] = {}
    where = str(path) if path is not None else "gameParameters"
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PlayError(f"{path}: cannot read the game parameters: {exc.strerror or exc}") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlayError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        try:
            if isinstance(raw, list):
                overrides = dict(parse_parameters(raw, where).values)
            elif isinstance(raw, dict):
                overrides = raw
            else:
                raise PlayError(f"{path}: expected a JSON object of parameters or a list of {{key, type, value}}, "
                                f"got {type(raw).__name__}")
        except ParamError as exc:
            raise PlayError(str(exc)) from None
    overrides = {**overrides, "agents_only": agents_only}
    try:
        params = parameters_from_dict(overrides, where)
    except ParamError as exc:
        raise PlayError(str(exc)) from None
    if params.game_type != "voting":
        raise PlayError(f"{where}: game_type {params.game_type!r} is not supported (voting only)")
    return dict(params.values), params


@dataclass(frozen=True)
class Seat:
    """One agent's recovery code; `resumes` is the seat number the server already gave it, if any."""

    recovery: str
    resumes: int | None = None
    given: bool = False

    def describe(self) -> str:
        code = short(self.recovery)
        if self.resumes is not None:
            return f"code {code} resumes seat {self.resumes}"
        return f"code {code} takes a free seat" + (" (given)" if self.given else "")


async def free_seats(api: IbexApi, game_id: int) -> int | None:
    """Seats nobody holds yet, from the lobby list; None when the game is not listed (not started, or over)."""
    for game in await api.started():
        if game.get("id") == game_id:
            assigned = game.get("assignedPlayers")
            if isinstance(assigned, int) and not isinstance(assigned, bool):
                return max(0, SEATS - assigned)
    return None


async def prepare_seats(api: IbexApi, game_id: int, players: int | None, codes: list[str]) -> list[Seat]:
    """The seats to play: every given code (checked against the server), then fresh codes up to `players`.

    `players` None: only the given codes, or, with none given, every free seat.
    """
    if len(set(codes)) != len(codes):
        raise PlayError("the same recovery code is given twice (--recovery)")
    if players is not None and not 1 <= players <= SEATS:
        raise PlayError(f"--players must be from 1 to {SEATS}, got {players}")
    if players is not None and players < len(codes):
        raise PlayError(f"--players {players} is fewer than the {len(codes)} recovery codes given")
    seats: list[Seat] = []
    new_given = 0
    try:
        # A code nobody holds: the answer says whether the game exists and can still be joined.
        probe = await api.status(game_id, f"probe-{secrets.token_hex(16)}")
        for code in codes:
            status = await api.status(game_id, code)
            game_data = status.game_data or {}
            number = (game_data.get("player") or {}).get("number") if status.found else None
            if status.found:
                seats.append(Seat(code, resumes=number if isinstance(number, int) else None, given=True))
                continue
            if not status.can_join:
                raise PlayError(f"game {game_id} is full and recovery code {short(code)} is none of its players")
            seats.append(Seat(code, given=True))
            new_given += 1
        wanted = players if players is not None else (len(codes) or None)
        free = await free_seats(api, game_id)
        if wanted is None:
            if free is None:
                raise PlayError(f"game {game_id} is not in the server's list of running games (not started yet, "
                                "or over); pass --players N to try anyway")
            wanted = free
            if wanted == 0 or not probe.can_join:
                raise PlayError(f"game {game_id} has no free seat: pass the recovery codes of its agents "
                                "(--recovery) to resume them")
        fresh = wanted - len(seats)
        if free is not None and fresh + new_given > free:
            raise PlayError(f"game {game_id} has {free} free seat(s), {fresh + new_given} asked for")
        for _ in range(fresh):
            seats.append(Seat(await api.get_recovery(game_id, wait_for_start=NOT_STARTED_WAIT)))
    except GameNotFound as exc:
        raise PlayError(f"game {game_id} is not on the server at {api.base_url}: {exc.message}") from None
    return seats
