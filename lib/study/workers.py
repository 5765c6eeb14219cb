"""Worker processes for a study (`workers = N` in the study file): N processes play the games, the runner's process
keeps the store.

One Python process runs on one core, and a study's games (the local server, six agents each, their sockets and
transcripts) keep that core busy long before the machine is. With `workers = N` the runner starts N processes
(WorkerPool; each runs `main`), each with its own in-process local server, and hands each game to the one with the
fewest games running. A worker plays the game exactly as the runner's own process would (lib.study.runner's
`_Player`: the arm's policies for the game's seed, its decisions table, its transcripts, its log moved into the
game's folder) and sends back the decisions' rows; the runner alone writes study.sqlite (the game's tables, from its
log, in one transaction), counts, checks the limits and prints the progress. So the order of the games, their values
and seeds, resuming, the report and the exit codes are those of a study without workers.

What is shared across the processes:

- the spending cap: each worker tells the runner the cost of every model call it makes, and the runner passes it on
  to the other workers, so every process's tracker holds the study's spend (a call under way elsewhere at that
  moment is counted when it ends, as within one process);
- the model-call cache (studies/<name>/calls.jsonl): every process reads it at its start and appends to it; a call
  is keyed by its game and seat, so a game's answers are only ever asked for by the process that plays it;
- the limit on concurrent model calls, which is split between the workers (4 and 4 of 8).

Stopping: Ctrl-C reaches every process of the terminal's group; a worker ignores SIGINT, and the runner decides: the
first signal starts no new game, a second tells every worker to abandon its games (their agents close their sockets).
A worker whose runner is gone (its pipe closes: the runner ended or was killed) abandons its games and exits, so a
killed study leaves no process behind. A worker that dies fails the games it was playing (played again on the next
run); the others play on.

The protocol is pickle frames (4-byte length, then the pickle) on the worker's stdin and on a copy of its stdout;
the worker's stdout itself goes to its stderr, so a stray print cannot break a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import os
import pickle
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lib.games import game_for
from lib.study.cache import CallCache, SpendTracker
from lib.study.runner import (
    CALLS_FILE,
    GAMES_GC_THRESHOLD,
    LAG_SAMPLE,
    SERVER_LOGS,
    GameJob,
    GamePlayed,
    StudyRunError,
    _LocalGames,
    _Models,
    _Player,
    _Plays,
    _set_within,
    agent_settings,
    lag_limit,
    seat_policies,
)
from lib.study.spec import Study
from lib.study.store import FAILED
from lib.util import redact

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0  # seconds a worker may take to start (imports, its local server) before the study gives up
EXIT_TIMEOUT = 30.0  # seconds a worker may take to exit once it has no game left, before it is killed
LAG_REPORT = 0.25  # seconds between a worker's reports of its event loop's lateness


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(4, "big") + data


async def _receive(reader: asyncio.StreamReader) -> Any:
    """The next message; EOFError once the other side has closed the pipe."""
    try:
        size = int.from_bytes(await reader.readexactly(4), "big")
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        raise EOFError from None


def calls_share(limit: int, workers: int, number: int) -> int:
    """Worker `number`'s (0-based) part of `limit` concurrent model calls: the parts add up to the limit (each at
    least 1, so with fewer calls than workers they add up to the number of workers)."""
    return max(1, limit // workers + (1 if number < limit % workers else 0))


# ---------------------------------------------------------------------- the runner's side


class _Worker:
    def __init__(self, number: int, process: asyncio.subprocess.Process) -> None:
        self.number = number
        self.process = process
        self.pending: dict[int, asyncio.Future[GamePlayed]] = {}
        self.alive = True
        self.reader: asyncio.Task[None] | None = None
        self.lag = 0.0  # its event loop's lateness, as it last reported it

    def send(self, message: Any) -> None:
        stdin = self.process.stdin
        if not self.alive or stdin is None or stdin.is_closing():
            return
        stdin.write(_frame(message))


class WorkerPool(_Plays):
    """N worker processes playing a study's jobs (see the module docstring); `spend` is the runner's tracker, which
    every worker's model calls are added to."""

    def __init__(self, study: Study, count: int, folder: Path, *, env: Mapping[str, str], use_cache: bool,
                 data_dir: Path, max_concurrent_calls: int, spend: SpendTracker, abandon: asyncio.Event,
                 say: Callable[[str], None], max_lag: float = math.inf) -> None:
        self.study, self.count, self.folder, self.env = study, count, folder, dict(env)
        self.use_cache, self.data_dir, self.max_concurrent_calls = use_cache, data_dir, max_concurrent_calls
        self.spend, self.abandon, self.say, self.max_lag = spend, abandon, say, max_lag
        self.workers: list[_Worker] = []
        self._ids = itertools.count()
        self._watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WorkerPool:
        try:
            for number in range(self.count):
                self.workers.append(await self._start(number))
            for worker in self.workers:
                await self._started(worker)
        except BaseException:
            await self._stop()
            raise
        self._watch = asyncio.ensure_future(self._abandon_on_stop())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._stop()

    async def _start(self, number: int) -> _Worker:
        # This project's lib first, whatever the current folder holds; the study's folder is in the command line so
        # that a worker can be told from any other python process.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); from lib.study.workers import main; "
            "main()", str(self.folder), str(number + 1), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        worker = _Worker(number + 1, process)
        worker.send(("init", {
            "study": self.study, "env": self.env, "use_cache": self.use_cache, "data_dir": self.data_dir,
            "folder": self.folder, "spent": self.spend.spent,
            "max_concurrent_calls": calls_share(self.max_concurrent_calls, self.count, number)}))
        return worker

    async def _started(self, worker: _Worker) -> None:
        assert worker.process.stdout is not None
        try:
            answer = await asyncio.wait_for(_receive(worker.process.stdout), START_TIMEOUT)
        except (EOFError, TimeoutError):
            answer = ("error", f"worker process {worker.number} did not start (exit code {worker.process.returncode})")
        if answer[0] != "ready":
            raise StudyRunError(answer[1])
        worker.reader = asyncio.ensure_future(self._read(worker))

    async def _read(self, worker: _Worker) -> None:
        assert worker.process.stdout is not None
        try:
            while True:
                message = await _receive(worker.process.stdout)
                if message[0] == "done":
                    future = worker.pending.pop(message[1], None)
                    if future is not None and not future.done():
                        future.set_result(message[2])
                elif message[0] == "lag":
                    worker.lag = message[1]
                elif message[0] == "spend":
                    self.spend.add(message[1])
                    for other in self.workers:
                        if other is not worker:
                            other.send(("spent", message[1]))
        except EOFError:
            pass
        worker.alive = False
        code = await worker.process.wait()
        if worker.pending:
            self.say(f"worker process {worker.number} exited (exit code {code}) with {len(worker.pending)} game"
                     f"{'s' if len(worker.pending) != 1 else ''} running: failed, played again on the next run")
        for future in worker.pending.values():
            if not future.done():
                future.set_result(GamePlayed(None, FAILED, f"worker process {worker.number} exited (exit code {code})"))
        worker.pending.clear()

    async def _abandon_on_stop(self) -> None:
        await self.abandon.wait()
        for worker in self.workers:
            worker.send(("abandon",))

    def _has_room(self, worker: _Worker) -> bool:
        """Whether the worker may take one more game now: it plays none, or its event loop keeps up (the runner's
        _Player.has_room, across the pipe)."""
        return worker.alive and (not worker.pending or worker.lag <= self.max_lag)

    async def room(self, drain: asyncio.Event) -> bool:
        while any(w.alive for w in self.workers) and not any(self._has_room(w) for w in self.workers):
            if await _set_within(drain, LAG_SAMPLE):
                return False
        return not drain.is_set()

    async def play(self, job: GameJob) -> GamePlayed:
        alive = [w for w in self.workers if w.alive]
        if not alive:
            return GamePlayed(None, FAILED, "no worker process is running")
        worker = min(alive, key=lambda w: (not self._has_room(w), len(w.pending), w.number))
        job_id = next(self._ids)
        future: asyncio.Future[GamePlayed] = asyncio.get_running_loop().create_future()
        worker.pending[job_id] = future
        worker.send(("play", job_id, job))
        return await future

    async def _stop(self) -> None:
        """Close every worker's pipe (a worker then abandons what it still plays, and exits) and wait for them."""
        if self._watch is not None:
            self._watch.cancel()
        for worker in self.workers:
            if worker.process.stdin is not None and not worker.process.stdin.is_closing():
                worker.process.stdin.close()
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.process.wait(), EXIT_TIMEOUT)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            if worker.reader is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.reader


# ---------------------------------------------------------------------- the worker's side


class _RelayedSpend(SpendTracker):
    """A worker's spend tracker: its own calls are told to the runner, the other workers' are added as the runner
    passes them on; `spent` is the study's spend either way."""

    def __init__(self, cap_usd: float | None, spent: float, tell: Callable[[float | None], None]) -> None:
        super().__init__(cap_usd)
        self.spent = spent
        self.tell = tell

    def add(self, cost: float | None) -> None:
        super().add(cost)
        self.tell(cost)

    def others(self, cost: float | None) -> None:
        if cost is not None:
            with self.lock:
                self.spent += cost


async def _serve(out: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                        os.fdopen(out, "wb", buffering=0))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)

    def send(message: Any) -> None:
        if not transport.is_closing():
            writer.write(_frame(message))

    try:
        kind, init = await _receive(reader)
    except EOFError:
        return
    assert kind == "init"
    study: Study = init["study"]
    folder: Path = init["folder"]
    env: dict[str, str] = init["env"]
    # SpendTracker.add may be called from another thread (it is thread-safe): the pipe is the loop's.
    spend = _RelayedSpend(study.limits.spend_usd, init["spent"],
                          lambda cost: loop.call_soon_threadsafe(send, ("spend", cost)))
    cache = CallCache(folder / CALLS_FILE) if init["use_cache"] else None
    models = _Models(study, env, cache, spend, init["max_concurrent_calls"])
    abandon = asyncio.Event()
    secrets = redact.secrets_from_env(env)
    try:
        game = game_for(study.game)
        for arm in study.arms:  # a policy that cannot play fails the study before any game, as in the runner
            seat_policies(study, arm, game, 0, models, init["data_dir"])
        games = _LocalGames(study, folder / SERVER_LOGS / f"worker{sys.argv[2]}", agent_settings(study, game),
                            secrets)
    except StudyRunError as exc:
        send(("error", str(exc)))
        await writer.drain()
        await models.close()
        return
    running: set[asyncio.Task[None]] = set()

    async def play(player: _Player, job_id: int, job: GameJob) -> None:
        try:
            played = await player.play(job)
        except Exception as exc:  # a bug in one game must not take the worker's other games along
            played = GamePlayed(None, FAILED, f"{type(exc).__name__}: {exc}"[:500])
        send(("done", job_id, played))

    async def report_lag(player: _Player) -> None:
        while True:
            await asyncio.sleep(LAG_REPORT)
            send(("lag", player.monitor.lag))

    try:
        async with _Player(study, games, models, init["data_dir"], secrets, abandon,
                           lag_limit(agent_settings(study, game))) as player:
            send(("ready",))
            reporting = asyncio.ensure_future(report_lag(player))
            while True:
                try:
                    message = await _receive(reader)
                except EOFError:
                    break
                if message[0] == "play":
                    task = asyncio.ensure_future(play(player, message[1], message[2]))
                    running.add(task)
                    task.add_done_callback(running.discard)
                elif message[0] == "abandon":
                    abandon.set()
                elif message[0] == "spent":
                    spend.others(message[1])
            # The runner closed the pipe: it has no game for us, or it is gone; whatever still runs is abandoned.
            abandon.set()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            reporting.cancel()
    finally:
        await models.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        writer.close()


def main() -> None:
    """One worker process of a study, started by the runner (WorkerPool) with the study's folder and its number."""
    # Ctrl-C reaches every process of the terminal's group: the runner alone decides what a signal stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.set_threshold(*GAMES_GC_THRESHOLD)  # this process only plays games
    out = os.dup(1)
    os.dup2(2, 1)  # the frames go to the copy of stdout; anything printed goes to stderr
    sys.stdout = sys.stderr
    asyncio.run(_serve(out))
