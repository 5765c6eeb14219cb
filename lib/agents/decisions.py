"""Who made each decision of a run, and the decisions table (CSV) an economist opens first.

Every decision an agent takes becomes one row of `decisions.csv` in the run's folder, beside the transcripts,
written and flushed as it is taken, so the table is complete up to the last decision after a crash or a kill.
The table is game-neutral: a row names the game, round, phase, seat and role, the player's private values as
JSON (whatever shape the game gives them), the action's type and its wire message as JSON, who made it, how
long it took and how many retries it needed, and for a model decision the tokens of its answers, what its calls
cost (list prices, lib.evaluation.cli.prices; an answer a study's cache replays costs nothing) and how many answers
were replayed. Every game fills the same columns: its seat rules say what its role,
action type and private values are (lib.games.protocols.SeatRules.decision_fields).

Who made it (`made_by`):

- `model`: the model's first answer was valid and went out;
- `model-after-retries`: a valid answer came after correction retries (invalid answers fed back, or API errors);
- `fallback`: the model had no valid answer in time; the rule-based fallback action went out (or, for chat,
  nothing), and `fallback_reason` says why: `timeout` (the deadline came first), `model-error` (the endpoint
  failed: unreachable, 401, unknown model, 5xx...), `invalid-answers` (every answer broke the rules), or
  `policy-error` (a rule policy raised), `spend-cap` (a study's spending cap was reached: no call was made);
- the name of a rule policy (`baseline`): the rules played by choice, no model involved;
- `none`: the decision ended with nothing sent (the phase moved on, the agent shut down); `detail` says why.

A model policy reports its attempts through `Trace`, found with `current()`: the agent opens one per decision
in the decision's own task (a context variable, so the Policy interface stays `decide(...)` and several agents
can share one policy). Whoever cancels a decision writes why into the trace first, so the model-call record
says what really happened instead of guessing.
"""

from __future__ import annotations

import contextvars
import csv
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.agents.transcript import REDACTED

MODEL = "model"
MODEL_RETRIED = "model-after-retries"
FALLBACK = "fallback"
NONE = "none"
# Why a fallback went out.
TIMEOUT = "timeout"
MODEL_ERROR = "model-error"
INVALID = "invalid-answers"
POLICY_ERROR = "policy-error"
SPEND_CAP = "spend-cap"  # the study's spending cap is reached: the model is not asked any more
FALLBACK_REASONS = (TIMEOUT, MODEL_ERROR, INVALID, POLICY_ERROR, SPEND_CAP)

_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")  # as lib.agents.transcript: key-shaped strings nobody registered
COLUMNS = ("time_utc", "game", "round", "phase", "seat", "role", "agent", "private_values", "action_type",
           "action", "made_by", "fallback_reason", "detail", "model", "attempts", "retries", "latency_s", "sent",
           "prompt_tokens", "completion_tokens", "cost_usd", "cached_calls")


@dataclass
class Trace:
    """What a model policy did for one decision (filled in by the policy, read by the agent)."""

    deadline: float  # time.monotonic() by which an answer must be out
    attempts: int = 0  # model calls made
    invalid: int = 0  # answers that broke the rules
    errors: int = 0  # calls that failed (API errors, call timeouts)
    last_failure: str | None = None  # TIMEOUT, MODEL_ERROR or INVALID: how the last failed attempt failed
    stopped: str | None = None  # why the policy gave up before its attempts ran out (TIMEOUT, MODEL_ERROR)
    last_error: str | None = None  # the last failure in words
    cancel_reason: str | None = None  # set by whoever cancels the decision, before cancelling it
    prompt_tokens: int = 0  # over every answer, replayed ones included
    completion_tokens: int = 0
    cost_usd: float | None = None  # spent on this decision's calls (replayed answers cost nothing); None: no price
    cached_calls: int = 0  # answers replayed from a study's call cache

    def used(self, prompt_tokens: int, completion_tokens: int, cost_usd: float | None, cached: bool) -> None:
        """One answer's tokens and cost (None: the model has no known price)."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost_usd
        self.cached_calls += cached

    def failed(self, kind: str, error: str) -> None:
        self.last_failure, self.last_error = kind, error
        if kind == INVALID:
            self.invalid += 1
        else:
            self.errors += 1

    def why_no_answer(self) -> str:
        """The fallback reason when the policy returned no answer."""
        return self.stopped or self.last_failure or TIMEOUT

    def summary(self) -> str:
        parts = [f"{self.attempts} model call{'s' if self.attempts != 1 else ''}"]
        if self.invalid:
            parts.append(f"{self.invalid} invalid answer{'s' if self.invalid != 1 else ''}")
        if self.errors:
            parts.append(f"{self.errors} failed call{'s' if self.errors != 1 else ''}")
        text = ", ".join(parts)
        return f"{text}; last: {self.last_error}" if self.last_error else text


_current: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("decision_trace", default=None)


def begin(trace: Trace) -> None:
    """Make `trace` the current decision's trace in this task (each asyncio task has its own context)."""
    _current.set(trace)


def current() -> Trace | None:
    """The trace of the decision being taken in this task, or None (e.g. a policy called outside an agent)."""
    return _current.get()


@dataclass
class Decision:
    """One row of the decisions table."""

    game: Any
    round: Any
    phase: Any
    seat: Any
    role: str | None
    agent: str
    action_type: str
    made_by: str
    action: dict[str, Any] | None = None
    private_values: Any = None
    fallback_reason: str | None = None
    detail: str | None = None
    model: str | None = None
    attempts: int = 0
    latency_s: float | None = None
    sent: bool = False
    time: float = field(default_factory=time.time)
    prompt_tokens: int | None = None  # None: no model call (or not told; see DecisionLog.add)
    completion_tokens: int | None = None
    cost_usd: float | None = None
    cached_calls: int | None = None

    def take_usage(self, trace: Trace) -> None:
        """The tokens and cost the model policy reported into `trace`, when it made calls."""
        if trace.attempts and self.prompt_tokens is None:
            self.prompt_tokens, self.completion_tokens = trace.prompt_tokens, trace.completion_tokens
            self.cost_usd, self.cached_calls = trace.cost_usd, trace.cached_calls

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)

    def row(self) -> list[str]:
        def js(value: Any) -> str:
            return "" if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))

        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.time)) + f".{int(self.time * 1000) % 1000:03d}Z"
        return [stamp, _text(self.game), _text(self.round), _text(self.phase), _text(self.seat), self.role or "",
                self.agent, js(self.private_values), self.action_type, js(self.action), self.made_by,
                self.fallback_reason or "", self.detail or "", self.model or "", str(self.attempts),
                str(self.retries), "" if self.latency_s is None else f"{self.latency_s:.3f}",
                "yes" if self.sent else "no", _text(self.prompt_tokens), _text(self.completion_tokens),
                "" if self.cost_usd is None else f"{self.cost_usd:.6f}", _text(self.cached_calls)]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _header_width(path: Path) -> int:
    """How many columns the existing table at `path` has; ValueError (one line) for a file that is not one."""
    with open(path, encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh), [])
    if not header or tuple(header) != COLUMNS[:len(header)]:
        raise ValueError(f"{path}: not a decisions table (its first line is not the table's columns); move it aside")
    return len(header)


class DecisionLog:
    """The decisions table of one run (any number of agents and games), and the tally behind the shares line.

    Rows are appended and flushed one by one (a crash loses nothing written before it). `listener`, when given,
    hears every started decision (`("start", info)`) and every row (`("row", decision)`): live progress.
    `secrets` (the API key, passwords) never reach the file, nor does anything shaped like an OpenAI key: an
    error text in `detail` may quote one.
    """

    def __init__(self, path: str | Path, listener: Callable[[str, Any], None] | None = None,
                 secrets: list[str] | tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        # A table begun by an older version (a resumed run) has fewer columns: rows keep its width, so it stays
        # one rectangular table.
        self._width = len(COLUMNS) if new else _header_width(self.path)
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(COLUMNS)
            self._file.flush()
        self.listener = listener
        self.made_by: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.rows: list[Decision] = []

    def started(self, **info: Any) -> None:
        if self.listener is not None:
            self.listener("start", info)

    def add(self, decision: Decision) -> None:
        """Append one row. A model decision's tokens and cost come from the trace of the decision being taken in
        this task (the agent records each decision in the task that took it) unless the row already has them."""
        trace = current()
        if trace is not None and decision.attempts == trace.attempts:
            decision.take_usage(trace)
        self.made_by[decision.made_by] += 1
        if decision.made_by == FALLBACK:
            self.reasons[decision.fallback_reason or "?"] += 1
        self.rows.append(decision)
        if not self._file.closed:
            # A text that cannot be encoded (a lone surrogate from a model) must not lose the row.
            self._csv.writerow([self._scrub(cell.encode("utf-8", "replace").decode("utf-8"))
                                for cell in decision.row()[:self._width]])
            self._file.flush()
        if self.listener is not None:
            self.listener("row", decision)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _KEY_PATTERN.sub(REDACTED, text) if "sk-" in text else text

    @property
    def total(self) -> int:
        return sum(self.made_by.values())

    def fallback_share(self) -> float:
        return self.made_by[FALLBACK] / self.total if self.total else 0.0

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def shares_line(made_by: Counter[str], reasons: Counter[str]) -> str:
    """`decisions: 33: model 30 (90.9%), model-after-retries 2 (6.1%), fallback 1 (3.0%: timeout 1)`."""
    total = sum(made_by.values())
    if not total:
        return "decisions: none taken"
    order = [MODEL, MODEL_RETRIED, FALLBACK]
    names = order + sorted(k for k in made_by if k not in order and k != NONE) + [NONE]
    parts = []
    for name in names:
        count = made_by.get(name, 0)
        model_run = made_by.get(MODEL, 0) or made_by.get(MODEL_RETRIED, 0)
        if not count and not (name == FALLBACK and model_run):  # a model run always shows its fallbacks, even 0
            continue
        share = f"{100 * count / total:.1f}%"
        if name == FALLBACK and count:
            share += ": " + ", ".join(f"{why} {n}" for why, n in sorted(reasons.items()))
        parts.append(f"{name} {count} ({share})")
    return f"decisions: {total}: " + ", ".join(parts)
