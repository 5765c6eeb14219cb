"""The ways handler.py plays, each written once for every game (lib.games: the game's PlayRules say what differs):

- `play_seats`: one agent per seat of one game, joined in order, until game-over, a stop or a failure; the
  reusable core (the studies call it for many games at once: it prints only through `say` and installs no
  signal handler), and `play_local`, the same on a game of an in-process local server, with its game log.
- the four modes of handler.py: `--local` (local_mode), `--game ID` (game_mode), `--create` (create_mode, with
  its agents-only variant) and `--serve` (serve_mode), reached through `run`, the one call handler.py makes.

Output lines, exit codes and files are handler.py's interface (docs/running-agents.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets as tokens
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lib.agents import decisions, localsetup
from lib.agents.agent import Agent, AgentSettings
from lib.agents.llm import LLMPolicy, PreflightError
from lib.agents.manager import DEFAULT_HOST, DEFAULT_PORT, AgentManager, run_agent_manager
from lib.agents.progress import Progress
from lib.agents.realserver import (
    NOT_STARTED_WAIT,
    PlayError,
    Seat,
    ServerUrls,
    game_of,
    last_phase,
    load_game_parameters,
    prepare_seats,
    seats_of,
    server_urls,
)
from lib.agents.run import (
    EXIT_ERROR,
    EXIT_PREFLIGHT,
    Stop,
    UsageError,
    choose_policy,
    fallback_limit,
    policy_label,
    public_url,
    run_agents,
    safety_margin,
    server_errors_line,
    strict_refusals,
    verdict,
)
from lib.agents.transcript import Transcript
from lib.games import DEFAULT_GAME, game_for
from lib.games.protocols import DEFAULT_PROMPT, Game, Policy, PolicyRefused
from lib.ibex.api import IbexApi
from lib.util import redact

if TYPE_CHECKING:
    from lib.ibex.params import GameParams  # every game's parameters (lib.games.protocols)

SPAWN_WAIT = 10.0  # seconds --create --agents-only waits for the server's /spawn-agents call for its game
DEFAULT_WS_URL = "ws://127.0.0.1:3088"
DEFAULT_API_URL = "http://127.0.0.1:3080/api/v1"
DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # where --seat-policy fitted/empirical find their parameters

Say = Callable[[str], None]


# ---------------------------------------------------------------------- one game


@dataclass
class GameResult:
    """One game played: how it ended ("game-over", "stopped" or what went wrong), its agents (their final views,
    reconnects and fallbacks), the decisions table, the game's log (a local game that ended) and its report."""

    game_id: int
    outcome: str
    agents: list[Agent]
    decisions: Path
    progress: Progress
    game_log: Path | None = None

    @property
    def views(self) -> list[Any]:
        return [agent.view for agent in self.agents]

    @property
    def reconnects(self) -> int:
        return sum(agent.reconnects for agent in self.agents)

    @property
    def fallbacks(self) -> int:
        return sum(agent.fallbacks for agent in self.agents)

    @property
    def refusals(self) -> int:
        """Error and warning frames the server answered the agents with that no race explains (SeatRules.race)."""
        return sum(agent.refusals for agent in self.agents)

    @property
    def races(self) -> Counter[str]:
        """Error frames that answered a race no client can avoid, by race."""
        return sum((agent.races for agent in self.agents), Counter())


class _Hearers:
    """A DecisionLog listener passing each event on to every game that shares the log (one Progress each)."""

    def __init__(self, first: Callable[[str, Any], None] | None) -> None:
        self.hearers: list[Callable[[str, Any], None]] = [first] if first is not None else []

    def __call__(self, kind: str, info: Any) -> None:
        for hear in list(self.hearers):
            hear(kind, info)


@contextlib.contextmanager
def _listening(log: decisions.DecisionLog, hear: Callable[[str, Any], None]) -> Any:
    hearers = log.listener if isinstance(log.listener, _Hearers) else _Hearers(log.listener)
    log.listener = hearers
    hearers.hearers.append(hear)
    try:
        yield
    finally:
        hearers.hearers.remove(hear)


async def play_seats(game: Game, game_id: int, seats: Sequence[Seat], policies: Mapping[int, Policy], *,
                     ws_url: str, api: IbexApi, params: GameParams | None, settings: AgentSettings, run_dir: Path,
                     log: decisions.DecisionLog, stop: asyncio.Event, say: Say | None, seed: int = 0,
                     local: bool = False, known: bool = True, compact: bool = False, secrets: Sequence[str] = (),
                     transcript_batch: float = 0.0, timeout: float | None = None,
                     connector: Callable[[], Awaitable[Any]] | None = None, transcript_sync: bool = True
                     ) -> GameResult:
    """One agent per seat (agent k plays `seats[k - 1]` with `policies[k]`, the game's version of a policy),
    joined in order, until game-over, a stop, a failed agent or `timeout`; transcripts agent<k>.jsonl in
    `run_dir`, decisions in `log` (which may be shared by several games), each round reported through `say` as it
    ends (`say` None: no live report; a study plays hundreds of games and prints none of their rounds, so their
    agents skip working out which rounds every seat has finished at each phase). `params` None: the game's
    parameters are unknown (a real server's game); `known` False: the server did not say which of the games
    sharing its ruleset this is. `connector`: how each agent connects instead of a WebSocket to `ws_url`
    (Agent's `connector`); `transcript_sync` False: the transcripts are not fsynced at their close."""
    if sorted(policies) != list(range(1, len(seats) + 1)):
        raise ValueError(f"a policy for each of the seats 1 to {len(seats)}, in join order, got seats "
                         f"{sorted(policies)}")
    progress = Progress(say or _silent, game, game_id, params, compact=compact)
    progress.log = log
    options = game.play.agent_options(params, seed=seed, local=local, known=known)
    with contextlib.ExitStack() as closing:
        if say is not None:
            closing.enter_context(_listening(log, progress.hear))
        transcripts = [closing.enter_context(Transcript(run_dir / f"agent{k}.jsonl", secrets=list(secrets),
                                                        flush_delay=transcript_batch, sync=transcript_sync))
                       for k in range(1, len(seats) + 1)]
        agents = [Agent(ws_url, game_id, seat.recovery, policies[k], transcripts[k - 1], game=game, params=params,
                        settings=settings, name=f"agent{k}", api=api, resume=seat.resumes is not None,
                        decision_log=log, on_phase=progress.on_phase if say is not None else None,
                        connector=connector, **options)
                  for k, seat in enumerate(seats, 1)]
        progress.agents = agents
        outcome = await run_agents(agents, stop, timeout)
    return GameResult(game_id, outcome, agents, log.path, progress)


async def play_local(server: Any, game_id: int, policies: Mapping[int, Policy], *, settings: AgentSettings,
                     run_dir: Path, log: decisions.DecisionLog, stop: asyncio.Event, say: Say | None, seed: int = 0,
                     secrets: Sequence[str] = (), transcript_batch: float = 0.0, in_memory: bool = False,
                     transcript_sync: bool = True) -> GameResult:
    """Play game `game_id` of the running local server `server` (lib.localserver.server.LocalServer), one agent
    per entry of `policies` (seat -> policy, in the game's version: PlayRules.policy; seats 1 to n, which the
    agents take in join order), to game-over within the game's timeout; a game that ended has its game log in the
    result. `in_memory`: the agents reach the server in memory, not over WebSockets (lib.localserver.memory: the
    same frames, without the sockets' and the framing's CPU)."""
    params = server.game(game_id).params
    game = game_for(params.game_type)
    seats = [Seat(secrets_token()) for _ in policies]
    async with IbexApi(server.api_url) as api:
        result = await play_seats(game, game_id, seats, policies, ws_url=server.ws_url, api=api, params=params,
                                  settings=settings, run_dir=run_dir, log=log, stop=stop, say=say, seed=seed,
                                  local=True, secrets=secrets, transcript_batch=transcript_batch,
                                  timeout=game.rules.timeout(params),
                                  connector=server.connect_in_memory if in_memory else None,
                                  transcript_sync=transcript_sync)
    if result.outcome == "game-over":
        await server.game_over(game_id, timeout=5)  # the log is read from its file: no copy of it is needed
        result.game_log = server.log_path(game_id)
    return result


def _silent(_line: str) -> None:
    return None


def secrets_token() -> str:
    """A fresh recovery code: a local game seats whoever joins with a new one."""
    return tokens.token_hex(32)


def game_policy(game: Game, chosen: Policy, seed: int) -> Policy:
    """The game's version of the run's policy; UsageError when it has none."""
    try:
        return game.play.policy(chosen, seed)
    except PolicyRefused as exc:
        raise UsageError(str(exc)) from None


def _rounds(count: int) -> str:
    return f"{count} round{'s' if count != 1 else ''}"


def _kind(game: Game, after: str) -> str:
    """The game's name and `after` where it is not the default game (whose lines name no game)."""
    return "" if game.name == DEFAULT_GAME else f"{game.name}{after}"


# ---------------------------------------------------------------------- --local


async def local_mode(args: argparse.Namespace, policy: Policy, env: Mapping[str, str], out: TextIO) -> int:
    """--local: a local IBEX server in this process, one game, one agent per seat (each seat's policy
    --policy's, or --seat-policy's; values and parameters as --values and --params set them); the exit code."""
    game = game_for(args.game_type)
    params_file = getattr(args, "params", None)
    # a --params file's timers are the game's as written; the default scale is for the real server's defaults
    scale = args.timer_scale or (1.0 if params_file is not None else game.play.timer_scale(policy.name))
    played = game_policy(game, policy, args.seed)
    overrides = localsetup.local_overrides(game, params_file, args.rounds, args.practice, scale)
    values = localsetup.local_values(localsetup.parse_values(getattr(args, "values", None)), game, overrides,
                                     args.seed)
    choices = localsetup.parse_seat_policies(getattr(args, "seat_policy", None) or [])
    extra: list[LLMPolicy] = []  # models only a --seat-policy asked for: closed here

    def make(name: str) -> Policy:
        if name == "llm" and isinstance(policy, LLMPolicy):
            return played
        path = {"fitted": getattr(args, "fitted_params", None),
                "empirical": getattr(args, "empirical_params", None)}.get(name)
        chosen, _line = choose_policy(name, env, seed=args.seed, params_path=path,
                                      data_dir=getattr(args, "data_dir", DATA_DIR), job_record=args.job_record,
                                      max_retries=args.max_retries, max_concurrent_calls=args.max_concurrent_calls,
                                      prompt=getattr(args, "prompt_variant", None) or DEFAULT_PROMPT,
                                      game_type=game.name)
        if isinstance(chosen, LLMPolicy):
            extra.append(chosen)
        return game_policy(game, chosen, args.seed)

    try:
        return await _local_game(args, game, played, overrides, values, choices, make, scale, env, out)
    finally:
        for model in extra:
            await model.close()


async def _local_game(args: argparse.Namespace, game: Game, played: Policy, overrides: dict[str, Any],
                      values: dict[str, Any], choices: list[tuple[str, str]], make: Callable[[str], Policy],
                      scale: float, env: Mapping[str, str], out: TextIO) -> int:
    from lib.localserver.server import LocalServer

    secrets_ = redact.secrets_from_env(env)
    # --strict: the local server refuses what the real server would wrongly take; a refused frame fails the run.
    strict = bool(getattr(args, "strict", False))
    stop = Stop()
    stop.install()

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        # The local server numbers its games after the logs already in the records folder: none is overwritten.
        server = LocalServer(records_dir=args.records, sessions=args.sessions, strict=strict)
    except ValueError as exc:  # the private-values table cannot be read
        raise UsageError(str(exc)) from None
    async with server:
        try:
            game_id = server.create_game(overrides, **values)
        except ValueError as exc:  # parameters or the private-values table do not fit this game
            raise UsageError(f"the local server cannot play this {game.name} game: {exc}"
                             if game.name != DEFAULT_GAME else str(exc)) from None
        params = server.game(game_id).params
        seats = localsetup.seat_policies(choices, game, params, played, make)
        margin = args.safety_margin if args.safety_margin is not None else safety_margin(game.play.action_phases,
                                                                                          params)
        settings = AgentSettings(chat=args.chat, safety_margin=margin, ready_delay=min(0.2, margin))
        run_dir = args.logs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-local-game{game_id}"
        ending = f"chat {'on' if args.chat else 'off'}" if game.play.chat else f"{game.play.seats} agents"
        rounds = params.round_count
        say(f"local server {server.ws_url}{' (--strict)' if strict else ''}, {_kind(game, ' ')}game {game_id}: "
            f"{rounds} round"
            f"{'s' if rounds > 1 else ''}{' after a practice round' if params.practice_round else ''}, timers "
            f"x{scale:g}, safety margin {margin:g} s, {ending}")
        if values or choices:
            drawn = (f"fresh (seed {args.seed})" if "sessions" in values
                     else f"session {values.get('session_number', 1)}")
            say(f"values: {drawn}; " + ", ".join(f"seat {seat} {policy_label(p)}" for seat, p in seats.items()))
        say(f"transcripts: {run_dir}/ (decisions table: decisions.csv there)")
        with decisions.DecisionLog(run_dir / "decisions.csv", secrets=secrets_) as log:
            result = await play_local(server, game_id, seats,
                                      settings=settings, run_dir=run_dir, log=log, stop=stop.event, say=say,
                                      seed=args.seed, secrets=secrets_, transcript_batch=args.transcript_batch)
            if result.outcome == "stopped":
                result.progress.stopped()
                say(f"stopped by {stop.name}: sockets closed, transcripts and decisions table complete; "
                    "the unfinished game has no log")
                verdict(log, None, out)
                return stop.exit_code
            if result.outcome != "game-over":
                print(f"error: {result.outcome}", file=sys.stderr, flush=True)
                verdict(log, None, out)
                return EXIT_ERROR
            result.progress.on_phase()
            say(f"game log: {result.game_log}")
            say(f"fallback actions: {result.fallbacks}")
            if strict or result.refusals or result.races:
                say(server_errors_line(result.refusals, result.races, strict))
            model = next((p for p in seats.values() if isinstance(p, LLMPolicy)), played)
            code = verdict(log, fallback_limit(model, args.max_fallback_share), out)
            # A refused frame means the agents sent what the real server might have taken silently: it outweighs
            # the fallback share, whose run would otherwise exit 3.
            return (strict_refusals(result.refusals, run_dir) or code) if strict else code


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
    out: TextIO
    logs: Path  # the default --logs-dir, where serverStarter.sh's agent manager also writes handler.log

    @property
    def secrets(self) -> list[str]:
        return redact.secrets_from_env(self.env)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def _describe(params: GameParams, parameters: dict[str, Any]) -> str:
    """What --create asked the server for: the game type (other than the default game), rounds, practice, phase
    timers, title."""
    timers = "/".join(f"{params.timer(p):g}" for p in range(1, last_phase(params) + 1))
    kind = _kind(game_for(params.game_type), ", ")
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


async def real_seats(real: Real, game: Game, game_id: int, seats: Sequence[Seat], params: GameParams | None,
                     compact: bool = False, known: bool = True) -> GameResult:
    """One agent per seat of a real server's game, joined in order, until game-over; the run's folder holds the
    transcripts, the decisions table and the seats' recovery codes."""
    args = real.args
    margin = args.safety_margin if args.safety_margin is not None else safety_margin(game.play.action_phases,
                                                                                      params)
    settings = AgentSettings(chat=args.chat, safety_margin=margin)
    played = game_policy(game, real.policy, args.seed)
    run_dir = args.logs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-game{game_id}"
    seats_file = write_seats_file(run_dir, game_id, seats)
    real.say(f"game {game_id}: {len(seats)} agent{'s' if len(seats) > 1 else ''}: "
             + "; ".join(seat.describe() for seat in seats))
    real.say(f"transcripts: {run_dir}/ (decisions table: decisions.csv there; recovery codes to resume: "
             f"{seats_file}, private)")
    with decisions.DecisionLog(run_dir / "decisions.csv", secrets=real.secrets) as log:
        return await play_seats(game, game_id, seats, dict.fromkeys(range(1, len(seats) + 1), played),
                                ws_url=real.urls.ws_url, api=real.api, params=params, settings=settings,
                                run_dir=run_dir, log=log, stop=real.stop.event, say=real.say, seed=args.seed,
                                known=known, compact=compact, secrets=real.secrets,
                                transcript_batch=args.transcript_batch)


def report_game(real: Real, result: GameResult) -> int:
    """The end of a game: the rounds not printed yet and the decision shares, or why it did not finish; the exit
    code."""
    log = result.progress.log
    assert log is not None  # play_seats gives every Progress its log
    if result.outcome == "stopped":
        result.progress.stopped()
        real.say(f"stopped by {real.stop.name}: sockets closed, transcripts and decisions table complete")
        verdict(log, None, real.out)
        return real.stop.exit_code
    if result.outcome != "game-over":
        print(f"error: game {result.game_id}: {result.outcome}", file=sys.stderr, flush=True)
        verdict(log, None, real.out)
        return EXIT_ERROR
    result.progress.on_phase()
    real.say(f"game {result.game_id} over; reconnects: {result.reconnects}, fallback actions: {result.fallbacks}")
    if result.refusals or result.races:
        real.say(server_errors_line(result.refusals, result.races, strict=False))
    return verdict(log, fallback_limit(real.policy, real.args.max_fallback_share), real.out)


async def game_mode(real: Real) -> int:
    """--game ID: given codes first, then fresh ones up to --players."""
    game_id = real.args.game
    seats = await prepare_seats(real.api, game_id, real.args.players, list(real.args.recovery))
    game, known = await game_of(real.api, game_id, seats[0].recovery) if seats else (game_for(DEFAULT_GAME), True)
    return report_game(real, await real_seats(real, game, game_id, seats, None, known=known))


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
    game = game_for(params.game_type)
    if args.players is not None and args.players > seats_of(params):
        raise UsageError(f"--players {args.players}: a {params.game_type} game has {seats_of(params)} seats")
    if args.chat and not game.play.chat:
        raise UsageError(f"--chat: {params.game_type} has no chat (the server has no chat handler in these games)")
    if not args.agents_only:
        created = await real.api.create_for_llm(username, password, parameters)
        real.say(f"created game {created.id}: {_describe(params, parameters)}")
        seats = await prepare_seats(real.api, created.id, args.players or seats_of(params), [])
        return report_game(real, await real_seats(real, game, created.id, seats, params))
    return await create_agents_only(real, username, password, parameters, params)


async def create_agents_only(real: Real, username: str, password: str, parameters: dict[str, Any],
                             params: GameParams) -> int:
    """An agents-only game: the server POSTs /spawn-agents while it creates the game. This process answers that
    call itself when the agent manager's address is free; when another agent manager took the call, that one
    plays; when the call failed, this process plays every seat directly."""
    host, port = agent_manager_address(real.env)
    game = game_for(params.game_type)
    loop = asyncio.get_running_loop()
    ours: asyncio.Future[int] = loop.create_future()  # the id create-for-llm answers with
    played: asyncio.Future[GameResult] = loop.create_future()

    async def spawn(game_id: int, agents: int) -> None:
        if await asyncio.wait_for(asyncio.shield(ours), SPAWN_WAIT) != game_id:
            real.say(f"ignored a /spawn-agents call for game {game_id}: this process plays only its own game")
            return
        try:
            seats = [Seat(await real.api.get_recovery(game_id, wait_for_start=NOT_STARTED_WAIT))
                     for _ in range(agents)]
            result = await real_seats(real, game, game_id, seats, params)
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
                     f"{_NUMBERS.get(count, str(count))} seats from here")
            seats = await prepare_seats(real.api, created.id, count, [])
            return report_game(real, await real_seats(real, game, created.id, seats, params))
        if manager is None or not await _spawned(manager, created.id):
            # This process ends now, so say where the game can be followed: the other manager's output and folders.
            real.say(f"game {created.id} is played by the agent manager the server called, not by this process: "
                     f"follow it in that manager's output ({real.logs / 'handler.log'} when serverStarter.sh "
                     f"started it) and its transcripts in its --logs-dir (default {real.logs}/), in the folder "
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


_NUMBERS = {6: "six", 12: "twelve"}  # the seat counts the server's warning line spells out


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
    limit = fallback_limit(real.policy, real.args.max_fallback_share)

    async def spawn(game_id: int, agents: int) -> None:
        seats = [Seat(await real.api.get_recovery(game_id, wait_for_start=NOT_STARTED_WAIT)) for _ in range(agents)]
        game, known = await game_of(real.api, game_id, seats[0].recovery)
        result = await real_seats(real, game, game_id, seats, None, compact=True, known=known)
        if result.outcome != "game-over":
            raise RuntimeError(result.outcome)
        result.progress.on_phase()
        real.say(f"game {game_id} over; reconnects: {result.reconnects}, fallback actions: {result.fallbacks}; "
                 f"{result.progress.shares()}")
        log = result.progress.log
        if limit is not None and log is not None and log.total and log.fallback_share() > limit:
            real.say(f"warning: game {game_id}: {100 * log.fallback_share():.1f}% of the decisions were "
                     f"fallbacks, more than --max-fallback-share {limit:g}")

    real.say(f"IBEX server {real.urls.ws_url}, api {real.urls.api_url}")
    return await run_agent_manager(spawn, host, port)


async def play_real(args: argparse.Namespace, policy: Policy, env: Mapping[str, str], out: TextIO,
                    logs: Path) -> int:
    urls = real_server(args, env)
    stop = Stop()
    if not args.serve:  # --serve handles its own signals: stop listening, then leave every game
        stop.install()
    async with IbexApi(urls.api_url) as api:
        real = Real(args, env, policy, urls, api, stop, out, logs)
        if args.serve:
            return await serve_mode(real)
        real.say(f"IBEX server {urls.ws_url}, api {urls.api_url}")
        if args.create:
            return await create_mode(real)
        return await game_mode(real)


# ---------------------------------------------------------------------- handler.py's one call


async def run(args: argparse.Namespace, policy: Policy, first_line: str, env: Mapping[str, str], out: TextIO,
              logs: Path) -> int:
    """Play as handler.py's checked arguments ask, with the chosen policy (`first_line` says which): the
    preflight of a model, then the mode; the exit code. `logs`: the default --logs-dir, named in the lines that
    send a user to another process's output."""
    print(first_line, file=out, flush=True)
    try:
        if isinstance(policy, LLMPolicy) and args.preflight:
            # Before any agent joins: a dead endpoint must not play a whole game of fallbacks under a model's name.
            started = time.monotonic()
            try:
                warning = await policy.preflight(public_url(policy.base_url))
            except PreflightError as exc:
                print(f"error: preflight: {exc} (--no-preflight skips this check)", file=sys.stderr, flush=True)
                return EXIT_PREFLIGHT
            print(warning or f"preflight: model {policy.model} answered in {time.monotonic() - started:.1f} s",
                  file=out, flush=True)
        if args.local:
            return await local_mode(args, policy, env, out)
        return await play_real(args, policy, env, out, logs)
    finally:
        if isinstance(policy, LLMPolicy):
            await policy.close()
