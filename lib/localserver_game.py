"""One voting game as the real IBEX server plays it: phases, timers, events, results and the recorded log.

Behaviour follows the frames recorded from the real server (PROTOCOL.md, transcripts of game 5) and its source
where the recordings are silent. The real server's quirks are kept on purpose, because agents are tested here
before they meet it: wrong-role and out-of-range submissions are accepted (unless `strict`), a missing field
vanishes from the acknowledgement, a string offer concatenates into a profit, the last offer persists into a
round where the developer stays silent, and a stored string with an apostrophe freezes the game. The one bug not
kept is the by-reference server log: event data is recorded as it was when sent.

Transport is the caller's: a game talks to `Conn` objects (one per WebSocket) through `Conn.send`, and the
server routes each client frame to `Game.on_frame`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lib import localserver_js as js
from lib.game import (
    CONDITIONS,
    DEVELOPER_SEAT,
    LAST_PHASE,
    OWNER_SEATS,
    ROLE_DEVELOPER,
    ROLE_OWNER,
    SEATS,
    GameParams,
    seat_role,
    seat_tag,
    winner,
)
from lib.ibexlog import LOCAL_SERVER_MARK, RECORDED_BY
from lib.sessions import SessionsTable

log = logging.getLogger("lib.localserver")

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

COLOURS = (
    "Fuchsia", "Rose", "Jade", "Maroon", "Chocolate", "Red", "Amber", "Azure", "Coral", "Crimson", "Cyan", "Gold",
    "Indigo", "Ivory", "Lavender", "Lime", "Magenta", "Navy", "Olive", "Orchid", "Peach", "Plum", "Ruby", "Salmon",
    "Sapphire", "Scarlet", "Sienna", "Teal", "Turquoise", "Violet",
)
ADJECTIVES = (
    "Active", "Ancient", "Alive", "Brave", "Calm", "Clever", "Curious", "Eager", "Gentle", "Happy", "Honest",
    "Incredible", "Jolly", "Lucky", "Mighty", "Patient", "Professional", "Quiet", "Resident", "Swift",
)
ANIMALS = (
    "Badger", "Chameleon", "Coyote", "Dolphin", "Falcon", "Gecko", "Halibut", "Heron", "Hornet", "Ibis", "Koala",
    "Lynx", "Marmot", "Otter", "Pelican", "Roadrunner", "Seahorse", "Stork", "Walrus", "Wombat",
)

RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# The real server's clients send 64 characters (get-recovery, the web UI's lobby); it takes any JSON value.
MAX_RECOVERY_CHARS = 256


def new_recovery_code() -> str:
    """A 64-character code in the real server's alphabet (a-z0-9)."""
    return "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(64))


def now_ms() -> int:
    return int(time.time() * 1000)


class Conn(Protocol):
    """One client connection as a game sees it."""

    number: int | None  # the seat this socket joined as (set by join or rejoin), whatever the game
    game_id: int | None  # the game of that join (the real server ignores it when it looks the player up)

    def send(self, frame: dict[str, Any]) -> None: ...


class GameFrozen(Exception):
    """The real server would have thrown here and the game would stall for good."""


@dataclass
class Player:
    """A seat and the record the real server keeps for it (sent as `status.joined`)."""

    number: int
    role: int
    tag: str
    name: str
    db_id: int
    game_id: int
    balance: Any
    shares: Any
    cash_for_sniping: Any
    payment_token: str
    property: dict[str, Any]
    recovery: Any = None
    ready: bool = False
    summaries: list[dict[str, Any]] = field(default_factory=list)
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
        return {
            "id": self.db_id, "name": self.name, "recovery": self.recovery, "game_id": self.game_id,
            "number": self.number, "balance": self.balance, "shares": self.shares, "role": self.role,
            "cashForSniping": self.cash_for_sniping, "paymentToken": self.payment_token,
            "summaries": self.summaries, "tag": self.tag, "property": self.property, "ready": self.ready,
            **self.extra,
        }


class Game:
    """A voting game from creation to game-over; every method runs on the event loop's thread."""

    def __init__(
        self,
        game_id: int,
        params: GameParams,
        sessions: SessionsTable,
        *,
        strict: bool = False,
        ready_race_window: float = 0.0,
        first_player_id: int = 1,
        title: str | None = None,
        on_over: Callable[[Game], None] | None = None,
        rng: random.Random | None = None,
        parameter_rows: list[dict[str, str]] | None = None,
    ) -> None:
        self.id = game_id
        self.params = params
        self.sessions = sessions
        self.strict = strict
        self.ready_race_window = ready_race_window
        self.title = title
        self.on_over = on_over
        # The rows a create-for-llm stored (insertion order); the log lists them newest first, as the real one does.
        self.parameter_rows = parameter_rows
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()

        self.log: list[dict[str, Any]] = []
        self.server_log: list[dict[str, Any]] = []
        self.sockets: dict[int, Conn] = {}  # seat -> the socket that gets its events (the latest to join)
        self.assigned = 0
        self.round: int | None = None
        self.phase: int | None = None
        self.round_id = 0
        self.over = False
        self.frozen: str | None = None  # why the game stalled, as the real server would have
        self.finished = False
        self.recorded: dict[str, Any] | None = None
        self.reward_round: int | None = None
        self.rewards: list[dict[str, Any]] = []
        self.spawn_error: str | None = None

        self.boundaries: Any = MISSING  # set when the first round starts, as the real server does
        self.compensation_offers: Any = []  # survives rounds: a silent developer leaves the last offer standing
        self.winning_condition: Any = None
        self.standings: list[dict[str, Any]] = []
        self.chat_logs: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self.offers_this_phase: Any = []
        self.message_counter = 0
        self.accepting = True  # False during the round-start race window
        self.timer_end: int | None = None  # the visible deadline of the current phase (ms), None without timer
        self._timer: asyncio.TimerHandle | None = None
        self._race_timer: asyncio.TimerHandle | None = None
        self._meta_round = 0  # what the server log's meta shows: the last broadcast phase-transition
        self._meta_phase = 0

        self.players = self._make_players(first_player_id)
        self._check_sessions()
        self._begin_round()

    # ----------------------------------------------------------------- set-up

    def _make_players(self, first_id: int) -> dict[int, Player]:
        names = self.rng.sample(COLOURS, SEATS)
        tokens: list[str] = []
        while len(tokens) < SEATS:
            token = "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(2))
            if token not in tokens:
                tokens.append(token)
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

    # ----------------------------------------------------------------- sending

    def _meta(self, recipient: Any) -> dict[str, Any]:
        return {"recipient": recipient, "round": self._meta_round, "phase": self._meta_phase}

    def _record(self, kind: str, data: Any, recipient: Any) -> dict[str, Any]:
        sent = js.to_json_value(data)  # by value: later changes to the game state do not rewrite the log
        self.server_log.append({"sent": {"type": kind, "data": sent}, "meta": self._meta(recipient)})
        return {"type": "event", "eventType": kind, "data": sent}

    def _send_event(self, number: int, kind: str, data: Any) -> None:
        conn = self.sockets.get(number)
        if conn is None:
            return  # the real server neither sends nor records an event for a seat that never joined
        conn.send(self._record(kind, data, number))

    def _broadcast_event(self, kind: str, data: Any, role: int | None = None) -> None:
        if kind == "phase-transition":
            self._meta_round, self._meta_phase = data["round"], data["phase"]
        frame = self._record(kind, data, "all" if role is None else role)
        for number, conn in list(self.sockets.items()):
            if role is None or self.players[number].role == role:
                conn.send(frame)

    def _broadcast_message(self, kind: str, text: str) -> None:
        for conn in list(self.sockets.values()):
            conn.send({"type": kind, "message": text})

    @staticmethod
    def _error(conn: Conn, text: str) -> None:
        conn.send({"type": "error", "message": text})

    # ----------------------------------------------------------------- client frames

    def on_frame(self, conn: Conn, message: dict[str, Any]) -> None:
        """A parsed client frame whose gameId is this game's."""
        kind = js.get(message, "type")
        if kind == "status":
            player = self.find_by_recovery(js.get(message, "recovery"))
            conn.send({"type": "event", "eventType": "status",
                       "data": js.to_json_value({"joined": player.record() if player else MISSING})})
            return
        if kind == "rejoin":
            player = self.find_by_recovery(js.get(message, "recovery"))
            if player is None:
                conn.send({"error": f"Cannot rejoin game {js.to_string(js.get(message, 'gameId'))}: "
                                    "invalid recovery string"})
                return
            self._bind(conn, player)
            return
        if kind == "watch":
            self._error(conn, "Could not verify your token")
            return
        if self.over or not self.accepting:
            return  # after game-over, and during the round-start race, the real server drops frames silently
        self._on_phase_message(conn, message)

    def find_by_recovery(self, recovery: Any) -> Player | None:
        if not valid_recovery(recovery):
            return None  # no seat holds one: joins with such codes are refused
        return next((p for p in self.players.values() if p.recovery == recovery), None)

    def _bind(self, conn: Conn, player: Player) -> None:
        conn.number, conn.game_id = player.number, self.id
        self.sockets.pop(player.number, None)
        self.sockets[player.number] = conn  # a second socket takes over delivery; the old one can still send

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

    def _on_join(self, conn: Conn, message: dict[str, Any], _player: Any, game_ref: str) -> bool | None:
        recovery = js.get(message, "recovery")
        if not valid_recovery(recovery):
            # The real server seats any JSON value: null or a missing code takes a seat that the next such join
            # takes over, a list or object one nobody can rejoin, a 1 MB code one /games/status cannot look up.
            self._error(conn, f"Game {game_ref}: recovery must be a string of 1 to {MAX_RECOVERY_CHARS} characters "
                              "(the local server refuses what the real server would seat)")
            return False
        player = self.find_by_recovery(recovery)
        if player is None:
            if self.assigned == SEATS:
                self._error(conn, f"Game {game_ref} is full (and no current player matching your recovery string). "
                                  "You cannot join")
                return False
            self.assigned += 1
            player = self.players[self.assigned]
            player.recovery = recovery
            text = f"Player {player.name} joined. We have now {self.assigned} players in the game."
        else:
            text = f"Player {player.number} rejoined the game"
        self._bind(conn, player)
        self._broadcast_message("info", text)
        return None

    def _on_player_is_ready(self, _conn: Conn, _message: dict[str, Any], player: Player, _ref: str) -> None:
        player.ready = True
        self._send_event(player.number, "ready-received", {})

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

    def _update_and_test(self) -> None:
        if not self.over and not self.frozen and self._complete():
            self._next_phase()

    def _on_timeout(self, phase: int, round_number: int) -> None:
        self._timer = None
        self.log.append({"content": {"phase": phase, "round": round_number}, "type": "phase-timeout",
                         "phase": phase, "round": round_number})
        if not self.over and not self.frozen and phase == self.phase:
            self._next_phase()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set_timer(self, seconds: float) -> None:
        self.timer_end = now_ms() + int(seconds * 1000)
        self._broadcast_event("set-timer", {"end": self.timer_end})
        self._timer = self.loop.call_later(seconds, self._on_timeout, self.phase, self.round)

    def _next_phase(self) -> None:
        self._cancel_timer()
        try:
            self._exit_phase()
            if self.phase == LAST_PHASE:
                self._broadcast_event("round-end", {"round": self.round})
                self._begin_round()
                return
            self.phase = (self.phase or 0) + 1
            self.timer_end = None
            self.message_counter = 0
            self.offers_this_phase = []
            self._enter_phase()
            self._save()
        except GameFrozen as exc:
            self._freeze(str(exc))
            return
        self._broadcast_event("phase-transition", {"round": self.round, "phase": self.phase})
        self._broadcast_message("notice", f"Phase {self.phase} has begun.")
        self._update_and_test()

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

    def _enter_phase(self) -> None:
        seconds = self.params.timer(self.phase)
        if seconds is not None and seconds > 0:
            self._set_timer(seconds)
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

    def _public_players(self) -> list[dict[str, Any]]:
        return [{"number": p.number, "role": p.role, "tag": p.tag} for p in self.players.values()]

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
        """Count the owners' votes (JS `includes`) and apply the winner rule of lib.game."""
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

    def _begin_round(self) -> None:
        if self.round is not None:
            self._add_summaries()
            number = self.round + 1
        else:
            number = 0 if self.params.practice_round else 1
        if number > self.params.round_count:
            self._game_over()
            return
        session = self.params.session_number or 1
        for player in self.players.values():
            player.property["v"][0], player.property["v"][1] = self.sessions.values(session, number, player.number)
        first = self.round is None
        self.round, self.phase, self.timer_end = number, 0, None
        self.round_id += 1
        self._broadcast_event("phase-transition", {"round": number, "phase": 0})
        try:
            self._save()
        except GameFrozen as exc:
            self._freeze(str(exc))
            return
        if self.ready_race_window > 0 and not first:
            # The real server saves the game after this broadcast; a frame arriving meanwhile is lost.
            self.accepting = False
            self._race_timer = self.loop.call_later(self.ready_race_window, self._end_race)

    def _end_race(self) -> None:
        self.accepting = True
        self._race_timer = None

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

    def _game_over(self) -> None:
        self.over = True
        self._cancel_timer()
        chosen = self.params.get("simulation_reward_round")
        if not isinstance(chosen, int) or isinstance(chosen, bool):
            chosen = self.rng.randint(1, self.params.round_count)
        self.reward_round = chosen
        fee = self.params.get("show_up_fee")
        if isinstance(fee, int | float) and not isinstance(fee, bool):
            for player in self.players.values():
                reward = self._reward(player, chosen, fee)
                self.rewards.append(reward)
                self._send_event(player.number, "reward", reward)
        self._broadcast_event("game-over", {})
        extra = [
            {"key": "simulation_parent_id", "type": "number", "value": str(self.id)},
            {"key": "simulation_reward_round", "type": "number", "value": str(chosen)},
        ]
        rows = self.params.to_list() if self.parameter_rows is None else list(reversed(self.parameter_rows))
        # RECORDED_BY is the one key the real server does not write: constructDataset.py warns about these games.
        self.recorded = {"parameters": rows + extra, "log": self.log, "server-log": self.server_log,
                         RECORDED_BY: LOCAL_SERVER_MARK}
        self.finished = True
        if self.on_over is not None:
            self.on_over(self)

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

    def _freeze(self, why: str) -> None:
        self.frozen = why
        self._cancel_timer()
        log.warning("game %s is stuck for good, as on the real server: %s", self.id, why)

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

    def lobby_entry(self) -> dict[str, Any]:
        """An entry of GET /games/started."""
        return {
            "id": self.id, "title": self.title, "type": self.params.game_type, "assignedPlayers": self.assigned,
            "currentRound": {"id": self.round_id, "number": self.round, "phase": self.phase, "gameId": self.id},
        }

    def close(self) -> None:
        """Stop every timer (server shutdown)."""
        self._cancel_timer()
        if self._race_timer is not None:
            self._race_timer.cancel()
            self._race_timer = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def valid_recovery(value: Any) -> bool:
    """A recovery code the local server seats: a non-empty string of at most MAX_RECOVERY_CHARS characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_RECOVERY_CHARS


def _has(recipients: Any, number: int) -> bool:
    return isinstance(recipients, list) and any(js.strict_equal(r, number) for r in recipients)


def _has_apostrophe(value: Any) -> bool:
    if isinstance(value, str):
        return "'" in value
    if isinstance(value, list):
        return any(_has_apostrophe(item) for item in value)
    if isinstance(value, dict):
        return any(_has_apostrophe(item) for item in value.values())
    return False
