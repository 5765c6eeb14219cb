"""`finetune.py --evaluate`: score policies against the human decisions of a set constructDataset.py built.

    python finetune.py --evaluate                                  # data/validation_set.jsonl; baseline, fitted (+ llm)
    python finetune.py --evaluate --evaluate-on data/training_set.jsonl --policies baseline,fitted,llm --yes
    python finetune.py --evaluate --policies llm --dry-run        # the token and cost estimate only

Reads the set and its state sidecar (lib.dataset.sidecar); each game present in the set (the sidecar header names them)
is asked, through its lib.games.protocols.ScoreRules, for its rule policies (`fitted` and `empirical` are fitted on the
training set beside it, or --train, with leave-one-game-out for evaluated games that are training games), how a
model's answer is checked and how its decisions are scored; each policy decides every example of the games that ask
it (lib.evaluation.policies); each game's scores, with their intervals, references and distributions (on
lib.evaluation.stats), go to stdout and to one folder per evaluation (--output-dir, default
DATA_DIR/evaluations/<set name>-<sha256 prefix>/): evaluation_report.json, the picture evaluation.png (of a game that
draws one), decisions.csv (one row per example and policy, the columns the games add) and what the rule policies
save (the parameters fitted on all training games, which `handler.py --policy fitted` plays: the newest such file;
the empirical samples of every game in one file, lib.evaluation.saved, which `handler.py --policy empirical` plays),
all written only once everything is computed, each atomically, so that one evaluation never replaces another's.
A set with examples of several games reports each game's section.

A policy is one entry of POLICIES: a function (context) -> EvalPolicy. Add one there, with its options in
add_arguments, and it is scored, tabled, reported and drawn like the others.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
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
from lib.dataset.sidecar import EvalSet, Example, SetError, read_set
from lib.evaluation import local as evallocal  # evallocal: torch if used
from lib.evaluation import policies as evalpolicies
from lib.evaluation import saved as samplesfile  # the empirical samples file every game shares
from lib.evaluation import scores as evaluate
from lib.evaluation.policies import EvalPolicy, LLMEvalPolicy, ModelUnavailable, RulesPolicy, scores_of
from lib.games import GAMES, game_for
from lib.games.protocols import DEFAULT_PROMPT, ScoredSection, ScoreRules, UnknownPromptVariant, check_prompt_variant
from lib.training import jobrecord

REPORT_FILE, PICTURE_FILE, CACHE_FILE = "evaluation_report.json", "evaluation.png", "evaluation_cache.jsonl"
CSV_FILE = "decisions.csv"
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
    g.add_argument("--prompt-variant", metavar="NAME", default=DEFAULT_PROMPT,
                   help="llm: ask the model with this prompt variant of each example's game instead of the "
                        "training prompt (default; zero-shot: the game's full rules added, for a model not "
                        "fine-tuned on the game; no-history: without the earlier rounds), rebuilt from the example "
                        "and its sidecar state as at play time")
    g.add_argument("--temperature", type=_temperature, default=0.0,
                   help="llm: sampling temperature (default: 0, the model's most likely answer; none: the "
                        "endpoint's default)")


@dataclass
class Part:
    """The examples of the set that one game's scores cover (games sharing a ScoreRules share a part), as a set of
    their own, so that its games and counts are its examples'."""

    scores: ScoreRules
    game_types: list[str]
    set: EvalSet

    @property
    def examples(self) -> list[Example]:
        return self.set.examples


def parts_of(evaluated: EvalSet) -> list[Part]:
    """The set's examples by the ScoreRules of their games, in the registry's order of game types."""
    order = list(GAMES)
    present = sorted({e.game_type for e in evaluated.examples},
                     key=lambda t: (order.index(t) if t in order else len(order), t))
    parts: dict[int, Part] = {}
    for game_type in present:
        try:
            scores = getattr(game_for(game_type), "scores", None)  # a game without scores: said below
        except ValueError as exc:
            raise EvalError(f"{evaluated.path}: {exc}", EXIT_USAGE) from None
        if scores is None:
            raise EvalError(f"{evaluated.path}: finetune.py --evaluate cannot score {game_type} examples (the game "
                            "has no scores)", EXIT_USAGE)
        part = parts.setdefault(id(scores), Part(scores, [], dataclasses.replace(evaluated, examples=[])))
        part.game_types.append(game_type)
    for e in evaluated.examples:
        parts[id(scores_of(e))].examples.append(e)
    return list(parts.values())


@dataclass
class Context:
    """What a policy factory may use."""

    args: argparse.Namespace
    env: dict[str, str]
    evaluated: EvalSet
    data_dir: Path
    parts: list[Part] = field(default_factory=list)  # the evaluated set's examples by their games' scores
    training: EvalSet | None = None  # the training set the fitted policy is estimated on
    saved: dict[str, Any] = field(default_factory=dict)  # rule policies (RuleDecisions) that save what they fitted
    trained_on: dict[str, Any] = field(default_factory=dict)  # the training set the rule policies were fitted on


# ---------------------------------------------------------------------------------------------------------------
# Policies


def training_set_path(args: argparse.Namespace, evaluated: Path) -> Path:
    return args.train or evaluated.parent / "training_set.jsonl"


# what each rule policy does with the training set, for the message when there is none
TRAINED = {"fitted": "to fit the fitted policy on", "empirical": "to draw the empirical policy's samples from"}


def read_training(ctx: Context, name: str) -> EvalSet:
    path = training_set_path(ctx.args, ctx.evaluated.path)
    if not path.is_file():
        raise EvalError(f"{path}: no training set {TRAINED[name]}; build it with python constructDataset.py, pass "
                        f"--train FILE, or leave {name} out of --policies", EXIT_USAGE)
    try:
        same = path.resolve() == ctx.evaluated.path.resolve()
        return ctx.evaluated if same else read_set(path, jobrecord.sha256_file(path))
    except SetError as exc:
        raise EvalError(f"{name} policy: {exc}", EXIT_USAGE) from None


def make_rules(ctx: Context, name: str) -> EvalPolicy:
    """A rule policy: on each game's examples the rules its ScoreRules give (fitted on the training set, for all but
    the baseline)."""
    training = read_training(ctx, name) if name in TRAINED else None
    if name == "fitted":
        ctx.training = training  # the honest references are taken from the training games it is fitted on
    parts = {}
    for part in ctx.parts:
        rules = part.scores.rule_decisions(name, training, part.set.games)
        if rules is not None:
            parts[id(part.scores)] = rules
    ctx.saved[name] = list(parts.values())
    source = {} if training is None else {"training_set": {"path": str(training.path), "sha256": training.sha256,
                                                           "games": training.games}}
    ctx.trained_on.update(source.get("training_set", {}))
    return RulesPolicy(name, parts, source)


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
                         temperature=ctx.args.temperature, max_retries=ctx.args.max_retries, nll=ctx.args.nll,
                         prompt=prompt_variant(ctx.args, ctx.parts))


def prompt_variant(args: argparse.Namespace, parts: list[Part]) -> str:
    """--prompt-variant, which every game of the set must have; EvalError (one line) naming the game's variants."""
    variant = getattr(args, "prompt_variant", DEFAULT_PROMPT)
    for part in parts:
        for game_type in part.game_types:
            try:
                check_prompt_variant(game_for(game_type), variant)
            except UnknownPromptVariant as exc:
                raise EvalError(f"--prompt-variant: {exc}", EXIT_USAGE) from None
    return variant


def make_local(ctx: Context, base: bool = False) -> EvalPolicy:
    """An open model in this process (lib.evaluation.local): its greedy decisions and the NLL of the human's answers."""
    name = "local-base" if base else "local"
    try:
        model, source = evallocal.model_path(ctx.args.model, ctx.args.record)
        return evallocal.LocalEvalPolicy(name, model, source, base=base)
    except (evallocal.LocalPolicyError, jobrecord.JobRecordError) as exc:
        raise EvalError(str(exc), EXIT_USAGE) from None


POLICIES: dict[str, Callable[[Context], EvalPolicy]] = {"baseline": lambda ctx: make_rules(ctx, "baseline"),
                                                        "fitted": lambda ctx: make_rules(ctx, "fitted"),
                                                        "empirical": lambda ctx: make_rules(ctx, "empirical"),
                                                        "llm": make_llm, "local": make_local,
                                                        "local-base": lambda ctx: make_local(ctx, base=True)}
RULE_POLICIES = ("baseline", "fitted", "empirical")  # the others are models, asked where a game lists them


def asks(policy: EvalPolicy, scores: ScoreRules) -> bool:
    """Whether `policy` is asked on the examples `scores` cover."""
    if isinstance(policy, RulesPolicy):
        return id(scores) in policy.parts
    return policy.name in scores.models


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


def estimate(policy: LLMEvalPolicy, examples: list[Example]) -> dict[str, Any]:
    """Tokens and list-price cost of the calls a run would make on `examples` (the cache's answers cost nothing)."""
    todo = policy.uncached(examples)
    scored = sum(evalpolicies.scored(e) for e in examples)
    prompt = sum(ftcheck.count_tokens(policy.messages(e)) for e in todo)
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


async def _decide(policies: list[EvalPolicy], parts: list[Part]) -> list[dict[str, list[evaluate.Decision]]]:
    """Per part, the decisions of each policy asked on it; a policy is asked on all its parts in one go, so that its
    calls share one bound on concurrency and one cache file."""
    out: list[dict[str, list[evaluate.Decision]]] = [{} for _ in parts]
    for policy in policies:
        asked = [i for i, part in enumerate(parts) if asks(policy, part.scores)]
        decided = await policy.decide_all([e for i in asked for e in parts[i].examples])
        start = 0
        for i in asked:
            out[i][policy.name] = decided[start:start + len(parts[i].examples)]
            start += len(parts[i].examples)
    return out


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
    if getattr(args, "prompt_variant", DEFAULT_PROMPT) != DEFAULT_PROMPT and "llm" not in names:
        raise EvalError(f"--prompt-variant {args.prompt_variant}: it is the llm policy's prompt, and llm is not "
                        "evaluated (add it to --policies; it needs OPENAI_API_KEY)", EXIT_USAGE)
    path = args.evaluate_on or args.data_dir / "validation_set.jsonl"
    if not path.is_file():
        raise EvalError(f"{path}: no such set; build one with python constructDataset.py, or pass --evaluate-on FILE",
                        EXIT_USAGE)
    try:
        evaluated = read_set(path, jobrecord.sha256_file(path))
    except SetError as exc:
        raise EvalError(str(exc), EXIT_USAGE) from None
    parts = parts_of(evaluated)
    ctx = Context(args, env, evaluated, args.data_dir, parts)
    if args.policies is None and not training_set_path(args, path).is_file():
        print(f"note: no training set {training_set_path(args, path)} to fit on: fitted is not evaluated",
              file=sys.stderr)
        names.remove("fitted")
    # a model policy is made only where a game present asks it (a model is then loaded or paid for); a rule
    # policy is made, and each game present says whether it has such rules
    policies = [POLICIES[name](ctx) for name in names
                if name in RULE_POLICIES or any(name in part.scores.models for part in parts)]
    policies = [p for p in policies if any(asks(p, part.scores) for part in parts)]

    for policy in policies:
        if isinstance(policy, LLMEvalPolicy):
            est = estimate(policy, [e for part in parts if asks(policy, part.scores) for e in part.examples])
            print(estimate_line(policy, est))
            if args.dry_run:
                continue
            if est["paid"] and est["calls"] and not args.yes and not confirm("Make these calls? [y/N]"):
                raise EvalError("nothing asked, nothing written (pass --yes to skip the question)")
    if args.dry_run:
        print("dry run: no model called, nothing written")
        return EXIT_OK

    try:
        decisions = asyncio.run(_decide(policies, parts))
    except evallocal.LocalPolicyError as exc:
        raise EvalError(f"{exc}; nothing was written", EXIT_USAGE) from None
    except ModelUnavailable as exc:
        raise EvalError(f"{describe(exc.cause)}; {exc.answered} answer(s) are cached in {exc.cache}: run again to "
                        "resume. Nothing else was written") from None

    sections: list[ScoredSection] = []
    for part, decided in zip(parts, decisions, strict=True):
        training = None
        if ctx.training is not None:
            training = [e for e in ctx.training.examples if id(scores_of(e)) == id(part.scores)]
        sections.append(part.scores.score(part.examples, decided, names, training))
    report: dict[str, Any] = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "dataset": dataset_entry(evaluated)}
    notes: list[str] = []
    for section in sections:
        for key, value in section.report.items():
            if key == "notes":
                notes += value
            else:
                report[key] = value
    report["policy_info"] = {policy.name: policy.info() for policy in policies}
    prompts = model_prompts(policies)
    for name, variant in prompts.items():
        if variant != DEFAULT_PROMPT:
            notes.append(f"{name} was asked with the prompt variant {variant}, not the training prompt (default): "
                         f"{report['policy_info'][name].get('prompt_description', variant)}")
    if len(parts) > 1:
        notes.append("each game's scores, references and picture cover its own examples ("
                     + "; ".join(f"{', '.join(part.game_types)}: {len(part.examples)} {part.scores.noun}"
                                 for part in parts) + ")")
    if notes:
        report["notes"] = notes
    out = output_dir(args, evaluated)
    written = write_outputs(out, _clean(report), parts, sections, ctx, prompts)

    print(evaluated_line(evaluated, parts, PICTURE_FILE in written))
    for section in sections:
        print(section.table())
    for rules in [r for policy in policies for r in ctx.saved.get(policy.name, [])]:
        line = rules.summary(out)
        if line:
            print(line)
    for name, variant in prompts.items():
        if variant != DEFAULT_PROMPT:
            print(f"{name}: asked with the prompt variant {variant} (only default is the prompt a fine-tuned model "
                  "was trained on)")
    print(f"Wrote {', '.join(written)} in {out}")
    return EXIT_OK


def evaluated_line(evaluated: EvalSet, parts: list[Part], pictured: bool) -> str:
    """The first line on stdout: the first game's decisions and games, the others' counts, scored apart."""
    first, *others = parts
    line = (f"Evaluated on {evaluated.path}: {len(first.examples)} {first.scores.noun} from {len(first.set.games)} "
            f"game(s) ({', '.join(first.set.games)}), sha256 {evaluated.sha256[:12]}")
    line += "".join(f"; and {len(part.examples)} {part.scores.noun}, scored apart below" for part in others)
    if not pictured:
        line += f"; no {' or '.join(pictured_titles())} decision, so no picture"
    return line


def pictured_titles() -> list[str]:
    """The titles of the games whose scores draw a picture."""
    titles = []
    for name in GAMES:
        game = GAMES[name]
        scores = getattr(game, "scores", None)
        if scores is not None and scores.has_picture and game.title not in titles:
            titles.append(game.title)
    return titles


def output_dir(args: argparse.Namespace, s: EvalSet) -> Path:
    """--output-dir, else a folder named for the evaluated set and its content, so evaluations never collide."""
    return args.output_dir or args.data_dir / "evaluations" / f"{s.path.stem}-{s.sha256[:12]}"


def output_files() -> tuple[str, ...]:
    """Every file an evaluation may write into its folder."""
    names = [REPORT_FILE, PICTURE_FILE, CSV_FILE, samplesfile.SAMPLES_FILE]
    for name in GAMES:
        scores = getattr(GAMES[name], "scores", None)
        names += [f for f in (scores.output_files if scores is not None else ()) if f not in names]
    return tuple(names)


def _remove_stale(out: Path, written: set[str]) -> None:
    """An earlier evaluation of the same set into this folder may have left files this one does not write (a
    picture, fitted parameters): they would pass for this evaluation's."""
    for name in output_files():
        if name not in written:
            (out / name).unlink(missing_ok=True)


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    temp = _atomic_temp(path)
    try:
        temp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def model_prompts(policies: list[EvalPolicy]) -> dict[str, str]:
    """Each model policy's prompt variant (a model without one is asked with the examples' own prompts, the
    default); the rule policies take no prompt."""
    return {policy.name: getattr(policy, "prompt", DEFAULT_PROMPT) for policy in policies
            if not isinstance(policy, RulesPolicy)}


def write_csv(path: Path, sections: list[ScoredSection], prompts: dict[str, str] | None = None) -> bool:
    """The per-decision CSV: the columns of every game's rows, each row under its own columns; False when no game
    has rows to write (nothing is written then). With `prompts` (model policy -> its prompt variant) a last column,
    `prompt`, says which prompt each model row was asked with (empty for the rules and references)."""
    tables = [section.decision_rows() for section in sections]
    columns = list(dict.fromkeys(c for cols, _ in tables for c in cols))
    if not columns:
        return False
    if prompts:
        tables = [(cols + ["prompt"], [[*row, prompts.get(row[cols.index("policy")])] for row in rows])
                  if "policy" in cols else (cols, rows) for cols, rows in tables]
        columns.append("prompt")
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for cols, rows in tables:
            where = [columns.index(c) for c in cols]
            for row in rows:
                cells: list[Any] = [None] * len(columns)
                for i, cell in zip(where, row, strict=True):
                    cells[i] = cell
                writer.writerow(["" if c is None else c for c in cells])
    return True


def write_outputs(out: Path, report: dict[str, Any], parts: list[Part], sections: list[ScoredSection],
                  ctx: Context, prompts: dict[str, str] | None = None) -> list[str]:
    """The report, the picture (of the first game that draws one), the per-decision CSV and what the rule policies
    save, each replacing the old file only when whole; the names of the files written."""
    out.mkdir(parents=True, exist_ok=True)
    pictured = [(part, section) for part, section in zip(parts, sections, strict=True) if part.scores.has_picture]
    staged: dict[str, Path] = {}  # final name -> its temporary file
    try:
        if pictured:
            part, section = pictured[0]
            staged[PICTURE_FILE] = _atomic_temp(out / PICTURE_FILE)
            try:
                section.draw(staged[PICTURE_FILE], f"{ctx.evaluated.path.name} ({len(part.examples)} "
                                                   f"{part.scores.noun}, sha256 {ctx.evaluated.sha256[:12]})")
            except ImportError:
                raise EvalError("matplotlib is not installed: .venv/bin/pip install -r requirements.txt") from None
        staged[REPORT_FILE] = _atomic_temp(out / REPORT_FILE)
        staged[REPORT_FILE].write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        staged[CSV_FILE] = _atomic_temp(out / CSV_FILE)
        if not write_csv(staged[CSV_FILE], sections, prompts):
            staged.pop(CSV_FILE).unlink(missing_ok=True)
        saved = [name for rules in ctx.saved.values() for r in rules for name in r.save(out)]
        # Every game's empirical samples in one file, which handler.py --policy empirical plays in any game.
        sections = samplesfile.merged([r.samples() for rules in ctx.saved.values() for r in rules])
        if sections:
            staged[samplesfile.SAMPLES_FILE] = _atomic_temp(out / samplesfile.SAMPLES_FILE)
            samplesfile.write(staged[samplesfile.SAMPLES_FILE], sections, ctx.trained_on)
            saved.append(samplesfile.SAMPLES_FILE)
        for name in (PICTURE_FILE, REPORT_FILE, CSV_FILE, samplesfile.SAMPLES_FILE):
            if name in staged:
                os.replace(staged[name], out / name)
        written = [name for name in (REPORT_FILE, PICTURE_FILE, CSV_FILE) if name in staged] + saved
        _remove_stale(out, set(written))
        return written
    finally:
        for temp in staged.values():
            temp.unlink(missing_ok=True)
