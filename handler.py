"""Run LLM (or baseline) agents as players of IBEX voting, Harberger and futarchy games.

    python handler.py --local                      offline demo: a local IBEX server, one game, six agents
    python handler.py --game ID [--players N] [--recovery CODE ...]
                                                   join an existing game on the IBEX server
    python handler.py --create [--game-type harberger|futarchy] [--agents-only] [--params FILE] [--players N]
                               [--rounds N] [--no-practice] [--timer-scale X]
                                                   create a game with create-for-llm, then play it
    python handler.py --serve                      the agent manager for agents-only games (serverStarter.sh)

--local starts lib.localserver.server in this process, creates a game, runs six agents (lib.agents.agent) to game-over,
writes
the game's log into logs/local-games/ (never into the jsonFiles/ that constructDataset.py reads) and one
transcript per agent under logs/, and prints each round's summary as the round ends.

The other modes talk to a real server: IBEX_WS_URL (ws://HOST:3088, or wss://HOST/wss behind a reverse proxy)
and IBEX_API_URL (http://HOST:3080/api/v1 or https://HOST/api/v1), from .env or --ws-url / --api-url; both
default to the local ports. --game takes the given recovery codes first (a code the server knows resumes its
seat after a crash) and fetches fresh ones with get-recovery for the other seats it should fill (--players N;
by default every free seat, or only the given codes); seats left over stay free for humans. The codes of a run
are kept in logs/<run>/seats.json (private file) to resume it. --create needs IBEX_USERNAME and IBEX_PASSWORD;
its parameters are the real server's defaults (its web UI's for the game type: --game-type, or the game_type of
--params; voting without either) with --params FILE and --rounds, --practice/--no-practice and --timer-scale on
top, sent in the nested form the server reads (lib/agents/realserver.py, lib/ibex/createparams.py); a market game gets
twelve agents,
one per seat, by default. With --agents-only
the server asks an agent manager for the agents: this process is that manager for its game when nobody else
listens on AGENT_MANAGER_HOST:AGENT_MANAGER_PORT, and plays the game itself when the server's call fails.
--serve listens there (default 127.0.0.1:10341) for the server's POST /spawn-agents, answers at once and plays
every game it is asked to, several at a time (lib/agents/manager.py).

Agents reconnect and resync on their own when the network fails (lib/agents/agent.py). Without OPENAI_API_KEY the
agents play the baseline policy (lib.games.voting.policy) and the first line says so. Settings come from the environment
or
.env: OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL, IBEX_WS_URL, IBEX_API_URL, IBEX_USERNAME, IBEX_PASSWORD,
AGENT_MANAGER_HOST, AGENT_MANAGER_PORT.

Honest runs: with a model, one cheap preflight call checks endpoint, key and model before any agent joins (exit 4
when it fails; --no-preflight skips it). Every decision becomes a row of decisions.csv in the run's folder saying
who made it (lib/agents/decisions.py); the rounds mark fallbacks, the last lines give the shares, and a fallback share
above --max-fallback-share (default 0.2 for a model) exits 3 after the game. SIGTERM or SIGINT: the agents close
their sockets (code 1001), the transcripts get a final "shutdown" record, the rounds played and the shares are
printed, and the handler exits 143 or 130 (--serve: 0, its normal stop). Exit codes: 0 played, 1 not playable,
2 usage, 3 too many fallbacks, 4 preflight failed, 130/143 signal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.agents import decisions
from lib.agents.agent import Agent, AgentError, AgentSettings
from lib.agents.llm import DEFAULT_MAX_CONCURRENT_CALLS, DEFAULT_MAX_RETRIES, LLMPolicy, PreflightError
from lib.agents.manager import DEFAULT_HOST, DEFAULT_PORT, AgentManager, run_agent_manager
from lib.agents.realserver import (
    MAX_PLAYERS,
    NOT_STARTED_WAIT,
    PlayError,
    Seat,
    ServerUrls,
    game_type_of,
    last_phase,
    load_game_parameters,
    prepare_seats,
    seats_of,
    server_urls,
)
from lib.agents.transcript import Transcript
from lib.games.voting.actions import DECISION, OFFER, REQUEST
from lib.games.voting.policy import BaselinePolicy, Policy
from lib.games.voting.rules import (
    CONDITIONS,
    DEFAULT_PARAMETERS,
    LAST_PHASE,
    PHASES,
    PROJECT,
    SEATS,
    GameParams,
    ParamError,
    parameters_from_dict,
    seat_tag,
)
from lib.games.voting.view import PlayerView
from lib.ibex.api import IbexApi, IbexApiError
from lib.training.jobrecord import DEFAULT_RECORD_PATH, JobRecordError, resolve_model
from lib.util import redact

ROOT = Path(__file__).resolve().parent
# --local's game logs stay out of jsonFiles/, which constructDataset.py reads: demo games are no human data.
DEFAULT_RECORDS = ROOT / "logs" / "local-games"
DEFAULT_LOGS = ROOT / "logs"
DEFAULT_MAX_FALLBACK_SHARE = 0.2  # for a model policy: more fallbacks than this and the run does not show the model
# Exit codes (docs/running-agents.md, "Exit codes"). A signal exits 128 + its number: 130 for SIGINT (Ctrl-C),
# 143 for SIGTERM.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FALLBACKS, EXIT_PREFLIGHT = 0, 1, 2, 3, 4
DEFAULT_ROUNDS = 2
# Local demo timers: the real server's defaults (minutes per phase) scaled down. A model needs seconds per
# answer, the baseline none.
DEFAULT_SCALE = {"baseline": 0.02, "fitted": 0.02, "empirical": 0.02, "llm": 0.25}
MAX_SAFETY_MARGIN = 2.0  # seconds, for real timers; scaled-down timers get a quarter of their shortest action phase
JOIN_TIMEOUT = 10.0
ACTION_PHASES = (3, 4, 6)
MARKET_ACTION_PHASES = (2, 3, 6, 7, 8)  # declarations, snipes, the market
# Transcripts reach the OS line by line unless --transcript-batch asks for batches (hundreds of agents in one
# process: the writes then leave the path from frame to answer; a SIGKILL loses at most that many seconds).
DEFAULT_TRANSCRIPT_BATCH = 0.0
SPAWN_WAIT = 10.0  # seconds --create --agents-only waits for the server's /spawn-agents call for its game
DEFAULT_WS_URL = "ws://127.0.0.1:3088"
DEFAULT_API_URL = "http://127.0.0.1:3080/api/v1"
CONDITION_NAMES = {cond["id"]: cond["name"] for cond in CONDITIONS}


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python handler.py",
        description="Run agents in IBEX voting, Harberger and futarchy games: an offline demo (--local), an existing "
                    "game (--game), a new game (--create), or the agent manager for agents-only games (--serve).",
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--local", action="store_true",
                       help="start a local IBEX server in this process, play one game, print a summary")
    modes.add_argument("--game", type=int, metavar="ID", help="join game ID on the IBEX server and play it")
    modes.add_argument("--create", action="store_true",
                       help="create a game with create-for-llm (IBEX_USERNAME, IBEX_PASSWORD), then play it")
    modes.add_argument("--serve", action="store_true",
                       help="agent manager: answer the server's POST /spawn-agents on AGENT_MANAGER_HOST:"
                            "AGENT_MANAGER_PORT and play every agents-only game it asks for")
    real = parser.add_argument_group("real server (--game, --create, --serve)")
    real.add_argument("--ws-url", metavar="URL", help=f"WebSocket URL (default $IBEX_WS_URL, else {DEFAULT_WS_URL})")
    real.add_argument("--api-url", metavar="URL",
                      help=f"REST base URL (default $IBEX_API_URL, else {DEFAULT_API_URL})")
    real.add_argument("--players", type=int, metavar="N",
                      help="seats to fill (--game: default every free seat, or only the --recovery codes; "
                           "--create: default all, 6 in a voting game, 12 in a market game); the others stay free "
                           "for humans")
    real.add_argument("--recovery", nargs="+", action="extend", default=[], metavar="CODE",
                      help="--game: recovery codes to play with; a code the server knows resumes its seat")
    real.add_argument("--params", type=Path, metavar="FILE",
                      help="--create: JSON game parameters over the real server's defaults (lib/agents/realserver.py)")
    real.add_argument("--agents-only", action="store_true",
                      help="--create: an agents-only game, whose agents the server asks an agent manager for")
    parser.add_argument("--policy", choices=("llm", "baseline", "fitted", "empirical"),
                        help="who decides: a chat model (needs OPENAI_API_KEY), the built-in baseline rules, or those "
                             "rules with the parameters finetune.py --evaluate fitted to humans (data/"
                             "fitted_policy.json), or empirical: those rules drawing from the training humans' own "
                             "decisions (lib/games/voting/empirical.py) "
                             "(default: llm when OPENAI_API_KEY is set, else baseline)")
    parser.add_argument("--fitted-params", type=Path, metavar="FILE",
                        help="--policy fitted: the parameters to play (default: the newest data/evaluations/*/"
                             "fitted_policy.json)")
    parser.add_argument("--empirical-params", type=Path, metavar="FILE",
                        help="--policy empirical: the samples to draw from (default: the newest "
                             "data/evaluations/*/empirical_policy.json)")
    parser.add_argument("--rounds", type=int,
                        help=f"paid rounds of the new game (--local: default {DEFAULT_ROUNDS}; --create: default "
                             "the --params file's, else the real server's 5)")
    practice = parser.add_mutually_exclusive_group()
    practice.add_argument("--practice", dest="practice", action="store_true", default=None,
                          help="play a practice round 0 first (the default of --local and of the real server)")
    practice.add_argument("--no-practice", dest="practice", action="store_false", default=None,
                          help="no practice round")
    parser.add_argument("--timer-scale", type=float,
                        help="multiply the real server's phase timers by this (--local: default "
                             f"{DEFAULT_SCALE['baseline']} with the baseline, {DEFAULT_SCALE['llm']} with a model; "
                             "--create: the --params file's timers, rounded to whole seconds, default 1)")
    parser.add_argument("--game-type", choices=("voting", "harberger", "futarchy"),
                        help="--local, --create: the game to play (default voting, or for --create the game_type of "
                             "--params; harberger and futarchy: 12 agents)")
    parser.add_argument("--chat", action="store_true", help="let the agents talk in the chat phases 2 and 5")
    parser.add_argument("--safety-margin", type=float,
                        help="seconds before a phase deadline by which every action is out; a fallback action goes "
                             f"out then if the model has no valid answer (default {MAX_SAFETY_MARGIN:g}, or a "
                             "quarter of the shortest action phase when timers are scaled below that)")
    parser.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES,
                        help="extra model calls after an invalid answer or an API error "
                             f"(default {DEFAULT_MAX_RETRIES})")
    parser.add_argument("--job-record", type=Path, default=DEFAULT_RECORD_PATH, metavar="FILE",
                        help="fine-tuning record whose model plays when OPENAI_MODEL is empty "
                             "(default data/finetune_job.json)")
    parser.add_argument("--no-preflight", dest="preflight", action="store_false",
                        help="skip the one cheap model call that checks endpoint, key and model before any agent "
                             "joins (llm policy)")
    parser.add_argument("--max-fallback-share", type=float, metavar="SHARE",
                        help="with the llm policy, exit with code 3 after the game when more than this share of "
                             f"the decisions were fallbacks (default {DEFAULT_MAX_FALLBACK_SHARE:g}; 1 never)")
    parser.add_argument("--max-concurrent-calls", type=int, default=DEFAULT_MAX_CONCURRENT_CALLS,
                        help="model calls in flight at once, all agents together "
                             f"(default {DEFAULT_MAX_CONCURRENT_CALLS})")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the baseline policy's chat phrasing and the empirical policy's draws (default 0)")
    parser.add_argument("--sessions", type=Path, metavar="FILE",
                        help="private values table of the local server (default jsonFiles/sessions.json)")
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS,
                        help="--local: directory for the game's log (default logs/local-games/, outside the "
                             "jsonFiles/ that constructDataset.py reads)")
    parser.add_argument("--transcript-batch", type=float, default=DEFAULT_TRANSCRIPT_BATCH, metavar="SECONDS",
                        help="write transcript lines in batches at most this many seconds apart, for hundreds of "
                             "agents in one process (default 0: every line reaches the OS as it is written)")
    parser.add_argument("--logs-dir", type=Path, default=DEFAULT_LOGS,
                        help="directory for the agents' transcripts (default logs/)")
    args = parser.parse_args(argv)
    if args.recovery and args.game is None:
        parser.error("--recovery works with --game only")
    if (args.params or args.agents_only) and not args.create:
        parser.error("--params and --agents-only work with --create only")
    if args.players is not None and args.game is None and not args.create:
        parser.error("--players works with --game and --create only")
    if args.players is not None and not 1 <= args.players <= MAX_PLAYERS:
        parser.error(f"--players must be from 1 to {MAX_PLAYERS}, got {args.players}")
    if args.agents_only and args.players is not None:
        parser.error("--players does not go with --agents-only: the server asks for every seat")
    if not (args.local or args.create) and (
            args.rounds is not None or args.practice is not None or args.timer_scale is not None):
        parser.error("--rounds, --practice/--no-practice and --timer-scale set up a new game: they work with --local "
                     "and --create only")
    if args.sessions is not None and not args.local:
        parser.error("--sessions is the local server's private values table: it works with --local only")
    if args.game_type is not None and not (args.local or args.create):
        parser.error("--game-type chooses the game of --local and --create; in a running game the server says it")
    if args.game_type in ("harberger", "futarchy") and args.policy == "fitted":
        # refused here, before the policy line or anything else is printed (lib.games.market.play.market_policy agrees)
        parser.error(f"--policy fitted plays voting games only; {args.game_type} has no fitted version (use "
                     "--policy baseline or llm)")
    if args.game_type in ("harberger", "futarchy") and args.chat:
        parser.error(f"--chat: {args.game_type} has no chat (the server has no chat handler in these games)")
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.local:
        args.game_type = args.game_type or "voting"
        args.rounds = DEFAULT_ROUNDS if args.rounds is None else args.rounds
        args.practice = True if args.practice is None else args.practice
    if args.timer_scale is not None and args.timer_scale <= 0:
        parser.error(f"--timer-scale must be positive, got {args.timer_scale:g}")
    if args.safety_margin is not None and args.safety_margin < 0:
        parser.error(f"--safety-margin must not be negative, got {args.safety_margin:g}")
    if args.max_retries < 0 or args.max_concurrent_calls < 1:
        parser.error("--max-retries must be >= 0 and --max-concurrent-calls >= 1")
    if args.max_fallback_share is not None and not 0 <= args.max_fallback_share <= 1:
        parser.error(f"--max-fallback-share must be from 0 to 1, got {args.max_fallback_share:g}")
    return args


# ---------------------------------------------------------------------- policy and model


def choose_policy(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Policy, str]:
    """The policy to play with and the first line that says which (no secret in it)."""
    api_key = env.get("OPENAI_API_KEY", "").strip()
    wanted = args.policy or ("llm" if api_key else "baseline")
    if wanted == "baseline":
        why = "--policy baseline" if args.policy else "no OPENAI_API_KEY set"
        return BaselinePolicy(seed=args.seed), f"policy: baseline ({why})"
    if wanted == "fitted":
        from lib.games.voting import fitted

        path = args.fitted_params or fitted.newest_params(ROOT / "data")
        try:
            params = fitted.load(path)
        except fitted.FittedError as exc:
            raise UsageError(str(exc)) from None
        shown = ", ".join(f"{key} {value:g}" for key, value in params.items())
        return BaselinePolicy(seed=args.seed, name="fitted", **params), (f"policy: fitted ({shown}, from {path}"
                                                                   f"{'' if args.fitted_params else ', the newest'})")
    if wanted == "empirical":
        from lib.games.voting import empirical

        try:
            return empirical.playing(args.empirical_params or empirical.newest_samples(ROOT / "data"), args.seed)
        except empirical.EmpiricalError as exc:
            raise UsageError(str(exc)) from None
    if not api_key:
        raise UsageError("--policy llm needs OPENAI_API_KEY (for a local server that ignores keys, any value)")
    try:
        model, source = resolve_model(env, args.job_record)
    except JobRecordError as exc:
        raise UsageError(str(exc)) from None
    base_url = env.get("OPENAI_BASE_URL", "").strip() or None
    policy = LLMPolicy(api_key=api_key, model=model, base_url=base_url, max_retries=args.max_retries,
                       max_concurrent_calls=args.max_concurrent_calls)
    return policy, f"policy: llm, model {model} (from {source}), endpoint {_public_url(policy.base_url)}"


_public_url = redact.public_url  # without any user:password part, fit to print


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


def rounds_seen(views: Sequence[PlayerView]) -> list[int]:
    """The rounds any of the players has a result for (when the game's parameters are unknown)."""
    return sorted({n for v in views for n, rec in v.rounds.items() if rec.outcome or rec.profit is not None})


def summary_lines(views: Sequence[PlayerView], rounds: Sequence[int],
                  marks: Mapping[tuple[int, int, str], str] | None = None, unfinished: bool = False) -> list[str]:
    """Per round: requests, offer, votes, outcome and each seat's profit, from what the players saw (seats played
    by others show "-"). `marks[(round, seat, action type)]` follows that seat's action: a fallback's reason."""
    marks = marks or {}

    def mark(number: int, seat: int | None, wire_type: str) -> str:
        text = marks.get((number, seat or 0, wire_type))
        return f" [{text}]" if text else ""

    by_seat = {v.number: v for v in views if v.number is not None}
    developer = next((v for v in by_seat.values() if v.role == 2), None)
    owners = [by_seat[n] for n in sorted(by_seat) if by_seat[n].role == 3]
    lines = []
    for number in rounds:
        label = (" (practice)" if number == 0 else "") + (" (unfinished)" if unfinished else "")
        lines.append(f"round {number}{label}")
        dev_rec = developer.rounds.get(number) if developer else None
        requests = []
        for owner in owners:
            rec = owner.rounds.get(number)
            seen = dev_rec.requests.get(owner.number) if dev_rec else None
            requests.append(f"{owner.tag} {_x(seen if seen is not None else rec.my_request if rec else None)}"
                            f"{mark(number, owner.number, REQUEST)}")
        lines.append("  requests: " + ", ".join(requests))
        offer = dev_rec.offer if dev_rec else None
        if offer is None:
            offer = next((o.rounds[number].offer for o in owners if number in o.rounds), None)
        lines.append(f"  offer:    {_x(offer)}{mark(number, developer.number if developer else None, OFFER)}")
        lines.append("  votes:    " + ", ".join(
            f"{o.tag} {_vote(o.rounds[number].my_vote if number in o.rounds else None)}"
            f"{mark(number, o.number, DECISION)}" for o in owners))
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


class Progress:
    """What one game prints as it goes: a short line when a model starts deciding in a phase, and each round's
    summary (fallbacks marked, then who decided) as soon as every agent of ours has left that round. `compact`
    (--serve, many games at once): one line per finished round instead."""

    def __init__(self, say: Any, game_id: int, params: GameParams | None, compact: bool = False) -> None:
        self.say = say
        self.game_id = game_id
        self.params = params
        self.compact = compact
        self.agents: list[Agent] = []
        self.log: decisions.DecisionLog | None = None
        self.printed: set[int] = set()
        self._announced: set[tuple[int, int]] = set()

    def hear(self, kind: str, info: Any) -> None:
        """DecisionLog listener: a model starting to decide in a new phase gets one short line."""
        if kind != "start" or self.compact or not info.get("model"):
            return
        key = (info["round"], info["phase"])
        if key not in self._announced:
            self._announced.add(key)
            self.say(f"  round {key[0]}, phase {key[1]} ({PHASES.get(key[1], '?')}): the model is deciding ...")

    def on_phase(self, _agent: Agent | None = None) -> None:
        """Print every round that all our agents have finished and that is not printed yet."""
        views = [a.view for a in self.agents]
        if not views:
            return
        over = all(v.game_over for v in views)
        playing = [v.round for v in views if not v.game_over]
        if over:
            rounds = self.params.rounds() if self.params is not None else rounds_seen(views)
        else:
            rounds = sorted({n for v in views for n, rec in v.rounds.items() if n < min(playing) and _began(rec)})
        for number in rounds:
            if number not in self.printed:
                self.printed.add(number)
                self.print_round(number)

    def rows(self, number: int | None = None) -> list[decisions.Decision]:
        rows = self.log.rows if self.log is not None else []
        return [r for r in rows if r.game == self.game_id and (number is None or r.round == number)]

    def shares(self, number: int | None = None) -> str:
        made_by: Counter[str] = Counter(r.made_by for r in self.rows(number))
        reasons: Counter[str] = Counter(r.fallback_reason or "?" for r in self.rows(number)
                                        if r.made_by == decisions.FALLBACK)
        return decisions.shares_line(made_by, reasons)

    def print_round(self, number: int, unfinished: bool = False) -> None:
        views = [a.view for a in self.agents]
        marks = {(r.round, r.seat, r.action_type): f"fallback: {r.fallback_reason}" for r in self.rows(number)
                 if r.made_by == decisions.FALLBACK}
        lines = summary_lines(views, [number], marks, unfinished=unfinished)
        if self.compact:
            parts = [line.strip() for line in lines[1:] if line.strip().startswith(("offer", "outcome"))]
            self.say(f"game {self.game_id} {lines[0]}: " + ", ".join(" ".join(p.split()) for p in parts)
                     + f"; {self.shares(number)}")
            return
        for line in lines:
            self.say(line)
        self.say(f"  {self.shares(number)}")

    def stopped(self) -> None:
        """After a signal: the round under way, as far as it went (finished rounds are printed already)."""
        self.on_phase()
        views = [a.view for a in self.agents]
        current = max((v.round for v in views), default=None)
        if current is not None and current not in self.printed and any(
                _began(v.rounds[current]) for v in views if current in v.rounds):
            self.printed.add(current)
            self.print_round(current, unfinished=True)


def _began(rec: Any) -> bool:
    """Whether a round record holds anything of a round that began (a view may hold an empty one)."""
    return any(x is not None for x in (rec.values, rec.my_request, rec.offer, rec.my_vote, rec.outcome,
                                       rec.profit)) or bool(rec.requests or rec.chat)


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
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.set, signum)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name


def fallback_limit(args: argparse.Namespace, policy: Policy) -> float | None:
    """The fallback share above which the run fails (a model policy only; rules have nothing to fall back from)."""
    if not isinstance(policy, LLMPolicy):
        return None
    return DEFAULT_MAX_FALLBACK_SHARE if args.max_fallback_share is None else args.max_fallback_share


def verdict(log: decisions.DecisionLog, limit: float | None, out: Any) -> int:
    """Where the decisions table is, the shares line last, and exit code 3 when the fallbacks exceed the limit."""
    print(f"decisions table: {log.path}", file=out, flush=True)
    print(decisions.shares_line(log.made_by, log.reasons), file=out, flush=True)  # the run's last line
    if limit is not None and log.total and log.fallback_share() > limit:
        print(f"error: {log.made_by[decisions.FALLBACK]} of {log.total} decisions "
              f"({100 * log.fallback_share():.1f}%) were fallbacks, more than --max-fallback-share {limit:g}: "
              "this run does not show the model's play (exit code 3)", file=sys.stderr, flush=True)
        return EXIT_FALLBACKS
    return EXIT_OK


# ---------------------------------------------------------------------- the local demo


async def play_local(args: argparse.Namespace, policy: Policy, env: Mapping[str, str], out: Any) -> int:
    from lib.localserver.server import LocalServer

    if args.game_type != "voting":
        from lib.games.market import play as marketplay

        stop = Stop()
        stop.install()
        return await marketplay.play_local_market(args, policy, env, out, run_agents=_run_agents, stop=stop,
                                                  verdict=verdict, fallback_limit=fallback_limit,
                                                  recovery=_recovery, usage_error=UsageError)

    scale = args.timer_scale or DEFAULT_SCALE[policy.name]
    overrides = game_overrides(args, scale)
    params = parameters_from_dict(overrides)
    margin = args.safety_margin if args.safety_margin is not None else default_margin(params)
    settings = AgentSettings(chat=args.chat, safety_margin=margin, ready_delay=min(0.2, margin))
    secrets = redact.secrets_from_env(env)
    stop = Stop()
    stop.install()

    def say(line: str) -> None:
        print(line, file=out, flush=True)

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
        say(f"local server {server.ws_url}, game {game_id}: {args.rounds} round{'s' if args.rounds > 1 else ''}"
            f"{' after a practice round' if args.practice else ''}, timers x{scale:g}, "
            f"safety margin {margin:g} s, chat {'on' if args.chat else 'off'}")
        say(f"transcripts: {run_dir}/ (decisions table: decisions.csv there)")
        progress = Progress(say, game_id, params)
        with contextlib.ExitStack() as closing:
            transcripts = [closing.enter_context(Transcript(run_dir / f"agent{k}.jsonl", secrets=secrets,
                                                            flush_delay=args.transcript_batch))
                           for k in range(1, SEATS + 1)]
            log = closing.enter_context(decisions.DecisionLog(run_dir / "decisions.csv", listener=progress.hear,
                                                              secrets=secrets))
            progress.log = log
            async with IbexApi(server.api_url) as api:
                agents = [Agent(server.ws_url, game_id, _recovery(), policy, transcripts[k - 1], params=params,
                                settings=settings, name=f"agent{k}", api=api, decision_log=log,
                                on_phase=progress.on_phase) for k in range(1, SEATS + 1)]
                progress.agents = agents
                outcome = await _run_agents(agents, stop.event, game_timeout(params))
            if outcome == "stopped":
                progress.stopped()
                say(f"stopped by {stop.name}: sockets closed, transcripts and decisions table complete; "
                    "the unfinished game has no log")
                verdict(log, None, out)
                return stop.exit_code
            if outcome != "game-over":
                print(f"error: {outcome}", file=sys.stderr, flush=True)
                verdict(log, None, out)
                return EXIT_ERROR
            await server.wait_game_over(game_id, timeout=5)
            progress.on_phase()
            say(f"game log: {server.log_path(game_id)}")
            say(f"fallback actions: {sum(a.fallbacks for a in agents)}")
            return verdict(log, fallback_limit(args, policy), out)


def _recovery() -> str:
    import secrets

    return secrets.token_hex(32)


async def _run_agents(agents: list[Agent], stop: asyncio.Event, timeout: float | None) -> str:
    """Start the agents one after another (so agent k gets seat k), then wait for game-over, a signal, a failed
    agent or the timeout. Returns "game-over", "stopped" or what went wrong. Cancelled itself (the agent manager
    shutting down), it cancels the agents and waits for them to close their sockets."""
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


# ---------------------------------------------------------------------- a real server


@dataclass
class Real:
    """What every real-server mode shares: settings, the policy, the server and one REST client."""

    args: argparse.Namespace
    env: Mapping[str, str]
    policy: Policy
    urls: ServerUrls
    api: IbexApi
    stop: Stop
    out: Any

    @property
    def secrets(self) -> list[str]:
        return redact.secrets_from_env(self.env)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def _rounds(count: int) -> str:
    return f"{count} round{'s' if count != 1 else ''}"


def _describe(params: GameParams, parameters: dict[str, Any]) -> str:
    """What --create asked the server for: the game type (other than voting), rounds, practice, phase timers,
    title."""
    timers = "/".join(f"{params.timer(p):g}" for p in range(1, last_phase(params) + 1))
    kind = "" if params.game_type == "voting" else f"{params.game_type}, "
    return (f"{kind}{_rounds(params.round_count)}{' after a practice round' if params.practice_round else ''}, "
            f"phase timers {timers} s, title {parameters.get('title')!r}")


def real_server(args: argparse.Namespace, env: Mapping[str, str]) -> ServerUrls:
    """IBEX_WS_URL / IBEX_API_URL (or the flags), defaulting to a server on this machine."""
    defaults = {"IBEX_WS_URL": DEFAULT_WS_URL, "IBEX_API_URL": DEFAULT_API_URL}
    merged = {**defaults, **{k: v for k, v in env.items() if k in defaults and v.strip()}}
    try:
        return server_urls(merged, args.ws_url, args.api_url)
    except PlayError as exc:
        raise UsageError(str(exc)) from None


def agent_manager_address(env: Mapping[str, str]) -> tuple[str, int]:
    host = env.get("AGENT_MANAGER_HOST", "").strip() or DEFAULT_HOST
    text = env.get("AGENT_MANAGER_PORT", "").strip() or str(DEFAULT_PORT)
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"AGENT_MANAGER_PORT must be a port number (1-65535), got {text!r}")
    return host, int(text)


def write_seats_file(run_dir: Path, game_id: int, seats: Sequence[Seat]) -> Path:
    """The run's recovery codes, readable by the owner only, to resume the seats after a crash (--recovery)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "seats.json"
    body = {"game_id": game_id, "seats": [{"agent": f"agent{k}", "recovery": seat.recovery, "resumes": seat.resumes}
                                          for k, seat in enumerate(seats, 1)]}
    fd, tmp = tempfile.mkstemp(prefix=".seats.", dir=run_dir)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(body, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass
class GameRun:
    """One game played by this process: how it ended, its agents, its decisions table and its live output."""

    game_id: int
    outcome: str
    agents: list[Agent]
    log: decisions.DecisionLog
    progress: Progress


async def play_seats(real: Real, game_id: int, seats: Sequence[Seat], params: GameParams | None,
                     compact: bool = False, game_type: str = "voting") -> GameRun:
    """One agent per seat, joined in order, until game-over."""
    args = real.args
    market = game_type != "voting"
    if args.safety_margin is not None:
        margin = args.safety_margin
    elif params is None:
        margin = MAX_SAFETY_MARGIN
    else:
        margin = default_margin(params) if not market else min(MAX_SAFETY_MARGIN, min(
            params.timer(p) or MAX_SAFETY_MARGIN * 4 for p in MARKET_ACTION_PHASES) / 4)
    settings = AgentSettings(chat=args.chat, safety_margin=margin)
    run_dir = args.logs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-game{game_id}"
    seats_file = write_seats_file(run_dir, game_id, seats)
    real.say(f"game {game_id}: {len(seats)} agent{'s' if len(seats) > 1 else ''}: "
             + "; ".join(seat.describe() for seat in seats))
    real.say(f"transcripts: {run_dir}/ (decisions table: decisions.csv there; recovery codes to resume: "
             f"{seats_file}, private)")
    if market:
        from lib.games.market import play as marketplay

        progress: Any = marketplay.MarketProgress(real.say, game_id, compact=compact)
    else:
        progress = Progress(real.say, game_id, params, compact=compact)
    with contextlib.ExitStack() as closing:
        transcripts = [closing.enter_context(Transcript(run_dir / f"agent{k}.jsonl", secrets=real.secrets,
                                                        flush_delay=args.transcript_batch))
                       for k in range(1, len(seats) + 1)]
        log = closing.enter_context(decisions.DecisionLog(run_dir / "decisions.csv",
                                                          listener=None if market else progress.hear,
                                                          secrets=real.secrets))
        progress.log = log
        if market:
            agents = marketplay.market_agents(real.urls.ws_url, game_id, seats, real.policy, transcripts,
                                              params=params, settings=settings, api=real.api, log=log,
                                              on_phase=progress.on_phase, seed=args.seed,
                                              game_type=game_type if game_type != "market" else None)
        else:
            agents = [Agent(real.urls.ws_url, game_id, seat.recovery, real.policy, transcripts[k], params=params,
                            settings=settings, name=f"agent{k + 1}", api=real.api,
                            resume=seat.resumes is not None, decision_log=log, on_phase=progress.on_phase)
                      for k, seat in enumerate(seats)]
        progress.agents = agents
        outcome = await _run_agents(agents, real.stop.event, None)
    return GameRun(game_id, outcome, agents, log, progress)


def report_game(real: Real, run: GameRun) -> int:
    """The end of a game: the rounds not printed yet and the decision shares, or why it did not finish; the exit
    code."""
    if run.outcome == "stopped":
        run.progress.stopped()
        real.say(f"stopped by {real.stop.name}: sockets closed, transcripts and decisions table complete")
        verdict(run.log, None, real.out)
        return real.stop.exit_code
    if run.outcome != "game-over":
        print(f"error: game {run.game_id}: {run.outcome}", file=sys.stderr, flush=True)
        verdict(run.log, None, real.out)
        return EXIT_ERROR
    run.progress.on_phase()
    real.say(f"game {run.game_id} over; reconnects: {sum(a.reconnects for a in run.agents)}, "
             f"fallback actions: {sum(a.fallbacks for a in run.agents)}")
    return verdict(run.log, fallback_limit(real.args, real.policy), real.out)


async def play_game_mode(real: Real) -> int:
    """--game ID: given codes first, then fresh ones up to --players."""
    game_id = real.args.game
    seats = await prepare_seats(real.api, game_id, real.args.players, list(real.args.recovery))
    game_type = await game_type_of(real.api, game_id, seats[0].recovery) if seats else "voting"
    return report_game(real, await play_seats(real, game_id, seats, None, game_type=game_type))


async def create_mode(real: Real) -> int:
    """--create: create-for-llm, then play (or, agents only, let the agent manager the server calls play)."""
    args, env = real.args, real.env
    username, password = env.get("IBEX_USERNAME", "").strip(), env.get("IBEX_PASSWORD", "")
    if not username or not password:
        missing = "IBEX_USERNAME" if not username else "IBEX_PASSWORD"
        raise UsageError(f"missing setting {missing} (the admin account create-for-llm logs in with; set it in .env)")
    try:
        parameters, params = load_game_parameters(args.params, agents_only=args.agents_only, rounds=args.rounds,
                                                  practice=args.practice, timer_scale=args.timer_scale,
                                                  game_type=args.game_type)
    except PlayError as exc:
        raise UsageError(str(exc)) from None
    if args.players is not None and args.players > seats_of(params):
        raise UsageError(f"--players {args.players}: a {params.game_type} game has {seats_of(params)} seats")
    if params.game_type != "voting" and args.chat:
        raise UsageError(f"--chat: {params.game_type} has no chat (the server has no chat handler in these games)")
    if not args.agents_only:
        created = await real.api.create_for_llm(username, password, parameters)
        real.say(f"created game {created.id}: {_describe(params, parameters)}")
        seats = await prepare_seats(real.api, created.id, args.players or seats_of(params), [])
        return report_game(real, await play_seats(real, created.id, seats, params, game_type=params.game_type))
    return await create_agents_only(real, username, password, parameters, params)


async def create_agents_only(real: Real, username: str, password: str, parameters: dict[str, Any],
                             params: GameParams) -> int:
    """An agents-only game: the server POSTs /spawn-agents while it creates the game. This process answers that
    call itself when the agent manager's address is free; when another agent manager took the call, that one
    plays; when the call failed, this process plays every seat directly."""
    host, port = agent_manager_address(real.env)
    loop = asyncio.get_running_loop()
    ours: asyncio.Future[int] = loop.create_future()  # the id create-for-llm answers with
    played: asyncio.Future[GameRun] = loop.create_future()

    async def spawn(game_id: int, agents: int) -> None:
        if await asyncio.wait_for(asyncio.shield(ours), SPAWN_WAIT) != game_id:
            real.say(f"ignored a /spawn-agents call for game {game_id}: this process plays only its own game")
            return
        try:
            seats = [Seat(await real.api.get_recovery(game_id, wait_for_start=NOT_STARTED_WAIT))
                     for _ in range(agents)]
            result = await play_seats(real, game_id, seats, params, game_type=params.game_type)
        except Exception as exc:
            if not played.done():
                played.set_exception(exc)
            raise
        if not played.done():
            played.set_result(result)

    manager: AgentManager | None = None
    candidate = AgentManager(spawn, host, port)
    try:
        await candidate.start()
        manager = candidate
        real.say(f"agent manager for this game listening on {manager.url}")
    except OSError:
        real.say(f"{host}:{port} is taken (an agent manager runs there?): the server's call for agents goes to it")
    try:
        created = await real.api.create_for_llm(username, password, parameters)
        ours.set_result(created.id)
        real.say(f"created agents-only game {created.id}: {_describe(params, parameters)}")
        if created.warning:
            count = seats_of(params)
            real.say(f"the server could not get agents ({created.warning}); playing its "
                     f"{'six' if count == SEATS else 'twelve'} seats from here")
            seats = await prepare_seats(real.api, created.id, count, [])
            return report_game(real, await play_seats(real, created.id, seats, params, game_type=params.game_type))
        if manager is None or not await _spawned(manager, created.id):
            # This process ends now, so say where the game can be followed: the other manager's output and folders.
            real.say(f"game {created.id} is played by the agent manager the server called, not by this process: "
                     f"follow it in that manager's output ({ROOT / 'logs' / 'handler.log'} when serverStarter.sh "
                     f"started it) and its transcripts in its --logs-dir (default {DEFAULT_LOGS}/), in the folder "
                     f"ending -game{created.id}")
            return 0
        stopper = asyncio.ensure_future(real.stop.wait())
        try:
            await asyncio.wait({played, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not played.done():
            await manager.stop()
            real.say(f"stopped by {real.stop.name}: sockets closed, transcripts and decisions table complete")
            return real.stop.exit_code
        return report_game(real, played.result())  # raises what made the agents fail
    finally:
        if not ours.done():
            ours.cancel()
        if not played.done():
            played.cancel()
        if manager is not None:
            await manager.stop()


async def _spawned(manager: AgentManager, game_id: int) -> bool:
    """Whether the server's /spawn-agents call for `game_id` reached `manager` (it comes before create answers)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + SPAWN_WAIT
    while game_id not in manager.games and game_id not in manager.finished:
        if loop.time() > give_up:
            return False
        await asyncio.sleep(0.05)
    return True


async def serve_mode(real: Real) -> int:
    """--serve: the agent manager. Each /spawn-agents call becomes one game played by fresh seats."""
    host, port = agent_manager_address(real.env)

    limit = fallback_limit(real.args, real.policy)

    async def spawn(game_id: int, agents: int) -> None:
        seats = [Seat(await real.api.get_recovery(game_id, wait_for_start=NOT_STARTED_WAIT)) for _ in range(agents)]
        game_type = await game_type_of(real.api, game_id, seats[0].recovery)
        run = await play_seats(real, game_id, seats, None, compact=True, game_type=game_type)
        if run.outcome != "game-over":
            raise RuntimeError(run.outcome)
        run.progress.on_phase()
        real.say(f"game {game_id} over; reconnects: {sum(a.reconnects for a in run.agents)}, "
                 f"fallback actions: {sum(a.fallbacks for a in run.agents)}; {run.progress.shares()}")
        if limit is not None and run.log.total and run.log.fallback_share() > limit:
            real.say(f"warning: game {game_id}: {100 * run.log.fallback_share():.1f}% of the decisions were "
                     f"fallbacks, more than --max-fallback-share {limit:g}")

    real.say(f"IBEX server {real.urls.ws_url}, api {real.urls.api_url}")
    return await run_agent_manager(spawn, host, port)


async def play_real(args: argparse.Namespace, policy: Policy, env: Mapping[str, str], out: Any) -> int:
    urls = real_server(args, env)
    stop = Stop()
    if not args.serve:  # --serve handles its own signals: stop listening, then leave every game
        stop.install()
    async with IbexApi(urls.api_url) as api:
        real = Real(args, env, policy, urls, api, stop, out)
        if args.serve:
            return await serve_mode(real)
        real.say(f"IBEX server {urls.ws_url}, api {urls.api_url}")
        if args.create:
            return await create_mode(real)
        return await play_game_mode(real)


async def _main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    policy, first_line = choose_policy(args, env)
    print(first_line, flush=True)
    try:
        if isinstance(policy, LLMPolicy) and args.preflight:
            # Before any agent joins: a dead endpoint must not play a whole game of fallbacks under a model's name.
            started = time.monotonic()
            try:
                warning = await policy.preflight(_public_url(policy.base_url))
            except PreflightError as exc:
                print(f"error: preflight: {exc} (--no-preflight skips this check)", file=sys.stderr, flush=True)
                return EXIT_PREFLIGHT
            print(warning or f"preflight: model {policy.model} answered in {time.monotonic() - started:.1f} s",
                  flush=True)
        if args.local:
            return await play_local(args, policy, env, sys.stdout)
        return await play_real(args, policy, env, sys.stdout)
    finally:
        if isinstance(policy, LLMPolicy):
            await policy.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env")
    redact.install(redact.secrets_from_env(os.environ))  # every printed line, whatever prints it (lib.util.redact)
    if not (args.local or args.create or args.serve or args.game is not None):
        print("error: nothing to do: choose a mode: --local (offline demo), --game ID, --create or --serve "
              "(see --help)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args, dict(os.environ)))
    except (UsageError, ParamError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (PlayError, IbexApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the game's own handler is in place (e.g. during the preflight)
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
