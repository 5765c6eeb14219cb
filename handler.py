"""Run LLM (or baseline) agents as players of IBEX voting, Harberger and futarchy games.

    python handler.py --local [--strict]           offline demo: a local IBEX server, one game, six agents
    python handler.py --game ID [--players N] [--recovery CODE ...]
                                                   join an existing game on the IBEX server
    python handler.py --create [--game-type harberger|futarchy] [--agents-only] [--params FILE] [--players N]
                               [--rounds N] [--no-practice] [--timer-scale X]
                                                   create a game with create-for-llm, then play it
    python handler.py --serve                      the agent manager for agents-only games (serverStarter.sh)
    python handler.py --study FILE [--no-cache] [--accept-changes]
                                                   play a study: many games, several arms (docs/studies.md)

--local starts lib.localserver.server in this process, creates a game (--params FILE, --values fresh|session N and
--seat-policy WHO=POLICY set it up as a study's arm is), runs one agent (lib.agents.agent) per seat to game-over,
writes the game's log into logs/local-games/ (never into the jsonFiles/ that constructDataset.py reads) and one
transcript per agent under logs/, and prints each round's summary as the round ends. --strict makes that server
refuse what the real one would wrongly take; a refused frame fails the run (exit 6), races are counted apart.

The other modes talk to a real server: IBEX_WS_URL (ws://HOST:3088, or wss://HOST/wss behind a reverse proxy)
and IBEX_API_URL (http://HOST:3080/api/v1 or https://HOST/api/v1), from .env or --ws-url / --api-url; both
default to the local ports. --game takes the given recovery codes first (a code the server knows resumes its
seat after a crash) and fetches fresh ones with get-recovery for the other seats it should fill (--players N;
by default every free seat, or only the given codes); seats left over stay free for humans. The codes of a run
are kept in logs/<run>/seats.json (private file) to resume it. --create needs IBEX_USERNAME and IBEX_PASSWORD;
its parameters are the real server's defaults (its web UI's for the game type: --game-type, or the game_type of
--params; voting without either) with --params FILE and --rounds, --practice/--no-practice and --timer-scale on
top, sent in the nested form the server reads (lib/agents/realserver.py, lib/ibex/createparams.py); every seat gets
an agent by default. With --agents-only
the server asks an agent manager for the agents: this process is that manager for its game when nobody else
listens on AGENT_MANAGER_HOST:AGENT_MANAGER_PORT, and plays the game itself when the server's call fails.
--serve listens there (default 127.0.0.1:10341) for the server's POST /spawn-agents, answers at once and plays
every game it is asked to, several at a time (lib/agents/manager.py).

Agents reconnect and resync on their own when the network fails (lib/agents/agent.py). Without OPENAI_API_KEY the
agents play the baseline policy (each game's rules) and the first line says so. Settings come from the environment or
.env: OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL, IBEX_WS_URL, IBEX_API_URL, IBEX_USERNAME, IBEX_PASSWORD,
AGENT_MANAGER_HOST, AGENT_MANAGER_PORT.

Honest runs: with a model, one cheap preflight call checks endpoint, key and model before any agent joins (exit 4
when it fails; --no-preflight skips it). Every decision becomes a row of decisions.csv in the run's folder saying
who made it (lib/agents/decisions.py); the rounds mark fallbacks, the last lines give the shares, and a fallback share
above --max-fallback-share (default 0.2 for a model) exits 3 after the game. SIGTERM or SIGINT: the agents close
their sockets (code 1001), the transcripts get a final "shutdown" record, the rounds played and the shares are
printed, and the handler exits 143 or 130 (--serve: 0, its normal stop). Exit codes: 0 played, 1 not playable,
2 usage, 3 too many fallbacks, 4 preflight failed, 6 --strict: the local server refused frames, 130/143 signal.

This script holds the arguments only; the modes are lib/agents/modes.py (each written once for every game, what
differs coming from the game's PlayRules), the run control lib/agents/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from lib.agents import localsetup
from lib.agents.llm import DEFAULT_MAX_CONCURRENT_CALLS, DEFAULT_MAX_RETRIES
from lib.agents.modes import DEFAULT_API_URL, DEFAULT_WS_URL, run
from lib.agents.realserver import PlayError, max_players
from lib.agents.run import DEFAULT_MAX_FALLBACK_SHARE, MAX_SAFETY_MARGIN, UsageError
from lib.agents.run import choose_policy as choose
from lib.games import DEFAULT_GAME, GAMES, game_for, game_types
from lib.games.protocols import DEFAULT_PROMPT, Policy, UnknownPromptVariant, check_prompt_variant
from lib.ibex.api import IbexApiError
from lib.ibex.params import ParamError
from lib.training.jobrecord import DEFAULT_RECORD_PATH
from lib.util import redact

ROOT = Path(__file__).resolve().parent
# --local's game logs stay out of jsonFiles/, which constructDataset.py reads: demo games are no human data.
DEFAULT_RECORDS = ROOT / "logs" / "local-games"
DEFAULT_LOGS = ROOT / "logs"
DEFAULT_ROUNDS = 2
# Transcripts reach the OS line by line unless --transcript-batch asks for batches (hundreds of agents in one
# process: the writes then leave the path from frame to answer; a SIGKILL loses at most that many seconds).
DEFAULT_TRANSCRIPT_BATCH = 0.0
DEFAULT_SCALE = {name: game_for(DEFAULT_GAME).play.timer_scale(name) for name in ("baseline", "llm")}
__all__ = ["UsageError", "choose_policy", "main", "parse_args"]


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
    real.add_argument("--ws-url", metavar="URL",
                      help=f"WebSocket URL (default $IBEX_WS_URL, else {DEFAULT_WS_URL})")
    real.add_argument("--api-url", metavar="URL",
                      help=f"REST base URL (default $IBEX_API_URL, else {DEFAULT_API_URL})")
    real.add_argument("--players", type=int, metavar="N",
                      help="seats to fill (--game: default every free seat, or only the --recovery codes; "
                           "--create: default all, 6 in a voting game, 12 in a market game); the others stay free "
                           "for humans")
    real.add_argument("--recovery", nargs="+", action="extend", default=[], metavar="CODE",
                      help="--game: recovery codes to play with; a code the server knows resumes its seat")
    real.add_argument("--params", type=Path, metavar="FILE",
                      help="--create and --local: JSON game parameters over the real server's defaults "
                           "(lib/agents/realserver.py)")
    real.add_argument("--agents-only", action="store_true",
                      help="--create: an agents-only game, whose agents the server asks an agent manager for")
    parser.add_argument("--policy", choices=("llm", "baseline", "fitted", "empirical"),
                        help="who decides: a chat model (needs OPENAI_API_KEY), the built-in baseline rules, or those "
                             "rules with the parameters finetune.py --evaluate fitted to humans (data/"
                             "fitted_policy.json), or empirical: those rules drawing from the training humans' own "
                             "decisions (lib/games/voting/empirical.py) "
                             "(default: llm when OPENAI_API_KEY is set, else baseline)")
    parser.add_argument("--prompt-variant", metavar="NAME",
                        help="the model's prompt (--policy llm and --seat-policy WHO=llm): default (the prompt "
                             "the training set holds, the only one a fine-tuned model has seen), zero-shot (the "
                             "game's full rules added, for a model not fine-tuned on the game) or no-history "
                             "(without the earlier rounds); each game's variants are listed in docs/running-agents.md")
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
    parser.add_argument("--game-type", choices=game_types(),
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
    parser.add_argument("--strict", action="store_true",
                        help="--local: the local server refuses what the real server would wrongly take (wrong "
                             "roles, out-of-range amounts, malformed orders: docs/local-server.md); any frame it "
                             "refuses fails the run (exit code 6), while a race no client can avoid (a market "
                             "cancel that crossed its order's fill) is counted apart and does not")
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS,
                        help="--local: directory for the game's log (default logs/local-games/, outside the "
                             "jsonFiles/ that constructDataset.py reads)")
    parser.add_argument("--transcript-batch", type=float, default=DEFAULT_TRANSCRIPT_BATCH, metavar="SECONDS",
                        help="write transcript lines in batches at most this many seconds apart, for hundreds of "
                             "agents in one process (default 0: every line reaches the OS as it is written)")
    parser.add_argument("--logs-dir", type=Path, default=DEFAULT_LOGS,
                        help="directory for the agents' transcripts (default logs/)")
    local = parser.add_argument_group("a --local game set up as a study's arm is (docs/studies.md)")
    local.add_argument("--values", nargs="+", metavar="fresh|session N",
                       help="the private values: fresh (drawn from --seed as a study draws its game 0's) or session "
                            "N of --sessions (default: session 1)")
    local.add_argument("--seat-policy", action="append", default=[], metavar="WHO=POLICY",
                       help="a policy for a seat group (the game's: developer, owners, speculators in the IBEX "
                            "games) or seat number: baseline, fitted, empirical or llm (repeatable; the other seats "
                            "play --policy)")
    modes.add_argument("--study", type=Path, metavar="FILE",
                       help="play a study file's games (docs/studies.md): many games, several arms, tidy tables")
    study = parser.add_argument_group("studies (--study)")
    study.add_argument("--no-cache", action="store_true", help="ask the models again instead of replaying answers")
    study.add_argument("--accept-changes", action="store_true",
                       help="play on although the study file changed since its first games were played")
    args = parser.parse_args(argv)
    if (args.no_cache or args.accept_changes) and args.study is None:
        parser.error("--no-cache and --accept-changes work with --study only")
    if args.recovery and args.game is None:
        parser.error("--recovery works with --game only")
    if args.agents_only and not args.create:
        parser.error("--agents-only works with --create only")
    if args.params and not (args.create or args.local):
        parser.error("--params works with --create and --local only")
    if (args.values or args.seat_policy) and not args.local:
        parser.error("--values and --seat-policy set up a --local game: they work with --local only")
    try:
        localsetup.parse_values(args.values)
        localsetup.parse_seat_policies(args.seat_policy)
    except UsageError as exc:
        parser.error(str(exc))
    if args.players is not None and args.game is None and not args.create:
        parser.error("--players works with --game and --create only")
    if args.players is not None and not 1 <= args.players <= max_players():
        parser.error(f"--players must be from 1 to {max_players()}, got {args.players}")
    if args.agents_only and args.players is not None:
        parser.error("--players does not go with --agents-only: the server asks for every seat")
    if not (args.local or args.create) and (
            args.rounds is not None or args.practice is not None or args.timer_scale is not None):
        parser.error("--rounds, --practice/--no-practice and --timer-scale set up a new game: they work with --local "
                     "and --create only")
    if args.strict and not args.local:
        parser.error("--strict is the local server's: it works with --local only (a study sets strict = true)")
    if args.sessions is not None and not args.local:
        parser.error("--sessions is the local server's private values table: it works with --local only")
    if args.game_type is not None and not (args.local or args.create):
        parser.error("--game-type chooses the game of --local and --create; in a running game the server says it")
    play = game_for(args.game_type).play if args.game_type is not None else None
    refusal = play.policy_refusal(args.policy) if play is not None and args.policy is not None else None
    if refusal is not None:  # refused here, before the policy line or anything else is printed
        parser.error(refusal)
    if play is not None and args.chat and not play.chat:
        parser.error(f"--chat: {args.game_type} has no chat (the server has no chat handler in these games)")
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.local:
        args.game_type = args.game_type or DEFAULT_GAME
        if args.params is None:  # a --params file says its own rounds and practice round
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


def prompt_variant_refusal(args: argparse.Namespace) -> str | None:
    """Why --prompt-variant cannot be played (one line), or None: it must name a variant of the game to play (of
    some game, where the server will say which), and a model must play: the rules take no prompt."""
    if getattr(args, "prompt_variant", None) is None:
        return None
    if args.study is not None:
        return "--prompt-variant: a study names each model's prompt in its file (prompt = \"...\")"
    models = args.policy in (None, "llm") or any(policy == "llm" for _who, policy in
                                                 localsetup.parse_seat_policies(args.seat_policy))
    if not models:
        return (f"--prompt-variant is a model's prompt: it needs --policy llm or a --seat-policy WHO=llm, not "
                f"--policy {args.policy} alone")
    games = [game_for(args.game_type)] if args.game_type is not None else [GAMES[name] for name in GAMES]
    refusals = []
    for game in games:
        try:
            check_prompt_variant(game, args.prompt_variant)
            return None
        except UnknownPromptVariant as exc:
            refusals.append(str(exc))
    return f"--prompt-variant: {refusals[0]}"  # the game's, or where no game has it the default game's


def choose_policy(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Policy, str]:
    """The policy --policy names (with --fitted-params or --empirical-params, --seed, OPENAI_*) and the first line
    that says which (no secret in it); UsageError for one that cannot play."""
    path = {"fitted": getattr(args, "fitted_params", None),
            "empirical": getattr(args, "empirical_params", None)}.get(args.policy)
    return choose(args.policy, env, seed=args.seed, params_path=path, data_dir=ROOT / "data",
                  job_record=getattr(args, "job_record", DEFAULT_RECORD_PATH),
                  max_retries=getattr(args, "max_retries", DEFAULT_MAX_RETRIES),
                  max_concurrent_calls=getattr(args, "max_concurrent_calls", DEFAULT_MAX_CONCURRENT_CALLS),
                  prompt=getattr(args, "prompt_variant", None) or DEFAULT_PROMPT,
                  game_type=getattr(args, "game_type", None))


_public_url = redact.public_url  # without any user:password part, fit to print


async def _main(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    policy, first_line = choose_policy(args, env)
    if getattr(args, "prompt_variant", None) and policy.name != "llm" and not any(
            chosen == "llm" for _who, chosen in localsetup.parse_seat_policies(getattr(args, "seat_policy", []))):
        # --policy left out and no OPENAI_API_KEY: the rules play, and a prompt would silently mean nothing
        raise UsageError(f"--prompt-variant is a model's prompt, but the rules play ({first_line})")
    return await run(args, policy, first_line, env, sys.stdout, DEFAULT_LOGS)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    refusal = prompt_variant_refusal(args)
    if refusal is not None:  # one line, before anything runs
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env")
    redact.install(redact.secrets_from_env(os.environ))  # every printed line, whatever prints it (lib.util.redact)
    if args.study is not None:
        from lib.study.runner import main_study

        return main_study(args.study, use_cache=not args.no_cache, accept_changes=args.accept_changes,
                          env=dict(os.environ))
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
