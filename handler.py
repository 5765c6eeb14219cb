"""Run LLM (or baseline) agents as the six players of an IBEX voting game.

    python handler.py --local            the offline demo: a local IBEX server, one game, six agents, a summary

The demo starts lib.localserver in this process, creates a game, runs six agents (lib.agent) to game-over, writes
the game's log into jsonFiles/ and one transcript per agent under logs/, and prints a per-round summary. Without
OPENAI_API_KEY it plays with the baseline policy (lib.policy) and says so in its first line.

Settings come from the environment or .env: OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL (see lib/llm.py and
lib/jobrecord.py). SIGTERM or SIGINT: the agents close their sockets (code 1001), the transcripts get a final
"shutdown" record, and the handler exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lib.agent import Agent, AgentError, AgentSettings
from lib.game import (
    CONDITIONS,
    DEFAULT_PARAMETERS,
    LAST_PHASE,
    PROJECT,
    SEATS,
    GameParams,
    ParamError,
    parameters_from_dict,
    seat_tag,
)
from lib.llm import DEFAULT_MAX_CONCURRENT_CALLS, DEFAULT_MAX_RETRIES, LLMPolicy
from lib.policy import BaselinePolicy, Policy
from lib.transcript import Transcript
from lib.view import PlayerView

ROOT = Path(__file__).resolve().parent
DEFAULT_RECORDS = ROOT / "jsonFiles"
DEFAULT_LOGS = ROOT / "logs"
DEFAULT_ROUNDS = 2
# Local demo timers: the real server's defaults (minutes per phase) scaled down. A model needs seconds per
# answer, the baseline none.
DEFAULT_SCALE = {"baseline": 0.02, "llm": 0.25}
MAX_SAFETY_MARGIN = 2.0  # seconds, for real timers; scaled-down timers get a quarter of their shortest action phase
JOIN_TIMEOUT = 10.0
ACTION_PHASES = (3, 4, 6)
CONDITION_NAMES = {cond["id"]: cond["name"] for cond in CONDITIONS}


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python handler.py",
        description="Run six agents in an IBEX voting game. --local: an offline demo on a local server.",
    )
    parser.add_argument("--local", action="store_true",
                        help="start a local IBEX server in this process, play one game, print a summary")
    parser.add_argument("--policy", choices=("llm", "baseline"),
                        help="who decides: a chat model (needs OPENAI_API_KEY) or the built-in baseline rules "
                             "(default: llm when OPENAI_API_KEY is set, else baseline)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"paid rounds (default {DEFAULT_ROUNDS})")
    practice = parser.add_mutually_exclusive_group()
    practice.add_argument("--practice", dest="practice", action="store_true", default=True,
                          help="play a practice round 0 first (default)")
    practice.add_argument("--no-practice", dest="practice", action="store_false", help="no practice round")
    parser.add_argument("--timer-scale", type=float,
                        help="multiply the real server's phase timers by this (default "
                             f"{DEFAULT_SCALE['baseline']} with the baseline, {DEFAULT_SCALE['llm']} with a model)")
    parser.add_argument("--chat", action="store_true", help="let the agents talk in the chat phases 2 and 5")
    parser.add_argument("--safety-margin", type=float,
                        help="seconds before a phase deadline by which every action is out; a fallback action goes "
                             f"out then if the model has no valid answer (default {MAX_SAFETY_MARGIN:g}, or a "
                             "quarter of the shortest action phase when timers are scaled below that)")
    parser.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES,
                        help="extra model calls after an invalid answer or an API error "
                             f"(default {DEFAULT_MAX_RETRIES})")
    parser.add_argument("--max-concurrent-calls", type=int, default=DEFAULT_MAX_CONCURRENT_CALLS,
                        help="model calls in flight at once, all agents together "
                             f"(default {DEFAULT_MAX_CONCURRENT_CALLS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the baseline policy's chat phrasing (default 0)")
    parser.add_argument("--sessions", type=Path, metavar="FILE",
                        help="private values table of the local server (default jsonFiles/sessions.json)")
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS,
                        help="directory for the game's log (default jsonFiles/)")
    parser.add_argument("--logs-dir", type=Path, default=DEFAULT_LOGS,
                        help="directory for the agents' transcripts (default logs/)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.timer_scale is not None and args.timer_scale <= 0:
        parser.error(f"--timer-scale must be positive, got {args.timer_scale:g}")
    if args.safety_margin is not None and args.safety_margin < 0:
        parser.error(f"--safety-margin must not be negative, got {args.safety_margin:g}")
    if args.max_retries < 0 or args.max_concurrent_calls < 1:
        parser.error("--max-retries must be >= 0 and --max-concurrent-calls >= 1")
    return args


# ---------------------------------------------------------------------- policy and model


def choose_policy(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Policy, str]:
    """The policy to play with and the first line that says which (no secret in it)."""
    api_key = env.get("OPENAI_API_KEY", "").strip()
    wanted = args.policy or ("llm" if api_key else "baseline")
    if wanted == "baseline":
        why = "--policy baseline" if args.policy else "no OPENAI_API_KEY set"
        return BaselinePolicy(seed=args.seed), f"policy: baseline ({why})"
    if not api_key:
        raise UsageError("--policy llm needs OPENAI_API_KEY (for a local server that ignores keys, any value)")
    from lib.jobrecord import JobRecordError, resolve_model

    try:
        model, source = resolve_model(env)
    except JobRecordError as exc:
        raise UsageError(str(exc)) from None
    base_url = env.get("OPENAI_BASE_URL", "").strip() or None
    policy = LLMPolicy(api_key=api_key, model=model, base_url=base_url, max_retries=args.max_retries,
                       max_concurrent_calls=args.max_concurrent_calls)
    return policy, f"policy: llm, model {model} (from {source}), endpoint {_public_url(policy.base_url)}"


def _public_url(url: str) -> str:
    """The URL without any user:password part, fit to print."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=f"[redacted]@{netloc}"))


def game_overrides(args: argparse.Namespace, scale: float) -> dict[str, Any]:
    """Parameters of the local game: the real server's defaults with rounds, practice and scaled timers."""
    defaults = {key: value for key, _kind, value in DEFAULT_PARAMETERS}
    overrides: dict[str, Any] = {"round_count": args.rounds, "practice_round": args.practice}
    for phase in range(1, LAST_PHASE + 1):
        overrides[f"timer_phase_{phase}"] = round(float(defaults[f"timer_phase_{phase}"]) * scale, 3)
    return overrides


def default_margin(params: GameParams) -> float:
    shortest = min(params.timer(p) or MAX_SAFETY_MARGIN * 4 for p in ACTION_PHASES)
    return min(MAX_SAFETY_MARGIN, shortest / 4)


def game_timeout(params: GameParams) -> float:
    """Generous bound on a whole game's duration: every phase running its full timer, twice over."""
    per_round = sum(params.timer(p) or 0 for p in range(1, LAST_PHASE + 1))
    return 2 * per_round * len(params.rounds()) + 30


# ---------------------------------------------------------------------- summary


def _x(amounts: Any) -> str:
    if isinstance(amounts, list) and len(amounts) > PROJECT:
        return str(amounts[PROJECT])
    return "-"


def _vote(vote: Any) -> str:
    if isinstance(vote, list) and len(vote) == 1 and vote[0] in CONDITION_NAMES:
        return CONDITION_NAMES[vote[0]]
    return "-"


def summary_lines(views: Sequence[PlayerView], params: GameParams) -> list[str]:
    """Per round: requests, offer, votes, outcome and each seat's profit, from what the players saw."""
    by_seat = {v.number: v for v in views if v.number is not None}
    developer = next((v for v in by_seat.values() if v.role == 2), None)
    owners = [by_seat[n] for n in sorted(by_seat) if by_seat[n].role == 3]
    lines = []
    for number in params.rounds():
        label = " (practice)" if number == 0 else ""
        lines.append(f"round {number}{label}")
        dev_rec = developer.rounds.get(number) if developer else None
        requests = []
        for owner in owners:
            rec = owner.rounds.get(number)
            seen = dev_rec.requests.get(owner.number) if dev_rec else None
            requests.append(f"{owner.tag} {_x(seen if seen is not None else rec.my_request if rec else None)}")
        lines.append("  requests: " + ", ".join(requests))
        offer = dev_rec.offer if dev_rec else None
        if offer is None:
            offer = next((o.rounds[number].offer for o in owners if number in o.rounds), None)
        lines.append(f"  offer:    {_x(offer)}")
        lines.append("  votes:    " + ", ".join(
            f"{o.tag} {_vote(o.rounds[number].my_vote if number in o.rounds else None)}" for o in owners))
        outcome = next((v.rounds[number].outcome for v in by_seat.values()
                        if number in v.rounds and v.rounds[number].outcome), None)
        if outcome:
            lines.append(f"  outcome:  {CONDITION_NAMES.get(outcome.get('condition'), '?')} "
                         f"({outcome.get('tally')} votes)")
        else:
            lines.append("  outcome:  -")
        profits = []
        for seat in range(1, SEATS + 1):
            rec = by_seat[seat].rounds.get(number) if seat in by_seat else None
            profits.append(f"{seat_tag(seat)} {rec.profit if rec and rec.profit is not None else '-'}")
        lines.append("  profit:   " + ", ".join(profits))
    return lines


# ---------------------------------------------------------------------- the local demo


async def play_local(args: argparse.Namespace, policy: Policy, env: Mapping[str, str], out: Any) -> int:
    from lib.localserver import LocalServer

    scale = args.timer_scale or DEFAULT_SCALE[policy.name]
    overrides = game_overrides(args, scale)
    params = parameters_from_dict(overrides)
    margin = args.safety_margin if args.safety_margin is not None else default_margin(params)
    settings = AgentSettings(chat=args.chat, safety_margin=margin, ready_delay=min(0.2, margin))
    secrets = [env.get(name, "") for name in ("OPENAI_API_KEY", "IBEX_PASSWORD")]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    try:
        # The local server numbers its games after the logs already in the records folder: none is overwritten.
        server = LocalServer(records_dir=args.records, sessions=args.sessions)
    except ValueError as exc:  # the private-values table cannot be read
        raise UsageError(str(exc)) from None
    async with server:
        try:
            game_id = server.create_game(overrides)
        except ValueError as exc:  # parameters or the private-values table do not fit this game
            raise UsageError(str(exc)) from None
        run_dir = args.logs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-local-game{game_id}"
        print(f"local server {server.ws_url}, game {game_id}: {args.rounds} round{'s' if args.rounds > 1 else ''}"
              f"{' after a practice round' if args.practice else ''}, timers x{scale:g}, "
              f"safety margin {margin:g} s, chat {'on' if args.chat else 'off'}", file=out, flush=True)
        print(f"transcripts: {run_dir}/", file=out, flush=True)
        with contextlib.ExitStack() as closing:
            transcripts = [closing.enter_context(Transcript(run_dir / f"agent{k}.jsonl", secrets=secrets))
                           for k in range(1, SEATS + 1)]
            agents = [Agent(server.ws_url, game_id, _recovery(), policy, transcripts[k - 1], params=params,
                            settings=settings, name=f"agent{k}") for k in range(1, SEATS + 1)]
            outcome = await _run_agents(agents, stop, game_timeout(params))
            if outcome == "stopped":
                print("stopped by signal: sockets closed, transcripts flushed", file=out, flush=True)
                return 0
            if outcome != "game-over":
                print(f"error: {outcome}", file=sys.stderr, flush=True)
                return 1
            await server.wait_game_over(game_id, timeout=5)
        for line in summary_lines([a.view for a in agents], params):
            print(line, file=out)
        print(f"game log: {server.log_path(game_id)}", file=out)
        print(f"fallback actions: {sum(a.fallbacks for a in agents)}", file=out, flush=True)
    return 0


def _recovery() -> str:
    import secrets

    return secrets.token_hex(32)


async def _run_agents(agents: list[Agent], stop: asyncio.Event, timeout: float) -> str:
    """Start the agents one after another (so agent k gets seat k), then wait for game-over, a signal, a failed
    agent or the timeout. Returns "game-over", "stopped" or what went wrong."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[PlayerView]] = []
    stopper = asyncio.ensure_future(stop.wait())
    try:
        for agent in agents:
            tasks.append(asyncio.ensure_future(agent.run()))
            joined = asyncio.ensure_future(agent.joined.wait())
            await asyncio.wait({joined, stopper}, timeout=JOIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            joined.cancel()
            if stop.is_set():
                break
        give_up = loop.time() + timeout
        pending: set[asyncio.Future[Any]] = set(tasks)
        while pending and not stop.is_set():
            left = give_up - loop.time()
            if left <= 0:
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


async def _cancel(tasks: list[asyncio.Task[Any]], result: str) -> str:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


async def _main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    policy, first_line = choose_policy(args, env)
    print(first_line, flush=True)
    try:
        return await play_local(args, policy, env, sys.stdout)
    finally:
        if isinstance(policy, LLMPolicy):
            await policy.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env")
    if not args.local:
        print("error: nothing to do: use --local for the offline demo (joining real IBEX games comes with "
              "--game/--create/--serve)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args, dict(os.environ)))
    except (UsageError, ParamError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
