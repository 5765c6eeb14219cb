"""One voting game as the real IBEX server plays it: phases, events, results (the core they run on, shared with the
market games, is lib/localserver/core.py: sockets, join, timers, recording, game over).

Behaviour follows the frames recorded from the real server (docs/protocol.md, transcripts of game 5) and its source
where the recordings are silent. The real server's quirks are kept on purpose, because agents are tested here
before they meet it: wrong-role and out-of-range submissions are accepted (unless `strict`), a missing field
vanishes from the acknowledgement, a string offer concatenates into a profit, the last offer persists into a
round where the developer stays silent, and a stored string with an apostrophe freezes the game. The one bug not
kept is the by-reference server log: event data is recorded as it was when sent.

Transport is the caller's: a game talks to `Conn` objects (one per WebSocket) through `Conn.send`, and the
server routes each client frame to `Game.on_frame`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lib.games.voting.rules import DEVELOPER_SEAT, LAST_PHASE, OWNER_SEATS, SEATS, seat_role, seat_tag, winner
from lib.ibex import js
from lib.ibex.params import CONDITIONS, ROLE_DEVELOPER, ROLE_OWNER, GameParams
from lib.ibex.sessions import SessionsTable
from lib.localserver.core import (  # noqa: F401 (re-exported: callers import them from here)
    ADJECTIVES,
    ANIMALS,
    COLOURS,
    MAX_RECOVERY_CHARS,
    RECOVERY_ALPHABET,
    Conn,
    CoreGame,
    GameFrozen,
    Seat,
    _has_apostrophe,
    log,
    new_recovery_code,
    now_ms,
    valid_recovery,
)

MISSING = js.MISSING

# The text each phase shows a player, by role (speculator, developer, owner); phase 0 has none.
INSTRUCTIONS: dict[int, tuple[str, str, str]] = {
    1: ("All players joined, the game will start shortly",) * 3,
    2: ("Click on a plot to chat with its owner",) * 3,
    3: (
        "-",
        "Wait for all owners to submit their requests",
        "Submit a compensation request, remember to click on the submit button. Wait for all to submit.",
    ),
    4: (
        "-",
        "Submit your compensation offers (click the submit button)",
        "Wait for the developer to submit a compensation offer",
    ),
    5: ("Click on a plot to chat with its owner",) * 3,
    6: (
        "-",
        "Wait for all owners to submit their decisions on your offer",
        "Submit your final decision, remember to click on the submit button. Wait for all to submit.",
    ),
    7: ("The results of this round are available",) * 3,
}

# Which client message each phase handles; `join` is handled in every phase.
PHASE_HANDLERS: dict[int, str] = {
    0: "player-is-ready",
    2: "chat-with-players",
    3: "compensation-request",
    4: "compensation-offer",
    5: "chat-with-players",
    6: "compensation-decision",
}


@dataclass
class Player(Seat):
    """A seat of a voting game and the record the real server keeps for it (sent as `status.joined`)."""

    property: dict[str, Any]
    # Fields the phases add to the record, in the order they first appear (JS object order).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> list[int]:
        """This round's private values [no project, project]."""
        return list(self.property["v"][:2])

    @property
    def requests(self) -> Any:
        return self.extra.get("compensationRequests", MISSING)

    @property
    def decisions(self) -> Any:
        return self.extra.get("compensationDecisions", MISSING)

    @property
    def offered(self) -> bool:
        return self.extra.get("submittedCompensationOffers") is True

    def record(self) -> dict[str, Any]:
        return {**super().record(), "property": self.property, "ready": self.ready, **self.extra}


class Game(CoreGame):
    """A voting game from creation to game-over; every method runs on the event loop's thread."""

    RULESET = "Voting"  # what GET /games/status says
    LAST_PHASE = LAST_PHASE

    def __init__(self, game_id: int, params: GameParams, sessions: SessionsTable, **options: Any) -> None:
        self.boundaries: Any = MISSING  # set when the first round starts, as the real server does
        self.compensation_offers: Any = []  # survives rounds: a silent developer leaves the last offer standing
        self.winning_condition: Any = None
        self.standings: list[dict[str, Any]] = []
        self.chat_logs: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self.offers_this_phase: Any = []
        self.message_counter = 0
        super().__init__(game_id, params, sessions, **options)  # players, first round

    # ----------------------------------------------------------------- set-up

    def _make_players(self, first_id: int) -> dict[int, Player]:
        names = self._seat_names(SEATS)
        tokens = self._payment_tokens(SEATS)
        players = {}
        for number in range(1, SEATS + 1):
            role = seat_role(number)
            who = "developer" if role == ROLE_DEVELOPER else "owner"
            players[number] = Player(
                number=number,
                role=role,
                tag=seat_tag(number),
                name=names[number - 1],
                db_id=first_id + number - 1,
                game_id=self.id,
                balance=self.params.get(f"{who}_balance"),
                shares=self.params.get(f"{who}_shares"),
                cash_for_sniping=self.params.get("cash_for_snipers"),
                payment_token=tokens[number - 1],
                property={
                    "id": number,
                    "owner": number,
                    "name": f"{self.rng.choice(ADJECTIVES)} {self.rng.choice(ANIMALS)} Lot",
                    "v": [self._draw(role, "no_project"), self._draw(role, "project_a"), self._draw(role, "project_b")],
                },
            )
        return players

    def _check_sessions(self) -> None:
        session = self.params.session_number or 1
        for number in self.params.rounds():
            if any(self.sessions.values(session, number, seat) is None for seat in self.players):
                raise ValueError(f"{self.sessions.source}: session {session} has no private values for round {number}"
                                 f" (the game plays rounds {self.params.rounds()[0]}..{self.params.round_count})")

    def _draw(self, role: int, condition: str) -> int:
        # The real server's first draw; the sessions table overwrites v[0] and v[1] every round.
        who = "developer" if role == ROLE_DEVELOPER else "owner"
        fixed = self.params.get(f"{who}_{condition}_fixed")
        if isinstance(fixed, int | float):
            return int(fixed)
        low = int(self.params.get(f"{who}_{condition}_low") or 0)
        high = int(self.params.get(f"{who}_{condition}_high") or 0)
        return low + round((high - low) / 5000 * self.rng.random()) * 5000

    # ----------------------------------------------------------------- client frames

    def _on_phase_message(self, conn: Conn, message: dict[str, Any]) -> None:
        player = self.players.get(conn.number) if conn.number is not None else None
        kind = js.get(message, "type")
        game_ref = js.to_string(js.get(message, "gameId"))
        self.log.append(js.to_json_value({
            "content": message,
            "number": player.number if player else MISSING,
            "tag": player.tag if player else MISSING,
            "phase": self.phase,
            "round": self.round,
            "type": "message",
        }))
        handlers: dict[str, Callable[[Conn, dict[str, Any], Any, str], bool | None]] = {"join": self._on_join}
        if self.phase in PHASE_HANDLERS:
            handlers[PHASE_HANDLERS[self.phase]] = getattr(self, "_on_" + PHASE_HANDLERS[self.phase].replace("-", "_"))
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._error(conn, f"Game {game_ref}: could not find an handler for {js.to_string(kind)}")
            return
        if player is None and kind != "join":
            self._error(conn, f"Handler {kind} requires authentication. Player unknown not found in game {game_ref}")
            return
        if handler(conn, message, player, game_ref) is False:
            return
        self._update_and_test()

    # ----------------------------------------------------------------- handlers
    # A handler returns False where the real server stops before its completion check (a rejection in --strict
    # mode, or a frame that makes the real server throw).

    def _on_chat_with_players(self, conn: Conn, message: dict[str, Any], player: Player, game_ref: str) -> bool | None:
        to, text = js.get(message, "to"), js.get(message, "text")
        if js.is_nullish(to) or js.has_length_zero(to):
            self._error(conn, f"Game {game_ref}: no recipient specified to this message: {js.to_string(text)} "
                              f"from {player.tag}")
            return None
        if not isinstance(to, list):
            if self.strict:
                self._error(conn, f"Game {game_ref}: 'to' must be a list of player numbers")
            return False  # the real server throws here: no reply, nothing delivered
        if self.strict and not isinstance(text, str):
            self._error(conn, f"Game {game_ref}: 'text' must be a string")
            return False
        sent_at = now_ms()
        for number in to:
            recipient = next((p for p in self.players.values() if js.strict_equal(p.number, number)), None)
            if recipient is None:
                self._error(conn, f"Game {game_ref}: Could not find player {js.to_string(number)}")
                continue
            self._send_event(recipient.number, "message-received", {
                "sender": player.number, "to": to, "number": self.message_counter, "text": text, "time": sent_at,
            })
            self.message_counter += 1
        if not isinstance(text, str):
            return False  # the real server throws while logging a non-string text: the chat log misses it
        self.chat_logs.setdefault((self.round, self.phase), []).append(
            {"time": sent_at, "sender": player.number, "to": to, "text": text.replace("'", "&lsquo;")})
        return None

    def _on_compensation_request(self, conn: Conn, message: dict[str, Any], player: Player, ref: str) -> bool | None:
        requests = js.get(message, "compensationRequests")
        if self.strict and not self._strict_ok(conn, ref, player, ROLE_OWNER, "compensationRequests", requests):
            return False
        player.extra["compensationRequests"] = requests
        self._send_event(player.number, "compensation-request-received", {"compensationRequests": requests})
        return None

    def _on_compensation_offer(self, conn: Conn, message: dict[str, Any], player: Player, ref: str) -> bool | None:
        offers = js.get(message, "compensationOffers")
        if self.strict and not self._strict_ok(conn, ref, player, ROLE_DEVELOPER, "compensationOffers", offers):
            return False
        # Any player's offer becomes the official one; only the developer's ends the phase.
        self.offers_this_phase = offers
        self.compensation_offers = offers
        player.extra["submittedCompensationOffers"] = True
        self._send_event(player.number, "compensation-offer-received", {"compensationOffers": offers})
        return None

    def _on_compensation_decision(self, conn: Conn, message: dict[str, Any], player: Player, ref: str) -> bool | None:
        decisions = js.get(message, "compensationDecisions")
        if self.strict and not self._strict_ok(conn, ref, player, ROLE_OWNER, "compensationDecisions", decisions):
            return False
        player.extra["compensationDecisions"] = decisions
        self._send_event(player.number, "compensation-decision-received", {})
        return None

    def _strict_ok(self, conn: Conn, ref: str, player: Player, role: int, name: str, value: Any) -> bool:
        """--strict: the checks the real server lacks. Errors name the field and the accepted form."""
        if player.role != role:
            self._error(conn, f"Game {ref}: only {role} can send this message in this phase. You are {player.role}.")
            return False
        if name == "compensationDecisions":
            ok = isinstance(value, list) and len(value) == 1 and _is_int(value[0]) and value[0] in (0, 1)
            form = "[0] or [1]"
        else:
            cap = self.params.amount_cap()
            ok = (isinstance(value, list) and len(value) == len(CONDITIONS)
                  and (value[0] is None or _is_int(value[0]) and 0 <= value[0] <= cap)
                  and _is_int(value[1]) and 0 <= value[1] <= cap)
            form = f"[null, X] with X a whole number from 0 to {cap}"
        if not ok:
            self._error(conn, f"Game {ref}: {name} must be {form}, got {js.stringify(value)[:200]}")
        return ok

    # ----------------------------------------------------------------- phases

    def _complete(self) -> bool:
        if self.phase == 0:
            return self.assigned == SEATS and all(p.ready for p in self.players.values())
        owners = [self.players[n] for n in OWNER_SEATS]
        if self.phase == 3:
            return all(not js.is_nullish(p.requests) for p in owners)
        if self.phase == 4:
            return self.players[DEVELOPER_SEAT].offered
        if self.phase == 6:
            return all(not js.is_nullish(p.decisions) for p in owners)
        return False

    def _reset_phase_state(self) -> None:
        self.message_counter = 0
        self.offers_this_phase = []

    def _exit_phase(self) -> None:
        if self.timer_end is not None:
            self._broadcast_event("reset-timer", {})
        owners = [self.players[n] for n in OWNER_SEATS]
        if self.phase == 0:
            for player in self.players.values():
                player.ready = False
        elif self.phase == 3:
            for player in owners:
                if js.is_nullish(player.requests):
                    player.extra["compensationRequests"] = [0, 0]
            self._broadcast_event("reset-timer", {})  # the real server resets the timer twice here
        elif self.phase == 4:
            made = self.offers_this_phase
            if js.is_nullish(made) or js.has_length_zero(made):
                made = [0, 0]
            for player in owners:
                self._send_event(player.number, "compensation-offer-made", {"compensationOffers": made})
            if js.is_nullish(self.offers_this_phase):
                self.compensation_offers = []
        elif self.phase == 6:
            for player in owners:
                if js.is_nullish(player.decisions):
                    player.extra["compensationDecisions"] = []
        elif self.phase == LAST_PHASE:
            for player in self.players.values():
                player.extra["compensationRequests"] = None
                player.extra["submittedCompensationOffers"] = False
                player.extra["compensationDecisions"] = None

    def _start_timer(self) -> None:
        seconds = self.params.timer(self.phase)
        if seconds is not None and seconds > 0:
            self._set_timer(seconds)

    def _enter_phase(self) -> None:
        self._start_timer()
        if self.phase == 1:
            self.boundaries = self.params.boundaries()
            for index, player in enumerate(self.players.values()):
                self._send_event(player.number, "assign-role", {
                    "role": player.role, "property": player.property, "boundaries": self.boundaries, "id": index,
                    "number": player.number, "tag": player.tag, "conditions": list(CONDITIONS),
                })
            self._broadcast_event("players-known", {"players": self._public_players()})
        elif self.phase == 4:
            self._broadcast_event("compensation-requests-received", {"compensationRequests": [
                {"number": p.number, "compensationRequests": p.requests} for p in self.players.values()
            ]}, role=ROLE_DEVELOPER)
        elif self.phase == LAST_PHASE:
            self._decide()
            for player in self.players.values():
                self._send_event(player.number, "final-profit", {
                    "condition": self.winning_condition,
                    "tally": self.standings[self.winning_condition]["counter"],
                    "value": player.property["v"][self.winning_condition],
                    "compensation": self._compensation(player, self.winning_condition),
                })

    def _offer(self, condition: int) -> Any:
        """`compensationOffers[condition]` with JS indexing, whatever the developer sent."""
        offers = self.compensation_offers
        if isinstance(offers, list | str):
            return offers[condition] if condition < len(offers) else MISSING
        if isinstance(offers, dict):
            return offers.get(str(condition), MISSING)
        if js.is_nullish(offers):
            raise GameFrozen("the compensation offers are null when the results are computed")
        return MISSING

    def _compensation(self, player: Player, condition: int) -> Any:
        offer = self._offer(condition)
        return js.neg_times(offer, SEATS - 1) if player.role == ROLE_DEVELOPER else offer

    def _decide(self) -> None:
        """Count the owners' votes (JS `includes`) and apply the winner rule of lib.games.voting.rules."""
        votes = []
        for number in OWNER_SEATS:
            decision = self.players[number].decisions
            try:
                chosen = [c["id"] for c in CONDITIONS if js.includes(decision, c["id"])]
            except TypeError as exc:
                raise GameFrozen(f"a vote is not an array: {exc}") from None
            # A non-empty vote that names no condition still counts towards the quorum.
            votes.append(chosen or ([None] if len(decision) > 0 else []))
        condition, _ = winner(votes)
        developer = self.players[DEVELOPER_SEAT]
        self.standings = [{
            "counter": sum(1 for vote in votes if c["id"] in vote),
            "id": c["id"],
            "winner": c["id"] == condition,
            "value": developer.property["v"][c["id"]],
            "compensation": self._offer(c["id"]),
        } for c in CONDITIONS]
        self.winning_condition = condition

    # ----------------------------------------------------------------- rounds

    def _load_round(self, number: int) -> None:
        session = self.params.session_number or 1
        for player in self.players.values():
            player.property["v"][0], player.property["v"][1] = self.sessions.values(session, number, player.number)

    def _add_summaries(self) -> None:
        condition = self.winning_condition
        for player in self.players.values():
            compensation = self._compensation(player, condition)
            summary = {
                "round": self.round,
                "condition": condition,
                "value": player.property["v"][condition],
                "tally": self.standings[condition]["counter"],
                "compensation": compensation,
                "profit": js.add(player.property["v"][condition], compensation),
            }
            player.summaries.append(js.to_json_value(summary))
            self._send_event(player.number, "round-summary", summary)

    def _reward(self, player: Player, chosen: int, fee: float) -> dict[str, Any]:
        who = "developers" if player.role == ROLE_DEVELOPER else "owners"
        factor = self.params.get(f"{who}_reward_scale_factor")
        base = self.params.get(f"{who}_base_points")
        summary = next((s for s in player.summaries if s.get("round") == chosen), {})
        profit = summary.get("profit", MISSING)
        points = js.add(base, profit)
        scaled = js.math_round(js.to_number(points) * 100 / js.to_number(factor)) / 100
        return {
            "number": player.number,
            "round": chosen,
            "reward": js.number_value(scaled + js.to_number(fee)),
            "basePoints": base,
            "showupFee": fee,
            "gameFee": js.number_value(scaled),
            "profit": profit,
            "points": points,
            "factor": factor,
            "exchange": js.number_value(js.math_round(1000000 / js.to_number(factor)) / 1000000),
            "paymentToken": player.payment_token,
        }

    def _save(self) -> None:
        """Where the real server writes the game to SQL: an apostrophe in a stored string breaks that for good."""
        stored = [self.compensation_offers]
        for player in self.players.values():
            stored += [player.recovery, player.requests, player.decisions]
        if any(_has_apostrophe(value) for value in stored):
            raise GameFrozen("a stored field holds a string with an apostrophe (the real server's SQL write fails)")

    # ----------------------------------------------------------------- views for REST and tests

    def recovery_data(self, number: int) -> dict[str, Any]:
        """`gameData` of GET /games/status for a known player (the real server's rejoin snapshot)."""
        me = self.players[number]
        game: dict[str, Any] = {
            "id": self.id, "round": self.round, "phase": self.phase, "boundaries": self.boundaries,
            "conditions": list(CONDITIONS), "players": self._public_players(), "compensationOffers": [],
            "over": self.over,
        }
        messages = None
        if self.phase in (2, 5):
            messages = self.chat_logs.get((self.round, self.phase), [])
        elif self.phase is not None and self.phase > 2:
            messages = self.chat_logs.get((self.round, 2), [])  # the real server shows phase 2's chat even later
        if messages is not None:
            game["messages"] = [
                {"time": m["time"], "sender": m["sender"], "to": m["to"], "text": m["text"].replace("&lsquo;", "'")}
                for m in messages if m["sender"] == number or _has(m["to"], number)
            ]
        requests = None
        if self.phase is not None and self.phase >= 3 and me.role == ROLE_DEVELOPER:
            requests = [{"number": p.number, "compensationRequests": p.requests} for p in self.players.values()]
        game["compensationRequests"] = requests
        player: dict[str, Any] = {}
        texts = INSTRUCTIONS.get(self.phase)
        player["instructions"] = texts[me.role - 1] if texts else MISSING
        if self.phase == LAST_PHASE and self.standings:
            game["winningCondition"] = self.winning_condition
            game["standings"] = self.standings
        player.update({"name": me.name, "tag": me.tag, "number": me.number, "role": me.role,
                       "property": me.property, "recovery": me.recovery, "ready": me.ready})
        if self.players[DEVELOPER_SEAT].offered:
            game["compensationOffers"] = self.compensation_offers
            player["compensationOfferReceived"] = True
        if not js.is_nullish(me.requests):
            player["compensationRequestReceived"] = True
            player["compensationRequests"] = me.requests
        if not js.is_nullish(me.decisions):
            player["compensationDecisionReceived"] = True
            player["compensationDecisions"] = me.decisions
        if self.winning_condition is not None:
            player["result"] = {
                "condition": self.winning_condition,
                "value": me.property["v"][self.winning_condition],
                "compensation": self._compensation(me, self.winning_condition),
            }
            if self.phase == LAST_PHASE and self.standings:
                player["result"]["tally"] = self.standings[self.winning_condition]["counter"]
        player["summaries"] = [s for s in reversed(me.summaries) if s.get("round") != 0]
        if self.over:
            game["reward"] = next((r for r in self.rewards if r["number"] == number), MISSING)
        return js.to_json_value({"game": game, "player": player, "timer": self.timer_end})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has(recipients: Any, number: int) -> bool:
    return isinstance(recipients, list) and any(js.strict_equal(r, number) for r in recipients)


