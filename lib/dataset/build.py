"""IBEX logs -> chat fine-tuning examples: one example per decision a human actually made, for every game.

Each log is read by lib.ibex.log (the envelope every game shares: the parameters, the game_type) and handed to its
game's data part (lib.games.protocols.DataRules), found in the registry by its game_type: the game replays it and
makes the examples, with the prompts the agents are shown at play time and each example's state line for the
sidecar (lib.dataset.examples.GameResult). Nothing here knows a game.

`build_dataset` streams the files one at a time (in worker processes, whose results are taken in input order, so
the output is the same for any number of them): each example is token-counted and checked (lib.dataset.ftcheck) as
it is made, each process appends its games' lines to its own spool file, and only their place and numbers reach the
builder; the split by game (a copy of each game's bytes to its side, and of its examples' states to that side's
state sidecar, lib.dataset.sidecar), the files' check reports (put together from the examples' checks) and the
report come at the end, and the output files (the two sets, their state sidecars and the report) replace the old
ones only when everything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import secrets
import signal
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.dataset import ftcheck
from lib.dataset.examples import SAMPLES_PER_REASON, UNKNOWN, GameResult, Sink
from lib.dataset.sidecar import header, sidecar_path
from lib.games import DEFAULT_GAME, game_for
from lib.ibex.log import LogError, read_log
from lib.ibex.sessions import SessionsTable
from lib.util.text import display_path, printable

TRAINING_FILE, VALIDATION_FILE, REPORT_FILE = "training_set.jsonl", "validation_set.jsonl", "dataset_report.json"


# ---------------------------------------------------------------------------------------------------------------
# Many files -> training/validation sets and a report


class UsageError(ValueError):
    """A bad option value (exit code 2)."""


def find_logs(inputs: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """The log files named by `inputs` (files, or folders searched for *.log.json), and one error per bad path."""
    found: list[Path] = []
    errors: list[str] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*.log.json") if p.is_file())
            if not candidates:
                errors.append(f"{display_path(path)}: no *.log.json files in this folder")
        elif path.is_file():
            candidates = [path]
        else:
            errors.append(f"{display_path(path)}: no such file or folder")
            candidates = []
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found, errors


@dataclass
class _FileOutcome:
    source: str
    error: str | None = None
    result: GameResult | None = None  # its lines are in a spool file by then, at `spooled`
    spooled: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # spool number, offset and length of the lines, of
    # the states


class _Spool:
    """The file one process appends the JSONL lines of its games to. The lines stay in the process that made them
    (only their place goes back to the builder), and the builder copies each game's bytes to its output file."""

    def __init__(self, number: int, paths: tuple[Path, Path]) -> None:
        self.number, self.size, self.states_size = number, 0, 0
        self.start = self.states_start = 0  # where the game being built began
        self.file, self.states = paths[0].open("ab"), paths[1].open("ab")  # lines; the sidecar's state lines

    def begin(self) -> None:
        """A new game starts here. What a game that then fails wrote stays unused, its place not handed on."""
        self.start, self.states_start = self.size, self.states_size

    def write(self, lines: list[str], states: list[str]) -> None:
        blob = "".join(line + "\n" for line in lines).encode("utf-8")
        self.file.write(blob)
        self.size += len(blob)
        blob = "".join(line + "\n" for line in states).encode("utf-8")
        self.states.write(blob)
        self.states_size += len(blob)

    def put(self, result: GameResult) -> tuple[int, int, int, int, int]:
        """The game's last lines; its place in the spools: (spool number, offset and length of its lines, of its
        examples' states)."""
        self.write(result.lines, result.states)
        result.lines, result.states = [], []
        # On disk before the builder reads them: a worker may be ended without closing the files.
        self.file.flush()
        self.states.flush()
        return (self.number, self.start, self.size - self.start, self.states_start,
                self.states_size - self.states_start)


def _process(path: Path, sessions: SessionsTable | None, include_chat: bool, spool: _Spool) -> _FileOutcome:
    spool.begin()
    outcome = _build(path, sessions, include_chat, spool.write)
    if outcome.result is not None:
        # Outside _build's error handling: a spool that cannot be written (a full disk) ends the run, with the
        # previous output files left as they were; it is not this log's fault.
        outcome.spooled = spool.put(outcome.result)
    return outcome


def _build(path: Path, sessions: SessionsTable | None, include_chat: bool, sink: Sink | None = None) -> _FileOutcome:
    name = display_path(path)
    try:
        log = read_log(path)
        return _FileOutcome(name, result=game_for(log.game_type).data.examples(
            log, sessions=sessions, include_chat=include_chat, sink=sink))
    except OSError:  # writing to the spool (a full disk): not this log's fault, and the run cannot go on
        raise
    except LogError as exc:
        return _FileOutcome(name, error=printable(str(exc)))
    except RecursionError:
        return _FileOutcome(name, error=f"{name}: nested too deeply to be an IBEX log")
    except Exception as exc:  # a bug, not the user's mistake: name it, and go on with the other files
        return _FileOutcome(name, error=printable(f"{name}: internal error while building examples "
                                                  f"({type(exc).__name__}: {exc}); please report it"))


# Worker processes get the options once, through the pool initializer, and each takes its own spool.
_WORKER: tuple[SessionsTable | None, bool, _Spool | None] = (None, False, None)


def _init_worker(sessions: SessionsTable | None, include_chat: bool, spools: Any) -> None:
    global _WORKER
    # The pool ends its workers with SIGTERM: the builder's own handler (constructDataset.py) is not theirs.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    number, paths = spools.get()
    _WORKER = (sessions, include_chat, _Spool(number, paths))


def _process_in_worker(path: Path) -> _FileOutcome:
    sessions, include_chat, spool = _WORKER
    assert spool is not None
    return _process(path, sessions, include_chat, spool)


MAX_DEFAULT_WORKERS = 4
FILES_PER_WORKER = 4  # fewer files than this per process, and starting the processes costs more than it saves


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()  # not on Windows: one process there


def default_workers() -> int:
    """The CPUs this process may use, at most MAX_DEFAULT_WORKERS."""
    if not _can_fork():
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cpus))


def _processes(n_files: int, workers: int) -> int:
    """How many processes build examples: 1 means the builder itself, no workers."""
    return max(1, min(workers, n_files // FILES_PER_WORKER)) if _can_fork() else 1


def _outcomes(paths: list[Path], sessions: SessionsTable | None, include_chat: bool,
              spool_paths: list[tuple[Path, Path]]) -> Iterator[_FileOutcome]:
    """Each file's outcome, in input order (so the output never depends on the number of workers), from one
    process per spool file."""
    if len(spool_paths) == 1:
        spool = _Spool(0, spool_paths[0])
        for path in paths:
            yield _process(path, sessions, include_chat, spool)
        return
    ftcheck.load_tokenizer()  # once, before forking, so workers share it
    context = multiprocessing.get_context("fork")
    spools = context.SimpleQueue()
    for numbered in enumerate(spool_paths):
        spools.put(numbered)
    with context.Pool(len(spool_paths), initializer=_init_worker,
                      initargs=(sessions, include_chat, spools)) as pool:
        yield from pool.imap(_process_in_worker, paths, chunksize=2)


def split_games(keys: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The games that go to validation: round(n x fraction) of them (at least one when there are two or more
    games and fraction > 0, never all), chosen by a seeded hash of the game key, so a game's side does not depend
    on the order of the files, and mostly stays put when games are added."""
    keys = sorted(set(keys))
    if fraction <= 0 or len(keys) < 2:
        return set()
    n_validation = min(len(keys) - 1, max(1, int(len(keys) * fraction + 0.5)))
    ranked = sorted(keys, key=lambda k: hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=16).digest())
    return set(ranked[:n_validation])


@dataclass
class BuildOptions:
    inputs: list[Path]
    output_dir: Path
    sessions: SessionsTable | None = None
    include_chat: bool = False
    validation_fraction: float = 0.2
    seed: int = 0
    model: str | None = None
    workers: int = 1


@dataclass
class BuildResult:
    report: dict[str, Any]
    errors: list[str]  # one line per unusable input
    n_examples: int
    checks_ok: bool
    outputs: dict[str, Path]


class _Tally:
    """The report's numbers, accumulated file by file."""

    def __init__(self) -> None:
        self.per_game: dict[str, dict[str, Any]] = {}
        self.per_role: Counter[str] = Counter()
        self.per_action: Counter[str] = Counter()
        self.per_role_action: dict[str, Counter[str]] = {}
        self.values: Counter[str] = Counter()
        self.skipped: dict[str, Counter[str]] = {}
        self.samples: dict[str, list[str]] = {}
        self.chat_not_included = 0
        self.files: list[dict[str, Any]] = []
        self.by_agents: list[tuple[str, str]] = []  # (file, why) of games known to be played by agents
        self.unknown_values: list[tuple[str, int]] = []  # (file, examples) of files with unknown private values

    def add(self, result: GameResult, game_key: str) -> None:
        roles: Counter[str] = Counter()
        actions: Counter[str] = Counter()
        values: Counter[str] = Counter()
        for _seat, role, action, values_source in result.meta:
            roles[role] += 1
            actions[action] += 1
            values[values_source] += 1
            self.per_role_action.setdefault(role, Counter())[action] += 1
        self.per_role.update(roles)
        self.per_action.update(actions)
        self.values.update(values)
        for reason, by_action in result.skipped.items():
            self.skipped.setdefault(reason, Counter()).update(by_action)
            samples = self.samples.setdefault(reason, [])
            samples.extend(result.samples.get(reason, [])[:SAMPLES_PER_REASON - len(samples)])
        self.chat_not_included += result.chat_not_included
        game = self.per_game.setdefault(game_key, {"files": [], "examples": 0, "by_role": Counter(),
                                                   "by_action": Counter(), "values": Counter()})
        game["files"].append(result.source)
        game["examples"] += len(result.meta)
        game["by_role"].update(roles)
        game["by_action"].update(actions)
        game["values"].update(values)
        if result.played_by_agents:
            self.by_agents.append((result.source, result.played_by_agents))
        if values[UNKNOWN]:
            self.unknown_values.append((result.source, values[UNKNOWN]))
        self.files.append({
            "file": result.source, "game": game_key, "format": result.log_format, "examples": len(result.meta),
            "private_values": _counter(values), "played_by_agents": result.played_by_agents,
            "values_by_round": {str(r): s for r, s in sorted(result.values_by_round.items())},
            "skipped": {reason: sum(c.values()) for reason, c in result.skipped.items()},
            "notes": result.notes,
            # The default game's files do not name it (as before other games existed).
            **({"game_type": result.game_type} if result.game_type != DEFAULT_GAME else {}),
        })


def _tmp_in(directory: Path, name: str, temps: list[Path]) -> Path:
    """A new empty file next to the final one (same file system, so os.replace is atomic), created with the
    permissions the umask gives ordinary files (mkstemp's 0600 would survive the rename). It goes into `temps` as
    soon as it exists, so that an interruption at any moment leaves it to the caller's clean-up."""
    for _ in range(100):
        path = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            path.open("xb").close()
        except FileExistsError:
            continue
        temps.append(path)
        return path
    raise OSError(f"{directory}: cannot create a temporary file")


_TEMP_NAME = re.compile(r"\.(examples|states|training_set|validation_set|training_state|validation_state|"
                        r"dataset_report|(?:training|validation)_set\.jsonl\.state)\.(\d+)\.[0-9a-f]{8}\.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process, or no such number: not ours to judge
    return True


def _remove_stale_temps(out: Path) -> None:
    """Remove the temporary files a build killed outright (SIGKILL, out of memory) left in the output folder: no
    clean-up of its own ran. Only this builder's names, and only those of processes that no longer run, so that
    a build still running in the same folder keeps its files."""
    try:
        entries = list(out.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match and not _alive(int(match.group(2))):
            with contextlib.suppress(OSError):
                entry.unlink()


def build_dataset(options: BuildOptions, *, progress: Callable[[int, int], None] | None = None,
                  on_error: Callable[[str], None] | None = None) -> BuildResult:
    """Read every log, write the training and validation sets and the report into options.output_dir.

    The old output files are replaced only at the end, all three together, so an interrupted or failed run leaves
    them as they were. `on_error` gets one line per unusable input as soon as it is found.
    """
    model = options.model or ftcheck.DEFAULT_MODEL
    if not 0 <= options.validation_fraction < 1:
        raise UsageError(f"--validation-fraction must be at least 0 and below 1, got {options.validation_fraction}")
    paths, errors = find_logs(options.inputs)
    for error in errors:
        if on_error:
            on_error(error)
    out = options.output_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{display_path(out)}: cannot create the output folder ({exc.strerror or exc})") from None
    _remove_stale_temps(out)
    temps: list[Path] = []
    tally = _Tally()
    started = time.monotonic()
    try:
        spool_paths = [(_tmp_in(out, "examples", temps), _tmp_in(out, "states", temps))
                       for _ in range(_processes(len(paths), options.workers))]
        # Per usable file: game key, where its lines are in the spools, its examples' tokens and the checks of
        # its lines (small: a few numbers per example).
        games: list[tuple[str, tuple[int, int, int, int, int], array[int], ftcheck.LinesCheck, str]] = []
        for done, outcome in enumerate(_outcomes(paths, options.sessions, options.include_chat, spool_paths), 1):
            if outcome.error is not None:
                errors.append(outcome.error)
                if on_error:
                    on_error(outcome.error)
            elif outcome.result is not None:
                result = outcome.result
                key = str(result.game_id)
                tally.add(result, key)
                games.append((key, outcome.spooled, result.tokens, result.check, result.game_type))
            if progress:
                progress(done, len(paths))
        timings = {"read_build_and_check_examples": time.monotonic() - started}
        validation_games = split_games((k for k, spooled, *_ in games if spooled[2]), options.validation_fraction,
                                       options.seed)
        train_path, val_path = _tmp_in(out, "training_set", temps), _tmp_in(out, "validation_set", temps)
        state_bodies = {"training": _tmp_in(out, "training_state", temps),
                        "validation": _tmp_in(out, "validation_state", temps)}
        digests = {"training": hashlib.sha256(), "validation": hashlib.sha256()}  # the sidecars name their set's
        state_digests = {"training": hashlib.sha256(), "validation": hashlib.sha256()}  # and their own lines'
        counts = {"training": 0, "validation": 0}
        tokens = {"training": array("l"), "validation": array("l")}
        checked: dict[str, list[ftcheck.LinesCheck]] = {"training": [], "validation": []}
        game_types: dict[str, set[str]] = {"training": set(), "validation": set()}  # the sidecars' headers name them
        with contextlib.ExitStack() as stack:
            spools = [stack.enter_context(lines.open("rb")) for lines, _ in spool_paths]
            state_spools = [stack.enter_context(states.open("rb")) for _, states in spool_paths]
            train, val = stack.enter_context(train_path.open("wb")), stack.enter_context(val_path.open("wb"))
            state_files = {side: stack.enter_context(path.open("wb")) for side, path in state_bodies.items()}
            for key, (number, offset, length, state_offset, state_length), file_tokens, file_check, kind in games:
                side = "validation" if key in validation_games else "training"
                if len(file_tokens):
                    game_types[side].add(kind)
                spools[number].seek(offset)
                blob = spools[number].read(length)
                (val if side == "validation" else train).write(blob)
                digests[side].update(blob)
                state_spools[number].seek(state_offset)
                blob = state_spools[number].read(state_length)
                state_files[side].write(blob)
                state_digests[side].update(blob)
                counts[side] += len(file_tokens)
                tokens[side].extend(file_tokens)
                checked[side].append(file_check)
        for key, game in tally.per_game.items():
            game["split"] = "validation" if key in validation_games else "training"
        n_examples = counts["training"] + counts["validation"]
        timings["split_and_write"] = time.monotonic() - started - sum(timings.values())
        # The files are the games' lines in this order, so their reports are the games' checks put together.
        train_check = ftcheck.report_of(checked["training"], source=display_path(out / TRAINING_FILE), model=model)
        val_check = ftcheck.report_of(checked["validation"], source=display_path(out / VALIDATION_FILE), model=model,
                                      min_examples=1) if counts["validation"] else None
        shared = ftcheck.shared_examples(train_check, val_check) if val_check is not None else 0
        checks_ok = train_check.ok and (val_check is None or val_check.ok) and shared == 0
        timings["check_reports"] = time.monotonic() - started - sum(timings.values())
        report = _report(options, model, paths, errors, tally, counts, tokens, train_check, val_check, shared,
                         validation_games, timings)
        report_path = _tmp_in(out, "dataset_report", temps)
        # printable: whatever text from a log or a path the report quotes, it is written (lib.util.text).
        report_path.write_text(printable(json.dumps(report, indent=1, ensure_ascii=False)) + "\n",
                               encoding="utf-8")
        outputs = {"training": out / TRAINING_FILE, "validation": out / VALIDATION_FILE, "report": out / REPORT_FILE,
                   "training_state": sidecar_path(out / TRAINING_FILE),
                   "validation_state": sidecar_path(out / VALIDATION_FILE)}
        states = {side: _sidecar(out, state_bodies[side], outputs[side].name, counts[side], digests[side], temps,
                                 game_types[side], state_digests[side])
                  for side in ("training", "validation")}
        if n_examples:  # a run that produced nothing leaves the previous files alone
            os.replace(train_path, outputs["training"])
            os.replace(states["training"], outputs["training_state"])
            if counts["validation"]:
                os.replace(val_path, outputs["validation"])
                os.replace(states["validation"], outputs["validation_state"])
            else:
                # A validation file left from an earlier run would no longer match the training set.
                outputs["validation"].unlink(missing_ok=True)
                outputs["validation_state"].unlink(missing_ok=True)
            os.replace(report_path, outputs["report"])
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return BuildResult(report, errors, n_examples, checks_ok, outputs)


def _sidecar(out: Path, body: Path, set_name: str, examples: int, digest: Any, temps: list[Path],
             game_types: set[str], states_digest: Any) -> Path:
    """A set's state sidecar (lib.dataset.sidecar), complete in a temporary file: its header, then the states."""
    path = _tmp_in(out, set_name + ".state", temps)
    with path.open("wb") as f, body.open("rb") as states:
        f.write((json.dumps(header(set_name, examples, digest.hexdigest(), game_types,
                                   states_sha256=states_digest.hexdigest())) + "\n").encode("utf-8"))
        while chunk := states.read(1 << 20):
            f.write(chunk)
    return path


def _counter(c: Counter[str]) -> dict[str, int]:
    return dict(sorted(c.items()))


def _report(options: BuildOptions, model: str, paths: list[Path], errors: list[str], tally: _Tally,
            counts: dict[str, int], tokens: dict[str, array[int]], train_check: Any, val_check: Any, shared: int,
            validation_games: set[str], timings: dict[str, float]) -> dict[str, Any]:
    skipped = {reason: {"count": sum(c.values()), "by_action": _counter(c), "samples": tally.samples.get(reason, [])}
               for reason, c in sorted(tally.skipped.items())}
    return {
        "options": {
            "inputs": [display_path(p) for p in options.inputs], "output_dir": display_path(options.output_dir),
            "sessions": options.sessions.source if options.sessions else None,
            "include_chat": options.include_chat, "validation_fraction": options.validation_fraction,
            "seed": options.seed, "model": model,
        },
        "files": {"found": len(paths), "used": len(tally.files), "failed": len(errors), "errors": errors},
        "examples": {"total": counts["training"] + counts["validation"], **counts},
        "games": {"training": sorted(k for k in tally.per_game if k not in validation_games),
                  "validation": sorted(validation_games)},
        "per_role": _counter(tally.per_role),
        "per_action": _counter(tally.per_action),
        "per_role_action": {role: _counter(c) for role, c in sorted(tally.per_role_action.items())},
        "private_values": _counter(tally.values),
        "skipped": skipped,
        "chat_messages_not_included": tally.chat_not_included,
        "per_game": {key: {"split": g["split"], "files": g["files"], "examples": g["examples"],
                           "by_role": _counter(g["by_role"]), "by_action": _counter(g["by_action"]),
                           "private_values": _counter(g["values"])}
                     for key, g in sorted(tally.per_game.items())},
        "per_file": tally.files,
        "warnings": _warnings(options, tally),
        "tokens": {side: ftcheck.distribution(values) for side, values in tokens.items()},
        "training_cost": {
            "model": model, "epochs": train_check.epochs, "billed_tokens": train_check.billed_tokens,
            "estimated_cost_usd": train_check.estimated_cost_usd, "usd_per_1m_training_tokens": train_check.usd_per_1m,
        },
        "checks": {"training": train_check.to_dict(),
                   "validation": val_check.to_dict() if val_check is not None else None,
                   "examples_in_both_files": shared},
        "seconds": {**{k: round(v, 3) for k, v in timings.items()}, "total": round(sum(timings.values()), 3)},
    }


UNKNOWN_VALUES_WARN_SHARE = 0.1  # more unknown private values than this share of the examples: a warning
FILES_NAMED = 10  # files a warning names; the report's per_file has them all


def _files_text(files: list[str]) -> str:
    more = f" and {len(files) - FILES_NAMED} more" if len(files) > FILES_NAMED else ""
    return ", ".join(files[:FILES_NAMED]) + more


def _warnings(options: BuildOptions, tally: _Tally) -> list[str]:
    """What a researcher must know before training on this set (printed, and listed in the report)."""
    warnings = [f"game {key} comes from {len(g['files'])} files ({', '.join(g['files'])}): its decisions are "
                "counted once per file" for key, g in sorted(tally.per_game.items()) if len(g["files"]) > 1]
    if tally.by_agents:
        reasons = "; ".join(f"{n} {why}" for why, n in sorted(Counter(why for _, why in tally.by_agents).items()))
        files = _files_text([source for source, _ in tally.by_agents])
        warnings.append(f"{len(tally.by_agents)} log(s) hold games played by this project's agents or scripts, not by "
                        f"humans ({reasons}): {files}. Their decisions are in the dataset as if humans made them: "
                        "remove these files unless that is what you want")
    total, unknown = sum(tally.values.values()), tally.values[UNKNOWN]
    if total and unknown > UNKNOWN_VALUES_WARN_SHARE * total:
        files = [f"{source} ({n})" for source, n in tally.unknown_values]
        if options.sessions is None:
            fix = ("--sessions FILE (the server's sessions.json for these sessions) fills them in where the logs "
                   "cannot be trusted")
        else:
            fix = (f"the sessions table {options.sessions.source} does not cover them (see each file's notes in "
                   "per_file): give the sessions.json of these sessions with --sessions")
        warnings.append(f"{unknown} of {total} examples ({unknown / total:.0%}) have unknown private values (their "
                        f"prompts say so), from {len(files)} log(s): {_files_text(files)}; {fix}")
    return warnings


def check_file_report(path: Path, model: str | None = None) -> Any:
    """lib.dataset.ftcheck's checks on any JSONL file (the --check option)."""
    return ftcheck.check_file(path, model=model or ftcheck.DEFAULT_MODEL)
