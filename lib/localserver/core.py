"""What every game of the local IBEX server shares, whatever its rules: the core each game's server rules build their
game on (lib.games.protocols.ServerRules.new_game; lib/games/<game>/server.py).

The real server runs every game type on one engine (`logics/Logic.js`, `Phase.js`, `JoinablePhase.js`,
`JoinHandler.js`); so does this core: players and their sockets, join and rejoin (also when the socket changes),
the `status`/`rejoin`/`watch` frames, sending and recording events (the server log by value: later changes to the
game do not rewrite it), timers with their `phase-timeout` log entries, the round-start race, the completion test,
game over (the paid round, `reward` per seat, `game-over`, the recorded log with `simulation_*` rows), freezing
where the real server's SQL write would fail, and the lobby entry.

A game type subclasses `CoreGame` and supplies its rules: `_make_players` (seat layout), `_check_sessions`,
`_load_round` (the round's private values), `_on_phase_message` (its phase table of handlers), `_complete`,
`_exit_phase`/`_enter_phase` (what a phase change does), `_start_timer`, `_reward`, `_save` (which stored fields
freeze the game) and `recovery_data` (GET /games/status), and `RULESET` and `LAST_PHASE`. The phase and round
sequence itself (`_next_phase`, `_begin_round`) is the core's, as `Logic.js` is the real server's.

Transport is the caller's: a game talks to `Conn` objects (one per WebSocket) through `Conn.send`, and the
server routes each client frame to `CoreGame.on_frame`.
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

from lib.ibex import js
from lib.ibex.log import LOCAL_SERVER_MARK, RECORDED_BY
from lib.ibex.params import GameParams
from lib.ibex.sessions import SessionsTable

log = logging.getLogger("lib.localserver.server")

MISSING = js.MISSING

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

    def send_text(self, text: str) -> None:
        """Send a frame already encoded as JSON text (a broadcast encodes its frame once for every socket)."""



@dataclass
class Seat:
    """A seat and the part of the record the real server keeps for it (`status.joined`) that every game type has;
    a game type's seat adds its own fields and extends `record`."""

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
    property: Any  # the lot this seat owns, as sent in assign-role (None for a seat without one)
    recovery: Any = None
    ready: bool = False
    summaries: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "id": self.db_id, "name": self.name, "recovery": self.recovery, "game_id": self.game_id,
            "number": self.number, "balance": self.balance, "shares": self.shares, "role": self.role,
            "cashForSniping": self.cash_for_sniping, "paymentToken": self.payment_token,
            "summaries": self.summaries, "tag": self.tag,
        }



class GameFrozen(Exception):
    """The real server would have thrown here and the game would stall for good."""



class CoreGame:
    """One game from creation to game-over, rules left to the subclass; every method runs on the event loop's thread.
    The subclass sets its own state before calling `__init__`, which makes the players and starts the first round."""

    RULESET = "?"  # what GET /games/status says (the real server: the logic's type)
    LAST_PHASE = 0  # the round's last phase: ending it ends the round

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
        on_over: Callable[[Any], None] | None = None,
        rng: random.Random | None = None,
        parameter_rows: list[dict[str, str]] | None = None,
        instant_phases: frozenset[int] = frozenset(),
    ) -> None:
        self.id = game_id
        # Fast mode (LocalServer.create_game(fast=True)): these phases, which only their timer ends and in which
        # nobody can act (ServerRules.idle_phases), get a timer of 0 s. Everything else happens as with the
        # configured timer (set-timer, phase-timeout, reset-timer, in the same order), only without the wait.
        self.instant_phases = instant_phases
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

        self.accepting = True  # False during the round-start race window
        self.timer_end: int | None = None  # the visible deadline of the current phase (ms), None without timer
        self._timer: asyncio.TimerHandle | None = None
        self._race_timer: asyncio.TimerHandle | None = None
        self._meta_round = 0  # what the server log's meta shows: the last broadcast phase-transition
        self._meta_phase = 0

        self.players: dict[int, Any] = self._make_players(first_player_id)
        self._check_sessions()
        self._begin_round()

    # ----------------------------------------------------------------- the rules (each game type's)

    def _make_players(self, first_id: int) -> dict[int, Any]:
        raise NotImplementedError

    def _check_sessions(self) -> None:
        raise NotImplementedError

    def _load_round(self, number: int) -> None:
        """Set up round `number`'s state (private values, signals, wallets) before its phase 0 is announced."""
        raise NotImplementedError

    def _on_phase_message(self, conn: Conn, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def _complete(self) -> bool:
        raise NotImplementedError

    def _exit_phase(self) -> None:
        raise NotImplementedError

    def _enter_phase(self) -> None:
        raise NotImplementedError

    def _start_timer(self) -> None:
        """Start the current phase's timer where it has one."""
        raise NotImplementedError

    def _add_summaries(self) -> None:
        """The round's `round-summary` per seat, when the next round begins."""
        raise NotImplementedError

    def _reward(self, player: Any, chosen: int, fee: float) -> dict[str, Any]:
        raise NotImplementedError

    def _save(self) -> None:
        raise NotImplementedError

    def recovery_data(self, number: int) -> dict[str, Any]:
        raise NotImplementedError

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
        conn.send_text(js.stringify_value(self._record(kind, data, number)))  # _record made it JSON values

    def _broadcast_event(self, kind: str, data: Any, role: int | None = None) -> None:
        if kind == "phase-transition":
            self._meta_round, self._meta_phase = data["round"], data["phase"]
        text = js.stringify_value(self._record(kind, data, "all" if role is None else role))
        for number, conn in list(self.sockets.items()):
            if role is None or self.players[number].role == role:
                conn.send_text(text)  # encoded once, not once per seat: a busy market broadcasts every order

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

    def find_by_recovery(self, recovery: Any) -> Any:
        if not valid_recovery(recovery):
            return None  # no seat holds one: joins with such codes are refused
        return next((p for p in self.players.values() if p.recovery == recovery), None)

    def _bind(self, conn: Conn, player: Any) -> None:
        conn.number, conn.game_id = player.number, self.id
        self.sockets.pop(player.number, None)
        self.sockets[player.number] = conn  # a second socket takes over delivery; the old one can still send

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
            if self.assigned == len(self.players):
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

    def _on_player_is_ready(self, _conn: Conn, _message: dict[str, Any], player: Any, _ref: str) -> None:
        player.ready = True
        self._send_event(player.number, "ready-received", {})

    def _public_players(self) -> list[dict[str, Any]]:
        return [{"number": p.number, "role": p.role, "tag": p.tag} for p in self.players.values()]

    def _seat_names(self, count: int) -> list[str]:
        """A colour per seat, all different while there are colours enough."""
        if count <= len(COLOURS):
            return self.rng.sample(COLOURS, count)
        return [f"{self.rng.choice(COLOURS)} {n}" for n in range(1, count + 1)]

    def _payment_tokens(self, count: int) -> list[str]:
        """Two distinct capital letters per seat."""
        tokens: list[str] = []
        while len(tokens) < count:
            token = "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(2))
            if token not in tokens:
                tokens.append(token)
        return tokens

    # ----------------------------------------------------------------- phases, rounds, timers, game over

    def _begin_round(self) -> None:
        if self.round is not None:
            self._add_summaries()
            number = self.round + 1
        else:
            number = 0 if self.params.practice_round else 1
        if number > self.params.round_count:
            self._game_over()
            return
        self._load_round(number)
        first = self.round is None
        self.round, self.phase, self.timer_end = number, 0, None
        self.round_id += 1
        self._broadcast_event("phase-transition", {"round": number, "phase": 0})
        self._start_timer()
        try:
            self._save()
        except GameFrozen as exc:
            self._freeze(str(exc))
            return
        if self.ready_race_window > 0 and not first:
            # The real server saves the game after this broadcast; a frame arriving meanwhile is lost.
            self.accepting = False
            self._race_timer = self.loop.call_later(self.ready_race_window, self._end_race)

    def _reset_phase_state(self) -> None:
        """What a game forgets when a phase begins (before `_enter_phase`)."""

    def _next_phase(self) -> None:
        self._cancel_timer()
        try:
            self._exit_phase()
            if self.phase == self.LAST_PHASE:
                self._broadcast_event("round-end", {"round": self.round})
                self._begin_round()
                return
            self.phase = (self.phase or 0) + 1
            self.timer_end = None
            self._reset_phase_state()
            self._enter_phase()
            self._save()
        except GameFrozen as exc:
            self._freeze(str(exc))
            return
        self._broadcast_event("phase-transition", {"round": self.round, "phase": self.phase})
        self._broadcast_message("notice", f"Phase {self.phase} has begun.")
        self._update_and_test()

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
        if self.phase in self.instant_phases:
            seconds = 0.0
        self.timer_end = now_ms() + int(seconds * 1000)
        self._broadcast_event("set-timer", {"end": self.timer_end})
        self._timer = self.loop.call_later(seconds, self._on_timeout, self.phase, self.round)

    def _end_race(self) -> None:
        self.accepting = True
        self._race_timer = None

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

    def _freeze(self, why: str) -> None:
        self.frozen = why
        self._cancel_timer()
        log.warning("game %s is stuck for good, as on the real server: %s", self.id, why)

    # ----------------------------------------------------------------- views for REST and tests

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


def valid_recovery(value: Any) -> bool:
    """A recovery code the local server seats: a non-empty string of at most MAX_RECOVERY_CHARS characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_RECOVERY_CHARS



def _has_apostrophe(value: Any) -> bool:
    if isinstance(value, str):
        return "'" in value
    if isinstance(value, list):
        return any(_has_apostrophe(item) for item in value)
    if isinstance(value, dict):
        return any(_has_apostrophe(item) for item in value.values())
    return False

