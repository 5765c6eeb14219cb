"""The state sidecar of a dataset: what each example's player knew, in a form a policy can act on.

A training or validation set holds prompts and answers as text. A policy that is not a language model (the baseline,
the fitted rules) needs the player's state instead: its role, seat, round and phase, its private values, the requests
or the offer it has seen, the amount cap. constructDataset.py writes that state beside each set, one line per example
in the same order, so that `finetune.py --evaluate` scores every policy on exactly the same decisions:

    training_set.jsonl    -> training_set.state.jsonl
    validation_set.jsonl  -> validation_set.state.jsonl

The first line is a header naming the set it belongs to by name, example count and sha256, the sha256 of the
sidecar's own lines after it ("states_sha256": an edited state would change scores silently), and the game types
its examples come from ("voting", or e.g. "voting+harberger"); every other line is one example's state. A voting
example's: {"game", "seat", "action", "cap", "view"}. A Harberger or futarchy example's (lib/games/market/examples.py):
{"game", "game_type", "seat", "role", "action" (the wire type: declare, done-speculating, post-order,
cancel-order), "values_source", "state" (its true values, signals, published declarations, wallets and book, which
lib/games/market/scores.py scores against), "view" (`market_view_state`: the seat's MarketView, its current round whole
and the earlier rounds' summaries, all the market prompt reads)}. "view" is the decision-relevant part of the player's
lib.games.voting.view.PlayerView at the moment the prompt was built (`view_state` / `view_from_state`). A sidecar whose
header does
not match its set's bytes is refused: the evaluation must never pair prompts with another build's states.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.games.market.actions import validate_market_action
from lib.games.market.examples import KINDS as MARKET_KINDS
from lib.games.market.examples import MarketExample
from lib.games.market.view import MarketRound, MarketView
from lib.games.voting.actions import SPECS, ActionError, validate_action

try:  # one state line per example: orjson writes it five times as fast as json
    import orjson
except ImportError:  # pragma: no cover - orjson is in requirements.txt
    orjson = None
from lib.games.voting.view import PlayerView, RoundRecord

FORMAT = "ibex-decision-state"
VERSION = 2  # 2: the header holds states_sha256
GAME = "voting"  # the game whose views a set of voting examples holds
MARKET_GAMES = ("harberger", "futarchy")
GAMES = (GAME, *MARKET_GAMES)  # in the order a header names them
SUFFIX = ".state.jsonl"

_ROUND_FIELDS = ("values", "values_source", "my_request", "offer", "my_vote")


def sidecar_path(set_path: str | Path) -> Path:
    """Where the state of a set lives: NAME.jsonl -> NAME.state.jsonl, in the same folder."""
    path = Path(set_path)
    stem = path.name[:-len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(stem + SUFFIX)


def header(set_name: str, examples: int, sha256: str, games: Iterable[str] = (GAME,), *,
           states_sha256: str) -> dict[str, Any]:
    """The first line of a sidecar; "game" names the game types of its examples (a set of voting examples only, or
    an empty one, says "voting", as before market examples existed); "states_sha256" is the sha256 of the bytes
    of every line after this one."""
    present = set(games)
    return {"format": FORMAT, "version": VERSION, "game": "+".join(g for g in GAMES if g in present) or GAME,
            "set": set_name, "examples": examples, "sha256": sha256, "states_sha256": states_sha256}


def view_state(view: PlayerView) -> dict[str, Any]:
    """What a rule-based policy reads of the view, as JSON (the current round only: no policy looks back)."""
    rec = view.current
    current: dict[str, Any] = {name: getattr(rec, name) for name in _ROUND_FIELDS}
    current["requests"] = {str(seat): request for seat, request in rec.requests.items()}
    return {"game_id": view.game_id, "number": view.number, "role": view.role, "tag": view.tag,
            "round": view.round, "phase": view.phase, "round_count": view.round_count,
            "practice_round": view.practice_round, "boundaries": view.boundaries, "current": current}


def view_from_state(state: dict[str, Any]) -> PlayerView:
    """A PlayerView holding what view_state kept, for lib.games.voting.policy and lib.games.voting.actions to act on."""
    view = PlayerView(game_id=state.get("game_id"), number=state.get("number"), role=state.get("role"),
                      tag=state.get("tag"), round=state.get("round", 0), phase=state.get("phase", 0),
                      boundaries=state.get("boundaries"), round_count=state.get("round_count"),
                      practice_round=state.get("practice_round"))
    current = state.get("current") or {}
    rec = RoundRecord(view.round, **{name: current.get(name) for name in _ROUND_FIELDS})
    rec.requests = {int(seat): request for seat, request in (current.get("requests") or {}).items()}
    view.rounds[view.round] = rec
    return view


def example_state(game: str, seat: int, action: str, cap: int, view: PlayerView) -> dict[str, Any]:
    """One sidecar line's object (the dataset builder writes it when it builds the example's prompt)."""
    return {"game": game, "seat": seat, "action": action, "cap": cap, "view": view_state(view)}


# MarketRound fields keyed by condition or phase (JSON makes the keys strings), and those that are sets.
_MARKET_INT_KEYS = ("declarations", "my_declaration", "my_snipes", "trades", "hidden")
_MARKET_SETS = ("declaration_acked", "speculation_acked")
_MARKET_VIEW_FIELDS = ("game_id", "game_type", "number", "role", "tag", "round", "phase", "deadline_ms", "boundaries",
                       "tax_rate_initial", "tax_rate_final", "players", "round_count", "practice_round", "ready_acked",
                       "game_over", "reward", "server_action", "closing", "market_version")


def market_view_state(view: MarketView) -> dict[str, Any]:
    """A market seat's view as JSON: the current round whole, the earlier rounds' summaries (what the prompt shows
    of them), the game-level fields. Enough for market_view_from_state to give the same prompt and checks."""
    current: dict[str, Any] = {}
    for f in dataclasses.fields(MarketRound):
        value = getattr(view.current, f.name)
        if f.name in _MARKET_SETS:
            value = sorted(value)
        elif f.name in _MARKET_INT_KEYS:
            value = {str(k): v for k, v in value.items()}
        elif f.name == "books":
            value = {str(c): {str(i): order for i, order in orders.items()} for c, orders in value.items()}
        current[f.name] = value
    earlier = {str(n): rec.summary for n, rec in sorted(view.rounds.items())
               if n < view.round and rec.summary is not None}
    return {**{name: getattr(view, name) for name in _MARKET_VIEW_FIELDS}, "current": current, "earlier": earlier}


def market_view_from_state(state: dict[str, Any]) -> MarketView:
    """The MarketView market_view_state kept, for lib.games.market.policy and lib.games.market.actions to act on."""
    view = MarketView(**{name: state.get(name) for name in _MARKET_VIEW_FIELDS if name in state})
    for n, summary in (state.get("earlier") or {}).items():
        view.rounds[int(n)] = MarketRound(int(n), summary=summary)
    current = dict(state.get("current") or {})
    for name in _MARKET_SETS:
        current[name] = set(current.get(name) or ())
    for name in _MARKET_INT_KEYS:
        current[name] = {int(k): v for k, v in (current.get(name) or {}).items()}
    current["books"] = {int(c): {int(i): order for i, order in orders.items()}
                        for c, orders in (current.get("books") or {}).items()}
    current["round"] = view.round
    view.rounds[view.round] = MarketRound(**current)
    return view


def market_example_state(game: str, example: MarketExample) -> dict[str, Any]:
    """One sidecar line's object for a market example (lib.games.market.examples)."""
    assert example.view is not None
    return {"game": game, "game_type": example.view.game_type, "seat": example.seat, "role": example.role,
            "action": example.action_type, "values_source": example.values_source, "state": example.state,
            "view": market_view_state(example.view)}


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
    action: str  # the wire type, e.g. "compensation-request"
    messages: list[dict[str, str]]  # system and user messages: exactly what a model is asked with
    human: dict[str, Any]  # the human's wire message (the assistant turn)
    state: dict[str, Any]  # the sidecar line
    answer: str = ""  # the assistant turn's exact text, whose likelihood a local model scores

    @property
    def game_type(self) -> str:
        """voting, harberger or futarchy (a voting line names none)."""
        return self.state.get("game_type", GAME)

    @property
    def market(self) -> bool:
        return self.game_type in MARKET_GAMES

    def view(self) -> Any:
        """The player's view: a voting PlayerView, or a MarketView for a market example."""
        if self.market:
            return market_view_from_state(self.state["view"])
        return view_from_state(self.state["view"])

    def market_example(self) -> MarketExample:
        """A market example as lib.games.market.examples made it (what lib.games.market.scores scores)."""
        view = market_view_from_state(self.state["view"])
        messages = [*self.messages, {"role": "assistant", "content": self.answer}]
        return MarketExample(seat=self.state["seat"], role=self.state.get("role"), round=view.round, phase=view.phase,
                             action_type=self.action, messages=messages, values_source=self.state.get("values_source"),
                             state=self.state["state"], view=view)

    @property
    def cap(self) -> int:
        return self.state["cap"]


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


def _rebuild_hint() -> str:
    return "rebuild the set with python constructDataset.py"


# What each field of a state line must be, so that a line of valid JSON but of the wrong types gets one line naming
# its field instead of a traceback in whatever reads it later. A type tuple, or a dict: an object with those fields
# (absent ones are left to the readers' defaults); ("map", spec): an object whose every value is spec; ("list",
# spec): a list whose every item is spec.
_NUM = (int, float)
_OPT_INT, _OPT_STR, _OPT_DICT, _OPT_LIST = (int, type(None)), (str, type(None)), (dict, type(None)), (list, type(None))
_VOTING_LINE: dict[str, Any] = {
    "game": (str,), "seat": (int,), "action": (str,), "cap": (int,),
    "view": {"number": _OPT_INT, "role": _OPT_INT, "tag": _OPT_STR, "round": (int,), "phase": (int,),
             "round_count": _OPT_INT, "practice_round": (bool, type(None)), "boundaries": _OPT_DICT,
             "current": {"values": _OPT_LIST, "values_source": _OPT_STR, "requests": ("map", None)}}}
_MARKET_ROUND: dict[str, Any] = {
    "values": _OPT_LIST, "lot": _OPT_INT, "start_wallets": ("list", (dict,)), "wallets": ("list", (dict,)),
    "signals": _OPT_LIST, "public_signal": _OPT_LIST, "declarations": ("map", ("list", (dict,))),
    "my_declaration": ("map", None), "declaration_acked": (list,), "my_snipes": ("map", ("list", (list,))),
    "speculation_acked": (list,), "winning": _OPT_INT, "snipes": ("map", ("list", (dict,))),
    "books": ("map", ("map", (dict,))), "trades": ("map", ("list", (dict,))), "movements": ("list", (dict,)),
    "pending": ("list", (dict,)), "refusals": ("list", (dict,)), "summary": _OPT_DICT,
    "hidden": ("map", ("map", _NUM))}
_MARKET_LINE: dict[str, Any] = {
    "game": (str,), "game_type": (str,), "seat": (int,), "role": _OPT_INT, "action": (str,),
    "values_source": _OPT_STR,
    "state": {"values": _OPT_LIST, "signals": _OPT_LIST, "boundaries": _OPT_DICT, "winning": _OPT_INT,
              "declarations": ("map", ("list", (dict,))), "wallets": _OPT_LIST, "book": ("map", ("list", (dict,)))},
    "view": {"game_type": _OPT_STR, "number": _OPT_INT, "role": _OPT_INT, "tag": _OPT_STR, "round": (int,),
             "phase": (int,), "deadline_ms": _OPT_INT, "boundaries": _OPT_DICT,
             "tax_rate_initial": (*_NUM, type(None)), "tax_rate_final": (*_NUM, type(None)),
             "players": ("list", (dict,)), "round_count": _OPT_INT, "practice_round": (bool, type(None)),
             "ready_acked": (bool,), "game_over": (bool,), "reward": _OPT_DICT,
             "server_action": _OPT_DICT, "closing": (bool,), "market_version": (int,),
             "earlier": ("map", _OPT_DICT), "current": _MARKET_ROUND}}
_INT_KEYED = {"requests", "declarations", "my_declaration", "my_snipes", "trades", "hidden", "books", "earlier"}
_TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", dict: "an object",
               list: "a list", type(None): "null"}


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _wrong(where: str, name: str, value: Any, expected: str) -> SetError:
    return SetError(f"{where}: field {name} must be {expected}, not {_kind(value)}; {_rebuild_hint()}")


def _check(where: str, name: str, value: Any, spec: Any, key: str = "") -> None:
    """Raise SetError naming the first field of `value` (at `name`) that does not fit `spec`."""
    if spec is None:
        return
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise _wrong(where, name, value, "an object")
        for field_name, field_spec in spec.items():
            if field_name in value:
                _check(where, f"{name}.{field_name}" if name else field_name, value[field_name], field_spec,
                       field_name)
        return
    if isinstance(spec, tuple) and spec and spec[0] in ("map", "list"):
        container, item = spec
        if value is None and key in ("book", "wallets", "start_wallets"):
            return  # not known yet, or no order example
        if not isinstance(value, dict if container == "map" else list):
            raise _wrong(where, name, value, "an object" if container == "map" else "a list")
        items = value.items() if container == "map" else enumerate(value)
        for k, v in items:
            if container == "map" and key in _INT_KEYED and not (isinstance(k, str) and k.lstrip("-").isdigit()):
                raise SetError(f"{where}: field {name} has the key {k[:20]!r}, not a whole number; {_rebuild_hint()}")
            _check(where, f"{name}.{k}" if container == "map" else f"{name}[{k}]", v, item)
        return
    if not isinstance(value, spec) or (isinstance(value, bool) and bool not in spec):
        raise _wrong(where, name, value, " or ".join(dict.fromkeys(_TYPE_NAMES.get(t, t.__name__) for t in spec)))


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
                       f"scored on it; {_rebuild_hint()}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SetError(f"{side}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    head = _json_line(side, 1, side_lines[0] if side_lines else "")
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise SetError(f"{side} line 1: not a state sidecar written by constructDataset.py")
    named = str(head.get("game")).split("+")
    if head.get("version") != VERSION or not set(named) <= set(GAMES):
        raise SetError(f"{side}: sidecar version {head.get('version')} for game {head.get('game')!r}; this "
                       f"toolkit reads version {VERSION} for {'+'.join(GAMES)!r} and their combinations; "
                       f"{_rebuild_hint()}")
    if head.get("sha256") != sha256 or head.get("examples") != len(lines) or len(side_lines) - 1 != len(lines):
        raise SetError(f"{side}: belongs to another version of {path.name} (sha256 or example count differ): "
                       f"{_rebuild_hint()}")
    if head.get("states_sha256") != hashlib.sha256(states_bytes).hexdigest():
        raise SetError(f"{side}: its state lines were changed after the build (their sha256 differs from the "
                       f"header's); {_rebuild_hint()}")
    examples = [_example(path, side, number, line, side_lines[number])
                for number, line in enumerate(lines, 1)]
    for example in examples:
        _probe(side, example)
    return EvalSet(path, side, sha256, examples)


def _probe(side: Path, example: Example) -> None:
    """Read the state the way the evaluation will (the prompt it rebuilds, the rules, the market baseline and its
    scoring), so that a field nested deeper than the checks above, of a type no reader expects, is one line here
    rather than a traceback in the middle of an evaluation."""
    from lib.games.market.actions import build_market_action_required
    from lib.games.market.policy import MarketBaseline
    from lib.games.market.prompts import build_market_messages
    from lib.games.market.scores import score_market
    from lib.games.voting.actions import build_action_required
    from lib.games.voting.policy import baseline_action
    from lib.games.voting.prompts import build_messages

    try:
        view = example.view()
        if example.market:
            build_market_messages(view, build_market_action_required(view, MARKET_KINDS[example.action]))
            score_market([example.market_example()], MarketBaseline(seed=0).decide)
        else:
            build_messages(view, build_action_required(view, example.action, cap=example.cap))
            try:
                baseline_action(view, example.action, example.cap)
            except ActionError:
                pass  # a decision the rules cannot make: the evaluation counts it as such
    except (TypeError, AttributeError, KeyError, ValueError, IndexError, ZeroDivisionError) as exc:
        raise SetError(f"{side} line {example.line + 1}: a field holds a value of a type no reader expects "
                       f"({type(exc).__name__}: {str(exc)[:120]}); {_rebuild_hint()}") from None


def _json_line(path: Path, number: int, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SetError(f"{path} line {number}: not valid JSON ({getattr(exc, 'msg', exc)})") from None


def _example(path: Path, side: Path, number: int, line: str, side_line: str) -> Example:
    not_built = f"{path} line {number}: not an example written by constructDataset.py"
    record = _json_line(path, number, line)
    messages = record.get("messages") if isinstance(record, dict) else None
    if not (isinstance(messages, list) and len(messages) == 3
            and [m.get("role") if isinstance(m, dict) else None for m in messages] == ["system", "user", "assistant"]
            and all(isinstance(m.get("content"), str) for m in messages)):
        raise SetError(f"{not_built} (expected system, user and assistant messages)")
    state = _json_line(side, number + 1, side_line)
    if isinstance(state, dict) and "game_type" in state:
        if state["game_type"] not in MARKET_GAMES or not isinstance(state["game_type"], str):
            raise SetError(f"{side} line {number + 1}: field game_type must be one of {', '.join(MARKET_GAMES)}, "
                           f"not {_kind(state['game_type'])}; {_rebuild_hint()}")
        return _market_example(path, side, number, messages, state)
    if not (isinstance(state, dict) and isinstance(state.get("view"), dict) and isinstance(state.get("action"), str)
            and state["action"] in SPECS
            and isinstance(state.get("game"), str) and isinstance(state.get("cap"), int)):
        raise SetError(f"{side} line {number + 1}: not a state line written by constructDataset.py")
    _check(f"{side} line {number + 1}", "", state, _VOTING_LINE)
    try:
        human = validate_action(json.loads(messages[2]["content"]), view_from_state(state["view"]), state["action"],
                                cap=None)
    except (ValueError, ActionError) as exc:
        raise SetError(f"{not_built}: its answer is not a valid {state['action']} for the sidecar's player "
                       f"({exc})") from None
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:2]]
    return Example(number, state["game"], state["action"], prompt, human, state, messages[2]["content"])


def _market_example(path: Path, side: Path, number: int, messages: list[dict[str, Any]],
                    state: dict[str, Any]) -> Example:
    if not (isinstance(state.get("view"), dict) and isinstance(state.get("state"), dict)
            and isinstance(state.get("action"), str) and state["action"] in MARKET_KINDS
            and isinstance(state.get("game"), str)):
        raise SetError(f"{side} line {number + 1}: not a state line written by constructDataset.py")
    _check(f"{side} line {number + 1}", "", state, _MARKET_LINE)
    try:
        human = json.loads(messages[2]["content"])
        view = market_view_from_state(state["view"])
        validate_market_action(human, view, MARKET_KINDS[state["action"]], strict=False)
    except (ValueError, TypeError, ActionError) as exc:
        raise SetError(f"{path} line {number}: not an example written by constructDataset.py: its answer is not a "
                       f"valid {state['action']} for the sidecar's player ({exc})") from None
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:2]]
    return Example(number, state["game"], state["action"], prompt, human, state, messages[2]["content"])
