"""Run control shared by every way of playing (lib.agents.modes, the studies): the exit codes, a stop on SIGTERM
or SIGINT, running a game's agents to game-over, the fallback limit and the run's verdict, and the policy the
run plays.

Exit codes (docs/running-agents.md, "Exit codes"): 0 played, 1 not playable, 2 usage, 3 too many fallbacks, 4
preflight failed, 6 the strict local server refused frames; a signal exits 128 + its number: 130 for SIGINT
(Ctrl-C), 143 for SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from lib.agents import decisions
from lib.agents.agent import Agent, AgentError
from lib.agents.llm import LLMPolicy
from lib.games import DEFAULT_GAME, game_for
from lib.games.protocols import DEFAULT_PROMPT, Policy, PolicyRefused
from lib.training.jobrecord import JobRecordError, resolve_model
from lib.util import redact

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FALLBACKS, EXIT_PREFLIGHT = 0, 1, 2, 3, 4
EXIT_REFUSED = 6  # the local server under --strict refused frames the agents sent (5 is a study's spending cap)
DEFAULT_MAX_FALLBACK_SHARE = 0.2  # for a model policy: more fallbacks than this and the run does not show the model
MAX_SAFETY_MARGIN = 2.0  # seconds, for real timers; scaled-down timers get a quarter of their shortest action phase
JOIN_TIMEOUT = 10.0


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


class Stop:
    """Set by SIGINT or SIGTERM; remembers which, for the exit code (128 + signal number)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signum: int | None = None

    def set(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()

    def install(self) -> None:
        """SIGTERM and SIGINT set this stop (the entry script's choice: code that plays games never installs it)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.set, signum)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name


def fallback_limit(policy: Policy, max_fallback_share: float | None) -> float | None:
    """The fallback share above which the run fails (a model policy only; rules have nothing to fall back from)."""
    if not isinstance(policy, LLMPolicy):
        return None
    return DEFAULT_MAX_FALLBACK_SHARE if max_fallback_share is None else max_fallback_share


def verdict(log: decisions.DecisionLog, limit: float | None, out: TextIO) -> int:
    """Where the decisions table is, the shares line last, and exit code 3 when the fallbacks exceed the limit."""
    print(f"decisions table: {log.path}", file=out, flush=True)
    print(decisions.shares_line(log.made_by, log.reasons), file=out, flush=True)  # the run's last line
    if limit is not None and log.total and log.fallback_share() > limit:
        print(f"error: {log.made_by[decisions.FALLBACK]} of {log.total} decisions "
              f"({100 * log.fallback_share():.1f}%) were fallbacks, more than --max-fallback-share {limit:g}: "
              "this run does not show the model's play (exit code 3)", file=sys.stderr, flush=True)
        return EXIT_FALLBACKS
    return EXIT_OK


def server_errors_line(refusals: int, races: Mapping[str, int], strict: bool) -> str:
    """What the server answered with error or warning frames: the refusals (what the agents sent that the server
    did not take), and apart from them the races no client can avoid (SeatRules.race), which are no refusal."""
    where = "the strict local server refused" if strict else "the server refused"
    line = f"server errors: {where} {refusals} frame{'' if refusals == 1 else 's'} the agents sent"
    total = sum(races.values())
    if total:
        named = ", ".join(f"{n} x {race}" for race, n in sorted(races.items(), key=lambda item: -item[1]))
        line += f"; {total} race{'' if total == 1 else 's'} no client can avoid, not counted as refusals ({named})"
    return line


def strict_refusals(refusals: int, run_dir: Any) -> int:
    """--strict: the run fails when the local server refused a frame the agents sent (EXIT_REFUSED, with one line
    on stderr); EXIT_OK when it refused none."""
    if not refusals:
        return EXIT_OK
    print(f"error: --strict: the local server refused {refusals} frame{'' if refusals == 1 else 's'} the agents "
          f"sent, which a correct agent never sends (see the server-error records of the transcripts in {run_dir}; "
          "exit code 6)", file=sys.stderr, flush=True)
    return EXIT_REFUSED


def safety_margin(action_phases: Sequence[int], params: Any) -> float:
    """Seconds before a phase deadline by which every action is out: MAX_SAFETY_MARGIN, or a quarter of the
    shortest phase with actions when timers are scaled below that (params None: the game's timers are unknown)."""
    if params is None:
        return MAX_SAFETY_MARGIN
    shortest = min(params.timer(p) or MAX_SAFETY_MARGIN * 4 for p in action_phases)
    return min(MAX_SAFETY_MARGIN, shortest / 4)


public_url = redact.public_url  # without any user:password part, fit to print


def choose_policy(name: str | None, env: Mapping[str, str], *, seed: int, params_path: Path | None, data_dir: Path,
                  job_record: Path, max_retries: int, max_concurrent_calls: int, prompt: str = DEFAULT_PROMPT,
                  game_type: str | None = None) -> tuple[Policy, str]:
    """The policy to play with (`name`: baseline, fitted, empirical or llm; None: llm when OPENAI_API_KEY is set,
    else baseline) and the first line that says which (no secret in it). A rule-based policy is the default game's;
    each game played takes its own version of it (PlayRules.policy). A model is asked about `game_type` (None: the
    default game) with its prompt variant `prompt` (lib.games.protocols.PromptRules; the rules take none).
    UsageError for what cannot be played."""
    api_key = env.get("OPENAI_API_KEY", "").strip()
    wanted = name or ("llm" if api_key else "baseline")
    if wanted != "llm":
        try:
            policy, line = game_for(DEFAULT_GAME).play.rule_policy(wanted, seed=seed, path=params_path,
                                                                   data_dir=data_dir)
        except PolicyRefused as exc:
            raise UsageError(str(exc)) from None
        why = f"--policy {wanted}" if name else "no OPENAI_API_KEY set"
        return policy, line or f"policy: {wanted} ({why})"
    if not api_key:
        raise UsageError("--policy llm needs OPENAI_API_KEY (for a local server that ignores keys, any value)")
    try:
        model, source = resolve_model(env, job_record)
    except JobRecordError as exc:
        raise UsageError(str(exc)) from None
    base_url = env.get("OPENAI_BASE_URL", "").strip() or None
    try:
        policy = LLMPolicy(api_key=api_key, model=model, base_url=base_url, max_retries=max_retries,
                           max_concurrent_calls=max_concurrent_calls, game=game_for(game_type or DEFAULT_GAME),
                           prompt=prompt)
    except PolicyRefused as exc:  # a prompt variant the game does not have
        raise UsageError(f"--prompt-variant: {exc}") from None
    variant = "" if prompt == DEFAULT_PROMPT else f", prompt {prompt} (not the training prompt)"
    return policy, f"policy: llm, model {model} (from {source}), endpoint {public_url(policy.base_url)}{variant}"


def policy_label(policy: Policy) -> str:
    """A policy's name for the lines a run prints: a model's with its prompt variant where it is not the default."""
    prompt = getattr(policy, "prompt", DEFAULT_PROMPT)
    return policy.name if prompt == DEFAULT_PROMPT else f"{policy.name} (prompt {prompt})"


async def run_agents(agents: list[Agent], stop: asyncio.Event, timeout: float | None) -> str:
    """Start the agents one after another (so agent k gets seat k), then wait for game-over, a stop, a failed
    agent or the timeout. Returns "game-over", "stopped" or what went wrong. Cancelled itself (the agent manager
    shutting down), it cancels the agents and waits for them to close their sockets."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Any]] = []
    stopper = asyncio.ensure_future(stop.wait())
    try:
        for agent in agents:
            tasks.append(asyncio.ensure_future(agent.run()))
            joined = asyncio.ensure_future(agent.joined.wait())
            await asyncio.wait({joined, stopper}, timeout=JOIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            joined.cancel()
            if stop.is_set():
                break
        give_up = loop.time() + timeout if timeout is not None else None
        pending: set[asyncio.Future[Any]] = set(tasks)
        while pending and not stop.is_set():
            left = give_up - loop.time() if give_up is not None else None
            if left is not None and left <= 0:
                return await _cancel(tasks, f"the game did not end within {timeout:g} s")
            done, _ = await asyncio.wait(pending | {stopper}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopper}:
                pending.discard(task)
                exc = task.exception() if not task.cancelled() else None
                if isinstance(exc, AgentError):
                    return await _cancel(tasks, str(exc))
                if exc is not None:
                    return await _cancel(tasks, f"an agent crashed: {type(exc).__name__}: {exc}")
        if stop.is_set():
            return await _cancel(tasks, "stopped")
        if not all(a.view.game_over for a in agents):
            return "the server closed a connection before game-over"
        return "game-over"
    finally:
        stopper.cancel()
        await _cancel(tasks, "")


async def _cancel(tasks: list[asyncio.Task[Any]], result: str) -> str:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result
