"""JavaScript value semantics the real IBEX server (Node.js) applies to what players send.

The real server stores client values as they come and computes with them in JavaScript, so a string offer turns a
profit into string concatenation and a missing field disappears from the JSON it sends back. The local server must
answer the same way, so it models JS `undefined` (MISSING), `JSON.parse`/`JSON.stringify` and the few operators the
game uses. Nothing here is specific to the game.
"""

from __future__ import annotations

import json
import math
from typing import Any


class _Missing:
    """JavaScript `undefined`: a key holding it is left out of JSON, in an array it becomes null."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
NAN = float("nan")


def get(obj: Any, key: str) -> Any:
    """`obj[key]` in JS: undefined when obj is not an object or has no such key."""
    return obj.get(key, MISSING) if isinstance(obj, dict) else MISSING


def is_nullish(value: Any) -> bool:
    """`value == null` in JS: true for null and undefined."""
    return value is None or value is MISSING


def strict_equal(a: Any, b: Any) -> bool:
    """`a === b` for JSON values (objects and arrays compare by identity, as in JS)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | dict) or isinstance(b, list | dict):
        return a is b
    return type(a) is type(b) and a == b


def _number_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def to_string(value: Any) -> str:
    """`String(value)` for JSON values, as template strings show them in error messages."""
    if value is MISSING:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number_text(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, list):
        return ",".join("" if is_nullish(item) else to_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def to_number(value: Any) -> float:
    """`Number(value)`: the coercion `-x` and `x * n` apply."""
    if value is MISSING:
        return NAN
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return to_number(to_string(value))
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 0)) if text.lower().startswith(("0x", "0o", "0b")) else float(text)
        except ValueError:
            return NAN
    return NAN


def number_value(value: float) -> Any:
    """A computed JS number as JSON carries it: NaN and infinities become null, integral values ints."""
    if math.isnan(value) or math.isinf(value):
        return None
    if value == int(value) and abs(value) < 2**53:
        return int(value)
    return value


def neg_times(value: Any, factor: int) -> Any:
    """`- value * factor` (the developer's compensation)."""
    return number_value(-to_number(value) * factor)


def add(a: Any, b: Any) -> Any:
    """`a + b`: string concatenation as soon as either side is a string, an array or an object."""
    if isinstance(a, str | list | dict) or isinstance(b, str | list | dict):
        return to_string(a) + to_string(b)
    return number_value(to_number(a) + to_number(b))


def math_round(value: float) -> float:
    """`Math.round`: halves go up (towards +infinity), unlike Python's round."""
    if math.isnan(value) or math.isinf(value):
        return value
    return float(math.floor(value + 0.5))


def includes(container: Any, item: int) -> bool:
    """`container.includes(item)` for the arrays and strings a vote may be; other types throw in JS."""
    if isinstance(container, list):
        return any(strict_equal(element, item) for element in container)
    if isinstance(container, str):
        return str(item) in container
    raise TypeError(f"{to_string(container)}.includes is not a function")


def has_length_zero(value: Any) -> bool:
    """`value.length === 0` (only strings and arrays have a length)."""
    return isinstance(value, str | list) and len(value) == 0


def to_json_value(value: Any) -> Any:
    """A deep copy as `JSON.parse(JSON.stringify(value))` gives it: undefined keys dropped, undefined in arrays null.

    This is also how the server log records event data: by value, at the moment it is sent.
    """
    if isinstance(value, dict):
        return {key: to_json_value(item) for key, item in value.items() if item is not MISSING}
    if isinstance(value, list | tuple):
        return [None if item is MISSING else to_json_value(item) for item in value]
    if isinstance(value, float):
        return number_value(value)
    return value


def stringify(value: Any) -> str:
    """`JSON.stringify(value)`: compact, non-ASCII kept as is."""
    return json.dumps(to_json_value(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class JSONParseError(ValueError):
    """A frame that `JSON.parse` rejects; the message reads like V8's."""


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _js_float(text: str) -> Any:
    # JS has one number type: 5.0 is 5, and large integers lose their tail digits the same way.
    return number_value(float(text))


def _js_int(text: str) -> Any:
    value = int(text)
    return value if abs(value) < 2**53 else number_value(float(value))


def parse(text: str) -> Any:
    """`JSON.parse(text)` with V8-like error messages (Node 20)."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_js_float, parse_int=_js_int)
    except json.JSONDecodeError as exc:
        raise JSONParseError(_v8_message(exc, text)) from None
    except ValueError as exc:  # NaN, Infinity: not JSON for JS either
        raise JSONParseError(f"Unexpected token '{str(exc)[:1]}', \"{_snippet(text)}\" is not valid JSON") from None


def _snippet(text: str) -> str:
    return text if len(text) <= 30 else text[:10] + "..." + text[-10:]


def _v8_message(exc: json.JSONDecodeError, text: str) -> str:
    pos = exc.pos
    if exc.msg.startswith("Expecting property name"):
        return f"Expected property name or '}}' in JSON at position {pos}"
    if exc.msg.startswith("Expecting ':'"):
        return f"Expected ':' after property name in JSON at position {pos}"
    if exc.msg.startswith("Expecting ','"):
        return f"Expected ',' or '}}' after property value in JSON at position {pos}"
    if exc.msg.startswith("Extra data"):
        return f"Unexpected non-whitespace character after JSON at position {pos}"
    if exc.msg.startswith("Unterminated string"):
        return f"Unterminated string in JSON at position {len(text)}"
    if exc.msg.startswith("Invalid control character"):
        return f"Bad control character in string literal in JSON at position {pos}"
    if pos >= len(text.rstrip()):
        return "Unexpected end of JSON input"
    return f"Unexpected token '{text[pos]}', \"{_snippet(text)}\" is not valid JSON"
