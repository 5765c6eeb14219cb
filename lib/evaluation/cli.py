"""`finetune.py --evaluate`: score policies against the human decisions of a set constructDataset.py built.

    python finetune.py --evaluate                                  # data/validation_set.jsonl; baseline, fitted (+ llm)
    python finetune.py --evaluate --evaluate-on data/training_set.jsonl --policies baseline,fitted,llm --yes
    python finetune.py --evaluate --policies llm --dry-run        # the token and cost estimate only

Reads the set and its state sidecar (lib.dataset.sidecar); `fitted` is estimated on the training set beside it (or
--train)
with leave-one-game-out for evaluated games that are training games (lib.games.voting.fitted); each policy decides every
example
(lib.evaluation.policies); the scores (lib.evaluation.scores), with their intervals, paired differences, out-of-sample
references and
distributions (lib.evaluation.fidelity, on lib.evaluation.stats), go to stdout and to one folder per evaluation
(--output-dir, default
DATA_DIR/evaluations/<set name>-<sha256 prefix>/): evaluation_report.json, evaluation.png, decisions.csv (one row
per example and policy) and fitted_policy.json (the parameters fitted on all training games, which `handler.py
--policy fitted` plays: the newest such file), all written only once everything is computed, each atomically, so
that one evaluation never replaces another's.

A policy is one entry of POLICIES: a function (context) -> EvalPolicy. Add one there, with its options in
add_arguments, and it is scored, tabled, reported and drawn like the others.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai

from lib.dataset import ftcheck
from lib.dataset.sidecar import EvalSet, SetError, read_set
from lib.evaluation import fidelity as evalstats
from lib.evaluation import local as evallocal  # evallocal: torch if used
from lib.evaluation import policies as evalpolicies
from lib.evaluation import scores as evaluate
from lib.evaluation.policies import EvalPolicy, LLMEvalPolicy, ModelUnavailable, RulesPolicy
from lib.games.market.sidecar import is_market, market_example
from lib.games.voting import fitted
from lib.training import jobrecord

REPORT_FILE, PICTURE_FILE, CACHE_FILE = "evaluation_report.json", "evaluation.png", "evaluation_cache.jsonl"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# List prices in USD per 1M input and output tokens (OpenAI, 2025; https://openai.com/api/pricing): they change, so
# the estimate says so. Fine-tuned models ("ft:BASE:...") are billed at their own, higher prices.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1-2025-04-14": (2.00, 8.00),
    "gpt-4.1-mini-2025-04-14": (0.40, 1.60),
    "gpt-4.1-nano-2025-04-14": (0.10, 0.40),
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o-mini-2024-07-18": (0.15, 0.60),
}
FINE_TUNED_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1-2025-04-14": (3.00, 12.00),
    "gpt-4.1-mini-2025-04-14": (0.80, 3.20),
    "gpt-4.1-nano-2025-04-14": (0.20, 0.80),
    "gpt-4o-2024-08-06": (3.75, 15.00),
    "gpt-4o-mini-2024-07-18": (0.30, 1.20),
}


class EvalError(Exception):
    """A user-facing failure: one line, no traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _temperature(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None  # the endpoint's default; some models take no temperature at all
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or none: {text!r}") from None
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError("must be from 0 to 2")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("evaluation (--evaluate)")
    g.add_argument("--evaluate", action="store_true",
                   help="score policies against the human decisions of a set constructDataset.py built")
    g.add_argument("--evaluate-on", type=Path, metavar="FILE",
                   help="the set to evaluate on, with its .state.jsonl sidecar "
                        "(default: DATA_DIR/validation_set.jsonl)")
    g.add_argument("--policies", metavar="LIST",
                   help=f"comma-separated, from {', '.join(POLICIES)} (default: baseline,fitted, plus llm when a "
                        "model is configured: --model, OPENAI_MODEL or a succeeded fine-tuning job)")
    g.add_argument("--output-dir", type=Path, metavar="DIR",
                   help="where this evaluation's report, picture, per-decision CSV and fitted parameters go "
                        "(default: DATA_DIR/evaluations/<set name>-<sha256 prefix>/)")
    g.add_argument("--yes", action="store_true", help="ask no question before calling a paid endpoint")
    g.add_argument("--max-concurrent-calls", type=_positive_int, default=8,
                   help="llm: model calls in flight at once (default: 8)")
    g.add_argument("--nll", action="store_true",
                   help="llm: also the NLL of each human answer, where the endpoint returns prompt log-probabilities "
                        "(vLLM does, OpenAI does not); two more calls per example, not cached")
    g.add_argument("--temperature", type=_temperature, default=0.0,
                   help="llm: sampling temperature (default: 0, the model's most likely answer; none: the "
                        "endpoint's default)")


@dataclass
class Context:
    """What a policy factory may use."""

    args: argparse.Namespace
    env: dict[str, str]
    evaluated: EvalSet
    data_dir: Path
    training: EvalSet | None = None  # the training set the fitted policy is estimated on
    saved: dict[str, Any] = field(default_factory=dict)  # outputs a policy wants written with the report


# ---------------------------------------------------------------------------------------------------------------
# Policies


def make_baseline(ctx: Context) -> EvalPolicy:
    return RulesPolicy("baseline", info={"rules": "lib/games/voting/policy.py", "parameters": dict(fitted.BASELINE)})


def training_set_path(args: argparse.Namespace, evaluated: Path) -> Path:
    return args.train or evaluated.parent / "training_set.jsonl"


def make_fitted(ctx: Context) -> EvalPolicy:
    path = training_set_path(ctx.args, ctx.evaluated.path)
    if not path.is_file():
        raise EvalError(f"{path}: no training set to fit the fitted policy on; build it with python "
                        "constructDataset.py, pass --train FILE, or leave fitted out of --policies", EXIT_USAGE)
    try:
        same = path.resolve() == ctx.evaluated.path.resolve()
        training = ctx.evaluated if same else read_set(path, jobrecord.sha256_file(path))
    except SetError as exc:
        raise EvalError(f"fitted policy: {exc}", EXIT_USAGE) from None
    ctx.training = training
    voting = [e for e in training.examples if not is_market(e)]  # the fitted rules are the voting game's
    per_game = fitted.fits_for_games(ctx.evaluated.games, voting)
    overall = fitted.fit(voting)
    source = {"path": str(training.path), "sha256": training.sha256, "games": training.games}
    ctx.saved["fitted"] = (overall, source)
    info = {"training_set": source, "all_training_games": overall.to_dict(),
            "scored_with": {game: f.to_dict() for game, f in per_game.items()},
            "leave_one_game_out": sorted(g for g, f in per_game.items() if f.left_out)}
    from lib.games.market import fitted as marketfitted

    rules = RulesPolicy("fitted", lambda example: per_game[example.game].params, info)
    return marketfitted.fitted_with_market(rules, training.examples)  # market examples: lib.games.market.fitted's rules


def model_choice(args: argparse.Namespace, env: dict[str, str]) -> tuple[str, str, bool]:
    """(model, where it came from, configured?): --model, else as handler.py picks it."""
    if args.model:
        return args.model, "--model", True
    try:
        model, source = jobrecord.resolve_model(env, args.record)
    except jobrecord.JobRecordError as exc:
        raise EvalError(str(exc), EXIT_USAGE) from None
    return model, source, not source.startswith("default")


def make_llm(ctx: Context) -> EvalPolicy:
    api_key = ctx.env.get("OPENAI_API_KEY", "").strip()
    if not api_key:
        raise EvalError("the llm policy needs OPENAI_API_KEY (for a local server that ignores keys, any value): "
                        "put it in .env or export it", EXIT_USAGE)
    model, source, _ = model_choice(ctx.args, ctx.env)
    return LLMEvalPolicy(api_key=api_key, model=model, model_source=source,
                         base_url=ctx.env.get("OPENAI_BASE_URL", "").strip() or None,
                         cache=ctx.data_dir / CACHE_FILE, max_concurrent=ctx.args.max_concurrent_calls,
                         temperature=ctx.args.temperature, max_retries=ctx.args.max_retries, nll=ctx.args.nll)


def make_local(ctx: Context, base: bool = False) -> EvalPolicy:
    """An open model in this process (lib.evaluation.local): its greedy decisions and the NLL of the human's answers."""
    name = "local-base" if base else "local"
    try:
        model, source = evallocal.model_path(ctx.args.model, ctx.args.record)
        return evallocal.LocalEvalPolicy(name, model, source, base=base)
    except (evallocal.LocalPolicyError, jobrecord.JobRecordError) as exc:
        raise EvalError(str(exc), EXIT_USAGE) from None


def _make_empirical(ctx: Context) -> EvalPolicy:
    from lib.games.voting import empirical

    return empirical.make_empirical(ctx)


# Policies asked on market examples too (lib.games.market.scores scores their decisions); the market baseline is
# lib.games.market.policy's, scored in market_section.
MARKET_POLICIES = ("llm", "fitted", "empirical")

POLICIES: dict[str, Callable[[Context], EvalPolicy]] = {"baseline": make_baseline, "fitted": make_fitted,
                                                        "empirical": lambda ctx: _make_empirical(ctx),
                                                        "llm": make_llm, "local": make_local,
                                                        "local-base": lambda ctx: make_local(ctx, base=True)}


def chosen_policies(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    if args.policies is None:
        names = ["baseline", "fitted"]
        if not env.get("OPENAI_API_KEY", "").strip():
            # the model is not resolved without a key: a job recorded at another endpoint must not stop an
            # evaluation that never calls a model
            if args.model or env.get("OPENAI_MODEL", "").strip():
                print("note: a model is configured but OPENAI_API_KEY is not set: llm is not evaluated",
                      file=sys.stderr)
            return names
        if model_choice(args, env)[2]:
            names.append("llm")
        return names
    names = [name.strip() for name in args.policies.split(",") if name.strip()]
    unknown = [name for name in names if name not in POLICIES]
    if unknown or not names:
        raise EvalError(f"--policies: unknown policy {', '.join(unknown) or '(none given)'}; choose from "
                        f"{', '.join(POLICIES)}", EXIT_USAGE)
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------------------------
# Cost estimate


def is_local_endpoint(url: str) -> bool:
    """A server on this machine or a private network: nothing to pay per token (a guess any other host fails)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def prices(model: str) -> tuple[float, float] | None:
    base = ftcheck.base_model(model)
    table = FINE_TUNED_PRICES if model.startswith("ft:") else PRICES
    if base in table:
        return table[base]
    matches = [name for name in table if name.startswith(base + "-")]  # an alias: "gpt-4.1-mini"
    return table[matches[0]] if len(matches) == 1 else None


def estimate(policy: LLMEvalPolicy, evaluated: EvalSet) -> dict[str, Any]:
    """Tokens and list-price cost of the calls a run would make (the cache's answers cost nothing)."""
    todo = policy.uncached(evaluated.examples)
    scored = sum(evalpolicies.scored(e) for e in evaluated.examples)
    prompt = sum(ftcheck.count_tokens(e.messages) for e in todo)
    answer = sum(ftcheck.count_text_tokens(json.dumps(e.human, separators=(",", ":"))) for e in todo)
    price = prices(policy.model)
    usd = None if price is None else round(prompt / 1e6 * price[0] + answer / 1e6 * price[1], 4)
    return {"calls": len(todo), "cached": scored - len(todo), "prompt_tokens": prompt,
            "answer_tokens_about": answer, "usd": usd, "paid": not is_local_endpoint(policy.base_url)}


def estimate_line(policy: LLMEvalPolicy, est: dict[str, Any]) -> str:
    cost = ("price unknown for this model" if est["usd"] is None
            else f"about ${est['usd']:,.2f} at list prices (check openai.com/api/pricing)")
    if not est["paid"]:
        cost = "a local endpoint: no per-token price"
    return (f"llm: {est['calls']} call(s) to {policy.model} at {policy.base_url} ({est['cached']} answer(s) already "
            f"cached): {est['prompt_tokens']:,} prompt tokens, about {est['answer_tokens_about']:,} answer tokens; "
            f"{cost}")


def confirm(question: str, stdin: Any = None) -> bool:
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        raise EvalError("a paid endpoint would be called and there is no terminal to ask: pass --yes to go ahead, "
                        "or --dry-run to see only the estimate", EXIT_USAGE)
    print(question, end=" ", flush=True)
    return stdin.readline().strip().lower() in ("y", "yes")


# ---------------------------------------------------------------------------------------------------------------
# The run


def _atomic_temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _clean(value: Any) -> Any:
    """Floats rounded for the report (6 significant decimals are plenty for money and shares)."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def dataset_entry(s: EvalSet) -> dict[str, Any]:
    per_action: dict[str, int] = {}
    per_game: dict[str, int] = {}
    for e in s.examples:
        per_action[e.action] = per_action.get(e.action, 0) + 1
        per_game[e.game] = per_game.get(e.game, 0) + 1
    return {"path": str(s.path), "sha256": s.sha256, "sidecar": str(s.sidecar), "examples": len(s.examples),
            "games": s.games, "per_game": {g: per_game[g] for g in s.games}, "per_action": per_action}


async def _decide(policies: list[EvalPolicy], voting: list[Any], market: list[Any]
                  ) -> tuple[dict[str, list[evaluate.Decision]], dict[str, list[evaluate.Decision]]]:
    """(voting decisions, market decisions) per policy; a market policy is asked both in one go, so that its calls
    share one bound on concurrency and one cache file."""
    on_voting, on_market = {}, {}
    for policy in policies:
        asked = voting + (market if policy.name in MARKET_POLICIES else [])
        decided = await policy.decide_all(asked)
        if voting:
            on_voting[policy.name] = decided[:len(voting)]
        if policy.name in MARKET_POLICIES and market:
            on_market[policy.name] = decided[len(voting):]
    return on_voting, on_market


def run(args: argparse.Namespace, describe: Callable[[openai.APIError], str]) -> int:
    try:
        return _run(args, describe)
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except evalpolicies.CacheError as exc:  # the estimate, or the llm policy's run, cannot use the cache file
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace, describe: Callable[[openai.APIError], str]) -> int:
    env = dict(os.environ)
    names = chosen_policies(args, env)
    path = args.evaluate_on or args.data_dir / "validation_set.jsonl"
    if not path.is_file():
        raise EvalError(f"{path}: no such set; build one with python constructDataset.py, or pass --evaluate-on FILE",
                        EXIT_USAGE)
    try:
        evaluated = read_set(path, jobrecord.sha256_file(path))
    except SetError as exc:
        raise EvalError(str(exc), EXIT_USAGE) from None
    whole = evaluated
    market = [e for e in evaluated.examples if is_market(e)]
    # Market examples are scored apart (lib.games.market.scores); the voting statistics and picture cover the rest.
    if market:
        evaluated = dataclasses.replace(evaluated, examples=[e for e in evaluated.examples if not is_market(e)])
    ctx = Context(args, env, evaluated, args.data_dir)
    if args.policies is None and not training_set_path(args, path).is_file():
        print(f"note: no training set {training_set_path(args, path)} to fit on: fitted is not evaluated",
              file=sys.stderr)
        names.remove("fitted")
    # on a market-only set only the policies with a market version are made (fitted needs voting examples to fit)
    policies = [POLICIES[name](ctx) for name in names if evaluated.examples or name in MARKET_POLICIES]

    for policy in policies:
        if isinstance(policy, LLMEvalPolicy):
            est = estimate(policy, whole)  # its market examples are asked too
            print(estimate_line(policy, est))
            if args.dry_run:
                continue
            if est["paid"] and est["calls"] and not args.yes and not confirm("Make these calls? [y/N]"):
                raise EvalError("nothing asked, nothing written (pass --yes to skip the question)")
    if args.dry_run:
        print("dry run: no model called, nothing written")
        return EXIT_OK

    try:
        decisions, market_decisions = asyncio.run(_decide(policies, evaluated.examples, market))
    except evallocal.LocalPolicyError as exc:
        raise EvalError(f"{exc}; nothing was written", EXIT_USAGE) from None
    except ModelUnavailable as exc:
        raise EvalError(f"{describe(exc.cause)}; {exc.answered} answer(s) are cached in {exc.cache}: run again to "
                        "resume. Nothing else was written") from None

    out = output_dir(args, whole)
    if not evaluated.examples:
        market_report = market_section(names, market, market_decisions)
        report = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), "dataset": dataset_entry(whole),
                  "market": market_report}
        if policies:
            report["policy_info"] = {policy.name: policy.info() for policy in policies}
        write_report(out, _clean(report))
        _remove_stale(out, {REPORT_FILE})
        print(f"Evaluated on {whole.path}: {len(market)} market decisions from {len(whole.games)} game(s) "
              f"({', '.join(whole.games)}), sha256 {whole.sha256[:12]}; no voting decision, so no picture")
        print(market_table(market_report))
        print(f"Wrote {out / REPORT_FILE}")
        return EXIT_OK
    scores = {name: evaluate.score(evaluated.examples, ds) for name, ds in decisions.items()}
    refs = evaluate.references(evaluated.examples)
    pool = [e for e in ctx.training.examples if not is_market(e)] if ctx.training is not None else evaluated.examples
    uncertainty, rows = evalstats.analyse(evaluated.examples, decisions, pool, refs)
    reasons = invalid_reasons(decisions)
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": dataset_entry(evaluated),
        "policies": scores,
        "references": refs,
        "uncertainty": uncertainty,
        "invalid_reasons": reasons,
        "policy_info": {policy.name: policy.info() for policy in policies},
        "notes": ["an invalid vote counts as a disagreement; MAE, median AE, bias and Spearman cover the valid "
                  "answers only (n - invalid)",
                  "'references' are the best constants in hindsight (the majority vote and the median amount of the "
                  "evaluated humans themselves); the honest references, taken from the other games, are under "
                  "uncertainty.references with the prefix 'out of sample'",
                  "intervals: 95 % percentile bootstrap resampling persons (a seat in a game; quote these) and, "
                  "second, games; the KS p-value assumes independent decisions and is optimistic",
                  "chat is counted, not scored"],
    }
    if market:
        report["dataset"] = dataset_entry(whole)
        report["market"] = market_section(names, market, market_decisions)
        report["notes"].append("the voting scores, references and the picture cover the voting examples; the market "
                               "examples are scored under 'market' (lib/games/market/scores.py)")
    write_outputs(out, _clean(report), evaluated, decisions, scores, refs, ctx, rows)
    print(f"Evaluated on {evaluated.path}: {len(evaluated.examples)} decisions from {len(evaluated.games)} game(s) "
          f"({', '.join(evaluated.games)}), sha256 {evaluated.sha256[:12]}"
          + (f"; and {len(market)} market decisions, scored apart below" if market else ""))
    print(evaluate.format_table(scores, refs))
    invalid = {name: {a: e.get("invalid", 0) for a, e in s.items()} for name, s in scores.items()}
    print(evalstats.format_uncertainty(uncertainty, invalid))
    for name, counted in reasons.items():
        print(f"invalid answers of {name}: " + "; ".join(f"{n} x {why}" for why, n in list(counted.items())[:3]))
    if market:
        print(market_table(report["market"]))
    if "fitted" in ctx.saved:
        overall = ctx.saved["fitted"][0]
        print(f"fitted on all training games: {fitted.in_words(overall.params)}; saved in "
              f"{out / fitted.PARAMS_FILE}")
    written = [REPORT_FILE, PICTURE_FILE, evalstats.CSV_FILE] + ([fitted.PARAMS_FILE] if "fitted" in ctx.saved else [])
    print(f"Wrote {', '.join(written)} in {out}")
    return EXIT_OK


def output_dir(args: argparse.Namespace, s: EvalSet) -> Path:
    """--output-dir, else a folder named for the evaluated set and its content, so evaluations never collide."""
    return args.output_dir or args.data_dir / "evaluations" / f"{s.path.stem}-{s.sha256[:12]}"


def invalid_reasons(decisions: dict[str, list[evaluate.Decision]]) -> dict[str, dict[str, int]]:
    """Per policy with invalid answers, their reasons, most frequent first."""
    out = {}
    for name, ds in decisions.items():
        counted: dict[str, int] = {}
        for d in ds:
            if d.action is None:
                why = (d.error or "no reason given").splitlines()[0][:160]
                counted[why] = counted.get(why, 0) + 1
        if counted:
            out[name] = dict(sorted(counted.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


OUTPUT_FILES = (REPORT_FILE, PICTURE_FILE, evalstats.CSV_FILE, fitted.PARAMS_FILE)


def _remove_stale(out: Path, written: set[str]) -> None:
    """An earlier evaluation of the same set into this folder may have left files this one does not write (a
    picture, fitted parameters): they would pass for this evaluation's."""
    for name in OUTPUT_FILES:
        if name not in written:
            (out / name).unlink(missing_ok=True)


def market_section(names: list[str], examples: list[Any],
                   decisions: dict[str, list[evaluate.Decision]] | None = None) -> dict[str, Any]:
    """The market examples' scores (lib.games.market.scores.score_market) per policy that has a market version here (the
    baseline, and the policies whose `decisions` on these examples are given), and what is not scored."""
    from lib.games.market.policy import MarketBaseline
    from lib.games.market.scores import NOT_SCORED, score_market

    per_action: dict[str, int] = {}
    per_type: dict[str, int] = {}
    for e in examples:
        per_action[e.action] = per_action.get(e.action, 0) + 1
        per_type[e.game_type] = per_type.get(e.game_type, 0) + 1
    from lib.games.market import fidelity as marketstats

    made = [market_example(e) for e in examples]
    scores, not_scored, spread = {}, list(NOT_SCORED), {}
    for name in names:
        if name == "baseline":
            answers: dict[int, Any] = {}
            base = MarketBaseline(seed=0).decide

            def recorded(view: Any, kind: str, answers: dict[int, Any] = answers, base: Any = base) -> Any:
                answers[id(view)] = base(view, kind)  # kept for the intervals: the baseline draws at random
                return answers[id(view)]

            scores[name] = score_market(made, recorded)
            scores[name].pop("not_scored", None)
            spread[name] = {k: marketstats.summarize(v)
                            for k, v in marketstats.ratio_pairs(examples, made, answers).items()}
        elif decisions and name in decisions:
            # score_market asks decide(view, kind) example by example; each made example has its own view object,
            # so the view says which example's decision (already checked strictly, None when invalid) it wants
            decided = {id(m.view): d.action for m, d in zip(made, decisions[name], strict=True)}
            scores[name] = score_market(made, lambda view, kind, decided=decided: decided[id(view)])
            scores[name].pop("not_scored", None)
            spread[name] = {k: marketstats.summarize(v)
                            for k, v in marketstats.ratio_pairs(examples, made, decided).items()}
        else:
            not_scored.append(f"policy {name}: no market version in --evaluate yet (only the baseline, "
                              "lib/games/market/policy.py, fitted, empirical and llm are scored on market examples)")
    return {"examples": len(examples), "per_game_type": per_type, "per_action": per_action, "policies": scores,
            "compared_with": "the recorded players", "warning": MARKET_WARNING, "uncertainty": spread,
            "not_scored": not_scored}


# No human Harberger or futarchy log is public and a log does not say who played it: the market numbers compare with
# whoever did, and must not pass for a measure of human-likeness.
MARKET_WARNING = ("the market scores compare with the recorded players, not with humans: no human Harberger or "
                  "futarchy data is public, and logs recorded with agents or scripts (as the real-server recordings "
                  "were) measure likeness to those agents or scripts")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def market_table(section: dict[str, Any]) -> str:
    """The market scores in a few lines per policy."""
    from lib.games.market import fidelity as marketstats

    lines = [f"market decisions (n={section['examples']}: " + ", ".join(
        f"{a} {n}" for a, n in section["per_action"].items()) + "), compared with the recorded players",
             f"  warning: {section.get('warning', MARKET_WARNING)}"]
    for name, s in section["policies"].items():
        d, sn, o = s["declare"], s["done-speculating"], s["post-order"]
        lines.append(f"  {name}: declarations n={d['n']} (values unknown {d['values_unknown']}), invalid "
                     f"{d['invalid']}, mean error {_pct(d['mean_rel_error'])} of the true value, shading "
                     f"recorded players {_pct(d['human_shading'])} / policy {_pct(d['policy_shading'])}")
        lines.append(f"  {name}: snipes n={sn['n']}, invalid {sn['invalid']}, agreement {_pct(sn['agreement'])} "
                     f"of {sn['choices']} choices, snipe rate recorded players {_pct(sn['human_snipe_rate'])} / policy "
                     f"{_pct(sn['policy_snipe_rate'])}")
        lines.append(f"  {name}: orders n={o['n']}, invalid {o['invalid']}, same side {_pct(o['same_side'])}, mean "
                     f"price error {_pct(o['mean_rel_price_error'])} of the signal")
        lines += marketstats.format_lines(name, section.get("uncertainty", {}).get(name, {}))
    lines += [f"  not scored: {reason}" for reason in section["not_scored"]]
    return "\n".join(lines)


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    temp = _atomic_temp(path)
    try:
        temp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_outputs(out: Path, report: dict[str, Any], evaluated: EvalSet, decisions: dict[str, list[Any]],
                  scores: dict[str, Any], refs: dict[str, Any], ctx: Context,
                  rows: dict[str, list[Any]] | None = None) -> None:
    """The picture, the report, the per-decision CSV (and the fitted parameters), each replacing the old file only
    when whole."""
    from lib.evaluation import plot as evalplot

    out.mkdir(parents=True, exist_ok=True)
    report_path, picture_path, csv_path = out / REPORT_FILE, out / PICTURE_FILE, out / evalstats.CSV_FILE
    temps = [_atomic_temp(picture_path), _atomic_temp(report_path), _atomic_temp(csv_path)]
    try:
        try:
            evalplot.draw(temps[0], evaluated.examples, decisions, scores, refs,
                          f"{evaluated.path.name} ({len(evaluated.examples)} decisions, sha256 "
                          f"{evaluated.sha256[:12]})", report.get("uncertainty"))
        except ImportError:
            raise EvalError("matplotlib is not installed: .venv/bin/pip install -r requirements.txt") from None
        temps[1].write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        evalstats.write_csv(temps[2], rows or {}, decisions, evaluated.examples)
        if "fitted" in ctx.saved:
            overall, source = ctx.saved["fitted"]
            fitted.save(out / fitted.PARAMS_FILE, overall, source)
        if "empirical" in ctx.saved:
            from lib.games.voting import empirical

            samples, source, market_samples = ctx.saved["empirical"]
            empirical.save(out / empirical.PARAMS_FILE, samples, source, market_samples)
        os.replace(temps[0], picture_path)
        os.replace(temps[1], report_path)
        os.replace(temps[2], csv_path)
        _remove_stale(out, {REPORT_FILE, PICTURE_FILE, evalstats.CSV_FILE}
                      | ({fitted.PARAMS_FILE} if "fitted" in ctx.saved else set()))
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
