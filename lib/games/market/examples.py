"""Training examples from a Harberger or futarchy game log: one per human decision (a declaration, a snipe choice,
an order posted or cancelled), each holding what that player knew when it decided, in the play-time prompt.

The log's `server-log` is replayed event by event into twelve MarketViews (lib/games/market/view.py), and each client
message of the `log` is taken, in the order the server processed it, when its phase begins: declarations and
snipes see the phase's start (nothing else reaches a player in those phases), orders see the book as the server
had it just before that order. The market's own events are not taken from the `server-log` but made again by the
server's order book (lib/games/market/book.py, checked frame by frame against the real server): the log keeps the client
messages in processing order and the events in sending order, and only re-running the book ties each order to
the exact book it met.

What the real server's `server-log` gets wrong (docs/protocol.md section 16) is put right:
`assign-role` was written by reference, so every round shows the last round's lot values and the wallets after
trading, and `value-signals` likewise shows the last round's signals. Wallets are the starting ones (the server
resets them every round). Values and signals come from the sessions table when one is given
(lib.games.market.rules.round_values, round_signals), else from the log for a round where every landholder's
round-summary value agrees with the logged values (the last round); otherwise the prompt holds none and the
example says so.

Kept as made (human choices, checked only for shape, role and phase): declarations out of range, odd prices.
Skipped, with the reason counted: what the server did not count (a second declaration in a phase, one above its
maximum, a repeated `done-speculating`, an order or cancel it refused), messages of the wrong role or phase, and
`complete-current-phase`, which is no player decision the agents make.

`game_examples` hands them to the dataset builder (a lib.dataset.examples.GameResult), each with its sidecar line
(lib.games.market.sidecar).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lib.dataset.examples import GameResult, Sink
from lib.dataset.sidecar import state_line
from lib.games.contract import wire_json
from lib.games.market.actions import DECLARE, SPECULATE, TRADE, build_market_action_required, validate_market_action
from lib.games.market.book import Market, listed_conditions_rule, winning_condition_rule
from lib.games.market.prompts import bounded_view, build_market_messages
from lib.games.market.rules import (
    FUTARCHY,
    GAME_TYPES,
    declaration_above_max,
    round_signals,
    round_values,
    seat_layout,
    starting_wallets,
)
from lib.games.market.view import MARKET_PHASE, MarketView
from lib.games.protocols import ActionError
from lib.ibex.log import LogError
from lib.ibex.params import ROLE_NAMES, ParamError, parse_parameters
from lib.ibex.sessions import SessionsTable
from lib.util.text import printable

MARKET_FRAMES = frozenset({"add-order", "delete-order", "update-order", "asset-movement", "contract-fulfilled",
                           "order-refused"})
KINDS = {"declare": DECLARE, "done-speculating": SPECULATE, "post-order": TRADE, "cancel-order": TRADE}


@dataclass
class MarketExample:
    seat: int
    role: int
    round: int
    phase: int
    action_type: str  # the wire type: declare, done-speculating, post-order, cancel-order
    messages: list[dict[str, str]]  # system, user, assistant
    values_source: str  # "sessions", "server-log", or "unknown"
    # What an evaluation needs: values, signals, the published declarations, the book as the prompt shows it (the
    # best few orders per side and the player's own; "book_left_out" counts the rest, as MarketRound.hidden).
    state: dict[str, Any]
    view: MarketView | None = field(default=None, repr=False, compare=False)  # the seat's view then (bounded)


@dataclass(frozen=True)
class MarketLog:
    """A market game's decoded log, as lib.ibex.log read it: replayed whole by `market_examples`."""

    source: str
    data: dict[str, Any]
    game_type: str
    played_by_agents: str | None


@dataclass
class MarketGameExamples:
    game_id: Any
    game_type: str
    examples: list[MarketExample] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # "reason: action" -> count
    values_by_round: dict[int, str] = field(default_factory=dict)


def _params(log: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(parse_parameters(log.get("parameters"), where="parameters").values)
    except ParamError as exc:
        raise ValueError(str(exc)) from None


def _trusted_rounds(server_log: list[dict[str, Any]]) -> dict[int, dict[int, list[int]]]:
    """Per round whose assign-role values every landholder's round-summary confirms: seat -> values."""
    assigned: dict[int, dict[int, list]] = {}
    summaries: dict[int, dict[int, dict]] = {}
    for entry in server_log:
        sent, meta = entry.get("sent") or {}, entry.get("meta") or {}
        seat, data = meta.get("recipient"), sent.get("data") or {}
        if not isinstance(seat, int):
            continue
        if sent.get("type") == "assign-role" and isinstance((data.get("property") or {}).get("v"), list):
            assigned.setdefault(meta.get("round"), {})[seat] = list(data["property"]["v"][:2])
        elif sent.get("type") == "round-summary" and "value" in data:
            summaries.setdefault(data.get("round"), {})[seat] = data
    trusted = {}
    for number, values in assigned.items():
        summary = summaries.get(number, {})
        if values and all(s in summary and summary[s].get("value") == v[summary[s].get("condition", 0)]
                          for s, v in values.items()):
            trusted[number] = values
    return trusted


def market_examples(log: dict[str, Any], *, sessions: list[dict] | None = None) -> MarketGameExamples:
    """Every example one market game gives, in the order the server processed the decisions. Raises ValueError
    (one line) for a log that is not a market game with a server-log."""
    params = _params(log)
    game_type = params.get("game_type")
    if game_type not in GAME_TYPES:
        raise ValueError(f"not a market game (game_type {game_type!r})")
    server_log, entries = log.get("server-log"), log.get("log")
    if not isinstance(server_log, list) or not isinstance(entries, list):
        raise ValueError("a market game's log needs its 'log' and 'server-log' lists")
    messages = [e for e in entries if isinstance(e, dict) and e.get("type") == "message"
                and isinstance(e.get("number"), int) and isinstance(e.get("content"), dict)]
    game_id = next((e["content"].get("gameId") for e in entries if isinstance(e, dict)
                    and isinstance(e.get("content"), dict) and "gameId" in e["content"]), None)
    seats = {s.number: s for s in seat_layout(int(params.get("owners_count", 5)),
                                              int(params.get("speculators_count", 6)))}
    out = MarketGameExamples(game_id, game_type)
    views = {n: MarketView(game_id=game_id, game_type=game_type, number=n, role=s.role,
                           round_count=params.get("round_count"), practice_round=params.get("practice_round"))
             for n, s in seats.items()}
    trusted = _trusted_rounds(server_log)
    by_phase: dict[tuple[int, int], list[dict]] = {}
    for m in messages:
        by_phase.setdefault((m.get("round"), m.get("phase")), []).append(m)
    state = {"market": None, "done": set()}

    def deliver(recipient: Any, frame: dict[str, Any]) -> None:
        targets = views.values() if recipient in (None, "all") else [views[recipient]] if recipient in views else []
        for view in targets:
            view.apply(frame)

    def values_for(round_number: int, seat: int, logged: Any) -> tuple[Any, str]:
        if sessions is not None:
            try:
                return round_values(sessions, params, round_number, list(seats.values()))[seat][:2], "sessions"
            except (ValueError, KeyError, TypeError):
                pass
        if round_number in trusted and seat in trusted[round_number]:
            return trusted[round_number][seat], "server-log"
        return None, "unknown"

    def signals_for(round_number: int, seat: int, logged: Any) -> Any:
        """value-signals was written by reference too: the table's signals, else the log's in a round whose values
        the summaries confirm (the same round object), else none."""
        if sessions is not None and params.get("generate_signals") is not True:
            try:
                table = list(seats.values())
                values = round_values(sessions, params, round_number, table)
                return round_signals(sessions, params, round_number, table, values)[seat]
            except (ValueError, KeyError, TypeError):
                pass
        return logged if round_number in trusted else None

    for entry in server_log:
        sent, meta = entry.get("sent") or {}, entry.get("meta") or {}
        kind, data = sent.get("type"), copy.deepcopy(sent.get("data") or {})
        if meta.get("phase") == MARKET_PHASE and kind in MARKET_FRAMES:
            continue  # made again by the book, in step with the orders
        if kind == "declaration-above-max":
            continue  # taken into account when the declaration was taken (it was not stored)
        if kind == "assign-role" and isinstance(meta.get("recipient"), int):
            seat = meta["recipient"]
            data["wallet"] = starting_wallets(seats[seat].role, params)
            if isinstance(data.get("property"), dict):
                values, source = values_for(meta.get("round"), seat, data["property"].get("v"))
                out.values_by_round[meta.get("round")] = source
                if values is None:
                    data["property"].pop("v", None)
                else:
                    data["property"]["v"] = list(values) + [0]
        if kind == "value-signals" and isinstance(meta.get("recipient"), int):
            signals = signals_for(meta.get("round"), meta["recipient"], data.get("signals"))
            if signals is None:
                data.pop("signals", None)
            else:
                data["signals"] = signals
        deliver(meta.get("recipient"), {"type": "event", "eventType": kind, "data": data})
        if kind == "phase-transition":
            round_number, phase = data.get("round"), data.get("phase")
            if phase == MARKET_PHASE:
                winning = views[1].current.winning
                rule = listed_conditions_rule([0, 1]) if game_type == FUTARCHY else winning_condition_rule(winning)
                state["market"] = Market({n: [dict(w) for w in starting_wallets(s.role, params)]
                                          for n, s in seats.items()}, rule)
            for m in by_phase.pop((round_number, phase), []):
                _take(m, views, seats, params, state, out, deliver)
    return out


def _take(entry: dict[str, Any], views: dict[int, MarketView], seats: dict, params: dict[str, Any],
          state: dict[str, Any], out: MarketGameExamples, deliver: Any) -> None:
    message, seat = entry["content"], entry["number"]
    wire = message.get("type")
    kind = KINDS.get(wire)
    if kind is None:
        if wire not in ("join", "player-is-ready"):
            out.skipped[f"not a decision the agents make: {wire}"] += 1
        return
    view = views.get(seat)
    if view is None:
        out.skipped[f"unknown seat: {wire}"] += 1
        return
    try:
        validate_market_action(message, view, kind, strict=False)
    except ActionError:
        out.skipped[f"wrong role, phase or shape: {wire}"] += 1
        return
    counted = True
    if kind == DECLARE:
        first = view.phase not in view.current.my_declaration
        counted = first and declaration_above_max(view.role, message.get("declaration"), params) is None
        if not first:
            out.skipped["a second declaration in the phase (only the first counts): declare"] += 1
        elif not counted:
            out.skipped["above the maximum (refused, not stored): declare"] += 1
    elif kind == SPECULATE and view.phase in view.current.my_snipes:
        counted = False
        out.skipped["a repeated done-speculating (the server adds it again): done-speculating"] += 1
    source = out.values_by_round.get(view.round, "unknown") if view.role in (2, 3) else "none (a speculator)"
    example = _example(view, kind, message, source) if counted else None
    outs = []
    if kind == TRADE and state["market"] is not None:
        outs = state["market"].handle(seat, copy.deepcopy(message))
        refused = any(r == seat and (f.get("type") == "error" or f.get("eventType") == "order-refused")
                      for r, f in outs)
        if refused:
            example = None
            out.skipped[f"refused by the server: {wire}"] += 1
    if example is not None:
        out.examples.append(example)
    if counted or kind != DECLARE:  # a declaration refused above the maximum was not stored: the next one counts
        view.apply_sent(message)
    for recipient, frame in outs:
        deliver(recipient, frame)


def _example(view: MarketView, kind: str, message: dict[str, Any], values_source: str) -> MarketExample:
    # The bounded copy, not the whole view: its prompt is the whole view's (lib.games.market.prompts.bounded_view), and
    # neither the example nor its sidecar line grows with the book, so a log with thousands of resting orders
    # builds in time and memory linear in its length.
    small = bounded_view(view)
    required = build_market_action_required(small, kind)
    chat = build_market_messages(small, required)
    rec = small.current
    book = {c: sorted(rec.books.get(c, {}).values(), key=lambda o: o.get("id", 0)) for c in small.market_conditions()} \
        if kind == TRADE else None
    return MarketExample(
        seat=view.number, role=view.role, round=view.round, phase=view.phase, action_type=message.get("type"),
        messages=chat + [{"role": "assistant", "content": wire_json(message)}],
        values_source=values_source,
        state={"values": rec.values, "signals": rec.signals[:2] if isinstance(rec.signals, list) else None,
               "boundaries": small.boundaries, "winning": rec.winning,
               "declarations": {p: [{"id": d.get("id"), "role": d.get("role"), "d": d.get("d")} for d in lots]
                                for p, lots in rec.declarations.items()},
               "wallets": rec.wallets, "book": book,
               **({"book_left_out": {c: rec.hidden[c] for c in book if c in rec.hidden}}
                  if book and any(c in rec.hidden for c in book) else {})},
        view=small)


def game_examples(log: MarketLog, *, sessions: SessionsTable | None = None, sink: Sink | None = None) -> GameResult:
    """Every example a Harberger or futarchy log gives (declarations, snipes, orders, cancels), as lines, sidecar
    states and report numbers for the dataset builder. Raises LogError (one line) for a log this reader cannot
    use."""
    from lib.games.market.sidecar import market_example_state

    source = log.source
    table = None if sessions is None else [{"id": k, "rounds": v} for k, v in sessions.sessions.items()]
    try:
        made = market_examples(log.data, sessions=table)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise LogError(printable(f"{source}: a {log.game_type} game the market reader cannot use: {exc}")) from None
    if made.game_id is None:
        raise LogError(f"{source}: no gameId in any client message")
    result = GameResult(source, made.game_id, "server-log", made.game_type, played_by_agents=log.played_by_agents,
                        sink=sink)
    result.values_by_round = dict(made.values_by_round)
    for reason_action, count in made.skipped.items():
        reason, _, action = reason_action.rpartition(": ")
        result.skip(reason, action, count=count)
    key = str(made.game_id)
    for example in made.examples:
        system, user, answer = (m["content"] for m in example.messages)
        result.add(system, user.split("\n"), printable(answer), state_line(market_example_state(key, example)),
                   seat=example.seat, role=ROLE_NAMES[example.role], action=example.action_type,
                   values_source=example.values_source, user=user)
    return result
