"""create-for-llm on the local server: the real server's createGame and startGame, step by step.

What the real server (master of 2025-10-30) does with `gameParameters`, and so what the local server does:
1. null or missing: "Cannot create a new user without game parameters"; no game id is used.
2. The games row is inserted with the title as text: an apostrophe is a SQL syntax error, more than 64 characters
   too long; no game id is used. From here on the id is used even when creation fails.
3. The parameter rows are read from the nested object (lib.ibex.createparams.stored_rows): a flat object fails with
   "Cannot read properties of undefined (reading 'initial')". Each row is inserted as text (an apostrophe or more
   than 256 characters fails, after the rows before it).
4. The players are inserted (an owner, the developer, owners.count - 1 more owners, speculators.count
   speculators), balance and shares as PostgreSQL bigints.
5. The game is loaded: rows typed (number: parseInt, float: parseFloat, boolean: "true"), and the number of
   players must equal speculators_count + owners_count + developers_count.
6. The game type's logic starts; an unknown type throws "Cannot read properties of undefined (reading 'start')".
   (On the real server such a game also breaks every later creation and the lobby until a restart; not here.)

The local server then refuses, with a message saying so, what the real server would start but it cannot play: the
real server's game types no registered game plays (market, goods-market), and what the game's own server rules
refuse (lib.games.protocols.ServerRules.refusal: seats, numbers it cannot compute with, and under --strict what
would stall for good). The one typing difference: timers are read with parseFloat, so that tests can run
sub-second phases (the real server's parseInt makes 0.5 s a phase without timer).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from lib.games import GAMES, UnknownGame, game_for, game_types
from lib.ibex import js
from lib.ibex.createparams import stored_rows
from lib.ibex.params import GameParams

# Game types of the real server (its logics/) that no game here plays: refused before any row is stored, in the
# local server's words. Any other unknown type fails later, as startGame fails on the real server.
UNPLAYED_REAL_TYPES = ("market", "goods-market")
SQL_VALUE_CHARS = 256  # game_parameters.parameter_value VARCHAR(256)
SQL_TITLE_CHARS = 64  # games.title VARCHAR(64)
MAX_PLAYERS = 100  # the real server would insert any number of players; a local game seats what its rules say
BIGINT = re.compile(r"\s*([+-]?\d+)\s*")
_TOKEN = re.compile(r"[A-Za-z0-9_]+|\S")


class CreateRefused(Exception):
    """create-for-llm answers HTTP 400 with this message (the real server's, or the local server's reason)."""


@dataclass(frozen=True)
class Creation:
    """A game create-for-llm may start: its typed parameters and the rows a log records (insertion order)."""

    params: GameParams
    rows: list[dict[str, str]]


def title_of(game_parameters: Any) -> str:
    """The games row's title, as stored; CreateRefused before any game id is used."""
    if js.is_nullish(game_parameters):
        raise CreateRefused("Cannot create a new user without game parameters")
    title = js.to_string(js.get(game_parameters, "title"))
    _sql_text(title, SQL_TITLE_CHARS)
    return title


def create(game_parameters: Any, game_id: int, strict: bool = False) -> Creation:
    """Steps 3 to 6 for a game whose id is already used; CreateRefused says why it does not start.

    `strict` (the local server's --strict) also refuses what the game's server rules refuse then (a game the real
    server starts but that stalls for good)."""
    game_type = js.get(game_parameters, "game_type")
    if game_type in UNPLAYED_REAL_TYPES and game_type not in GAMES:
        raise CreateRefused(f"game_type {game_type!r}: the local server plays {listed(game_types())} games only")
    try:
        rows = stored_rows(game_parameters)
        for row in rows:
            _sql_text(row["value"], SQL_VALUE_CHARS)
        players = _players(game_parameters)
    except js.JSTypeError as exc:
        raise CreateRefused(str(exc)) from None
    values = {row["key"]: _typed(row) for row in reversed(rows)}  # findByGameId: newest row first
    total = sum(js.to_number(values.get(f"{who}_count", js.MISSING)) for who in ("speculators", "owners", "developers"))
    if players != total:
        raise CreateRefused(f"Game {game_id} has {players} players but {js.to_string(total)} were expected. This is "
                            "most likely a player generation a bug")
    try:
        game = game_for(values.get("game_type"))
    except UnknownGame:
        raise CreateRefused("Cannot read properties of undefined (reading 'start')") from None
    refusal = game.server.refusal(values, strict)
    if refusal is not None:
        raise CreateRefused(refusal)
    return Creation(GameParams(values), rows)


def listed(names: tuple[str, ...]) -> str:
    """'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _typed(row: dict[str, str]) -> Any:
    """startGame's typing of a stored row (timers: parseFloat, the local server's one difference)."""
    key, kind, text = row["key"], row["type"], row["value"]
    if kind == "string":
        return text
    if kind == "boolean":
        return text == "true"
    if kind == "float" or key.startswith("timer_phase_"):
        return js.parse_float(text)
    return js.parse_int(text)


def _players(game_parameters: Any) -> int:
    """How many players createGame inserts, checking each one's balance and shares as the database would."""
    owners = js.prop(game_parameters, "owners")
    developers = js.prop(game_parameters, "developers")
    speculators = js.prop(game_parameters, "speculators")
    extra_owners = _loop_count(js.prop(owners, "count"), start=1)
    count = 2 + extra_owners + _loop_count(js.prop(speculators, "count"), start=0)
    if count > MAX_PLAYERS:
        raise CreateRefused(f"{count} players: the local server creates at most {MAX_PLAYERS}")
    kinds = [owners, developers] + [owners] * extra_owners + [speculators] * (count - 2 - extra_owners)
    for kind in kinds:
        _bigint(js.to_string(js.prop(kind, "balance")))
        _bigint(js.to_string(js.prop(kind, "shares")))
    return count


def _loop_count(limit: Any, start: int) -> int:
    """How often `for (let i = start; i < limit; i++)` runs."""
    bound = js.to_number(limit)
    if math.isnan(bound) or bound <= start:
        return 0
    if math.isinf(bound):
        raise CreateRefused("an infinite number of players")
    return math.ceil(bound) - start


def _sql_text(text: str, width: int) -> None:
    """A value the real server pastes into SQL between apostrophes, in a VARCHAR(width) column."""
    if "'" in text:
        token = _TOKEN.match(text[text.index("'") + 1:].lstrip())
        raise CreateRefused(f'syntax error at or near "{token.group(0)}"' if token else "syntax error at end of input")
    if len(text) > width:
        raise CreateRefused(f"value too long for type character varying({width})")


def _bigint(text: str) -> None:
    _sql_text(text, 1 << 30)
    match = BIGINT.fullmatch(text)
    if match is None:
        raise CreateRefused(f'invalid input syntax for type bigint: "{text}"')
    if not -(2**63) <= int(match.group(1)) < 2**63:
        raise CreateRefused(f'value "{text}" is out of range for type bigint')
