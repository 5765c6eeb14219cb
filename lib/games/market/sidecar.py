"""A Harberger or futarchy example's line in the state sidecar (lib.dataset.sidecar), and the view rebuilt from it.

A line is {"game", "game_type", "seat", "role", "action" (the example's kind: declare, done-speculating,
post-order, cancel-order), "values_source", "state" (its true values, signals, published declarations, wallets and
book, which lib/games/market/scores.py scores against), "view" (`market_view_state`: the seat's MarketView, its
current round whole and the earlier rounds' summaries, all the market prompt reads)}.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from lib.dataset.sidecar import (
    NUM,
    OPT_DICT,
    OPT_INT,
    OPT_LIST,
    OPT_STR,
    Example,
    SetError,
    check_fields,
    listing,
    mapping,
)
from lib.games.market.actions import validate_market_action
from lib.games.market.examples import KINDS, MarketExample
from lib.games.market.rules import GAME_TYPES
from lib.games.market.view import MarketRound, MarketView

# MarketRound fields keyed by condition or phase (JSON makes the keys strings), and those that are sets.
_INT_KEYS = ("declarations", "my_declaration", "my_snipes", "trades", "hidden")
_SETS = ("declaration_acked", "speculation_acked")
_VIEW_FIELDS = ("game_id", "game_type", "number", "role", "tag", "round", "phase", "deadline_ms", "boundaries",
                "tax_rate_initial", "tax_rate_final", "players", "round_count", "practice_round", "ready_acked",
                "game_over", "reward", "server_action", "closing", "market_version")

# What each field of a line must be (lib.dataset.sidecar.check_fields).
_ROUND: dict[str, Any] = {
    "values": OPT_LIST, "lot": OPT_INT, "start_wallets": listing((dict,), nullable=True),
    "wallets": listing((dict,), nullable=True), "signals": OPT_LIST, "public_signal": OPT_LIST,
    "declarations": mapping(listing((dict,)), int_keys=True), "my_declaration": mapping(None, int_keys=True),
    "declaration_acked": (list,), "my_snipes": mapping(listing((list,)), int_keys=True),
    "speculation_acked": (list,), "winning": OPT_INT, "snipes": mapping(listing((dict,))),
    "books": mapping(mapping((dict,)), int_keys=True), "trades": mapping(listing((dict,)), int_keys=True),
    "movements": listing((dict,)), "pending": listing((dict,)), "refusals": listing((dict,)), "summary": OPT_DICT,
    "hidden": mapping(mapping(NUM), int_keys=True)}
LINE: dict[str, Any] = {
    "game": (str,), "game_type": (str,), "seat": (int,), "role": OPT_INT, "action": (str,),
    "values_source": OPT_STR,
    "state": {"values": OPT_LIST, "signals": OPT_LIST, "boundaries": OPT_DICT, "winning": OPT_INT,
              "declarations": mapping(listing((dict,)), int_keys=True), "wallets": OPT_LIST,
              "book": mapping(listing((dict,)), nullable=True)},
    "view": {"game_type": OPT_STR, "number": OPT_INT, "role": OPT_INT, "tag": OPT_STR, "round": (int,),
             "phase": (int,), "deadline_ms": OPT_INT, "boundaries": OPT_DICT,
             "tax_rate_initial": (*NUM, type(None)), "tax_rate_final": (*NUM, type(None)),
             "players": listing((dict,)), "round_count": OPT_INT, "practice_round": (bool, type(None)),
             "ready_acked": (bool,), "game_over": (bool,), "reward": OPT_DICT,
             "server_action": OPT_DICT, "closing": (bool,), "market_version": (int,),
             "earlier": mapping(OPT_DICT, int_keys=True), "current": _ROUND}}


def market_view_state(view: MarketView) -> dict[str, Any]:
    """A market seat's view as JSON: the current round whole, the earlier rounds' summaries (what the prompt shows
    of them), the game-level fields. Enough for market_view_from_state to give the same prompt and checks."""
    current: dict[str, Any] = {}
    for f in dataclasses.fields(MarketRound):
        value = getattr(view.current, f.name)
        if f.name in _SETS:
            value = sorted(value)
        elif f.name in _INT_KEYS:
            value = {str(k): v for k, v in value.items()}
        elif f.name == "books":
            value = {str(c): {str(i): order for i, order in orders.items()} for c, orders in value.items()}
        current[f.name] = value
    earlier = {str(n): rec.summary for n, rec in sorted(view.rounds.items())
               if n < view.round and rec.summary is not None}
    return {**{name: getattr(view, name) for name in _VIEW_FIELDS}, "current": current, "earlier": earlier}


def market_view_from_state(state: dict[str, Any]) -> MarketView:
    """The MarketView market_view_state kept, for lib.games.market.policy and lib.games.market.actions to act on."""
    view = MarketView(**{name: state.get(name) for name in _VIEW_FIELDS if name in state})
    for n, summary in (state.get("earlier") or {}).items():
        view.rounds[int(n)] = MarketRound(int(n), summary=summary)
    current = dict(state.get("current") or {})
    for name in _SETS:
        current[name] = set(current.get(name) or ())
    for name in _INT_KEYS:
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


def is_market(example: Example) -> bool:
    """Whether a set's example is a Harberger or futarchy one (lib.games.market.scores scores those)."""
    return example.game_type in GAME_TYPES


def market_example(example: Example) -> MarketExample:
    """A set's market example as lib.games.market.examples made it (what lib.games.market.scores scores)."""
    view = market_view_from_state(example.state["view"])
    messages = [*example.messages, {"role": "assistant", "content": example.answer}]
    return MarketExample(seat=example.state["seat"], role=example.state.get("role"), round=view.round,
                         phase=view.phase, action_type=example.action, messages=messages,
                         values_source=example.state.get("values_source"), state=example.state["state"], view=view)


def check_state(state: dict[str, Any], where: str) -> None:
    """SetError naming `where` and the field, for a line that is not one lib.games.market.examples writes."""
    if not isinstance(state.get("state"), dict):
        raise SetError(f"{where}: not a state line written by constructDataset.py")
    check_fields(where, state, LINE)


def human_answer(answer: str, state: dict[str, Any]) -> dict[str, Any]:
    """The human's answer as a wire message, checked for shape, role and phase as the builder checked it."""
    human = json.loads(answer)
    validate_market_action(human, market_view_from_state(state["view"]), KINDS[state["action"]], strict=False)
    return human


def probe(example: Example) -> None:
    """Rebuild the prompt, ask the market baseline and score it, as the evaluation will."""
    from lib.games.market.actions import build_market_action_required
    from lib.games.market.policy import MarketBaseline
    from lib.games.market.prompts import build_market_messages
    from lib.games.market.scores import score_market

    view = example.view()
    build_market_messages(view, build_market_action_required(view, KINDS[example.action]))
    score_market([market_example(example)], MarketBaseline(seed=0).decide)
