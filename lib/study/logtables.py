"""The `games`, `rounds` and `seat_rounds` rows of a recorded game log, human or agent, whatever its game type.

The game type's outcomes module (lib.study.outcomes.game_modules) builds the rows; this module only reads the file,
picks the module and stores the rows, so the humans' rows and a study's rows have the same columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.study.outcomes import game_modules
from lib.study.store import ResultsStore

HUMANS = "humans"  # the arm name of recorded human games


class LogTableError(ValueError):
    """A log whose tables cannot be built; the message is one line naming the file."""


@dataclass
class LogTables:
    source: str
    game_type: str
    game_id: Any
    parameters: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    seat_rounds: list[dict[str, Any]] = field(default_factory=list)


def _game_id(data: dict[str, Any]) -> Any:
    for entry in data.get("log") or ():
        content = entry.get("content") if isinstance(entry, dict) else None
        if isinstance(content, dict) and "gameId" in content:
            return content["gameId"]
    return None


def tables_from_data(data: Any, source: str, sessions: Any = None) -> LogTables:
    """The rows of a decoded log; `sessions` (a lib.ibex.sessions.SessionsTable) supplies values a log lacks."""
    from lib.ibex.log import LogError
    from lib.ibex.params import ParamError, parse_parameters

    if not isinstance(data, dict) or not isinstance(data.get("parameters"), list):
        raise LogTableError(f"{source}: not an IBEX log (no 'parameters' list)")
    try:
        params = parse_parameters(data["parameters"], where="parameters")
    except ParamError as exc:
        raise LogTableError(f"{source}: {exc}") from None
    module = game_modules().get(params.game_type)
    if module is None:
        raise LogTableError(f"{source}: a {params.game_type!r} game has no outcome tables (the games with "
                            f"outcomes: {', '.join(game_modules())})")
    try:
        rounds, seats = module.tables_from_log(data, source, sessions)
    except LogError as exc:
        raise LogTableError(str(exc)) from None
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise LogTableError(f"{source}: cannot build outcome tables: {str(exc)[:200]}") from None
    return LogTables(source, params.game_type, _game_id(data), dict(params.values), rounds, seats)


def tables_from_log(path: str | Path, sessions: Any = None) -> LogTables:
    """The rows of the log file at `path` (a .log.json)."""
    from lib.ibex.log import loads_json  # orjson where it reads as json does: a study reads back every game's log

    path = Path(path)
    try:
        data = loads_json(path.read_bytes())
    except OSError as exc:
        raise LogTableError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise LogTableError(f"{path}: not valid JSON ({str(exc)[:200]})") from None
    return tables_from_data(data, str(path), sessions)


def record_tables(store: ResultsStore, tables: LogTables, index: int, arm: str = HUMANS,
                  server: str = "recorded") -> str:
    """Store one log's rows as game `index` of `arm` (one transaction); its game uid."""
    uid = store.begin_game(arm, index, seed=None, server=server, game_type=tables.game_type,
                           parameters=tables.parameters, values_source=tables.source)
    store.finish_game(uid, game_id=tables.game_id, rounds=tables.rounds, seat_rounds=tables.seat_rounds)
    return uid
