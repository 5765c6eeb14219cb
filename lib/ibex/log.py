"""Reading the IBEX server's recorded games (`<gameId>.log.json`, docs/protocol.md section 5).

Two formats exist: the 2023 logs hold `parameters` and `log` (every client frame that reached a phase handler, and
the phase timeouts); logs since December 2024 add `server-log` (every event the server sent, with its recipient).
`read_log` reads the envelope every game's log shares (a JSON object with `parameters` and `log`), types the
parameters, finds the game by its `game_type` (lib.games.game_for) and hands the decoded log to that game's data
part (lib.games.protocols.DataRules.read_log), which checks the rest (`checked_log` checks the `log` and
`server-log` arrays with the game's seats and phases) and returns the log its examples are made from. Anything
unusable raises LogError with one line naming the file and the field (`log[12].content.type`) or the JSON line.

The content of a client frame is kept as sent: humans and scripts sent strings, bare numbers and missing fields,
and whether the server counted them is decided later (by the game's data part), not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

try:  # parses logs about 2.5 times as fast as json; optional, json gives the same values
    import orjson
except ImportError:  # pragma: no cover - requirements.txt installs it
    orjson = None

from lib.games import UnknownGame, game_for, game_types
from lib.ibex.params import GameParams, ParamError, parse_parameters
from lib.util.text import display_path

MESSAGE, PHASE_TIMEOUT = "message", "phase-timeout"
# The local server (lib/localserver) marks what it records: its games are played by this project's agents
# or by scripts, never by the humans a training set is about. The real server writes no such key.
RECORDED_BY, LOCAL_SERVER_MARK = "recorded-by", "ibex-llm-agents local server"


class LogError(ValueError):
    """A file that is not a usable IBEX log; the message is one line: "path: problem"."""


@dataclass(frozen=True)
class IbexLog:
    source: str  # the path it was read from, for messages
    params: GameParams
    entries: list[dict[str, Any]]  # the `log` array, checked
    server_log: list[dict[str, Any]] | None  # the `server-log` array, checked; None in the 2023 format
    game_id: int | None  # from the clients' gameId, else the simulation_parent_id parameter
    played_by_agents: str | None = None  # why the game is known to be played by agents, not humans

    @property
    def game_type(self) -> str:
        return self.params.game_type


def _played_by_agents(data: dict[str, Any], params: GameParams) -> str | None:
    if data.get(RECORDED_BY) == LOCAL_SERVER_MARK:
        return "recorded by this project's local server"
    if params.agents_only:
        return "agents-only (parameter agents_only is true)"
    return None


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_log(path: str | Path) -> IbexLog:
    """Read and check one log file. Raises LogError("path: problem") for anything unusable."""
    path = Path(path)
    name = display_path(path)  # a file name that is not UTF-8 must not break the messages that name it
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LogError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise LogError(f"{name}: empty file, not an IBEX log")
    try:
        data = _loads(raw)
    except UnicodeDecodeError as exc:
        raise LogError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(exc.doc.rstrip()):
            raise LogError(f"{name}:{exc.lineno}: the JSON ends early (truncated file?): {exc.msg}") from None
        raise LogError(f"{name}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits, which Python refuses to read
        raise LogError(f"{name}: not a usable JSON file ({str(exc)[:200]})") from None
    return parse_log(data, name)


_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))  # digits -> "0", else "."
_LONG_RUN = b"0" * 19


def _may_hold_huge_integer(raw: bytes) -> bool:
    """Whether a JSON number in raw may lie beyond 64-bit integers, which orjson turns into a float (json keeps the
    int). Any run of 19 digits after a JSON delimiter counts: a false alarm only costs json's slower parse. Digit
    runs are found with bytes.translate and find, at C speed (a regex took most of the time orjson saves)."""
    runs = raw.translate(_DIGITS_AS_ZEROS)
    start = runs.find(_LONG_RUN)
    while start >= 0:
        i = start - 1
        if i >= 0 and raw[i] == 0x2D:  # a minus sign
            i -= 1
        while i >= 0 and raw[i] in b" \t\r\n":
            i -= 1
        if i < 0 or raw[i] in b":,[":
            return True
        end = runs.find(b".", start)
        if end < 0:
            return False
        start = runs.find(_LONG_RUN, end)
    return False


def _loads(raw: bytes) -> Any:
    """json.loads(raw), through orjson when it gives the same values. What orjson refuses (NaN, 1e400, a lone
    surrogate escape, a byte-order mark, UTF-16, broken files) goes to json, which accepts what it accepts and
    words the errors, and so does a file that may hold an integer beyond 64 bits (orjson would make it a float)."""
    if orjson is not None and not _may_hold_huge_integer(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


loads_json = _loads  # public: the study runner reads each of its games' logs back the same way


def parse_log(data: Any, source: str = "<log>") -> Any:
    """Check a decoded log (see read_log); `source` names it in errors. The log of its game's data part: it has
    `source`, `game_type` and `played_by_agents` (a voting game's is an IbexLog)."""
    if not isinstance(data, dict):
        raise LogError(f"{source}: not an IBEX log (expected a JSON object with 'parameters' and 'log', "
                       f"got {json_type(data)})")
    missing = [key for key in ("parameters", "log") if key not in data]
    if missing:
        raise LogError(f"{source}: not an IBEX log (no {' or '.join(repr(k) for k in missing)})")
    try:
        params = parse_parameters(data["parameters"], where="parameters")
        try:
            game = game_for(params.game_type)
        except UnknownGame:
            raise LogError(f"{source}: a {params.game_type!r} game; only {_names(game_types())} games can be "
                           "used") from None
        return game.data.read_log(data, params, source, _played_by_agents(data, params))
    except ParamError as exc:
        raise LogError(f"{source}: {exc}") from None


def _names(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def checked_log(data: dict[str, Any], params: GameParams, source: str, played_by_agents: str | None, *,
                seats: int, last_phase: int) -> IbexLog:
    """The `log` and `server-log` of a game with seats 1..`seats` and phases 0..`last_phase`, checked: every entry
    and event has the shape replaying relies on, and none lies beyond the game's rounds."""
    entries = data["log"]
    _check_entries(entries, source, seats, last_phase)
    server_log = data.get("server-log")
    if server_log is not None:
        _check_server_log(server_log, source, last_phase)
    _check_rounds(entries, server_log, params.round_count, source)
    return IbexLog(source, params, entries, server_log, _game_id(entries, params), played_by_agents)


def _check_rounds(entries: list[dict[str, Any]], server_log: list[dict[str, Any]] | None, round_count: int,
                  source: str) -> None:
    # The server records nothing after the last round; a later round means the parameters or the log are wrong
    # (and replaying up to it could take forever).
    for i, entry in enumerate(entries):
        if entry["round"] > round_count:
            raise _where(source, f"log[{i}].round", f"round {entry['round']} is beyond round_count {round_count}")
    for i, event in enumerate(server_log or ()):
        if event["meta"]["round"] > round_count:
            raise _where(source, f"server-log[{i}].meta.round",
                         f"round {event['meta']['round']} is beyond round_count {round_count}")


def _where(source: str, field: str, problem: str) -> LogError:
    return LogError(f"{source}: {field}: {problem}")


def _check_round_phase(item: dict[str, Any], field: str, source: str, last_phase: int) -> None:
    for key in ("round", "phase"):
        value = item.get(key)
        if not _is_int(value):
            raise _where(source, f"{field}.{key}", f"expected an integer, got {json_type(value)}")
    if not 0 <= item["phase"] <= last_phase:
        raise _where(source, f"{field}.phase", f"phase {item['phase']} does not exist (0..{last_phase})")
    if item["round"] < 0:
        raise _where(source, f"{field}.round", f"round {item['round']} is negative")


def _entry_ok(entry: Any, seats: int, last_phase: int) -> bool:
    """The common, well-formed case, checked fast (json gives exact dict/int/str types); else see _explain_entry."""
    try:
        phase, round_number, kind = entry["phase"], entry["round"], entry["type"]
        if type(phase) is not int or type(round_number) is not int or not 0 <= phase <= last_phase \
                or round_number < 0:
            return False
        if kind == PHASE_TIMEOUT:
            return True
        number = entry.get("number")
        return kind == MESSAGE and type(entry["content"]["type"]) is str and (
            number is None or type(number) is int and 1 <= number <= seats)
    except (KeyError, TypeError, AttributeError):
        return False


def _explain_entry(entry: Any, i: int, source: str, seats: int, last_phase: int) -> None:
    if not isinstance(entry, dict):
        raise _where(source, f"log[{i}]", f"expected an object, got {json_type(entry)}")
    kind = entry.get("type")
    if kind == MESSAGE:
        content = entry.get("content")
        if not isinstance(content, dict):
            raise _where(source, f"log[{i}].content", f"expected an object, got {json_type(content)}")
        if not isinstance(content.get("type"), str):
            raise _where(source, f"log[{i}].content.type", f"expected a string, got {json_type(content.get('type'))}")
        number = entry.get("number")
        if number is not None:  # frames sent before joining carry no seat
            if not _is_int(number):
                raise _where(source, f"log[{i}].number", f"expected an integer seat, got {json_type(number)}")
            if not 1 <= number <= seats:
                raise _where(source, f"log[{i}].number", f"seat {number} does not exist (1..{seats})")
    elif kind != PHASE_TIMEOUT:
        raise _where(source, f"log[{i}].type", f"expected 'message' or 'phase-timeout', got {kind!r}"[:200])
    _check_round_phase(entry, f"log[{i}]", source, last_phase)


def _check_entries(entries: Any, source: str, seats: int, last_phase: int) -> None:
    if not isinstance(entries, list):
        raise _where(source, "log", f"expected an array, got {json_type(entries)}")
    if all(map(_entry_ok, entries, repeat(seats), repeat(last_phase))):
        return
    for i, entry in enumerate(entries):
        if not _entry_ok(entry, seats, last_phase):
            _explain_entry(entry, i, source, seats, last_phase)


def _event_ok(event: Any, last_phase: int) -> bool:
    try:
        sent, meta = event["sent"], event["meta"]
        phase, round_number, recipient = meta["phase"], meta["round"], meta["recipient"]
        return (type(sent["type"]) is str and type(sent.get("data", _NO_DATA)) is dict
                and type(phase) is int and type(round_number) is int and 0 <= phase <= last_phase
                and round_number >= 0 and (type(recipient) is int or recipient == "all"))
    except (KeyError, TypeError, AttributeError):
        return False


_NO_DATA: dict[str, Any] = {}


def _explain_event(event: Any, i: int, source: str, last_phase: int) -> None:
    field = f"server-log[{i}]"
    if not isinstance(event, dict):
        raise _where(source, field, f"expected an object, got {json_type(event)}")
    sent, meta = event.get("sent"), event.get("meta")
    if not isinstance(sent, dict):
        raise _where(source, f"{field}.sent", f"expected an object, got {json_type(sent)}")
    if not isinstance(sent.get("type"), str):
        raise _where(source, f"{field}.sent.type", f"expected a string, got {json_type(sent.get('type'))}")
    if "data" in sent and not isinstance(sent["data"], dict):
        raise _where(source, f"{field}.sent.data", f"expected an object, got {json_type(sent['data'])}")
    if not isinstance(meta, dict):
        raise _where(source, f"{field}.meta", f"expected an object, got {json_type(meta)}")
    recipient = meta.get("recipient")
    if recipient != "all" and not _is_int(recipient):
        raise _where(source, f"{field}.meta.recipient",
                     f"expected \"all\" or a seat/role number, got {json_type(recipient)}")
    _check_round_phase(meta, f"{field}.meta", source, last_phase)


def _check_server_log(events: Any, source: str, last_phase: int) -> None:
    if not isinstance(events, list):
        raise _where(source, "server-log", f"expected an array, got {json_type(events)}")
    if all(map(_event_ok, events, repeat(last_phase))):  # the usual case, without a Python-level loop
        return
    for i, event in enumerate(events):
        if not _event_ok(event, last_phase):
            _explain_event(event, i, source, last_phase)


def _game_id(entries: list[dict[str, Any]], params: GameParams) -> int | None:
    for entry in entries:
        if entry.get("type") == MESSAGE and _is_int(entry["content"].get("gameId")):
            return entry["content"]["gameId"]
    parent = params.get("simulation_parent_id")
    return parent if _is_int(parent) else None


def server_frame(event: dict[str, Any]) -> dict[str, Any]:
    """A server-log record as the frame the client received: {"type":"event","eventType":...,"data":...}."""
    sent = event["sent"]
    return {"type": "event", "eventType": sent["type"], "data": sent.get("data", {})}
