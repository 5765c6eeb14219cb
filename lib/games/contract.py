"""The action-required contract's pieces every game shares (docs/protocol.md section 6).

Each game builds its own action-required messages, schemas and checks (lib/games/<game>/actions.py); what they have
in common lives here once: the deadline wording of the message, reading the JSON a model answered, the whole-number
check of an amount, and the compact JSON of a wire message as training sets hold it.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from typing import Any

from lib.games.protocols import ActionError


@functools.lru_cache(maxsize=4096)  # every seat's prompt in a phase states the same deadline
def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as an ISO 8601 UTC timestamp with milliseconds."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deadline_fields(verb: str, end_ms: int | None, timer_seconds: float | None) -> tuple[str, str]:
    """(`deadline`, `actionRequiredBy`) of an action-required message, whatever the game: the phase timer's end
    when its timestamp is known, else the phase's length from the parameters, else just the phase's end."""
    if end_ms is not None:
        by = iso_ms(end_ms)
        return f"You must {verb} before the timer ends at {by}.", by
    if timer_seconds is not None:
        return (f"You must {verb} before the phase timer of {timer_seconds:g} seconds ends.",
                f"the end of this phase ({timer_seconds:g} seconds after it began)")
    return f"You must {verb} before this phase ends.", "the end of this phase"


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def whole_number(x: Any, what: str, shown: int = 40) -> int:
    """`x` if it is a whole number (not a bool, a string or a float); ActionError saying which otherwise, with at
    most `shown` characters of what was given."""
    if isinstance(x, str):
        raise ActionError(f"{what} must be a number, not the string {x[:40]!r}")
    if isinstance(x, float):
        raise ActionError(f"{what} must be a whole number without decimals, got {x!r}")
    if not is_int(x):
        raise ActionError(f"{what} must be a whole number, got {json.dumps(x)[:shown]}")
    return x


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
# Every wire message of every game is at most 3 levels deep and its numbers have a handful of digits: far beyond
# these an answer is invalid anyway, and deeper or longer ones would trip Python's own limits (RecursionError in
# json, ValueError past 4300 digits) in the parse or in the messages that quote the value.
MAX_NESTING = 32
MAX_DIGITS = 100


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise ActionError(f"the answer holds a number of {len(digits.lstrip('-'))} digits; numbers are whole "
                          "amounts of a few digits")
    return int(digits)


def _too_deep(value: Any) -> bool:
    """Whether a parsed value nests lists/objects deeper than MAX_NESTING (iteratively: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_NESTING:
                return True
            stack.extend((x, depth + 1) for x in (item.values() if isinstance(item, dict) else item))
    return False


def answer_json(text: Any) -> Any:
    """A model's raw answer text to the JSON value it holds, whatever the game; a code fence around it is
    tolerated. What the value must be is the game's validation."""
    if not isinstance(text, str) or not text.strip():
        raise ActionError("the answer was empty; reply with one JSON object")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        message = json.loads(body, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise ActionError(f"the answer is not valid JSON ({exc.msg} at character {exc.pos}); "
                          "reply with one JSON object and nothing else") from None
    except RecursionError:  # the C decoder's own guard, raised before the Python stack is at risk
        raise ActionError(f"the answer nests lists or objects too deeply (more than {MAX_NESTING} levels); "
                          "reply with one flat JSON object") from None
    if _too_deep(message):
        raise ActionError(f"the answer nests lists or objects too deeply (more than {MAX_NESTING} levels); "
                          "reply with one flat JSON object")
    return message


_WIRE_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # json.dumps builds one per call otherwise


def wire_json(message: dict[str, Any]) -> str:
    """The compact JSON text of a wire message, as the training set's assistant turns hold it."""
    return _WIRE_JSON.encode(message)
