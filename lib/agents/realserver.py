"""Playing on a real IBEX server: where it is, which seats to take, which parameters a new game gets.

The real-server modes (lib.agents.modes) are built from these pieces:
- `server_urls`: IBEX_WS_URL (ws://HOST:3088, or wss://HOST/wss behind a reverse proxy) and IBEX_API_URL
  (http://HOST:3080/api/v1 or https://HOST/api/v1), from flags or the environment, checked.
- `create_payload`: the nested gameParameters create-for-llm wants, from flat parameter names or a log's rows (the
  one conversion; lib/ibex/createparams.py holds the table), and `load_game_parameters`: the same from `--create
  --params FILE` and the flags, checked for what the real server would silently mangle.
- `prepare_seats`: the recovery codes the agents join with (`--game ID [--players N] [--recovery CODE ...]`):
  given codes first (a code the server knows resumes its seat), then fresh codes from get-recovery.
Nothing here prints: errors are PlayError with a one-line message for the user.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.games import DEFAULT_GAME, GAMES, game_for, game_types
from lib.games.protocols import Game
from lib.ibex import js
from lib.ibex.api import GameNotFound, IbexApi, short
from lib.ibex.createparams import LOG_ONLY_KEYS, ROW_TYPES, nested_payload
from lib.ibex.params import MAX_ROUND_COUNT, GameParams, ParamError, parameters_from_dict, parse_parameters

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


def create_payload(source: Mapping[str, Any] | list[Any] | None = None, where: str = "gameParameters",
                   title: str | None = None, game_type: str | None = None) -> tuple[dict[str, Any], GameParams]:
    """(the nested gameParameters for create-for-llm, the same parameters typed).

    `source` overrides the real server's defaults, what its web UI sends for the game type (its GameRules'
    default_parameters): flat parameter names
    {"round_count": 3, "timer_phase_3": 60, "title": "..."} as in a log, or a recorded log's [{"key", "type",
    "value"}, ...] list (its two simulation_* rows, written at game-over, are not parameters and are dropped). The
    game type is the source's `game_type`, else `game_type`, else lib.games.DEFAULT_GAME; the two disagreeing is an
    error. A name createGame does not read is an error: the server would ignore it.
    """
    overrides: dict[str, Any]
    try:
        if source is None:
            overrides = {}
        elif isinstance(source, list):
            rows = [row for row in source if not (isinstance(row, dict) and row.get("key") in LOG_ONLY_KEYS)]
            overrides = dict(parse_parameters(rows, where).values)
        elif isinstance(source, Mapping):
            overrides = dict(source)
        else:
            raise PlayError(f"{where}: expected a JSON object of parameters or a list of {{key, type, value}}, "
                            f"got {type(source).__name__}")
        if "title" in overrides:
            given = overrides.pop("title")
            if not isinstance(given, str):
                raise PlayError(f"{where}: 'title' must be a string, got {given!r}"[:300])
            title = given
        unknown = sorted(set(overrides) - set(ROW_TYPES))
        if unknown:
            raise PlayError(f"{where}: {', '.join(map(repr, unknown))}: not a parameter create-for-llm sets (the "
                            "server would ignore it; the names are those of lib/ibex/createparams.py)")
        kind = _game_type(overrides.get("game_type", game_type or DEFAULT_GAME), where)
        if game_type is not None and kind != game_type:
            raise PlayError(f"{where}: game_type {kind!r} disagrees with --game-type {game_type}")
        overrides = {**game_for(kind).rules.default_parameters(), **overrides, "game_type": kind}
        params = parameters_from_dict(overrides, where)
    except ParamError as exc:
        raise PlayError(str(exc)) from None
    return nested_payload(params.values, title), params


def creatable(game_type: str) -> bool:
    """Whether create-for-llm can set every parameter of a `game_type` game (the IBEX games); a game only the local
    server plays (a test's, with parameters of its own) cannot be created on the real server."""
    return set(game_for(game_type).rules.default_parameters()) <= set(ROW_TYPES)


def _game_type(value: Any, where: str) -> str:
    names = game_types()
    if value not in names:
        listed = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        raise PlayError(f"{where}: game_type {value!r} is not supported ({listed})"[:300])
    return str(value)


def last_phase(params: GameParams) -> int:
    """The last phase with a timer of the game `params` play."""
    return game_for(params.game_type).rules.last_phase


def seats_of(params: GameParams) -> int:
    return game_for(params.game_type).play.seats


def load_game_parameters(path: Path | None, *, agents_only: bool, rounds: int | None = None,
                         practice: bool | None = None, timer_scale: float | None = None,
                         title: str | None = None, game_type: str | None = None) -> tuple[dict[str, Any], GameParams]:
    """(the nested gameParameters to send, the same typed) for `handler.py --create`.

    The file (JSON, see create_payload) overrides the defaults; then --rounds, --practice/--no-practice and
    --timer-scale, with the meaning they have for --local (paid rounds; a practice round 0; the phase timers
    multiplied, here rounded to whole seconds, at least 1); `agents_only` (from --agents-only) comes last. The
    defaults are those of the game type (`game_type`, from --game-type, or the file's game_type;
    lib.games.DEFAULT_GAME without either). The title, unless the file gives one, is new for each run. The result
    is refused where the real server would quietly play another game than the one asked for (see check_for_real_server).
    """
    source: Any = None
    where = str(path) if path is not None else "gameParameters"
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PlayError(f"{path}: cannot read the game parameters: {getattr(exc, 'strerror', None) or exc}") \
                from None
        try:
            source = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlayError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    title = title or f"LLM agents {time.strftime('%Y-%m-%d %H:%M:%S')} {secrets.token_hex(4)}"
    payload, params = create_payload(source, where, title, game_type)
    flags: dict[str, Any] = {"agents_only": agents_only}
    if rounds is not None:
        flags["round_count"] = rounds
    if practice is not None:
        flags["practice_round"] = practice
    if timer_scale is not None:
        for phase in range(1, last_phase(params) + 1):
            seconds = params.timer(phase)
            if seconds is not None:
                flags[f"timer_phase_{phase}"] = max(1, int(seconds * timer_scale + 0.5))  # halves up
    flat = {**params.values, **flags}
    payload, params = create_payload({**flat, "title": payload["title"]}, where)
    check_for_real_server(params, payload["title"], where)
    return payload, params


def check_for_real_server(params: GameParams, title: str, where: str) -> None:
    """PlayError where the real server would create a game other than the one asked for, or none.

    It keeps only the integer part of a number (parseInt: a 0.5 s timer becomes no timer, and a phase without
    one never ends), pastes text into SQL (an apostrophe fails, after using a game id), and seats roles in numbers
    the agents do not play: they play the seats their game's PlayRules count (seat_counts).
    """
    play = game_for(params.game_type).play
    for key, wanted in play.seat_counts.items():
        if params.get(key) != wanted:
            raise PlayError(f"{where}: parameter {key!r} must be {wanted}: the agents play "
                            f"{play.seats_description}, got {params.get(key)!r}")
    if not (isinstance(params.get("round_count"), int) and 1 <= params.get("round_count") <= MAX_ROUND_COUNT):
        raise PlayError(f"{where}: parameter 'round_count' must be from 1 to {MAX_ROUND_COUNT:,}, got "
                        f"{params.get('round_count')!r}"[:300])
    for key, value in params.values.items():
        kind = ROW_TYPES[key]
        if kind == "number" and not (isinstance(value, int) and abs(value) < 2**53):
            raise PlayError(f"{where}: parameter {key!r} must be a whole number (the server keeps only the integer "
                            f"part), got {value!r}")
        text = js.to_string(value)
        if "'" in text or len(text) > 256:
            raise PlayError(f"{where}: parameter {key!r} must hold no apostrophe and at most 256 characters (the "
                            "server pastes it into SQL)")
    for phase in range(1, last_phase(params) + 1):
        seconds = params.timer(phase)
        if seconds is None or seconds < 1:
            raise PlayError(f"{where}: parameter 'timer_phase_{phase}' must be at least 1 second (the server runs "
                            "a phase without a timer when it reads 0, and a phase only its timer ends then never "
                            "ends)")
    if "'" in title or len(title) > 64:
        raise PlayError(f"{where}: the title must hold no apostrophe and at most 64 characters (the server pastes "
                        "it into SQL)")


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
                kind = game.get("type")
                total = game_for(kind if kind in GAMES else DEFAULT_GAME).play.seats
                return max(0, total - assigned)
    return None


async def game_of(api: IbexApi, game_id: int, code: str) -> tuple[Game, bool]:
    """(the game `game_id` plays, whether the server said which): the lobby's `type` while the game is listed,
    else GET /games/status's `ruleset`. A ruleset several games report (PlayRules.ruleset) gives the first of
    them, not known: its agents tell them apart by the game's first events. A ruleset no game reports is
    the default game's."""
    for game in await api.started():
        if game.get("id") == game_id and game.get("type") in GAMES:
            return game_for(game["type"]), True
    ruleset = (await api.status(game_id, code)).ruleset
    games = [game for game in GAMES.values() if ruleset is not None and game.play.ruleset == ruleset]
    if not games:
        return game_for(DEFAULT_GAME), True
    return games[0], len(games) == 1


def max_players() -> int:
    """The most seats any game has: a game with fewer is bounded by its free seats."""
    return max(game.play.seats for game in GAMES.values())


async def prepare_seats(api: IbexApi, game_id: int, players: int | None, codes: list[str]) -> list[Seat]:
    """The seats to play: every given code (checked against the server), then fresh codes up to `players`.

    `players` None: only the given codes, or, with none given, every free seat.
    """
    if len(set(codes)) != len(codes):
        raise PlayError("the same recovery code is given twice (--recovery)")
    if players is not None and not 1 <= players <= max_players():
        raise PlayError(f"--players must be from 1 to {max_players()}, got {players}")
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
