"""The model-call cache of a study, token usage and cost per call, and a spend tracker with a cap.

An answer is stored under the endpoint, model, temperature, messages AND the game index, seat and attempt: repeated
games are separate draws (game 3 and game 4 ask the same question under different keys), and a re-run of a game
replays its answers exactly, for free.

The file is JSON lines, appended one whole record per write. A damaged line (not JSON, or not a record) is skipped
with a warning naming the file and line; a line cut by a kill is never glued to the next record, because every
append first ends an unterminated last line. lib.agents.llm.LLMPolicy uses it at play time.

Not joined with lib.evaluation.policies' evaluation cache: that one keys an answer by endpoint, model, temperature
and messages alone (an evaluation asks each recorded decision once; there are no games, seats or repeated draws),
writes ASCII lines and refuses an unreadable file with CacheError; the shared part is the JSON-lines append.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KEY_FIELDS = ("endpoint", "model", "temperature", "messages", "game_index", "seat", "attempt", "prompt")
DEFAULT_PROMPT = "default"  # lib.games.protocols.DEFAULT_PROMPT: a key without a prompt is the default's


# A wall-clock time in a prompt (the action-required's deadline, "2026-12-05T13:05:19.516Z"): it differs in every run
# of the same game, so the key holds a placeholder for it, or a re-run would never find its answers.
_CLOCK = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
CLOCK_PLACEHOLDER = "<time>"


def keyed_text(text: str) -> str:
    """A message's text as the key reads it: every wall-clock time replaced by CLOCK_PLACEHOLDER."""
    return _CLOCK.sub(CLOCK_PLACEHOLDER, text)


def call_key(endpoint: str, model: str, temperature: float | None, messages: Sequence[Mapping[str, Any]],
             game_index: int, seat: int, attempt: int, prompt: str = DEFAULT_PROMPT) -> str:
    """The cache key of one call (sha256 of its fields as canonical JSON, the messages' wall-clock times left out:
    keyed_text); temperature None: the endpoint's default, a key of its own. `prompt`, the prompt variant
    (lib.games.protocols.PromptRules), is in the key of every other variant than the default: two variants never
    share an answer, even where their messages happen to be the same (no-history in a first round), and the keys
    of the default stay those of the caches written before variants existed."""
    said = [{k: keyed_text(v) if isinstance(v, str) else v for k, v in m.items()} for m in messages]
    form = {"endpoint": endpoint, "model": model, "temperature": None if temperature is None else float(temperature),
            "messages": said, "game_index": game_index, "seat": seat, "attempt": attempt}
    if prompt != DEFAULT_PROMPT:
        form["prompt"] = prompt
    text = json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """List-price cost of a call (lib.evaluation.cli.prices), None for a model without a known price."""
    from lib.evaluation.cli import prices

    price = prices(model)
    if price is None:
        return None
    return prompt_tokens / 1e6 * price[0] + completion_tokens / 1e6 * price[1]


@dataclass(frozen=True)
class CachedCall:
    key: str
    answer: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    endpoint: str = ""
    model: str = ""
    game_index: int = -1
    seat: int = -1
    attempt: int = 0
    prompt: str = DEFAULT_PROMPT

    def usage(self) -> dict[str, int]:
        """The token counts as the model-call record holds them."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _record(obj: Any) -> CachedCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not isinstance(obj.get("answer"), str):
        return None
    try:
        return CachedCall(**{k: obj[k] for k in CachedCall.__dataclass_fields__ if k in obj})
    except TypeError:
        return None


class CallCache:
    """A study's answers by key; `put` appends to the file, `get` reads what is loaded (thread-safe)."""

    def __init__(self, path: Path, warn: Callable[[str], None] = _stderr) -> None:
        self.path, self.warn = Path(path), warn
        self.lock = threading.Lock()
        self.calls: dict[str, CachedCall] = {}
        self.skipped = 0
        self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = _record(json.loads(line))
            except ValueError:
                record = None
            if record is None:
                self.skipped += 1
                self.warn(f"{self.path}:{number}: damaged cache line skipped (the call will be made again)")
                continue
            self.calls[record.key] = record

    def __len__(self) -> int:
        return len(self.calls)

    def get(self, key: str) -> CachedCall | None:
        with self.lock:
            return self.calls.get(key)

    def put(self, call: CachedCall) -> None:
        line = json.dumps(asdict(call), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                size = os.fstat(fd).st_size
                prefix = b""
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    prefix = b"\n"  # the last record was cut: end it, so it stays one damaged line on its own
                os.write(fd, prefix + line.encode())
            finally:
                os.close(fd)
            self.calls[call.key] = call


class SpendTracker:
    """Model spend of this run (cached answers cost nothing) against an optional cap (thread-safe)."""

    def __init__(self, cap_usd: float | None = None) -> None:
        self.cap = cap_usd
        self.spent = 0.0
        self.calls = 0
        self.unpriced = 0  # calls of a model without a known price: not in `spent`
        self.lock = threading.Lock()

    def add(self, cost: float | None) -> None:
        with self.lock:
            self.calls += 1
            if cost is None:
                self.unpriced += 1
            else:
                self.spent += cost

    def reached(self) -> bool:
        """True once the spend reaches the cap: start no new game (the running ones finish)."""
        with self.lock:
            return self.cap is not None and self.spent >= self.cap

    def cap_reason(self) -> str | None:
        """Why no model call may be made now (the cap, and what was spent), or None while under the cap."""
        with self.lock:
            if self.cap is None or self.spent < self.cap:
                return None
            return f"the spending cap of ${self.cap:,.2f} is reached (${self.spent:,.4f} spent on {self.calls} calls)"
