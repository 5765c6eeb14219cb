"""The study runner: plays a study file's games, stores each finished one, writes the report (issue #23).

For notebooks::

    from lib.study.runner import run_study
    result = run_study("studies/example.toml")           # blocks until the study is done, stopped or capped
    result.exit_code, result.finished, result.folder      # studies/example/: study.sqlite, the CSVs, the report

`handler.py --study FILE [--no-cache] [--accept-changes]` calls `main_study`, which is `run_study` with Ctrl-C
handling and the exit code. What it does (docs/studies.md, "Running a study"):

- game k of every arm before game k+1 (the store's `to_play` order), at most `concurrency` games at once, started
  spread out and only while the event loop keeps up (MAX_START_SPACING, _LagMonitor), all on one in-process local
  server that the agents reach in memory (the study's `fast` and `strict` modes asked of it; under `strict` a game
  in which it refused a frame fails; with `workers = N`, N processes play the games, each on its own server,
  lib.study.workers) or, with `server = "real"`, each game made with create-for-llm on the IBEX server of
  IBEX_API_URL/IBEX_WS_URL (the path `handler.py --create` takes);
- each seat plays its arm's policy (lib.study.spec resolved seat groups to seats); a model seat is an LLMPolicy
  sharing the study's call cache (studies/<name>/calls.jsonl) and spend tracker, asked with its prompt variant
  (lib.games.protocols.PromptRules), which its policy name in the tables says where it is not the default;
- a finished game is committed in one transaction: its `rounds` and `seat_rounds` rows built from its recorded
  log by lib.study.logtables (the reader the humans' rows come from, so both line up), its decisions and model
  calls; its log, transcripts and decisions.csv stay in studies/<name>/games/<arm>/<index>/;
- resuming: the same study run again keeps every finished game and plays the others with the same values and
  seeds (game k's values and seed depend on the study's seed and k only); a changed study file is refused unless
  `accept_changes`;
- limits: at the spending cap, or above the largest tolerated fallback share, no new game starts, the running
  ones finish, and the exit code says which limit stopped the study;
- Ctrl-C (SIGINT) or SIGTERM: no new game starts and the running ones finish; a second signal abandons them (their
  agents close their connections; they are played again on the next run). The summary so far is printed either
  way.

Exit codes: 0 every game played; 1 some game failed (it is played again on the next run); 2 the study file, its
store or a policy cannot be used (one line); 3 the fallback share passed limits.max_fallback_share; 5 the
spending cap was reached before every game was played; 128 + signal number (130 Ctrl-C, 143 SIGTERM) when stopped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lib.agents import decisions
from lib.agents.agent import AgentSettings
from lib.agents.llm import DEFAULT_MAX_CONCURRENT_CALLS, LLMPolicy
from lib.agents.run import EXIT_ERROR, EXIT_FALLBACKS, EXIT_OK, EXIT_USAGE, safety_margin
from lib.agents.transcript import read_transcript
from lib.games import game_for
from lib.games.protocols import DEFAULT_PROMPT, Game, PolicyRefused
from lib.games.protocols import Policy as PlayPolicy
from lib.ibex.sessions import SessionsError, SessionsTable, load_sessions, parse_sessions
from lib.study.cache import CallCache, SpendTracker, call_key
from lib.study.logtables import LogTableError, tables_from_log
from lib.study.spec import Arm, GameSlot, ModelPolicy, Study, StudyError, load_study
from lib.study.store import ABANDONED, FAILED, FINISHED, ResultsStore, StoreError, open_study
from lib.study.values import fresh_table
from lib.util import redact

EXIT_SPEND_CAP = 5
CALLS_FILE = "calls.jsonl"
GAMES_DIR = "games"
SERVER_LOGS = "server-logs"  # where the in-process local server writes a game's log before it moves to its folder
MODEL_MADE = (decisions.MODEL, decisions.MODEL_RETRIED, decisions.FALLBACK)
# Transcript lines reach the OS in batches this many seconds apart (and at the game's end): a line per frame costs a
# write per frame, and a killed run loses nothing by it, since the games it leaves running are played again.
TRANSCRIPT_BATCH = 2.0
# ... and are not fsynced at their game's end: six fsyncs per game held the event loop of every other game, for a
# durability the store itself does not have (WAL with synchronous=NORMAL: a commit survives a killed process).
# Games start at most this many seconds apart until the first one ends, then at the pace games end (their mean
# length over `concurrency`): started all at once, a thousand games move in step, so that every phase change, and
# later every game's end, comes to all of them at the same moment and the event loop falls seconds behind.
MAX_START_SPACING = 0.5
LAG_SAMPLE = 0.05  # seconds between two looks at the event loop's lateness
LAG_WINDOW = 1.0  # the lateness that counts is the largest of this many seconds
# Python's cyclic garbage collector by default looks at the young objects every 700 allocations, and every so often
# at all of them: a hundred games' frames, views and logs made it 15% of a study's CPU, with pauses of 0.2 s that
# every game's agents waited out. Hardly any of it is cyclic garbage (reference counts free it), so while games play
# the collector runs about fifteen times less often; memory stays as it was (bench/study_bench.py).
GAMES_GC_THRESHOLD = (10_000, 20, 100)

Say = Callable[[str], None]


class StudyRunError(ValueError):
    """Something the study needs before any game can start is missing; one line."""


@dataclass
class StudyResult:
    """What a run of a study did: games finished per arm (this run and before), failed and abandoned this run, why
    it stopped early (None: it ran to the end), the model spend this run, the fallback share of the model seats'
    decisions this run, the study folder, the report and the exit code (see the module docstring)."""

    folder: Path
    finished: dict[str, int]
    games_per_arm: int
    played_now: int = 0
    failed: int = 0
    abandoned: int = 0
    stopped: str | None = None  # "spend-cap", "fallbacks", "SIGINT", "SIGTERM"
    spend_usd: float = 0.0
    fallback_share: float = 0.0
    report: Path | None = None
    exit_code: int = EXIT_OK
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(n >= self.games_per_arm for n in self.finished.values())


class StudyStop:
    """Two steps: `drain` (no new game; the running ones finish), then `abandon` (the running ones stop now).
    The CLI's signal handler steps it; a notebook may call `step()` itself."""

    def __init__(self) -> None:
        self.drain = asyncio.Event()
        self.abandon = asyncio.Event()
        self.signum: int | None = None

    def step(self, signum: int = signal.SIGINT) -> None:
        if self.drain.is_set():
            self.abandon.set()
        self.signum = self.signum or signum
        self.drain.set()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name


# ---------------------------------------------------------------------- policies


@dataclass
class _Models:
    """One LLMPolicy per (endpoint, model, temperature) of the study, shared by every game (one limit on
    concurrent calls each), and the study's cache and spend tracker."""

    study: Study
    env: Mapping[str, str]
    cache: CallCache | None
    spend: SpendTracker
    max_concurrent_calls: int
    policies: dict[tuple[str, str, float], LLMPolicy] = field(default_factory=dict)

    def base(self, game: Game, chosen: ModelPolicy) -> LLMPolicy:
        key = (chosen.endpoint, chosen.model, chosen.temperature)
        if key not in self.policies:
            endpoint = self.study.endpoints[chosen.endpoint]
            api_key = self.env.get(endpoint.api_key_env, "").strip()
            base_url = self.env.get(endpoint.base_url_env, "").strip()
            where = f"{self.study.path}: endpoints.{chosen.endpoint}"
            if not base_url:
                raise StudyRunError(f"{where}: the environment variable {endpoint.base_url_env} is not set")
            if not api_key:
                raise StudyRunError(f"{where}: the environment variable {endpoint.api_key_env} is not set")
            self.policies[key] = LLMPolicy(api_key=api_key, model=chosen.model, base_url=base_url,
                                           temperature=chosen.temperature, game=game, cache=self.cache,
                                           spend=self.spend, endpoint=chosen.endpoint,
                                           max_concurrent_calls=self.max_concurrent_calls)
        return self.policies[key]

    async def close(self) -> None:
        for policy in self.policies.values():
            await policy.close()


def _policy_name(chosen: str | ModelPolicy) -> str:
    """A seat's policy as the tables' `policy` column names it: a rule policy's name, or a model as
    endpoint:model@temperature, followed by ` prompt=VARIANT` where its prompt is not the default (the default's
    name is what it was before variants existed)."""
    if isinstance(chosen, ModelPolicy):
        prompt = "" if chosen.prompt == DEFAULT_PROMPT else f" prompt={chosen.prompt}"
        return f"{chosen.endpoint}:{chosen.model}@{chosen.temperature:g}{prompt}"
    return chosen


def seat_policies(study: Study, arm: Arm, game: Game, seed: int, models: _Models, data_dir: Path
                  ) -> dict[int, PlayPolicy]:
    """Seat -> the game's version of the policy `arm` gives it, for a game with `seed` (rule policies draw from it;
    a model seat's cache index is set by _for_index); StudyRunError naming the arm for a policy that cannot play."""
    out: dict[int, PlayPolicy] = {}
    rules: dict[str, PlayPolicy] = {}
    for seat, chosen in sorted(arm.seats.items()):
        where = f"{study.path}: arms.{arm.name}"
        if isinstance(chosen, ModelPolicy):
            try:  # the model's one policy of the study, in this seat's prompt variant (sharing its call limit)
                out[seat] = models.base(game, chosen).with_prompt(chosen.prompt)
            except PolicyRefused as exc:  # lib.study.spec checked the variant: only a game changed since can say so
                raise StudyRunError(f"{where}: seat {seat}: {exc}") from None
            continue
        if chosen in rules:  # one instance per rule policy, as handler.py --local seats it: the same draws
            out[seat] = rules[chosen]
            continue
        try:
            rule, _line = game.play.rule_policy(chosen, seed=seed, path=None, data_dir=data_dir)
            out[seat] = rules[chosen] = game.play.policy(rule, seed)
        except PolicyRefused as exc:
            raise StudyRunError(f"{where}: seat {seat}: {exc}") from None
    return out


def _for_index(policies: dict[int, PlayPolicy], index: int) -> dict[int, PlayPolicy]:
    """The model seats' policies cache their answers under the study's game index (repeated games draw anew)."""
    return {seat: p.for_game_index(index) if isinstance(p, LLMPolicy) else p for seat, p in policies.items()}


# ---------------------------------------------------------------------- values


class _Values:
    """The sessions table and session number each game index plays (the same in every arm)."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.table: SessionsTable | None = None
        self.compare: SessionsTable | None = None
        self.logs: dict[str, tuple[list[dict[str, Any]], int]] = {}
        try:
            if study.values.table is not None:
                self.table = load_sessions(study.values.table)
            if study.compare_sessions is not None:
                self.compare = load_sessions(study.compare_sessions)
        except SessionsError as exc:
            raise StudyRunError(str(exc)) from None
        for log in study.values.logs:
            self.logs[str(log)] = (self._log_session(log), 1)

    def _log_session(self, log: Path) -> list[dict[str, Any]]:
        """A one-session table holding the values the recorded game's landholders had in each round (from the
        log, or from the compare_sessions table where the log carries none, as the humans' rows are built)."""
        try:
            tables = tables_from_log(log, self.compare)
        except LogTableError as exc:
            raise StudyRunError(str(exc)) from None
        by_round: dict[int, dict[str, Any]] = {}
        for row in sorted(tables.seat_rounds, key=lambda r: (r["round"], r["seat"])):
            if row.get("value_0") is None or row.get("value_1") is None:
                continue
            entry = by_round.setdefault(int(row["round"]), {"values": [{"owner": []}, {"owner": []}]})
            for condition in (0, 1):
                value = row[f"value_{condition}"] / 1000
                target = entry["values"][condition]
                if row["role"] == "developer":
                    target["developer"] = value
                else:
                    target.setdefault(row["role"], []).append(value)
        if not by_round:
            raise StudyRunError(f"{log}: the log holds no private values (give compare_sessions, the table of its "
                                "session)")
        rounds = [by_round.get(r, by_round[min(by_round)]) for r in range(max(by_round) + 1)]
        return [{"id": 1, "rounds": rounds}]

    def of(self, slot: GameSlot, parameters: Mapping[str, Any]) -> tuple[SessionsTable | None, int]:
        """(the game's own sessions table, None: the server's; the session number it plays)."""
        if self.study.values.source == "fresh":
            data = fresh_table(self.study.game, parameters, self.study.values.seed, slot.index)
            return parse_sessions(data, f"game {slot.index}'s fresh values"), 1
        if self.study.values.source == "sessions":
            return self.table, int(slot.source.split()[-1])
        data, number = self.logs[slot.source]
        return parse_sessions(data, f"the values of {slot.source}"), number


# ---------------------------------------------------------------------- one game's rows


def decision_rows(log: decisions.DecisionLog, policy_names: Mapping[int, str]) -> list[dict[str, Any]]:
    """The store's `decisions` rows of one game's decisions table."""
    rows = []
    for d in log.rows:
        rows.append({"round": d.round, "phase": d.phase, "seat": d.seat, "action": d.action_type,
                     "policy": policy_names.get(d.seat) if isinstance(d.seat, int) else None,
                     "made_by": d.made_by, "fallback": d.made_by == decisions.FALLBACK, "latency_s": d.latency_s,
                     "attempts": d.attempts, "prompt_tokens": d.prompt_tokens,
                     "completion_tokens": d.completion_tokens, "cost_usd": d.cost_usd,
                     "answer": None if d.action is None else json.dumps(d.action, sort_keys=True)})
    return rows


def call_rows(game_dir: Path, seats: Mapping[int, str | ModelPolicy], index: int) -> list[dict[str, Any]]:
    """The store's `calls` rows: every model-call record of the game's transcripts (agent k plays seat k)."""
    rows = []
    for seat, chosen in sorted(seats.items()):
        path = game_dir / f"agent{seat}.jsonl"
        if not isinstance(chosen, ModelPolicy) or not path.exists():
            continue
        for record in read_transcript(path):
            if record.get("kind") != "model-call":
                continue
            usage = record.get("usage") or {}
            messages = record.get("messages")
            attempt = record.get("attempt")
            key = (call_key(chosen.endpoint, chosen.model, chosen.temperature, messages, index, seat, attempt,
                            prompt=chosen.prompt)
                   if isinstance(messages, list) and isinstance(attempt, int) else None)
            rows.append({"seat": seat, "round": record.get("round"), "attempt": attempt,
                         "endpoint": chosen.endpoint, "model": chosen.model, "temperature": chosen.temperature,
                         "prompt": chosen.prompt,
                         "cache_key": key, "cached": bool(record.get("cached")), "latency_s": record.get("latency_s"),
                         "prompt_tokens": usage.get("prompt_tokens"),
                         "completion_tokens": usage.get("completion_tokens"), "cost_usd": record.get("cost_usd"),
                         "status": "error" if record.get("error") else "ok"})
    return rows


# ---------------------------------------------------------------------- the run


@dataclass
class _Tally:
    started: float = field(default_factory=time.monotonic)
    done_now: int = 0
    model_decisions: int = 0
    fallbacks: int = 0
    played_s: float = 0.0  # the lengths of the games finished this run, added up

    @property
    def fallback_share(self) -> float:
        return self.fallbacks / self.model_decisions if self.model_decisions else 0.0


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Run:
    def __init__(self, study: Study, store: ResultsStore, folder: Path, *, env: Mapping[str, str], say: Say,
                 stop: StudyStop, cache: CallCache | None, data_dir: Path, max_concurrent_calls: int) -> None:
        self.study, self.store, self.folder, self.say, self.stop = study, store, folder, say, stop
        self.env = env
        self.game = game_for(study.game)
        self.spend = SpendTracker(study.limits.spend_usd)
        # The cap covers the whole study: what earlier runs spent on the games they finished counts.
        self.spend.spent = float(store.db.execute(
            "SELECT COALESCE(SUM(c.cost_usd), 0) FROM calls c JOIN games g ON g.game_uid = c.game_uid "
            "WHERE g.status = ? AND NOT c.cached", (FINISHED,)).fetchone()[0])
        self.models = _Models(study, env, cache, self.spend, max_concurrent_calls)
        self.use_cache, self.max_concurrent_calls = cache is not None, max_concurrent_calls
        self.values = _Values(study)
        self.data_dir = data_dir
        self.tally = _Tally()
        self.slots = {slot.index: slot for slot in study.slots()}
        self.arms = {arm.name: arm for arm in study.arms}
        self.finished = {arm.name: 0 for arm in study.arms}
        for arm, _index in store.finished():
            if arm in self.finished:
                self.finished[arm] += 1
        self.failed = 0
        self.abandoned = 0
        self.limit: str | None = None
        self.secrets = redact.secrets_from_env(env)
        self.settings = agent_settings(study, self.game)
        # Every policy is built once before any game starts: a policy that cannot play fails the study at once.
        self.policies = {name: seat_policies(study, arm, self.game, 0, self.models, data_dir)
                         for name, arm in self.arms.items()}

    # ----- progress

    def progress_line(self) -> str:
        total = self.study.games_in_arm()
        arms = ", ".join(f"{name} {n}/{total}" for name, n in self.finished.items())
        elapsed = time.monotonic() - self.tally.started
        left_games = sum(total - n for n in self.finished.values())
        rate = self.tally.done_now / elapsed if elapsed > 0 and self.tally.done_now else 0.0
        left = _clock(left_games / rate) if rate else "?"
        return (f"study {self.study.name}: {arms}; elapsed {_clock(elapsed)}, left ~{left}; spend "
                f"${self.spend.spent:.4f}; fallbacks {100 * self.tally.fallback_share:.1f}%")

    # ----- limits

    def check_limits(self) -> None:
        if self.limit is None and self.spend.reached():
            self.limit = "spend-cap"
            self.say(f"spending cap reached (${self.spend.spent:.4f} of ${self.study.limits.spend_usd:g}): no new "
                     "game starts; the running ones finish")
        share = self.tally.fallback_share
        if self.limit is None and self.tally.model_decisions and share > self.study.limits.max_fallback_share:
            self.limit = "fallbacks"
            self.say(f"fallback share {100 * share:.1f}% is above limits.max_fallback_share "
                     f"{self.study.limits.max_fallback_share:g}: no new game starts; the running ones finish")

    # ----- one game

    def game_dir(self, arm: str, index: int) -> Path:
        return self.folder / GAMES_DIR / arm / f"{index:06d}"

    async def play_one(self, plays: _Plays, arm_name: str, index: int) -> None:
        slot = self.slots[index]
        table, session_number = self.values.of(slot, self.study.parameters)
        game_dir = self.game_dir(arm_name, index)
        if game_dir.exists():  # what an abandoned attempt left: this attempt's files alone belong to the game
            shutil.rmtree(game_dir)
        game_dir.mkdir(parents=True)
        uid = self.store.begin_game(arm_name, index, seed=slot.seed, server=self.study.server,
                                    game_type=self.study.game, parameters=self.study.parameters,
                                    values_source=slot.source)
        job = GameJob(arm_name, index, f"{self.study.name}/{arm_name}/{index}", table, session_number, slot.seed,
                      game_dir)
        began = time.monotonic()
        played = await plays.play(job)
        if played.status == FINISHED:
            self.tally.played_s += time.monotonic() - began
        self._commit(uid, job, played)

    def start_spacing(self) -> float:
        """Seconds between two game starts (MAX_START_SPACING's comment says why)."""
        if not self.tally.done_now:
            return MAX_START_SPACING
        return min(MAX_START_SPACING, self.tally.played_s / self.tally.done_now / self.study.concurrency)

    def _commit(self, uid: str, job: GameJob, played: GamePlayed) -> None:
        """Store what playing `job` gave: a finished game's rows in one transaction, or why it has none."""
        arm, arm_name, index = self.arms[job.arm], job.arm, job.index
        if played.status == FAILED:
            self._failed(uid, arm_name, index, played.why or "?", played.game_id)
            return
        if played.status == ABANDONED:
            self.store.finish_game(uid, game_id=played.game_id, status=ABANDONED, note="stopped by a signal")
            self.abandoned += 1
            return
        assert played.log is not None
        table = job.table if job.table is not None else self.values.table
        try:
            tables = tables_from_log(played.log, table)
        except LogTableError as exc:
            self._failed(uid, arm_name, index, str(exc), played.game_id)
            return
        names = {seat: _policy_name(chosen) for seat, chosen in arm.seats.items()}
        rows = played.decisions
        for row in tables.seat_rounds:  # the log knows the seats, the arm knows who played them
            row["policy"] = names.get(row.get("seat"))
        # the limit judges the models: a rule seat's late action is no sign of a failing endpoint
        made = [r for r in rows if isinstance(arm.seats.get(r["seat"]), ModelPolicy) and r["made_by"] in MODEL_MADE]
        self.store.finish_game(uid, game_id=played.game_id, rounds=tables.rounds, seat_rounds=tables.seat_rounds,
                               decisions=rows, calls=call_rows(job.folder, arm.seats, index), status=FINISHED)
        self.finished[arm_name] += 1
        self.tally.done_now += 1
        self.tally.model_decisions += len(made)
        self.tally.fallbacks += sum(r["fallback"] for r in made)
        self.check_limits()
        self.say(self.progress_line())

    def _failed(self, uid: str, arm: str, index: int, why: str, game_id: Any = None) -> None:
        self.failed += 1
        self.store.finish_game(uid, game_id=game_id, status=FAILED, note=why[:500])
        self.say(f"game {index} of arm {arm} failed: {why} (played again on the next run)")

    # ----- every game

    def _plays(self) -> _Plays:
        """This process's player, or the study's worker processes (lib.study.workers)."""
        if self.study.workers > 1:
            from lib.study.workers import WorkerPool

            return WorkerPool(self.study, self.study.workers, self.folder, env=self.env, use_cache=self.use_cache,
                              data_dir=self.data_dir, max_concurrent_calls=self.max_concurrent_calls,
                              spend=self.spend, abandon=self.stop.abandon, say=self.say,
                              max_lag=lag_limit(self.settings))
        games: _Games = (_RealGames(self.study, self.game, self.env, self.settings, self.secrets)
                         if self.study.server == "real"
                         else _LocalGames(self.study, self.folder / SERVER_LOGS, self.settings, self.secrets))
        return _Player(self.study, games, self.models, self.data_dir, self.secrets, self.stop.abandon,
                       lag_limit(self.settings))

    async def play_all(self) -> None:
        order = self.store.to_play(self.arms, self.study.games_in_arm())
        self.say(f"study {self.study.name}: {len(self.arms)} arm{'s' if len(self.arms) != 1 else ''} x "
                 f"{self.study.games_in_arm()} games, {sum(self.finished.values())} finished before, {len(order)} to "
                 f"play, {self.study.concurrency} at once, {self.study.server} server"
                 f"{f' in {self.study.workers} worker processes' if self.study.workers > 1 else ''}; folder "
                 f"{self.folder}")
        if not order:
            return
        async with self._plays() as plays:
            running: set[asyncio.Task[None]] = set()
            slots = asyncio.Semaphore(self.study.concurrency)
            last_start = -math.inf
            for arm, index in order:
                if not await _acquire(slots, self.stop.drain):
                    break
                wait = last_start + self.start_spacing() - time.monotonic()
                if (wait > 0 and await _set_within(self.stop.drain, wait)) or not await plays.room(self.stop.drain):
                    slots.release()
                    break
                last_start = time.monotonic()
                self.check_limits()  # the running games may have reached a limit while this one waited
                if self.limit is not None:
                    slots.release()
                    break
                task = asyncio.ensure_future(self.play_one(plays, arm, index))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _t: slots.release())
            if running:
                results = await asyncio.gather(*running, return_exceptions=True)
                for exc in results:
                    if isinstance(exc, BaseException):
                        raise exc


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` is set within `seconds`."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


class _LagMonitor:
    """How late this process's event loop runs what is due: a task looks every LAG_SAMPLE seconds, and `lag` is
    the largest lateness of the last LAG_WINDOW seconds. A loop that runs late runs the agents' decisions late: a
    process whose loop is behind takes no new game (a deadline missed because the machine was busy is a game that
    did not play as it should)."""

    def __init__(self) -> None:
        self.samples: collections.deque[tuple[float, float]] = collections.deque()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._watch())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _watch(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_SAMPLE)
            now = time.monotonic()
            self.samples.append((now, now - before - LAG_SAMPLE))
            while self.samples and self.samples[0][0] < now - LAG_WINDOW:
                self.samples.popleft()

    @property
    def lag(self) -> float:
        return max((late for _at, late in self.samples), default=0.0)


@contextlib.contextmanager
def games_gc() -> Iterator[None]:
    """The cyclic garbage collector less often while games play (GAMES_GC_THRESHOLD), as it was set afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(*GAMES_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def lag_limit(settings: AgentSettings) -> float:
    """The event loop lateness above which a process takes no new game: a third of the agents' safety margin, the
    time they keep in hand for exactly such delays."""
    return settings.safety_margin / 3


async def _acquire(slots: asyncio.Semaphore, drain: asyncio.Event) -> bool:
    """A free game slot (True), or none once `drain` is set (False: a stop is not held up by running games)."""
    if drain.is_set():
        return False
    got = asyncio.ensure_future(slots.acquire())
    stopped = asyncio.ensure_future(drain.wait())
    await asyncio.wait({got, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not got.done():
        got.cancel()
        return False
    if drain.is_set():
        slots.release()
        return False
    return True


def agent_settings(study: Study, game: Game) -> AgentSettings:
    """How a study's agents play: no chat, and a safety margin that fits the study's timers."""
    margin = safety_margin(game.play.action_phases, game.rules.parameters(study.parameters))
    return AgentSettings(chat=False, safety_margin=margin, ready_delay=min(0.2, margin))


@dataclass
class GameJob:
    """One game of the study to play, as the runner hands it over (to this process or to a worker process): arm,
    game index, title, values (its own sessions table, None: the server's; the session number), seed, folder."""

    arm: str
    index: int
    title: str
    table: SessionsTable | None
    session_number: int
    seed: int
    folder: Path


@dataclass
class GamePlayed:
    """How a job went: FINISHED (its log moved into its folder, its decisions' rows), ABANDONED (a stop) or
    FAILED (`why`)."""

    game_id: int | None
    status: str
    why: str | None = None
    log: Path | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)


class _Plays:
    """What plays a study's jobs: `async with` it around the run, `await play(job)` for each game."""

    async def __aenter__(self) -> _Plays:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def play(self, job: GameJob) -> GamePlayed:
        raise NotImplementedError

    async def room(self, drain: asyncio.Event) -> bool:
        """Wait until a game may start (True), or `drain` is set (False)."""
        return not drain.is_set()


class _Player(_Plays):
    """Plays jobs in this process on `games` (a local server, or the real one): the arm's policies for the game's
    seed, its decisions table, its log moved into its folder. A worker process plays its jobs with one too."""

    def __init__(self, study: Study, games: _Games, models: _Models, data_dir: Path, secrets: list[str],
                 abandon: asyncio.Event, max_lag: float) -> None:
        self.study, self.games, self.models, self.data_dir = study, games, models, data_dir
        self.secrets, self.abandon, self.max_lag = secrets, abandon, max_lag
        self.game = game_for(study.game)
        self.arms = {arm.name: arm for arm in study.arms}
        self.monitor = _LagMonitor()
        self.running = 0

    async def __aenter__(self) -> _Player:
        await self.games.__aenter__()
        self.monitor.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.monitor.stop()
        await self.games.__aexit__(*exc)

    @property
    def has_room(self) -> bool:
        """Whether this process may take one more game now: it plays none, or its event loop keeps up."""
        return not self.running or self.monitor.lag <= self.max_lag

    async def room(self, drain: asyncio.Event) -> bool:
        while not self.has_room:
            if await _set_within(drain, LAG_SAMPLE):
                return False
        return not drain.is_set()

    async def play(self, job: GameJob) -> GamePlayed:
        self.running += 1
        try:
            return await self._play(job)
        finally:
            self.running -= 1

    async def _play(self, job: GameJob) -> GamePlayed:
        arm = self.arms[job.arm]
        try:
            policies = _for_index(seat_policies(self.study, arm, self.game, job.seed, self.models, self.data_dir),
                                  job.index)
        except StudyRunError as exc:
            return GamePlayed(None, FAILED, str(exc))
        names = {seat: _policy_name(chosen) for seat, chosen in arm.seats.items()}
        game = _Game(job.title, job.table, job.session_number, policies, job.folder, job.seed)
        with decisions.DecisionLog(job.folder / "decisions.csv", secrets=self.secrets) as log:
            try:
                outcome = await self.games.play(game, log, self.abandon)
            except _GameFailed as exc:
                return GamePlayed(exc.game_id, FAILED, str(exc))
        if outcome.stopped:
            return GamePlayed(outcome.game_id, ABANDONED)
        log_path = job.folder / "game.log.json"
        shutil.move(str(outcome.log), log_path)
        return GamePlayed(outcome.game_id, FINISHED, log=log_path, decisions=decision_rows(log, names))


@dataclass
class _Game:
    """One game to play: its title, values (its own sessions table, None: the server's; the session number), the
    seats' policies, its folder and seed."""

    title: str
    table: SessionsTable | None
    session_number: int
    policies: dict[int, PlayPolicy]
    folder: Path
    seed: int


@dataclass
class _Outcome:
    game_id: int
    stopped: bool = False
    log: Path | None = None  # the recorded log of a game that ended


class _GameFailed(Exception):
    def __init__(self, why: str, game_id: int | None = None) -> None:
        super().__init__(why)
        self.game_id = game_id


class _Games:
    """Where a study's games are played: `play` one game to its end (or a stop); _GameFailed says why not."""

    async def __aenter__(self) -> _Games:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def play(self, game: _Game, log: decisions.DecisionLog, stop: asyncio.Event) -> _Outcome:
        raise NotImplementedError


class _LocalGames(_Games):
    """The in-process local server (its fast and strict modes when the study asks), one for the whole run; under
    strict, a game in which it refused a frame fails."""

    def __init__(self, study: Study, records: Path, settings: AgentSettings, secrets: list[str]) -> None:
        from lib.localserver.server import LocalServer

        self.server = LocalServer(records_dir=records, fast=study.fast, strict=study.strict)
        self.strict = study.strict
        self.parameters = dict(study.parameters)
        self.settings, self.secrets = settings, secrets

    async def __aenter__(self) -> _LocalGames:
        await self.server.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.server.stop()

    async def play(self, game: _Game, log: decisions.DecisionLog, stop: asyncio.Event) -> _Outcome:
        from lib.agents.modes import play_local

        try:
            game_id = self.server.create_game(self.parameters, title=game.title, sessions=game.table,
                                              session_number=game.session_number)
        except ValueError as exc:
            raise _GameFailed(f"the local server cannot create the game: {exc}") from None
        try:
            result = await play_local(self.server, game_id, game.policies, settings=self.settings,
                                      run_dir=game.folder, log=log, stop=stop, say=None,
                                      seed=game.seed, secrets=self.secrets, transcript_batch=TRANSCRIPT_BATCH,
                                      in_memory=True, transcript_sync=False)
        finally:
            await self.server.delete_game(game_id)  # a study's server must not hold every game it played
        if result.outcome == "stopped":
            return _Outcome(game_id, stopped=True)
        if result.outcome != "game-over" or result.game_log is None:
            raise _GameFailed(result.outcome, game_id)
        if self.strict and result.refusals:  # races no client can avoid (SeatRules.race) are no refusal
            raise _GameFailed(f"the strict local server refused {result.refusals} frame(s) the agents sent (see the "
                              "server-error records of its transcripts)", game_id)
        return _Outcome(game_id, log=result.game_log)


class _RealGames(_Games):
    """A real IBEX server (IBEX_WS_URL, IBEX_API_URL, IBEX_USERNAME, IBEX_PASSWORD): each game made with
    create-for-llm as `handler.py --create` makes it, every seat taken with get-recovery, its log fetched with the
    admin token at game-over. A real server reads only its own sessions table: a game plays session N of it."""

    def __init__(self, study: Study, game: Game, env: Mapping[str, str], settings: AgentSettings,
                 secrets: list[str]) -> None:
        from lib.agents.realserver import PlayError, server_urls

        if study.values.source == "fresh":
            raise StudyRunError(f"{study.path}: values.source: fresh values cannot be given to a real server (it "
                                "reads only its own sessions table): use source = 'sessions' with a copy of it")
        try:
            self.urls = server_urls(env)
        except PlayError as exc:
            raise StudyRunError(f"{study.path}: server = 'real': {exc}") from None
        self.username, self.password = env.get("IBEX_USERNAME", "").strip(), env.get("IBEX_PASSWORD", "")
        if not self.username or not self.password:
            missing = "IBEX_USERNAME" if not self.username else "IBEX_PASSWORD"
            raise StudyRunError(f"{study.path}: server = 'real': missing setting {missing} (the admin account "
                                "create-for-llm logs in with)")
        self.study, self.game, self.settings, self.secrets = study, game, settings, secrets
        self.api: Any = None

    async def __aenter__(self) -> _RealGames:
        from lib.ibex.api import IbexApi

        self.api = IbexApi(self.urls.api_url)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.api.close()

    async def play(self, game: _Game, log: decisions.DecisionLog, stop: asyncio.Event) -> _Outcome:
        from lib.agents.modes import play_seats
        from lib.agents.realserver import PlayError, create_payload, prepare_seats, seats_of
        from lib.ibex.api import IbexApiError
        from lib.ibex.fetchlog import FetchError, fetch_game_log

        flat = {**self.study.parameters, "session_number": game.session_number}
        try:
            payload, params = create_payload(flat, f"{self.study.path}: parameters", game.title, self.study.game)
            created = await self.api.create_for_llm(self.username, self.password, payload)
            seats = await prepare_seats(self.api, created.id, seats_of(params), [])
        except (PlayError, IbexApiError, ValueError) as exc:
            raise _GameFailed(f"the server cannot create the game: {exc}") from None
        result = await play_seats(self.game, created.id, seats, game.policies, ws_url=self.urls.ws_url, api=self.api,
                                  params=params, settings=self.settings, run_dir=game.folder, log=log, stop=stop,
                                  say=None, seed=game.seed, secrets=self.secrets,
                                  timeout=self.game.rules.timeout(params), transcript_batch=TRANSCRIPT_BATCH)
        if result.outcome == "stopped":
            return _Outcome(created.id, stopped=True)
        if result.outcome != "game-over":
            raise _GameFailed(result.outcome, created.id)
        try:
            path = await fetch_game_log(self.urls.api_url, created.id, game.folder / "fetched",
                                        username=self.username, password=self.password)
        except FetchError as exc:
            raise _GameFailed(str(exc), created.id) from None
        return _Outcome(created.id, log=path)


def _write_outputs(run: _Run, result: StudyResult, say: Say, report: bool) -> None:
    """The human logs' rows (once), CSV exports of every table, and the report when a game is finished (and it is
    wanted)."""
    from lib.study.report import ReportError, record_references, write_report

    # The reference rows go in before the export, so that the first run's CSV files already set the humans beside
    # the arms (the report would store them only after the export).
    try:
        record_references(run.store, run.study.compare_with, run.study.compare_sessions)
    except ReportError as exc:
        result.notes.append(f"no reference rows: {exc}")
        say(f"no reference rows: {exc}")
    run.store.export_csv(run.folder)
    if not report or not any(run.finished.values()):
        return
    try:
        written = write_report(run.folder, run.study)
    except (ReportError, StoreError) as exc:
        result.notes.append(f"no report: {exc}")
        say(f"no report: {exc}")
        return
    result.report = written.path
    say(f"report: {written.path}")


async def run_study_async(study: Study | str | Path, *, root: Path | None = None, use_cache: bool = True,
                          accept_changes: bool = False, env: Mapping[str, str] | None = None,
                          out: TextIO | None = None, stop: StudyStop | None = None, data_dir: Path | None = None,
                          max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS, report: bool = True
                          ) -> StudyResult:
    """`run_study` inside a running event loop (the same arguments; `stop` lets the caller stop it)."""
    if not isinstance(study, Study):
        study = load_study(study)
    folder = (root if root is not None else study.path.parent) / study.name
    out = out or sys.stdout
    env = dict(os.environ) if env is None else env

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    stop = stop or StudyStop()
    store = open_study(folder, study.name, study.digest, study.canonical, accept_changed=accept_changes)
    try:
        was_running = store.abandon_unfinished()
        if was_running:
            say(f"{was_running} game{'s' if was_running != 1 else ''} an earlier run left unfinished will be played "
                "again with the same values and seeds")
        cache = CallCache(folder / CALLS_FILE) if use_cache else None
        run = _Run(study, store, folder, env=env, say=say, stop=stop, cache=cache,
                   data_dir=data_dir or Path(__file__).resolve().parents[2] / "data",
                   max_concurrent_calls=max_concurrent_calls)
        try:
            with games_gc():
                await run.play_all()
        finally:
            await run.models.close()
        result = StudyResult(folder, dict(run.finished), study.games_in_arm(), run.tally.done_now, run.failed,
                             run.abandoned, spend_usd=run.spend.spent, fallback_share=run.tally.fallback_share)
        if stop.drain.is_set():
            result.stopped = stop.name
            result.exit_code = 128 + (stop.signum or signal.SIGINT)
        elif run.limit is not None and not result.complete:
            result.stopped = run.limit
            result.exit_code = EXIT_SPEND_CAP if run.limit == "spend-cap" else EXIT_FALLBACKS
        elif run.limit == "fallbacks":
            result.exit_code = EXIT_FALLBACKS
        elif run.failed:
            result.exit_code = EXIT_ERROR
        if result.stopped is not None:
            say(f"stopped ({result.stopped}): {run.abandoned} running game{'s' if run.abandoned != 1 else ''} "
                "abandoned, played again on the next run")
        _write_outputs(run, result, say, report)
        say(run.progress_line())
        say(f"played {result.played_now} game{'s' if result.played_now != 1 else ''} now, {run.failed} failed; "
            f"exit code {result.exit_code}")
        return result
    finally:
        store.close()


def run_study(path: str | Path, *, root: Path | None = None, use_cache: bool = True, accept_changes: bool = False,
              env: Mapping[str, str] | None = None, out: TextIO | None = None, data_dir: Path | None = None,
              max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS, report: bool = True) -> StudyResult:
    """Play the study file at `path` to the end (or its limits) and return what happened.

    `root`: the folder that holds studies/<name>/ (default: the study file's folder); `use_cache` False asks the
    models again (--no-cache); `accept_changes`: play on although the study file changed since the store was made;
    `env`: where endpoint variables are read (default os.environ); `out`: progress lines (default stdout);
    `data_dir`: where fitted and empirical policies find their saved parameters (default data/);
    `max_concurrent_calls`: model calls in flight at once per model; `report` False: tables and CSVs only (the
    report can be written later: python -m lib.study.report STUDY_DIR --study FILE). Raises StudyError,
    StoreError or StudyRunError (one line each) when the study cannot start."""
    return asyncio.run(run_study_async(path, root=root, use_cache=use_cache, accept_changes=accept_changes, env=env,
                                       out=out, data_dir=data_dir, max_concurrent_calls=max_concurrent_calls,
                                       report=report))


def main_study(path: Path, *, use_cache: bool, accept_changes: bool, env: Mapping[str, str],
               out: TextIO | None = None) -> int:
    """handler.py --study: the study with SIGINT/SIGTERM stepping its stop (drain, then abandon); the exit code."""
    async def go() -> int:
        stop = StudyStop()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.step, signum)
        result = await run_study_async(path, use_cache=use_cache, accept_changes=accept_changes, env=env, out=out,
                                       stop=stop)
        return result.exit_code

    try:
        return asyncio.run(go())
    except (StudyError, StoreError, StudyRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
