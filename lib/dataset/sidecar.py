"""The state sidecar of a dataset: what each example's player knew, in a form a policy can act on.

A training or validation set holds prompts and answers as text. A policy that is not a language model (the baseline,
the fitted rules) needs the player's state instead: its role, seat, round and phase, its private values, the requests
or the offer it has seen, the amount cap where its game has one (the game's DataRules.cap reads it). constructDataset.py
writes that state beside each set, one line per example in the same order, so that `finetune.py --evaluate` scores
every policy on exactly the same decisions:

    training_set.jsonl    -> training_set.state.jsonl
    validation_set.jsonl  -> validation_set.state.jsonl

The first line is a header naming the set it belongs to by name, example count and sha256, the sha256 of the
sidecar's own lines after it ("states_sha256": an edited state would change scores silently), and the game types
its examples come from (the registry's order joined by "+", e.g. "voting+harberger"); every other line is one
example's state, an object with at least "game" (the game's key in the set), "action" (the example's kind) and
"view" (what the player knew when the prompt was built). A line of a game other than the default one
(lib.games.DEFAULT_GAME) names it in "game_type". What else a line holds, how it is checked and how its view is
rebuilt is the game's (lib.games.protocols.DataRules; lib/games/<game>/sidecar.py). A sidecar whose header does
not match its set's bytes is refused: the evaluation must never pair prompts with another build's states.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.games import DEFAULT_GAME, game_for, game_types

try:  # one state line per example: orjson writes it five times as fast as json
    import orjson
except ImportError:  # pragma: no cover - orjson is in requirements.txt
    orjson = None

FORMAT = "ibex-decision-state"
VERSION = 2  # 2: the header holds states_sha256
SUFFIX = ".state.jsonl"

def sidecar_path(set_path: str | Path) -> Path:
    """Where the state of a set lives: NAME.jsonl -> NAME.state.jsonl, in the same folder."""
    path = Path(set_path)
    stem = path.name[:-len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(stem + SUFFIX)


def header(set_name: str, examples: int, sha256: str, games: Iterable[str] = (DEFAULT_GAME,), *,
           states_sha256: str) -> dict[str, Any]:
    """The first line of a sidecar; "game" names the game types of its examples in the registry's order (an empty
    set names the default game); "states_sha256" is the sha256 of the bytes of every line after this one."""
    present = set(games)
    return {"format": FORMAT, "version": VERSION,
            "game": "+".join(g for g in game_types() if g in present) or DEFAULT_GAME,
            "set": set_name, "examples": examples, "sha256": sha256, "states_sha256": states_sha256}


def state_line(state: dict[str, Any]) -> str:
    """The JSON text of a sidecar line (json's own where orjson refuses a value, e.g. an integer beyond 64 bits)."""
    if orjson is not None:
        try:
            return orjson.dumps(state).decode("utf-8")
        except TypeError:
            pass
    return json.dumps(state)  # ASCII: a lone surrogate (orjson refuses it) must still be writable as UTF-8


# ---------------------------------------------------------------------------------------------------------------
# Reading a set with its sidecar


class SetError(ValueError):
    """A set that cannot be evaluated; the message is one line naming the file (and line) and what to do."""


@dataclass(frozen=True)
class Example:
    """One human decision: the prompt the model sees, the human's answer, and the player's state."""

    line: int  # 1-based line in the set
    game: str
    action: str  # the example's kind (the game's DataRules.kinds), e.g. "compensation-request"
    messages: list[dict[str, str]]  # system and user messages: exactly what a model is asked with
    human: dict[str, Any]  # the human's wire message (the assistant turn)
    state: dict[str, Any]  # the sidecar line
    answer: str = ""  # the assistant turn's exact text, whose likelihood a local model scores

    @property
    def game_type(self) -> str:
        """The game the example comes from (a line of the default game names none)."""
        return self.state.get("game_type", DEFAULT_GAME)

    def view(self) -> Any:
        """The player's view, rebuilt by the example's game from the state."""
        return game_for(self.game_type).data.view_from_state(self.state)

    @property
    def cap(self) -> int | None:
        """The largest amount the answer may name, as the example's game reads it from the line (DataRules.cap);
        None for a decision without amounts."""
        return game_for(self.game_type).data.cap(self.state)


@dataclass(frozen=True)
class EvalSet:
    path: Path
    sidecar: Path
    sha256: str
    examples: list[Example]

    @property
    def games(self) -> list[str]:
        return sorted({e.game for e in self.examples}, key=_game_order)


def _game_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def rebuild_hint() -> str:
    """What to do about a set or sidecar that does not fit, for the end of a SetError."""
    return "rebuild the set with python constructDataset.py"


# ---------------------------------------------------------------------------------------------------------------
# Type checks of a state line (issue #20 item 9): a line of valid JSON but of the wrong types gets one line naming
# its field instead of a traceback in whatever reads it later. A game describes its lines with these specs: a type
# tuple; a dict, an object with those fields (absent ones are left to the readers' defaults); `mapping(spec)`, an
# object whose every value is spec; `listing(spec)`, a list whose every item is spec; None, anything.

NUM = (int, float)
OPT_INT, OPT_STR, OPT_DICT, OPT_LIST = (int, type(None)), (str, type(None)), (dict, type(None)), (list, type(None))
_TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", dict: "an object",
               list: "a list", type(None): "null"}


@dataclass(frozen=True)
class _Container:
    kind: str  # "map" or "list"
    item: Any  # the spec of every value
    int_keys: bool = False  # a map whose keys are whole numbers written as strings (JSON's object keys)
    nullable: bool = False  # null is accepted (not known yet)


def mapping(item: Any, *, int_keys: bool = False, nullable: bool = False) -> Any:
    """The spec of an object whose every value fits `item`."""
    return _Container("map", item, int_keys, nullable)


def listing(item: Any, *, nullable: bool = False) -> Any:
    """The spec of a list whose every item fits `item`."""
    return _Container("list", item, False, nullable)


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _wrong(where: str, name: str, value: Any, expected: str) -> SetError:
    return SetError(f"{where}: field {name} must be {expected}, not {_kind(value)}; {rebuild_hint()}")


def check_fields(where: str, value: Any, spec: Any, name: str = "") -> None:
    """Raise SetError ("`where`: field NAME must be ..., not ...") for the first field of `value` that does not fit
    `spec`."""
    if spec is None:
        return
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise _wrong(where, name, value, "an object")
        for field_name, field_spec in spec.items():
            if field_name in value:
                check_fields(where, value[field_name], field_spec, f"{name}.{field_name}" if name else field_name)
        return
    if isinstance(spec, _Container):
        if value is None and spec.nullable:
            return
        if not isinstance(value, dict if spec.kind == "map" else list):
            raise _wrong(where, name, value, "an object" if spec.kind == "map" else "a list")
        items = value.items() if spec.kind == "map" else enumerate(value)
        for k, v in items:
            if spec.int_keys and not (isinstance(k, str) and k.lstrip("-").isdigit()):
                raise SetError(f"{where}: field {name} has the key {k[:20]!r}, not a whole number; {rebuild_hint()}")
            check_fields(where, v, spec.item, f"{name}.{k}" if spec.kind == "map" else f"{name}[{k}]")
        return
    if not isinstance(value, spec) or (isinstance(value, bool) and bool not in spec):
        raise _wrong(where, name, value, " or ".join(dict.fromkeys(_TYPE_NAMES.get(t, t.__name__) for t in spec)))


# ---------------------------------------------------------------------------------------------------------------
# Reading a set with its sidecar


def read_set(path: str | Path, sha256: str) -> EvalSet:
    """The examples of a set the builder wrote, with their sidecar states; SetError when anything does not fit.

    `sha256` is the set file's (the caller hashes it once, for its report too).
    """
    path = Path(path)
    side = sidecar_path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SetError(f"{path}: no such file; build it with python constructDataset.py") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SetError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise SetError(f"{path}: the set is empty: no example to evaluate on")
    try:
        side_bytes = side.read_bytes()
        first, _, states_bytes = side_bytes.partition(b"\n")
        side_lines = side_bytes.decode("utf-8").splitlines()
    except FileNotFoundError:
        raise SetError(f"{path}: no state sidecar {side.name} beside it, so policies other than a model cannot be "
                       f"scored on it; {rebuild_hint()}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SetError(f"{side}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    head = _json_line(side, 1, side_lines[0] if side_lines else "")
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise SetError(f"{side} line 1: not a state sidecar written by constructDataset.py")
    named = str(head.get("game")).split("+")
    if head.get("version") != VERSION or not set(named) <= set(game_types()):
        raise SetError(f"{side}: sidecar version {head.get('version')} for game {head.get('game')!r}; this "
                       f"toolkit reads version {VERSION} for {'+'.join(game_types())!r} and their combinations; "
                       f"{rebuild_hint()}")
    if head.get("sha256") != sha256 or head.get("examples") != len(lines) or len(side_lines) - 1 != len(lines):
        raise SetError(f"{side}: belongs to another version of {path.name} (sha256 or example count differ): "
                       f"{rebuild_hint()}")
    if head.get("states_sha256") != hashlib.sha256(states_bytes).hexdigest():
        raise SetError(f"{side}: its state lines were changed after the build (their sha256 differs from the "
                       f"header's); {rebuild_hint()}")
    examples = [_example(path, side, number, line, side_lines[number])
                for number, line in enumerate(lines, 1)]
    for example in examples:
        _probe(side, example)
    return EvalSet(path, side, sha256, examples)


def _probe(side: Path, example: Example) -> None:
    """Read the state the way the evaluation will (the game's DataRules.probe), so that a field nested deeper than
    the type checks, of a type no reader expects, is one line here rather than a traceback in the middle of an
    evaluation."""
    try:
        game_for(example.game_type).data.probe(example)
    except (TypeError, AttributeError, KeyError, ValueError, IndexError, ZeroDivisionError) as exc:
        raise SetError(f"{side} line {example.line + 1}: a field holds a value of a type no reader expects "
                       f"({type(exc).__name__}: {str(exc)[:120]}); {rebuild_hint()}") from None


def _json_line(path: Path, number: int, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SetError(f"{path} line {number}: not valid JSON ({getattr(exc, 'msg', exc)})") from None


def _named_games() -> list[str]:
    """The game types a state line may name: every registered game but the default one, whose lines name none."""
    return [name for name in game_types() if name != DEFAULT_GAME]


def _example(path: Path, side: Path, number: int, line: str, side_line: str) -> Example:
    not_built = f"{path} line {number}: not an example written by constructDataset.py"
    record = _json_line(path, number, line)
    messages = record.get("messages") if isinstance(record, dict) else None
    if not (isinstance(messages, list) and len(messages) == 3
            and [m.get("role") if isinstance(m, dict) else None for m in messages] == ["system", "user", "assistant"]
            and all(isinstance(m.get("content"), str) for m in messages)):
        raise SetError(f"{not_built} (expected system, user and assistant messages)")
    where = f"{side} line {number + 1}"
    state = _json_line(side, number + 1, side_line)
    if not isinstance(state, dict):
        raise SetError(f"{where}: not a state line written by constructDataset.py")
    game_type = state.get("game_type", DEFAULT_GAME)
    if "game_type" in state and (not isinstance(game_type, str) or game_type not in _named_games()):
        raise SetError(f"{where}: field game_type must be one of {', '.join(_named_games())}, not "
                       f"{_kind(game_type)}; {rebuild_hint()}")
    data = game_for(game_type).data
    if not (isinstance(state.get("view"), dict) and isinstance(state.get("action"), str)
            and state["action"] in data.kinds and isinstance(state.get("game"), str)):
        raise SetError(f"{where}: not a state line written by constructDataset.py")
    data.check_state(state, where)
    try:
        human = data.human_answer(messages[2]["content"], state)
    except (ValueError, TypeError) as exc:  # lib.games.protocols.ActionError is a ValueError
        raise SetError(f"{not_built}: its answer is not a valid {state['action']} for the sidecar's player "
                       f"({exc})") from None
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:2]]
    return Example(number, state["game"], state["action"], prompt, human, state, messages[2]["content"])
