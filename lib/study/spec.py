"""The study file (TOML, read with the standard library's tomllib): its model, its loader, its canonical form.

Every problem is found before anything runs and reported as one line naming the file, the key and the problem
(`studies/x.toml: arms.llm.developer.endpoint: 'azure' is not in [endpoints] (have: openai)`). Paths in the file
are relative to the file's own folder. The format is documented in docs/studies.md.

The digest covers what decides a game's result (game, parameters, values, arms, endpoints, server, fast and strict
mode and the content of every file the study reads), not `concurrency`, `workers` or `limits`: raising a spending
cap or the number of games at once must not make a resumed study refuse its own finished games.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.games import DEFAULT_GAME, GAMES
from lib.games.protocols import DEFAULT_PROMPT, UnknownPromptVariant, check_prompt_variant
from lib.study.seats import groups_of, seat_roles

RULE_POLICIES = ("baseline", "fitted", "empirical")
VALUE_SOURCES = ("fresh", "sessions", "logs")
SERVERS = ("local", "real")
MAX_GAMES_PER_ARM = 1_000_000
MAX_CONCURRENCY = 1_000
MAX_WORKERS = 64
MAX_TEMPERATURE = 2.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # a study or arm name becomes a folder name and a CSV key

TOP_KEYS = ("name", "game", "games_per_arm", "parameters", "values", "arms", "endpoints", "server", "concurrency",
            "workers", "limits", "fast", "compare_with", "compare_sessions", "strict")
VALUES_KEYS = ("source", "seed", "table", "sessions", "logs")
ENDPOINT_KEYS = ("base_url_env", "api_key_env")
MODEL_KEYS = ("endpoint", "model", "temperature", "prompt")
LIMIT_KEYS = ("spend_usd", "max_fallback_share")


class StudyError(ValueError):
    """A study file that cannot be used; the message is one line: "file: key: problem"."""


@dataclass(frozen=True)
class ModelPolicy:
    endpoint: str
    model: str
    temperature: float = 1.0
    prompt: str = DEFAULT_PROMPT  # the game's prompt variant (lib.games.protocols.PromptRules), checked on loading


Policy = str | ModelPolicy  # one of RULE_POLICIES, or a model


@dataclass(frozen=True)
class Arm:
    name: str
    seats: dict[int, Policy]  # every seat of the game -> its policy
    written: dict[str, Any]  # the arm as the file gives it (groups and seat numbers), for the report


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url_env: str
    api_key_env: str = "OPENAI_API_KEY"


@dataclass(frozen=True)
class Values:
    source: str  # one of VALUE_SOURCES
    seed: int = 0
    table: Path | None = None  # sessions: the sessions table
    sessions: tuple[int, ...] = ()  # sessions: which sessions
    logs: tuple[Path, ...] = ()  # logs: human logs whose values are replayed


@dataclass(frozen=True)
class Limits:
    spend_usd: float | None = None  # no new game once the model spend reaches this
    max_fallback_share: float = 1.0  # the largest tolerated share of decisions a fallback made


@dataclass(frozen=True)
class GameSlot:
    """Game `index` of every arm: where its values come from and its seed (the same in every arm)."""

    index: int
    seed: int
    source: str  # "fresh", "session N" or a log's path
    replay: int  # which repetition of that session or log (0 for fresh values)


@dataclass(frozen=True)
class Study:
    path: Path
    name: str
    game: str
    games_per_arm: int
    parameters: dict[str, Any]  # flat, typed, complete (the server's defaults for the game with the file's changes)
    values: Values
    arms: tuple[Arm, ...]
    endpoints: dict[str, Endpoint]
    server: str = "local"
    concurrency: int = 1
    limits: Limits = field(default_factory=Limits)
    fast: bool = False
    compare_with: tuple[Path, ...] = ()
    parameters_like: Path | None = None
    canonical: str = ""  # see canonical_form
    digest: str = ""  # sha256 of canonical
    compare_sessions: Path | None = None  # the sessions table that holds the values of the compare_with logs
    strict: bool = False  # the local server's --strict: a game in which it refused a frame fails
    workers: int = 1  # processes that play the games (1: the runner's own); not in the digest, as concurrency

    def games_in_arm(self) -> int:
        """Games each arm plays: N, or N per named session or log."""
        if self.values.source == "sessions":
            return self.games_per_arm * len(self.values.sessions)
        if self.values.source == "logs":
            return self.games_per_arm * len(self.values.logs)
        return self.games_per_arm

    def slots(self) -> list[GameSlot]:
        """Every game index with its values source and seed. Sessions and logs take turns (game 0 replays the
        first, game 1 the second, ...), so a study cut short still covers each of them about equally."""
        out = []
        items: list[str] = (
            [f"session {s}" for s in self.values.sessions] if self.values.source == "sessions"
            else [str(p) for p in self.values.logs] if self.values.source == "logs" else ["fresh"])
        for k in range(self.games_in_arm()):
            replay = 0 if self.values.source == "fresh" else k // len(items)
            out.append(GameSlot(k, game_seed(self.values.seed, k), items[k % len(items)], replay))
        return out


def game_seed(seed: int, index: int) -> int:
    """The seed of game `index`: from the study's seed only, so game k of every arm (and of a resumed run) gets it."""
    digest = hashlib.sha256(f"ibex-study:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _fail(path: Path, key: str, problem: str) -> StudyError:
    return StudyError(f"{path}: {key}: {problem}"[:500])


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _unknown_keys(path: Path, where: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise _fail(path, f"{prefix}{key}", f"unknown key (allowed: {', '.join(allowed)})")


def _table(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, key, f"must be a table, got {_type_name(value)}")
    return value


def _int(path: Path, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, key, f"must be a whole number, got {_type_name(value)}")
    if not low <= value <= high:
        raise _fail(path, key, f"must be from {low:,} to {high:,}, got {value:,}"[:200])
    return value


def _number(path: Path, key: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, key, f"must be a number, got {_type_name(value)}")
    if value > high or value < low or (low_open and value == low):
        side = "above" if low_open else "at least"
        raise _fail(path, key, f"must be {side} {low:g} and at most {high:g}, got {value:g}")
    return float(value)


def _str(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, key, f"must be a non-empty string, got {_type_name(value)}")
    return value


def _file(path: Path, key: str, value: Any) -> Path:
    given = Path(_str(path, key, value))
    resolved = given if given.is_absolute() else path.parent / given
    if not resolved.is_file():
        raise _fail(path, key, f"no such file: {resolved}")
    return resolved


def _bool(path: Path, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, key, f"must be true or false, got {_type_name(value)}")
    return value


def load_study(path: str | Path) -> Study:
    """Read and check a study file; raises StudyError (one line) for anything wrong."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise StudyError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise StudyError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_study(data, path)


def parse_study(data: Mapping[str, Any], path: Path) -> Study:
    """The study a decoded TOML document describes; `path` names it in errors and anchors its relative paths."""
    _unknown_keys(path, "", data, TOP_KEYS)
    for key in ("name", "game", "games_per_arm", "arms"):
        if key not in data:
            raise _fail(path, key, "missing (required)")
    name = _str(path, "name", data["name"])
    if not _NAME.match(name):
        raise _fail(path, "name", f"{name!r} must be letters, digits, '.', '_' or '-' (it names the study's "
                                  "folder), at most 64, starting with a letter or digit")
    game = data["game"]
    if game not in GAMES:
        raise _fail(path, "game", f"{game!r} is not a game type ({', '.join(GAMES)})"[:200])
    games_per_arm = _int(path, "games_per_arm", data["games_per_arm"], 1, MAX_GAMES_PER_ARM)
    parameters, like = _parameters(path, game, data.get("parameters", {}))
    values = _values(path, game, parameters, data.get("values", {"source": "fresh"}))
    endpoints = _endpoints(path, data.get("endpoints", {}))
    arms = _arms(path, game, parameters, _table(path, "arms", data["arms"]), endpoints)
    server = data.get("server", "local")
    if server not in SERVERS:
        raise _fail(path, "server", f"{server!r} must be one of {', '.join(SERVERS)}"[:200])
    fast = _bool(path, "fast", data.get("fast", False))
    if fast and server != "local":
        raise _fail(path, "fast", "fast mode exists only on the local server (the real server keeps its timers)")
    strict = _bool(path, "strict", data.get("strict", False))
    if strict and server != "local":
        raise _fail(path, "strict", "strict mode exists only on the local server (the real server takes what it "
                                    "takes)")
    concurrency = _int(path, "concurrency", data.get("concurrency", 1), 1, MAX_CONCURRENCY)
    workers = _int(path, "workers", data.get("workers", 1), 1, MAX_WORKERS)
    if workers > 1 and server != "local":
        raise _fail(path, "workers", "worker processes play on the local server only (a real server's games wait on "
                                     "the network, not on this machine's cores)")
    limits = _limits(path, data.get("limits", {}))
    compare = data.get("compare_with", [])
    if not isinstance(compare, list):
        raise _fail(path, "compare_with", f"must be an array of log paths, got {_type_name(compare)}")
    compare_with = tuple(_file(path, f"compare_with[{i}]", p) for i, p in enumerate(compare))
    for i, log in enumerate(compare_with):
        _check_log_game(path, f"compare_with[{i}]", log, game)
    for i, log in enumerate(values.logs):
        _check_log_game(path, f"values.logs[{i}]", log, game)
    compare_sessions = None
    if "compare_sessions" in data:
        from lib.ibex.sessions import SessionsError, load_sessions

        compare_sessions = _file(path, "compare_sessions", data["compare_sessions"])
        try:
            load_sessions(compare_sessions)
        except SessionsError as exc:
            raise _fail(path, "compare_sessions", str(exc)) from None
    if server == "real" and not _creatable(game):
        raise _fail(path, "server", f"the real server cannot create a {game} game (create-for-llm does not set its "
                                    "parameters): play it on the local server"[:300])
    if server == "real" and values.source == "fresh":
        raise _fail(path, "values.source", "a real server reads values only from its own sessions table: use "
                                           "source = 'sessions' with a copy of that table")
    study = Study(path, name, game, games_per_arm, parameters, values, arms, endpoints, server, concurrency, limits,
                  fast, compare_with, like, compare_sessions=compare_sessions, strict=strict, workers=workers)
    canonical = canonical_form(study)
    return Study(**{**study.__dict__, "canonical": canonical,
                    "digest": hashlib.sha256(canonical.encode()).hexdigest()})


def _creatable(game: str) -> bool:
    from lib.agents.realserver import creatable

    return creatable(game)


def _check_log_game(path: Path, key: str, log: Path, game: str) -> None:
    """A log the study reads is an IBEX log of the study's game type."""
    try:
        data = json.loads(log.read_bytes())
    except (OSError, ValueError) as exc:
        raise _fail(path, key, f"{log}: not a readable JSON log ({str(exc)[:120]})") from None
    rows = data.get("parameters") if isinstance(data, dict) else None
    kinds = [r.get("value") for r in rows or () if isinstance(r, dict) and r.get("key") == "game_type"]
    if not isinstance(rows, list):
        raise _fail(path, key, f"{log}: no 'parameters' list (not an IBEX log)")
    if (kinds[0] if kinds else DEFAULT_GAME) != game:  # a log without game_type is the server's default game
        raise _fail(path, key, f"{log} is a {kinds[0]!r} game, the study's game is {game!r}"[:300])


def _parameters(path: Path, game: str, table: Any) -> tuple[dict[str, Any], Path | None]:
    """The study's flat parameters typed as create-for-llm will store them (the IBEX games), or by the game's own
    rules for a game create-for-llm cannot set (one only the local server plays, such as a test's)."""
    from lib.agents.realserver import PlayError, creatable, create_payload
    from lib.ibex.params import ParamError, parse_parameters

    ibex = creatable(game)
    flat = dict(_table(path, "parameters", table))
    like = None
    source: dict[str, Any] | list[Any] = flat
    if "like" in flat:
        like = _file(path, "parameters.like", flat.pop("like"))
        try:
            recorded = json.loads(like.read_bytes())
        except (OSError, ValueError) as exc:
            raise _fail(path, "parameters.like", f"{like}: not a readable JSON log ({str(exc)[:120]})") from None
        rows = recorded.get("parameters") if isinstance(recorded, dict) else None
        if not isinstance(rows, list):
            raise _fail(path, "parameters.like", f"{like}: no 'parameters' list (not an IBEX log)")
        try:
            base = (create_payload(rows, f"{path}: parameters.like")[1] if ibex
                    else parse_parameters(rows, f"{path}: parameters.like"))
        except (PlayError, ParamError) as exc:
            raise StudyError(str(exc)[:500]) from None
        source = {**base.values, **flat}
    if "game_type" in flat and flat["game_type"] != game:
        raise _fail(path, "parameters.game_type", f"{flat['game_type']!r} disagrees with game = {game!r}"[:200])
    if like is not None and source.get("game_type") != game:
        raise _fail(path, "parameters.like", f"{like} is a {source.get('game_type')!r} game, the study's game is "
                                             f"{game!r}"[:200])
    if "title" in flat:
        raise _fail(path, "parameters.title", "a study names its games itself")
    try:
        if ibex:
            _payload, params = create_payload(source, f"{path}: parameters", game_type=game)
        else:
            params = GAMES[game].rules.parameters({**source, "game_type": game}, f"{path}: parameters")
    except (PlayError, ParamError) as exc:
        raise StudyError(str(exc)[:500]) from None
    return dict(params.values), like


def _values(path: Path, game: str, parameters: dict[str, Any], table: Any) -> Values:
    table = _table(path, "values", table)
    _unknown_keys(path, "values", table, VALUES_KEYS)
    source = table.get("source", "fresh")
    if source not in VALUE_SOURCES:
        raise _fail(path, "values.source", f"{source!r} must be one of {', '.join(VALUE_SOURCES)}"[:200])
    seed = _int(path, "values.seed", table.get("seed", 0), 0, 2**63 - 1)
    wrong = {"fresh": ("table", "sessions", "logs"), "sessions": ("logs",), "logs": ("table", "sessions")}[source]
    for key in wrong:
        if key in table:
            raise _fail(path, f"values.{key}", f"not used with source = {source!r}")
    if source == "fresh":
        return Values("fresh", seed)
    if source == "sessions":
        if "table" not in table or "sessions" not in table:
            raise _fail(path, "values.table" if "table" not in table else "values.sessions",
                        "missing (source = 'sessions' needs a table and the sessions to take)")
        sessions_path = _file(path, "values.table", table["table"])
        chosen = table["sessions"]
        if not isinstance(chosen, list) or not chosen:
            raise _fail(path, "values.sessions", "must be a non-empty array of session ids")
        ids = tuple(_int(path, f"values.sessions[{i}]", s, 0, 2**31) for i, s in enumerate(chosen))
        _check_sessions(path, sessions_path, ids, game, parameters)
        return Values("sessions", seed, table=sessions_path, sessions=ids)
    logs = table.get("logs")
    if not isinstance(logs, list) or not logs:
        raise _fail(path, "values.logs", "must be a non-empty array of human log paths (source = 'logs')")
    return Values("logs", seed, logs=tuple(_file(path, f"values.logs[{i}]", p) for i, p in enumerate(logs)))


def _check_sessions(path: Path, table_path: Path, ids: tuple[int, ...], game: str,
                    parameters: dict[str, Any]) -> None:
    """Every chosen session has values for every round the parameters play (else a game would fail mid-way)."""
    from lib.ibex.params import ROLE_SPECULATOR, GameParams
    from lib.ibex.sessions import SessionsError, load_sessions

    try:
        table = load_sessions(table_path)
    except SessionsError as exc:
        raise _fail(path, "values.table", str(exc)) from None
    params = GameParams(parameters)
    landholders = [n for n, role in seat_roles(game, parameters).items() if role != ROLE_SPECULATOR]
    table_seats = [n for n in landholders if n <= 6]  # a sessions table's values: the developer and five owners
    for i, session in enumerate(ids):
        if session not in table.sessions:
            raise _fail(path, f"values.sessions[{i}]", f"session {session} is not in {table_path}")
        for r in params.rounds():
            if any(table.values(session, r, seat) is None for seat in table_seats):
                raise _fail(path, f"values.sessions[{i}]", f"session {session} of {table_path} has no values for "
                                                           f"round {r} (the parameters play rounds "
                                                           f"{params.rounds()[0]}..{params.round_count})")


def _endpoints(path: Path, table: Any) -> dict[str, Endpoint]:
    out = {}
    for name, entry in _table(path, "endpoints", table).items():
        key = f"endpoints.{name}"
        entry = _table(path, key, entry)
        for secret in ("api_key", "key", "base_url", "url", "token"):
            if secret in entry:
                raise _fail(path, f"{key}.{secret}", "addresses and keys never go in a study file: name the "
                                                     "environment variables that hold them (base_url_env, "
                                                     "api_key_env)")
        _unknown_keys(path, key, entry, ENDPOINT_KEYS)
        if "base_url_env" not in entry:
            raise _fail(path, f"{key}.base_url_env", "missing (the environment variable holding the base URL)")
        names = {}
        for field_name in ENDPOINT_KEYS:
            if field_name in entry:
                value = _str(path, f"{key}.{field_name}", entry[field_name])
                if not _ENV_NAME.match(value):
                    raise _fail(path, f"{key}.{field_name}", "must be an environment variable's name (letters, "
                                                             "digits, '_'), not its value")
                names[field_name] = value
        out[name] = Endpoint(name, **names)
    return out


def _policy(path: Path, key: str, value: Any, endpoints: dict[str, Endpoint], game: str) -> Policy:
    if isinstance(value, str):
        if value not in RULE_POLICIES:
            raise _fail(path, key, f"{value!r} is not a policy ({', '.join(RULE_POLICIES)}, or a model table "
                                   "{endpoint, model, temperature, prompt})"[:300])
        return value
    entry = _table(path, key, value)
    _unknown_keys(path, key, entry, MODEL_KEYS)
    if "endpoint" not in entry:
        raise _fail(path, f"{key}.endpoint", "missing: a model needs the name of an endpoint from [endpoints]")
    endpoint = _str(path, f"{key}.endpoint", entry["endpoint"])
    if endpoint not in endpoints:
        have = ", ".join(sorted(endpoints)) or "none defined"
        raise _fail(path, f"{key}.endpoint", f"{endpoint!r} is not in [endpoints] (have: {have})"[:300])
    if "model" not in entry:
        raise _fail(path, f"{key}.model", "missing (the model's name)")
    prompt = _str(path, f"{key}.prompt", entry.get("prompt", DEFAULT_PROMPT))
    try:
        check_prompt_variant(GAMES[game], prompt)
    except UnknownPromptVariant as exc:
        raise _fail(path, f"{key}.prompt", str(exc)) from None
    return ModelPolicy(endpoint, _str(path, f"{key}.model", entry["model"]),
                       _number(path, f"{key}.temperature", entry.get("temperature", 1.0), 0.0, MAX_TEMPERATURE),
                       prompt)


def _arms(path: Path, game: str, parameters: dict[str, Any], table: dict[str, Any],
          endpoints: dict[str, Endpoint]) -> tuple[Arm, ...]:
    if not table:
        raise _fail(path, "arms", "no arm (add one [arms.NAME] table)")
    groups = groups_of(game, parameters)
    seats = sorted(seat_roles(game, parameters))
    arms = []
    for name, entry in table.items():
        key = f"arms.{name}"
        if not _NAME.match(name):
            raise _fail(path, key, "an arm's name must be letters, digits, '.', '_' or '-' (at most 64)")
        entry = _table(path, key, entry)
        chosen: dict[int, Policy] = {}
        by_seat: dict[int, Policy] = {}
        for who, value in entry.items():
            here = f"{key}.{who}"
            if who.isdigit():
                number = int(who)
                if number not in seats:
                    raise _fail(path, here, f"seat {number} does not exist in a {game} game (seats "
                                            f"{seats[0]}..{seats[-1]})")
                by_seat[number] = _policy(path, here, value, endpoints, game)
            elif who in groups:
                policy = _policy(path, here, value, endpoints, game)
                chosen.update({n: policy for n in groups[who]})
            else:
                raise _fail(path, here, f"{who!r} is not a seat group of a {game} game ({', '.join(groups)}, or a "
                                        "seat number)"[:300])
        chosen.update(by_seat)  # a seat number is more specific than its group
        missing = [n for n in seats if n not in chosen]
        if missing:
            raise _fail(path, key, f"seat(s) {', '.join(map(str, missing))} have no policy (give their group or "
                                   "their numbers)")
        arms.append(Arm(name, dict(sorted(chosen.items())), dict(entry)))
    return tuple(arms)


def _limits(path: Path, table: Any) -> Limits:
    table = _table(path, "limits", table)
    _unknown_keys(path, "limits", table, LIMIT_KEYS)
    spend = table.get("spend_usd")
    if spend is not None:
        spend = _number(path, "limits.spend_usd", spend, 0.0, 1e9, low_open=True)
    share = _number(path, "limits.max_fallback_share", table.get("max_fallback_share", 1.0), 0.0, 1.0)
    return Limits(spend, share)


def _policy_form(policy: Policy) -> Any:
    return policy if isinstance(policy, str) else dict(policy.__dict__)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def canonical_form(study: Study) -> str:
    """The study's meaning as one JSON text: defaults filled in, seats resolved, paths replaced by the content
    digests of their files (moving a file changes nothing, editing it does). Concurrency, workers and limits are
    left out (see the module's docstring)."""
    values: dict[str, Any] = {"source": study.values.source, "seed": study.values.seed}
    if study.values.source == "sessions":
        assert study.values.table is not None
        values.update(table=_file_digest(study.values.table), sessions=list(study.values.sessions))
    elif study.values.source == "logs":
        values["logs"] = [_file_digest(p) for p in study.values.logs]
    form = {
        "name": study.name, "game": study.game, "games_per_arm": study.games_per_arm,
        "parameters": dict(sorted(study.parameters.items())), "values": values,
        "arms": {arm.name: {str(n): _policy_form(p) for n, p in arm.seats.items()} for arm in study.arms},
        "endpoints": {name: dict(e.__dict__) for name, e in sorted(study.endpoints.items())},
        "server": study.server, "fast": study.fast,
        "compare_with": [_file_digest(p) for p in study.compare_with],
    }
    if study.compare_sessions is not None:  # only when given, so the digests of older study files stay as they were
        form["compare_sessions"] = _file_digest(study.compare_sessions)
    if study.strict:  # likewise: what the server takes decides the games, but older files never set it
        form["strict"] = True
    return json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
