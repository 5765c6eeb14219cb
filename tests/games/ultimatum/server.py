"""The local IBEX server's rules for the ultimatum game (lib.games.protocols.ServerRules) and the game they run on
lib/localserver/core.py (which owns sockets, join, ready, timers, recording and game over).

Phase 0 ends when both seats are ready, phase 2 when the proposer's offer is in, phase 3 when the responder has
answered; phases 1 to 4 also end by their timers. Under --strict (`strict`) a message of the wrong seat, or one that
is not a well-formed offer or response, is refused with an error frame naming the field; otherwise it is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lib.ibex import js
from lib.ibex.params import GameParams
from lib.ibex.sessions import SessionsTable
from lib.localserver.core import Conn, CoreGame, Seat
from tests.games.ultimatum.actions import OFFER, RESPONSE, check
from tests.games.ultimatum.rules import (
    LAST_PHASE,
    PROPOSAL_PHASE,
    PROPOSER_SEAT,
    RESPONDER_SEAT,
    RESPONSE_PHASE,
    SEATS,
    payoffs,
    pie,
    seat_role,
    seat_tag,
)
from tests.games.ultimatum.rules import parameters as typed_parameters
from tests.games.ultimatum.view import UltimatumView

PHASE_HANDLERS = {0: "player-is-ready", PROPOSAL_PHASE: OFFER, RESPONSE_PHASE: RESPONSE}


@dataclass
class Player(Seat):
    """A seat of an ultimatum game."""


class UltimatumGame(CoreGame):
    """One ultimatum game from creation to game-over; every method runs on the event loop's thread."""

    RULESET = "Ultimatum"
    LAST_PHASE = LAST_PHASE

    def __init__(self, game_id: int, params: GameParams, sessions: SessionsTable, **options: Any) -> None:
        self.pie = pie(params)
        self.offer: int | None = None
        self.accepted: bool | None = None
        self.payoffs: dict[int, int] = {}  # seat -> this round's payoff, once the round has a result
        super().__init__(game_id, params, sessions, **options)

    def _make_players(self, first_id: int) -> dict[int, Any]:
        names, tokens = self._seat_names(SEATS), self._payment_tokens(SEATS)
        return {n: Player(number=n, role=seat_role(n), tag=seat_tag(n), name=names[n - 1], db_id=first_id + n - 1,
                          game_id=self.id, balance=0, shares=0, cash_for_sniping=0, payment_token=tokens[n - 1],
                          property=None) for n in range(1, SEATS + 1)}

    def _check_sessions(self) -> None:
        pass  # the pie is a parameter: no private values to look up

    def _load_round(self, number: int) -> None:
        self.offer, self.accepted, self.payoffs = None, None, {}

    def _on_phase_message(self, conn: Conn, message: dict[str, Any]) -> None:
        player = self.players.get(conn.number) if conn.number is not None else None
        kind = js.get(message, "type")
        ref = js.to_string(js.get(message, "gameId"))
        self.log.append(js.to_json_value({"content": message, "number": player.number if player else js.MISSING,
                                          "tag": player.tag if player else js.MISSING, "phase": self.phase,
                                          "round": self.round, "type": "message"}))
        handlers: dict[str, Callable[[Conn, dict[str, Any], Any, str], bool | None]] = {"join": self._on_join}
        if self.phase in PHASE_HANDLERS:
            name = PHASE_HANDLERS[self.phase]
            handlers[name] = self._on_player_is_ready if self.phase == 0 else self._on_action
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._error(conn, f"Game {ref}: could not find an handler for {js.to_string(kind)}")
            return
        if player is None and kind != "join":
            self._error(conn, f"Handler {kind} requires authentication. Player unknown not found in game {ref}")
            return
        if handler(conn, message, player, ref) is False:
            return
        self._update_and_test()

    def _on_action(self, conn: Conn, message: dict[str, Any], player: Player, ref: str) -> bool | None:
        view = UltimatumView(game_id=self.id, pie=self.pie)
        view.set_seat(player.number)
        view.current.offer = self.offer
        try:
            checked = check(message, view, message["type"], self.pie)
        except ValueError as exc:
            if self.strict:
                self._error(conn, f"Game {ref}: {exc}")
            return False
        if checked["type"] == OFFER:
            self.offer = checked["offer"]
            self._send_event(player.number, "offer-received", {"offer": self.offer})
        else:
            self.accepted = checked["accept"]
            self._send_event(player.number, "response-received", {"accept": self.accepted})
        return None

    def _complete(self) -> bool:
        if self.phase == 0:
            return self.assigned == SEATS and all(p.ready for p in self.players.values())
        if self.phase == PROPOSAL_PHASE:
            return self.offer is not None
        if self.phase == RESPONSE_PHASE:
            return self.accepted is not None
        return False

    def _exit_phase(self) -> None:
        if self.timer_end is not None:
            self._broadcast_event("reset-timer", {})
        if self.phase == 0:
            for player in self.players.values():
                player.ready = False

    def _start_timer(self) -> None:
        seconds = self.params.timer(self.phase or 0)
        if seconds:
            self._set_timer(seconds)

    def _enter_phase(self) -> None:
        self._start_timer()
        if self.phase == 1:
            for player in self.players.values():
                self._send_event(player.number, "assign-role", {"role": player.role, "number": player.number,
                                                                "tag": player.tag, "pie": self.pie})
            self._broadcast_event("players-known", {"players": self._public_players()})
        elif self.phase == RESPONSE_PHASE and self.offer is not None:
            self._send_event(RESPONDER_SEAT, "offer-made", {"offer": self.offer})
        elif self.phase == LAST_PHASE:
            proposer, responder = payoffs(self.pie, self.offer, self.accepted)
            self.payoffs = {PROPOSER_SEAT: proposer, RESPONDER_SEAT: responder}
            for number, payoff in self.payoffs.items():
                self._send_event(number, "round-result", {"round": self.round, "offer": self.offer,
                                                          "accepted": self.accepted, "payoff": payoff})

    def _add_summaries(self) -> None:
        for player in self.players.values():
            summary = {"round": self.round, "profit": self.payoffs.get(player.number, 0)}
            player.summaries.append(summary)
            self._send_event(player.number, "round-summary", summary)

    def _reward(self, player: Any, chosen: int, fee: float) -> dict[str, Any]:
        profit = next((s["profit"] for s in player.summaries if s["round"] == chosen), 0)
        return {"number": player.number, "round": chosen, "profit": profit, "showupFee": fee,
                "reward": js.number_value(fee + profit / self.pie)}

    def _save(self) -> None:
        pass  # nothing this game stores can break the real server's SQL write

    def recovery_data(self, number: int) -> dict[str, Any]:
        """GET /games/status's gameData for seat `number` (a rejoin's snapshot)."""
        me = self.players[number]
        game = {"id": self.id, "round": self.round, "phase": self.phase, "over": self.over, "pie": self.pie,
                "offer": self.offer if number == PROPOSER_SEAT or (self.phase or 0) >= RESPONSE_PHASE else None,
                "accepted": self.accepted if number == RESPONDER_SEAT or (self.phase or 0) >= LAST_PHASE else None}
        player = {"number": me.number, "role": me.role, "tag": me.tag, "summaries": list(me.summaries)}
        return js.to_json_value({"game": game, "player": player, "timer": self.timer_end})


class UltimatumServerRules:
    """lib.games.protocols.ServerRules for the ultimatum game: two seats, this folder's defaults."""

    def parameters(self, flat: Mapping[str, Any] | None = None) -> GameParams:
        return typed_parameters(flat)

    def refusal(self, values: Mapping[str, Any], strict: bool) -> str | None:
        seats = tuple(values.get(f"{who}_count") for who in ("developers", "owners", "speculators"))
        if seats not in ((1, 1, 0), (1, 1, None)):
            return ("the local server plays the ultimatum game with one proposer and one responder "
                    "(developers.count 1, owners.count 1, speculators.count 0)")
        return None

    def new_game(self, game_id: int, params: GameParams, sessions: SessionsTable, **options: Any) -> UltimatumGame:
        return UltimatumGame(game_id, params, sessions, **options)
