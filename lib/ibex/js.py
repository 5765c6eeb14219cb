"""JavaScript value semantics the real IBEX server (Node.js) applies to what players send.

The real server stores client values as they come and computes with them in JavaScript, so a string offer turns a
profit into string concatenation and a missing field disappears from the JSON it sends back. The local server must
answer the same way, so it models JS `undefined` (MISSING), `JSON.parse`/`JSON.stringify` and the few operators the
game uses. Nothing here is specific to the game.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
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
    """`String(number)` (ECMAScript Number::toString): 1e21 and 1e-7 in exponent form, 1e16 and 0.00001 not."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), int(exponent) + len(digits)  # value = 0.digits x 10^n
    minus = "-" if value < 0 else ""
    if k <= n <= 21:
        return minus + digits + "0" * (n - k)
    if 0 < n <= 21:
        return minus + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return minus + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{minus}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


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


_PARSE_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|[0-9]+)")
_PARSE_FLOAT = re.compile(r"[+-]?(Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)")


def parse_int(text: str) -> int | float:
    """`parseInt(text)` (no radix): the leading integer of a string, NaN when there is none."""
    match = _PARSE_INT.match(text.lstrip())
    if match is None:
        return NAN
    sign, digits = match.groups()
    number = int(digits, 16) if digits[:2].lower() == "0x" else int(digits)
    return -number if sign == "-" else number


def parse_float(text: str) -> float:
    """`parseFloat(text)`: the leading decimal number of a string, NaN when there is none."""
    match = _PARSE_FLOAT.match(text.lstrip())
    return float(match.group(0)) if match else NAN


class JSTypeError(TypeError):
    """What V8 throws for `undefined.x` or `null.x`; the message is V8's."""


def prop(obj: Any, key: str) -> Any:
    """`obj.key` in JS: undefined for a missing key or a primitive, V8's TypeError for undefined and null."""
    if obj is MISSING or obj is None:
        raise JSTypeError(f"Cannot read properties of {to_string(obj)} (reading '{key}')")
    return get(obj, key)


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


_SURROGATE = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")


def _well_formed(match: re.Match[str]) -> str:
    text = match.group(0)
    if len(text) == 2:  # a pair that JS would read as one character
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    return f"\\u{ord(text):04x}"


def well_formed(text: str) -> str:
    """JSON text with every lone surrogate written as its \\uXXXX escape, as `JSON.stringify` writes it (ES2019).

    A client can send "\\ud800" inside valid JSON; without this the text could not be encoded as UTF-8 and every
    socket it went to, and every file it went into, would fail.
    """
    return _SURROGATE.sub(_well_formed, text) if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# json.dumps with options builds an encoder per call; the local server stringifies every frame it sends.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def stringify(value: Any) -> str:
    """`JSON.stringify(value)`: compact, non-ASCII kept as is, lone surrogates escaped."""
    return stringify_value(to_json_value(value))


def stringify_value(value: Any) -> str:
    """`stringify` of what `to_json_value` already made (JSON values only): the deep copy is not made again."""
    return well_formed(_COMPACT.encode(value))


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
    except RecursionError:  # V8 parses any depth; Python's parser gives up near 1,000 levels
        raise JSONParseError("Maximum call stack size exceeded") from None


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
