"""Harberger and futarchy games as the real IBEX server plays them: twelve seats, ten phases, declarations, snipes
and the market (docs/protocol.md sections 7 to 16; the real server's `logics/harberger/` and `logics/futarchy/`).

The generic machinery (seats and sockets, join/rejoin/status, sending and recording events, timers, the phase-0
race, game over and the recorded log) is lib/localserver/core.py's, shared with the voting game
(lib/games/voting/server.py); this module supplies what differs: the seat layout, each phase's handlers (message
type, the roles that may send it), what enters, exits and completes each phase, the round's summaries and the
rewards. The rules themselves are lib/games/market/rules.py's pure functions and the
order books lib/games/market/book.py's, both replayed against games recorded on the real server.

Default: as permissive as the real server, where a client can see it (anyone may end phase 5, a repeated
`done-speculating` adds its snipes again, negative and fractional declarations, quantities and huge prices pass).
`strict` refuses each of these with an error frame. Not reproduced in either mode, with an error frame saying so:
declarations whose values are not numbers (the real server concatenates strings into its sums, winner and public
signals). A `declaration` that is a number or an object is reproduced as checked on the real server: stored without
an answer, it blocks the seat's later declarations, and the phase's end gives the lot its role's lows.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from lib.games.market import rules as mg
from lib.games.market.book import Market, listed_conditions_rule, winning_condition_rule
from lib.games.voting.rules import CONDITIONS, ROLE_DEVELOPER, ROLE_OWNER, ROLE_SPECULATOR, GameParams
from lib.ibex import js
from lib.ibex.sessions import SessionsTable
from lib.localserver.core import ADJECTIVES, ANIMALS, Conn, CoreGame, GameFrozen, Seat, _has_apostrophe

MISSING = js.MISSING
LAST_PHASE = 9
ANYONE = None  # a handler any seat may use ("role": null on the real server)
LANDHOLDERS = (ROLE_DEVELOPER, ROLE_OWNER)
SPECULATORS = (ROLE_SPECULATOR,)
# Phases that end only by their timer: without one the game stalls for good (refused at creation in strict mode).
TIMER_ONLY_PHASES = (1, 4, 6, 9)
# Of those, the ones no seat acts in (all but the market): presentation, the first settlement, the results.
IDLE_PHASES = (1, 4, 9)

# The web UI's defaults for both market games (my-app/src/assets/{harberger,futarchy}.json and the create form),
# over lib.games.voting.rules's voting defaults: what an in-process create_game uses where a caller gives nothing.
MARKET_DEFAULTS: dict[str, Any] = {
    "speculators_count": 6, "speculators_base_points": 400000, "speculators_reward_scale_factor": 20000,
    "developers_base_points": 0, "owners_base_points": 200000,
    **{f"timer_phase_{n}": s for n, s in enumerate((None, 15, 90, 120, 3, 3, 270, 60, 90, 15)) if s is not None},
}

_H_SPECULATE = ("Analyse all declarations and choose which ones to target, under all conditions",
                "Wait for the speculators to make their decisions", "Wait for the speculators to make their decisions")
_F_SPECULATE = ("Analyse all declarations under all conditions. Choose which, if any, properties you want to buy at "
                "the declared value.", "Wait for the speculators to make their decisions.",
                "Wait for the speculators to make their decisions.")
_DECLARE = ("Wait for all property owners to send their declarations",
            "Fill the declaration with a value under all conditions. Use the real value as a reference",
            "Fill the declaration with a value under all conditions. Use the real value as a reference")
_TRADE = ("Trade shares, they represent a percentage of the final taxes on the winning project",) * 3
# The instructions each phase holds for (speculator, developer, owner), shown by /games/status.
INSTRUCTIONS = {
    mg.HARBERGER: {1: ("All players joined, the game will start shortly",) * 3, 2: _DECLARE, 3: _H_SPECULATE,
                   6: _TRADE, 7: _DECLARE, 8: _H_SPECULATE},
    mg.FUTARCHY: {1: ("All players joined, the game will start shortly",) * 3, 2: _DECLARE, 3: _F_SPECULATE,
                  6: _TRADE, 7: _DECLARE, 8: _H_SPECULATE},
}


def market_parameters(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Flat parameters for an in-process market game: the UI's defaults with `overrides` applied."""
    return {**MARKET_DEFAULTS, **(overrides or {})}


def check_parameters(params: GameParams, sessions: SessionsTable, strict: bool) -> None:
    """Raise ValueError (naming the parameter or the sessions table) for a market game the local server cannot play."""
    values = params.values
    if params.game_type not in mg.GAME_TYPES:
        raise ValueError(f"game_type {params.game_type!r} is not a market game")
    for key in ("owners_count", "speculators_count", "round_count", "session_number", "tax_rate_initial",
                "tax_rate_final", "owner_balance", "owner_shares", "developer_balance", "developer_shares",
                "speculator_balance", "speculator_shares", *(f"{who}_{c['parameter']}_{edge}"
                for who in ("owner", "developer") for c in CONDITIONS for edge in ("low", "high"))):
        value = values.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"parameter {key!r} is {js.to_string(value) if value is not None else 'missing'}: "
                             "the local server plays only market games where it is a number")
    if values["owners_count"] < 1:
        raise ValueError("parameter 'owners_count' must be at least 1 (owner 1 holds seat 1)")
    if values.get("generate_signals") is True and not all(
            isinstance(values.get(k), int | float) and not isinstance(values.get(k), bool)
            for k in ("signal_low", "signal_high")):
        raise ValueError("parameters 'signal_low' and 'signal_high' must be numbers when signals are generated")
    if strict:
        timers = mg.phase_timers(dict(values))
        stalled = [n for n in TIMER_ONLY_PHASES if timers[n] is None]
        if stalled:
            raise ValueError(f"--strict: timer_phase_{stalled[0]} must be a positive number of seconds (phases "
                             f"{', '.join(map(str, TIMER_ONLY_PHASES))} end only by their timer; without one the game "
                             "stalls for good)")
    seats = mg.seat_layout(int(values["owners_count"]), int(values["speculators_count"]))
    table = sessions_list(sessions)
    flat = dict(values)
    for number in params.rounds():
        try:
            v = mg.round_values(table, flat, number, seats)
            mg.round_signals(table, flat, number, seats, v, random.Random(0))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{sessions.source}: {exc} (the game plays rounds {params.rounds()[0]}.."
                             f"{params.round_count}; market games need values and signals, or signal.generate)"
                             ) from None


def sessions_list(sessions: SessionsTable) -> list[dict[str, Any]]:
    """The table in the real server's format (a list of sessions), as lib.games.market.rules reads it."""
    return [{"id": number, "rounds": rounds} for number, rounds in sessions.sessions.items()]


@dataclass
class MarketPlayer(Seat):
    """A seat of a market game and the record the real server keeps for it (sent as `status.joined`)."""

    property: dict[str, Any] | None  # the lot this seat owns (landholders), as sent in assign-role
    wallet: list[dict[str, Any]] = field(default_factory=list)
    signals: list[Any] = field(default_factory=lambda: [0, 0, 0])
    done_speculating: Any = MISSING  # set when a speculation phase first begins
    profit: list[Any] = field(default_factory=list)  # every amount total-profit adds up (never reset)
    profits_by_round: dict[int, Any] = field(default_factory=dict)  # getProfit, from each round's summary

    def record(self) -> dict[str, Any]:
        data = {**super().record(), "S": self.signals}
        if self.property is not None:
            data["property"] = self.property
        data.update({"ready": self.ready, "wallet": self.wallet})
        if self.role == ROLE_SPECULATOR:
            data["doneSpeculating"] = self.done_speculating
        return data


class MarketGame(CoreGame):
    """A Harberger or futarchy game from creation to game-over; every method runs on the event loop's thread."""

    RULESET = "Harberger"  # what /games/status says for both market games
    LAST_PHASE = LAST_PHASE

    def __init__(self, game_id: int, params: GameParams, sessions: SessionsTable, **kwargs: Any) -> None:
        check_parameters(params, sessions, bool(kwargs.get("strict")))  # before anything reads them
        self.kind = params.game_type
        self.seats = mg.seat_layout(int(params.values["owners_count"]), int(params.values["speculators_count"]))
        self.flat = dict(params.values)
        self.table = sessions_list(sessions)
        self.timers = mg.phase_timers(self.flat)
        self.winning: Any = MISSING  # undefined until first decided (futarchy: at the end of phase 6), then kept
        self.public_signal: list[Any] = [0, 0, 0]
        self.market: Market | None = None
        self.phase_complete = False  # phase 5's complete-current-phase
        self.sniping_ends = math.inf  # futarchy phase 3: minutes_for_sniping, tested when a message arrives
        self.snipe_records: list[Any] = []  # the round's snipe messages, as the real server stores them
        self._dispatched_ok = False  # whether the last frame reached its handler (then completion is tested)
        self._reset_round_results()
        super().__init__(game_id, params, sessions, **kwargs)

    def _reset_round_results(self) -> None:
        self.first_declarations: dict[int, Any] = {}
        self.second_declarations: dict[int, Any] = {}
        self.first_outcomes: list[dict[str, Any]] = []
        self.second_outcomes: list[dict[str, Any]] = []
        self.market_wallets: dict[int, list[dict[str, Any]]] = {}
        self.final_price: Any = None

    # ----------------------------------------------------------------- set-up

    def _make_players(self, first_id: int) -> dict[int, MarketPlayer]:
        names = self._seat_names(len(self.seats))
        tokens = self._payment_tokens(len(self.seats))
        players = {}
        for seat in self.seats:
            key = mg.ROLE_KEYS[seat.role]
            lot = None
            if seat.lot is not None:
                lot = {"id": seat.lot, "owner": seat.number,
                       "name": f"{self.rng.choice(ADJECTIVES)} {self.rng.choice(ANIMALS)} Lot",
                       "v": [self._first_value(key, c) for c in ("no_project", "project_a", "project_b")]}
            players[seat.number] = MarketPlayer(
                number=seat.number, role=seat.role, tag=seat.tag, name=names[seat.number - 1],
                db_id=first_id + seat.number - 1, game_id=self.id, balance=self.flat.get(f"{key}_balance"),
                shares=self.flat.get(f"{key}_shares"), cash_for_sniping=self.flat.get("cash_for_snipers"),
                payment_token=tokens[seat.number - 1], property=lot)
        return players

    def _first_value(self, key: str, condition: str) -> Any:
        """Logic.js init: the `fixed` value, else a draw in steps of 5000 (v[2] keeps it; the table sets v[0..1])."""
        fixed = self.flat.get(f"{key}_{condition}_fixed")
        if fixed is not None:
            return fixed
        low = self.flat.get(f"{key}_{condition}_low") or 0
        high = self.flat.get(f"{key}_{condition}_high") or 0
        return low + mg.js_round((high - low) / 5000 * self.rng.random()) * 5000

    def _check_sessions(self) -> None:
        pass  # done first thing in __init__ (check_parameters), before the seats are laid out

    @property
    def lots(self) -> list[MarketPlayer]:
        """The landholders in seat order (= lot order)."""
        return [p for p in self.players.values() if p.property is not None]

    # ----------------------------------------------------------------- sending

    def _emit(self, recipient: int | None, frame: dict[str, Any]) -> None:
        """A frame lib.games.market.book made: an event for one seat (None: everyone), recorded as sent."""
        if recipient is None:
            self._broadcast_event(frame["eventType"], frame["data"])
        else:
            self._send_event(recipient, frame["eventType"], frame["data"])

    def _info(self, text: str, role: int | None = None) -> None:
        """broadcastInfo, to one role or to everyone."""
        for number, conn in list(self.sockets.items()):
            if role is None or self.players[number].role == role:
                conn.send({"type": "info", "message": text})

    # ----------------------------------------------------------------- client frames

    def _handlers(self) -> dict[str, tuple[tuple[int, ...] | None, Any]]:
        table: dict[str, tuple[tuple[int, ...] | None, Any]] = {}
        if self.phase == 0:
            table["player-is-ready"] = (ANYONE, self._on_player_is_ready)
        elif self.phase in (2, 7):
            table["declare"] = (LANDHOLDERS, self._on_declare)
        elif self.phase in (3, 8):
            table["done-speculating"] = (SPECULATORS, self._on_done_speculating)
        elif self.phase == 5:
            table["complete-current-phase"] = (ANYONE, self._on_complete_current_phase)
        elif self.phase == 6:
            table["post-order"] = (ANYONE, self._on_order)
            table["cancel-order"] = (ANYONE, self._on_order)
        table["join"] = (ANYONE, self._on_join)
        return table

    def _on_phase_message(self, conn: Conn, message: dict[str, Any]) -> None:
        player = self.players.get(conn.number) if conn.number is not None else None
        kind = js.get(message, "type")
        game_ref = js.to_string(js.get(message, "gameId"))
        # Logged after the handler ran: the real server logs the message object, which the market changes in place.
        entry = {"content": message, "number": player.number if player else MISSING,
                 "tag": player.tag if player else MISSING, "phase": self.phase, "round": self.round,
                 "type": "message"}
        try:
            self._dispatch(conn, message, player, kind, game_ref)
        finally:
            self.log.append(js.to_json_value(entry))
        if self._dispatched_ok:
            self._update_and_test()

    def _dispatch(self, conn: Conn, message: dict[str, Any], player: MarketPlayer | None, kind: Any,
                  game_ref: str) -> None:
        self._dispatched_ok = False
        found = self._handlers().get(kind) if isinstance(kind, str) else None
        if found is None:
            self._error(conn, f"Game {game_ref}: could not find an handler for {js.to_string(kind)}")
            return
        roles, handler = found
        if roles is not None:
            if player is None:
                return  # the real server reads the role of a socket that never joined and throws: no answer
            if player.role not in roles:
                allowed = ",".join(map(str, roles))
                self._error(conn, f"Game {game_ref}: only {allowed} can send this message in this phase. "
                                  f"You are {player.role}.")
                return
        if player is None and kind != "join":
            self._error(conn, f"Handler {kind} requires authentication. Player unknown not found in game {game_ref}")
            return
        self._dispatched_ok = handler(conn, message, player, game_ref) is not False

    # ----------------------------------------------------------------- handlers
    # A handler returns False where the real server stops before its completion check (a refusal in strict mode,
    # or a frame on which the real server throws).

    def _on_declare(self, conn: Conn, message: dict[str, Any], player: MarketPlayer, ref: str) -> bool | None:
        lot = player.property
        if lot is None:
            self._error(conn, f"Game {ref}: player {player.number} sent a declaration but does not own a property. "
                              "This is a bug")
            return None
        if lot.get("d") is not None:
            conn.send({"type": "warning",
                       "message": f"Game {ref}: player {player.number} sent a declaration update. This is not allowed"})
            return None
        declaration = js.get(message, "declaration")
        if js.is_nullish(declaration):
            return False  # the real server throws reading declaration[0]: no answer, nothing stored
        if self.strict and not isinstance(declaration, list):
            self._error(conn, f"Game {ref}: declaration must be a list of {len(CONDITIONS)} numbers (--strict), got "
                              f"{js.stringify(declaration)[:200]}")
            return False
        if isinstance(declaration, str) or isinstance(declaration, list) and (
                len(declaration) < len(CONDITIONS) or not all(_is_number(d) for d in declaration[:len(CONDITIONS)])):
            # The real server concatenates strings into its sums, winner and public signals: not reproduced
            self._error(conn, f"Game {ref}: declaration must be a list of {len(CONDITIONS)} numbers (one per "
                              f"condition), got {js.stringify(declaration)[:200]} (the local server does not play "
                              "the real server's arithmetic on other values)")
            return False
        if self.strict:
            bad = next((d for d in declaration[:len(CONDITIONS)] if not _is_whole(d) or d < 0), None)
            if bad is not None:
                self._error(conn, f"Game {ref}: declarations must be whole numbers of at least 0 (--strict), "
                                  f"got {js.to_string(bad)}")
                return False
        indexed = declaration if isinstance(declaration, list) else [
            declaration.get(str(i)) if isinstance(declaration, dict) else None for i in range(len(CONDITIONS))]
        above = mg.declaration_above_max(player.role, indexed, self.flat)
        if above is not None:
            self._send_event(player.number, "declaration-above-max", above)
            return None
        lot["d"] = declaration
        if not isinstance(declaration, list):
            # Checked on the real server: a number or an object is stored, then `.map` throws: no answer, later
            # declarations get the update warning, and the phase's end gives the lot its role's lows.
            return False
        results = self.first_declarations if self.phase == 2 else self.second_declarations
        results.setdefault(player.number, declaration)
        self._info(f"Player {player.name} submitted a declaration of values.")
        self._send_event(player.number, "declaration-received", {})
        return None

    def _on_done_speculating(self, conn: Conn, message: dict[str, Any], player: MarketPlayer,
                             ref: str) -> bool | None:
        snipe = js.get(message, "snipe")
        if self.strict and not self._snipe_ok(conn, ref, player, snipe):
            return False
        if self.phase == 3:
            self.snipe_records.append(snipe)
        if js.is_nullish(snipe):
            player.done_speculating = True  # the real server marks it done and answers nothing
            return None
        conditions, required = mg.speculation_conditions(self.kind, self.phase, self.winning)
        snipe = _as_js_indexes(snipe, conditions)
        if snipe is None:
            return False  # the real server calls forEach on a character of a string and throws: no answer
        snipers = {p.property["id"]: p.property["speculators"] for p in self.lots}
        errors, answered = mg.add_snipes(snipers, player.number, snipe, conditions, js.get(message, "gameId"),
                                         required)
        for text in errors:
            self._error(conn, text)
        if not answered:
            return False
        self._send_event(player.number, "speculation-received", {})
        player.done_speculating = True
        return None

    def _snipe_ok(self, conn: Conn, ref: str, player: MarketPlayer, snipe: Any) -> bool:
        """--strict: one done-speculating per phase, a list of lot-id lists, each id a lot, none twice."""
        problem = None
        lot_ids = {p.property["id"] for p in self.lots}
        if player.done_speculating:
            problem = "a speculator sends done-speculating once per phase (the real server adds the snipes again)"
        elif not isinstance(snipe, list) or not all(isinstance(ids, list) for ids in snipe):
            problem = f"snipe must be a list of lot-id lists, one per condition, got {js.stringify(snipe)[:200]}"
        else:
            for ids in snipe:
                if any(not _is_whole(i) or i not in lot_ids for i in ids) or len(set(map(str, ids))) != len(ids):
                    problem = f"snipe lists lot ids of this game, each once, got {js.stringify(ids)[:200]}"
                    break
        if problem is not None:
            self._error(conn, f"Game {ref}: {problem} (--strict)")
        return problem is None

    def _on_complete_current_phase(self, conn: Conn, _message: dict[str, Any], _player: MarketPlayer,
                                   ref: str) -> bool | None:
        if self.strict:
            self._error(conn, f"Game {ref}: complete-current-phase is refused (--strict): phase 5 ends by its timer")
            return False
        self.phase_complete = True
        return None

    def _on_order(self, conn: Conn, message: dict[str, Any], player: MarketPlayer, ref: str) -> bool | None:
        if self.strict and js.get(message, "type") == "post-order" and not self._order_ok(conn, ref, message):
            return False
        assert self.market is not None
        for recipient, frame in self.market.handle(player.number, message):
            if frame.get("type") == "error":
                conn.send(frame)  # errors go to the socket that sent the frame, as on the real server
            else:
                self._emit(recipient, frame)
        return None

    def price_cap(self) -> float:
        """The highest final share price declarations can make: every lot declared at twice its role's high."""
        best = 0.0
        for c in CONDITIONS:
            total = sum(self.flat[f"{mg.ROLE_KEYS[p.role]}_{c['parameter']}_high"] * 2 for p in self.lots)
            best = max(best, total * self.flat["tax_rate_final"] / 100 / mg.TOTAL_SHARES)
        return best

    def _order_ok(self, conn: Conn, ref: str, message: dict[str, Any]) -> bool:
        """--strict: the order fields the real server does not check (quantity, price type and size, now)."""
        order = js.get(message, "order")
        problem = None
        if isinstance(order, dict):
            price, quantity, now = order.get("price"), order.get("quantity", MISSING), order.get("now", MISSING)
            condition = order.get("condition", MISSING)
            if order.get("type") not in ("bid", "ask"):
                problem = f"order type must be \"bid\" or \"ask\", got {js.stringify(order.get('type'))[:100]}"
            elif not _is_whole(condition):
                problem = f"order condition must be a condition's number, got {js.stringify(condition)[:100]}"
            elif not _is_number(price) or not 0 <= price <= self.price_cap():
                problem = (f"order price must be a number from 0 to {js.to_string(self.price_cap())} (the highest "
                           f"final share price declarations can make), got {js.stringify(price)[:100]}")
            elif not _is_whole(quantity) or quantity < 1:
                problem = f"order quantity must be a whole number of at least 1, got {js.stringify(quantity)[:100]}"
            elif now is not MISSING and not isinstance(now, bool):
                problem = f"order now must be true or false, got {js.stringify(now)[:100]}"
        if problem is not None:
            self._error(conn, f"Game {ref}: {problem} (--strict)")
        return problem is None

    # ----------------------------------------------------------------- phases

    def _complete(self) -> bool:
        if self.phase == 0:
            return self.assigned == len(self.players) and all(p.ready for p in self.players.values())
        if self.phase in (2, 7):
            return all(p.property.get("d") is not None for p in self.lots)
        if self.phase in (3, 8):
            done = all(p.done_speculating for p in self.players.values() if p.role == ROLE_SPECULATOR)
            if self.kind == mg.FUTARCHY and self.phase == 3:
                return done or time.monotonic() >= self.sniping_ends
            return done
        if self.phase == 5:
            return self.phase_complete
        return False

    def _start_timer(self) -> None:
        seconds = self.timers[self.phase] if self.phase is not None else None
        if seconds is not None:
            self._set_timer(seconds)

    def _exit_phase(self) -> None:
        if self.timer_end is not None:
            self._broadcast_event("reset-timer", {})
        phase = self.phase
        if phase == 0:
            for player in self.players.values():
                player.ready = False
        elif phase in (2, 7):
            results = self.first_declarations if phase == 2 else self.second_declarations
            for player in self.lots:
                d = player.property.get("d")
                if isinstance(d, list) and len(d) > 0:
                    continue  # anything else (nothing, [], a number or object whose .length is undefined): the lows
                player.property["d"] = mg.default_declaration(player.role, self.flat)
                results.setdefault(player.number, player.property["d"])
        elif phase == 4 and self.kind == mg.HARBERGER:
            self._end_of_first_speculation()
        elif phase == 6:
            self.market_wallets = {p.number: p.wallet for p in self.players.values()}
            if self.kind == mg.FUTARCHY:
                self._broadcast_event("reset-timer", {})
                assert self.market is not None
                self.winning = mg.futarchy_winner([self.market.median(c["id"]) for c in CONDITIONS])
                self._broadcast_event("winning-condition", {"winningCondition": self.winning})
                self._settle(first=True)
                self._end_of_first_speculation()
            self.market = None
        elif phase == 8:
            self._final_settlement()

    def _end_of_first_speculation(self) -> None:
        for player in self.players.values():
            if player.role == ROLE_SPECULATOR:
                player.done_speculating = False
        for player in self.lots:
            player.property["speculators"] = None
        for player in self.players.values():
            self._send_event(player.number, "first-snipes",
                             {"snipes": mg.snipes_seen_by(self.first_outcomes, player.number)})

    def _enter_phase(self) -> None:
        self._start_timer()
        phase = self.phase
        if phase == 1:
            for player in self.players.values():
                self._send_event(player.number, "assign-role",
                                 mg.assign_role(self._seat(player), self.flat, player.wallet, player.property))
            self._broadcast_event("players-known", {"players": self._public_players()})
        elif phase in (2, 7):
            for player in self.lots:
                player.property["d"] = None
        elif phase in (3, 8):
            for player in self.lots:
                player.property["speculators"] = [[], [], []]
            for player in self.players.values():
                if player.role == ROLE_SPECULATOR:
                    player.done_speculating = False
            if phase == 3:
                self._first_declarations_published()
            else:
                self._broadcast_event("declarations-published", mg.declarations_published(
                    self.kind, 8, self._declaration_rows(), self.winning))
        elif phase == 4 and self.kind == mg.HARBERGER:
            self._settle(first=True)
        elif phase == 5:
            self.phase_complete = False
            for player in self.players.values():
                data: dict[str, Any] = {"signals": player.signals, "publicSignal": self.public_signal}
                if self.kind == mg.HARBERGER:
                    data["condition"] = self.winning
                data["taxRate"] = self.flat["tax_rate_final"]
                self._send_event(player.number, "value-signals", data)
            self._info("Prepare for the trading phase")
        elif phase == 6:
            if self.kind == mg.HARBERGER:
                self._info("The trading phase has started")
                rule = winning_condition_rule(self.winning)
            else:
                rule = listed_conditions_rule([c["id"] for c in CONDITIONS])
            self.market = Market({p.number: p.wallet for p in self.players.values()}, rule)

    def _seat(self, player: MarketPlayer) -> mg.Seat:
        return self.seats[player.number - 1]

    def _declaration_rows(self) -> list[dict[str, Any]]:
        return [{"id": p.property["id"], "name": p.property["name"], "owner": p.name, "role": p.role,
                 "number": p.number, "d": p.property["d"]} for p in self.lots]

    def _first_declarations_published(self) -> None:
        sums = mg.declared_sums([p.property["d"] for p in self.lots])
        tax = self.flat["tax_rate_final"]
        if self.kind == mg.HARBERGER:
            self.winning = mg.harberger_winner(sums)
            self.public_signal = mg.public_signals(sums, tax, self.winning)
        else:
            self.sniping_ends = time.monotonic() + _minutes(self.flat.get("minutes_for_sniping")) * 60
            self._info("Click on the properties you are interested in.", ROLE_SPECULATOR)
            self._info("Check the table of declared values. Choose which, if any, properties you want to buy at the "
                       "declared value.", ROLE_SPECULATOR)
            self._info("Wait for the speculators to make their decisions.", ROLE_DEVELOPER)
            self._info("Wait for the speculators to  make their decisions.", ROLE_OWNER)  # sic, two spaces
            self.public_signal = mg.public_signals(sums, tax)
        self._broadcast_event("declarations-published", mg.declarations_published(
            self.kind, 3, self._declaration_rows(), self.winning))

    def _lots_for_rules(self) -> list[mg.Lot]:
        return [mg.Lot(p.property["id"], p.number, p.role, p.property["v"], p.property["d"]) for p in self.lots]

    def _send_outs(self, outs: list[mg.Out]) -> None:
        for recipient, item in outs:
            kind, data = item["eventType"], item["data"]
            if recipient is not None:
                self.players[recipient].profit.extend(mg.profit_entries(kind, data))
                self._send_event(recipient, kind, data)
            else:
                self._broadcast_event(kind, data)

    def _settle(self, first: bool) -> None:
        """A speculation round's snipe settlement: the first (Harberger phase 4 entry, futarchy phase 6 exit) or the
        second (phase 8 exit)."""
        self._info("Reconciliation in progress ..." if first else
                   f"Final phase. Tax rate: {js.to_string(self.flat['tax_rate_final'])}")
        snipers = {p.property["id"]: p.property.get("speculators") or [[], [], []] for p in self.lots}
        roles = {p.number: p.role for p in self.players.values()}
        tax = self.flat["tax_rate_initial"] if first else self.flat["tax_rate_final"]
        outs, outcomes = mg.reconcile(self._lots_for_rules(), snipers, self.winning, tax, self.round,
                                      4 if first else 9, roles, any_condition=first and self.kind == mg.FUTARCHY)
        self._send_outs(outs)
        if first:
            self.first_outcomes = outcomes
        else:
            self.second_outcomes = outcomes

    def _final_settlement(self) -> None:
        self._settle(first=False)
        sums = mg.declared_sums([p.property["d"] for p in self.lots])
        pot, price = mg.final_price(sums, self.winning, self.flat["tax_rate_final"])
        self.final_price = price
        self._broadcast_event("final-price", {"price": price, "winningCondition": self.winning})
        for player in self.players.values():
            amount = mg.tax_income(pot, player.wallet[self.winning], self.flat)
            player.profit.append(amount)
            self._send_event(player.number, "tax-income", {"amount": amount, "condition": self.winning})
            self._send_event(player.number, "profit",
                             mg.tax_bill(self.round, self.winning, self._seat(player), amount))
        for player in self.players.values():
            self._send_event(player.number, "total-profit", {"amount": mg.total_profit(player.profit)})
        for player in self.players.values():
            self._send_event(player.number, "second-snipes",
                             {"snipes": mg.snipes_seen_by(self.second_outcomes, player.number)})

    # ----------------------------------------------------------------- rounds

    def _load_round(self, number: int) -> None:
        for player in self.players.values():
            player.wallet = mg.starting_wallets(player.role, self.flat)
        values = mg.round_values(self.table, self.flat, number, self.seats)
        for player in self.lots:
            player.property["v"][0], player.property["v"][1] = values[player.number][0], values[player.number][1]
        signals = mg.round_signals(self.table, self.flat, number, self.seats, values, self.rng)
        for player in self.players.values():
            player.signals[0], player.signals[1] = signals[player.number][0], signals[player.number][1]
        self._reset_round_results()
        self.snipe_records = []

    def _summary(self, player: MarketPlayer) -> dict[str, Any]:
        """The round's summary as the server holds it (NaN stays NaN: a NaN trade makes the reward's profit NaN)."""
        w = self.winning
        lot = player.property
        return (mg.round_summary(
            self._seat(player), self.round, w, self.flat,
            value=lot["v"][w] if lot else None,
            first_declaration=self.first_declarations[player.number][w] if lot else None,
            second_declaration=self.second_declarations[player.number][w] if lot else None,
            first_outcomes=self.first_outcomes, second_outcomes=self.second_outcomes,
            wallet=self.market_wallets[player.number][w], price=self.final_price))

    def _add_summaries(self) -> None:
        for player in self.players.values():
            summary = self._summary(player)
            player.profits_by_round[self.round] = mg.round_profit(summary)
            player.summaries.append(js.to_json_value(summary))
            self._send_event(player.number, "round-summary", summary)

    def _reward(self, player: MarketPlayer, chosen: int, fee: float) -> dict[str, Any]:
        """Game over is the core's (paid round, `reward` per seat, game-over, the recorded log); the reward is
        Logic.js's over the paid round's profit (getProfit: from that round's summary; NaN for a round not played)."""
        profit = player.profits_by_round.get(chosen, math.nan)
        return js.to_json_value(mg.reward(self._seat(player), chosen, profit, self.flat, player.payment_token))

    def _save(self) -> None:
        """Where the real server writes the game to SQL: an apostrophe in stored client data breaks that for good."""
        stored: list[Any] = [p.recovery for p in self.players.values()]
        stored += [p.property.get("d") for p in self.lots]
        stored += self.snipe_records
        if any(_has_apostrophe(value) for value in stored):
            raise GameFrozen("a stored field holds a string with an apostrophe (the real server's SQL write fails)")

    # ----------------------------------------------------------------- views for REST

    def _partial_summary(self, player: MarketPlayer) -> dict[str, Any]:
        """Harberger.js getSummary: what a seat's summary holds so far in the current phase."""
        summary: dict[str, Any] = {"round": self.round}
        phase, w = self.phase or 0, self.winning
        if phase <= 2 or js.is_nullish(w):
            return summary
        lot = player.property
        summary["condition"] = w
        if lot is not None and player.number in self.first_declarations:
            summary["value"] = lot["v"][w]
            summary["firstDeclaration"] = self.first_declarations[player.number][w]
            summary["firstTaxes"] = summary["firstDeclaration"] * self.flat["tax_rate_initial"] / 100
        if phase > 4 and (self.kind == mg.HARBERGER or phase > 6):
            mine = mg._mine(self.first_outcomes, self._seat(player))
            summary["firstRepurchase"] = mg._repurchase(self.first_outcomes, self._seat(player))
            summary["snipes"] = mine
        if phase > 6 and player.number in self.market_wallets:
            wallet = self.market_wallets[player.number][w]
            summary["market"] = {"balance": wallet["balance"], "shares": wallet["shares"]}
        if phase > 7 and lot is not None and player.number in self.second_declarations:
            summary["secondDeclaration"] = self.second_declarations[player.number][w]
            summary["secondTaxes"] = summary["secondDeclaration"] * self.flat["tax_rate_final"] / 100
        if phase > 8:
            summary["secondRepurchase"] = mg._repurchase(self.second_outcomes, self._seat(player))
            summary["snipes"] = mg._mine(self.second_outcomes, self._seat(player))
            summary.setdefault("market", {})["price"] = self.final_price
        return summary

    def recovery_data(self, number: int) -> dict[str, Any]:
        """`gameData` of GET /games/status for a known player (Harberger.js getRecoveryData, both market games)."""
        me = self.players[number]
        game: dict[str, Any] = {
            "ruleset": self.RULESET, "id": self.id, "round": self.round, "phase": self.phase,
            "boundaries": mg.boundaries(self.flat) if (self.phase or 0) >= 1 or self.round_id > 1 else MISSING,
            "conditions": [dict(c) for c in CONDITIONS], "players": self._public_players(),
            "taxRate": self.flat["tax_rate_initial"], "over": self.over,
        }
        player = self._partial_summary(me)
        texts = INSTRUCTIONS[self.kind].get(self.phase)
        player["instructions"] = texts[me.role - 1] if texts else MISSING
        player.update({"name": me.name, "tag": me.tag, "number": me.number, "role": me.role,
                       "recovery": me.recovery, "ready": me.ready, "wallet": me.wallet})
        if me.role == ROLE_SPECULATOR:
            player["doneSpeculating"] = me.done_speculating
        if me.property is not None:
            player["hasToDeclare"] = me.property.get("d") is None
            player["property"] = me.property
        if (self.phase or 0) > 2:
            game["declarations"] = [{**row, "d": self.first_declarations.get(row["number"])}
                                    for row in self._declaration_rows()]
            game["winningCondition"] = self.winning
        if self.phase == 6 and self.market is not None:
            player["signals"] = me.signals
            game["publicSignal"] = self.public_signal
            game.update(self.market.status_view())
        if (self.phase or 0) > 4:
            game["taxRate"] = self.flat["tax_rate_final"]
        player["summaries"] = [s for s in reversed(me.summaries) if s.get("round") != 0]
        if self.over:
            game["reward"] = next((r for r in self.rewards if r["number"] == number), MISSING)
        return js.to_json_value({"game": game, "player": player, "timer": self.timer_end})


def _as_js_indexes(snipe: Any, conditions: list[int]) -> list[Any] | None:
    """`snipe[c]` as JavaScript reads it, one entry per condition slot (checked on the real server, Harberger phase 3:
    a number, `true` or `{}` are answered and snipe nothing, `{"0": [1]}` snipes lot 1 under condition 0, a string
    throws). None where the server throws: a string with a character at a condition that counts."""
    if isinstance(snipe, list):
        return snipe
    if isinstance(snipe, dict):
        return [snipe.get(str(c)) for c in range(mg.CONDITION_SLOTS)]
    if isinstance(snipe, str):
        return None if any(c < len(snipe) for c in conditions) else [None] * mg.CONDITION_SLOTS
    return [None] * mg.CONDITION_SLOTS


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _minutes(value: Any) -> float:
    return value if _is_number(value) else math.nan
