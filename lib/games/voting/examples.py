"""Training examples from a voting game's log: one per decision a human actually made.

For every seat, the frames the player received are fed into a PlayerView, one by one, and at each decision the
prompt is built with the same functions the agents call at play time (lib.games.voting.actions,
lib.games.voting.prompts):

- logs with `server-log` are replayed: each event goes to its recipient, and each client message is placed right
  before the server's reply to it (its ack, or the first delivery of a chat message), so a chat example holds
  exactly the messages received before it;
- 2023 logs without `server-log` are reconstructed: the frames are rebuilt from the client messages, the phase
  sequence and the game's rules (lib.games.voting.rules), as the real server would have sent them, without timestamps.

Private values come from the sessions table when given, else from `server-log` for rounds where it can be
trusted, else they are unknown (see `values_plan`). A decision's prompt is what the player knew when the action
became due (the phase start); its answer is the player's last submission in that phase, the one the server
counted. Submissions the server would not count for that player (wrong role, wrong phase, malformed) are skipped
and counted with their reason.

The examples go to a lib.dataset.examples.GameResult as they are made (the dataset builder, lib.dataset.build,
spools them); each one's sidecar state line is lib.games.voting.sidecar's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lib.dataset.examples import UNKNOWN, GameResult, Sink
from lib.dataset.sidecar import state_line
from lib.games.contract import wire_json
from lib.games.voting.actions import (
    CHAT,
    DECISION,
    OFFER,
    REQUEST,
    SPECS,
    ActionError,
    build_action_required,
    validate_action,
)
from lib.games.voting.prompts import system_prompt, user_prompt_lines
from lib.games.voting.rules import (
    CHAT_PHASES,
    DEVELOPER_SEAT,
    LAST_PHASE,
    SEATS,
    compensation,
    offer_for,
    seat_role,
    seat_tag,
    winner,
)
from lib.games.voting.sidecar import example_state
from lib.games.voting.view import EVENT_HANDLERS, PlayerView, apply_to_all
from lib.ibex.log import MESSAGE, IbexLog, LogError
from lib.ibex.params import CONDITIONS, ROLE_NAMES, ROLE_OWNER, GameParams, ParamError, parameters_from_dict
from lib.ibex.sessions import SessionsTable
from lib.util.text import printable

SEAT_NUMBERS = tuple(range(1, SEATS + 1))

# Where a round's private values came from (also the report's keys).
FROM_SESSIONS, FROM_SERVER_LOG = "sessions", "server-log"
# Reasons a human submission gives no example (the report's keys).
SUPERSEDED = "superseded by a later submission in the same phase"
WRONG_ROLE = "wrong role"
WRONG_PHASE = "wrong phase"
MALFORMED = "malformed"
NOT_AN_ACTION = "not a game action"
NO_SEAT = "no seat number"
OUT_OF_ORDER = "logged in another phase than the replay reached"

# The server's reply to each client message, used to place the message inside server-log.
ACKS = {
    REQUEST: "compensation-request-received",
    OFFER: "compensation-offer-received",
    DECISION: "compensation-decision-received",
    CHAT: "message-received",
    "player-is-ready": "ready-received",
}
# Which message type each phase's handler accepts, from any role: the real server checks no roles
# (docs/protocol.md section 4).
ACCEPTED_IN_PHASE = {3: REQUEST, 4: OFFER, 6: DECISION}
# Events the server broadcasts to a role: their meta.recipient is a role id, not a seat.
ROLE_BROADCASTS = frozenset({"compensation-requests-received", "phase-instructions"})
# Client frames that are not decisions and never give an example.
NOT_DECISIONS = frozenset({"join", "player-is-ready", "status"})


@dataclass
class _Pending:
    """A decision due in the current phase: the prompt at its first submission, the last submission so far."""

    seat: int
    action: str
    prompt: tuple[str, list[str]]  # system prompt, user prompt's lines
    state: str  # the sidecar line, taken with the prompt
    values_source: str
    message: dict[str, Any]
    at: tuple[int, dict[str, Any]]  # the last submission's place in `log`


def values_plan(log: IbexLog, sessions: SessionsTable | None) -> tuple[dict[int, tuple[str, dict[int, list[int]]]],
                                                                      list[str]]:
    """Per round: where the private values come from and the values per seat, plus notes for the report.

    The real server wrote `server-log` event data by reference, so every round's assign-role can show the last
    round's values (docs/protocol.md section 5). final-profit objects are fresh per round and carry each seat's
    value under the winning condition; a round's server-log values are trusted only when all six seats'
    final-profit values agree with them. Values wrongly copied from another round would have to match six
    independent draws at once.
    Sessions-table values are preferred when given, and are checked against final-profit the same way.
    """
    params = log.params
    server_values: dict[tuple[int, int], list[int]] = {}
    results: dict[tuple[int, int], tuple[Any, Any]] = {}
    for event in log.server_log or ():
        kind, meta = event["sent"]["type"], event["meta"]
        if kind == "assign-role":
            v = event["sent"].get("data", {}).get("property", {})
            v = v.get("v") if isinstance(v, dict) else None
            if isinstance(v, list) and len(v) >= 2 and all(_is_number(x) for x in v[:2]):
                server_values[(meta["round"], meta["recipient"])] = [int(v[0]), int(v[1])]
        elif kind == "final-profit":
            data = event["sent"].get("data", {})
            results[(meta["round"], meta["recipient"])] = (data.get("condition"), data.get("value"))

    def agrees(r: int, values: dict[int, list[int]]) -> bool | None:
        """True/False when the round's results can check the values, None when there are no results."""
        if not any((r, seat) in results for seat in SEAT_NUMBERS):
            return None
        for seat in SEAT_NUMBERS:
            condition, value = results.get((r, seat), (None, None))
            if seat not in values or condition not in (0, 1) or values[seat][condition] != value:
                return False
        return True

    # The rounds something happened in (never range(round_count): a log's parameters are not to be trusted blindly).
    played = {entry["round"] for entry in log.entries} | {event["meta"]["round"] for event in log.server_log or ()}
    rounds = sorted(played | {r for r, _ in server_values} | {r for r, _ in results})
    plan: dict[int, tuple[str, dict[int, list[int]]]] = {}
    notes = []
    untrusted, disagreeing, not_in_table = [], [], []
    session = params.session_number
    for r in rounds:
        chosen: tuple[str, dict[int, list[int]]] = (UNKNOWN, {})
        if sessions is not None and session is not None:
            table = {seat: v for seat in SEAT_NUMBERS if (v := sessions.values(session, r, seat)) is not None}
            if len(table) < SEATS:
                not_in_table.append(r)
            elif agrees(r, table) is False:
                disagreeing.append(r)
            else:
                chosen = (FROM_SESSIONS, table)
        if chosen[0] == UNKNOWN and log.server_log is not None:
            from_log = {seat: server_values[(r, seat)] for seat in SEAT_NUMBERS if (r, seat) in server_values}
            if len(from_log) == SEATS and agrees(r, from_log):
                chosen = (FROM_SERVER_LOG, from_log)
            elif from_log:
                untrusted.append(r)
        plan[r] = chosen
    if sessions is not None and session is None:
        notes.append("no session_number parameter: the sessions table cannot be used")
    if not_in_table:
        notes.append(f"session {session} of {sessions.source if sessions else ''} has no values for round(s) "
                     f"{_rounds_text(not_in_table)}")
    if disagreeing:
        notes.append(f"session {session} of the sessions table disagrees with the game's results in round(s) "
                     f"{_rounds_text(disagreeing)}: not used there (wrong table or session?)")
    if untrusted:
        notes.append(f"server-log values of round(s) {_rounds_text(untrusted)} disagree with final-profit "
                     "(written by reference): not used")
    return plan, notes


def _rounds_text(rounds: list[int]) -> str:
    return ", ".join(map(str, rounds))


def _first_round(params: GameParams) -> int:
    return 0 if params.practice_round else 1


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "event", "eventType": kind, "data": data}


def _default_cap() -> int:
    return parameters_from_dict().amount_cap()


class _Game:
    """The six players' views of one game, and the examples their decisions give."""

    def __init__(self, log: IbexLog, sessions: SessionsTable | None, include_chat: bool,
                 sink: Sink | None = None) -> None:
        if log.game_id is None:
            raise LogError(f"{log.source}: no gameId in any client message or parameter")
        self.log = log
        self.params: GameParams = log.params
        self.include_chat = include_chat
        try:
            self.cap = self.params.amount_cap()
        except ParamError:
            self.cap = _default_cap()  # the value ranges are missing: the prompt states the server's default cap
        self.result = GameResult(log.source, log.game_id,
                                 "server-log" if log.server_log is not None else "reconstructed",
                                 self.params.game_type, played_by_agents=log.played_by_agents, sink=sink)
        self.plan, notes = values_plan(log, sessions)
        self.result.notes.extend(notes)
        self.result.values_by_round = {r: source for r, (source, _) in self.plan.items()}
        # Views start in the game's first round: starting in round 0 of a game without a practice round would
        # leave an empty round-0 record behind at the first phase-transition, and prompts would list it.
        first_round = _first_round(self.params)
        self.views = {
            seat: PlayerView(game_id=log.game_id, number=seat, role=seat_role(seat), tag=seat_tag(seat),
                             round=first_round, round_count=self.params.round_count,
                             practice_round=self.params.practice_round)
            for seat in SEAT_NUMBERS
        }
        self.all_views = [self.views[seat] for seat in SEAT_NUMBERS]
        self.pending: dict[tuple[int, str], _Pending] = {}
        self.phase_reached: tuple[int, int] | None = None  # (round, phase) of the last phase-transition replayed
        self.accepted: dict[int, dict[str, Any]] = {}  # seat -> last message this phase's handler accepted

    # -- examples ----------------------------------------------------------------------------------------------

    def _prompt(self, view: PlayerView, action: str) -> tuple[str, list[str]]:
        """The prompt as lib.games.voting.prompts.build_messages makes it, the user prompt still in lines (_emit)."""
        required = build_action_required(view, action, cap=self.cap, timer_seconds=self.params.timer(view.phase))
        return system_prompt(view), user_prompt_lines(view, required)

    def _state(self, view: PlayerView, action: str) -> str:
        """The player's state when the prompt is built, for policies that read states rather than prompts."""
        return state_line(example_state(str(self.result.game_id), view.number or 0, action, self.cap, view))

    def _values_source(self, view: PlayerView) -> str:
        return view.current.values_source if view.current.values is not None else UNKNOWN

    def _emit(self, seat: int, action: str, prompt: tuple[str, list[str]], answer: dict[str, Any],
              values_source: str, state: str) -> None:
        system, user_lines = prompt
        # A human's chat text may hold a lone surrogate, which no UTF-8 file can hold (lib.util.text).
        self.result.add(system, user_lines, printable(wire_json(answer)), state, seat=seat,
                        role=ROLE_NAMES[seat_role(seat)], action=action, values_source=values_source)

    def skip(self, reason: str, action: str, at: tuple[int, dict[str, Any]], detail: str = "") -> None:
        """Count a submission that gives no example; `at` is (index in `log`, entry), described only if sampled."""
        def describe() -> str:
            index, entry = at
            seat = entry.get("number")
            who = f"seat {seat} ({seat_tag(seat)})" if seat else "no seat"
            return (f"{self.result.source} log[{index}]: {entry['content'].get('type')} from {who}, round "
                    f"{entry['round']} phase {entry['phase']}" + (f": {detail}" if detail else ""))

        self.result.skip(reason, action, describe)

    def submission(self, index: int, entry: dict[str, Any]) -> None:
        """A client message, at the moment the server received it."""
        message, seat = entry["content"], entry.get("number")
        action = message["type"]
        if action in NOT_DECISIONS:
            return
        where = (index, entry)
        if seat is None:
            self.skip(NO_SEAT, action, where)
            return
        if action not in SPECS:
            self.skip(NOT_AN_ACTION, action, where)
            return
        view = self.views[seat]
        if (entry["round"], entry["phase"]) != (view.round, view.phase):
            self.skip(OUT_OF_ORDER, action, where)
            return
        if action == CHAT:
            self._chat(view, message, where)
            return
        spec = SPECS[action]
        if ACCEPTED_IN_PHASE.get(view.phase) != action:
            self.skip(WRONG_PHASE, action, where)
            return
        self.accepted[seat] = message  # the server keeps it whoever sent it (an owner's offer can become the offer)
        if spec.role != view.role:
            self.skip(WRONG_ROLE, action, where)
            return
        pending = self.pending.get((seat, action))
        if pending is None:
            self.pending[(seat, action)] = _Pending(seat, action, self._prompt(view, action),
                                                    self._state(view, action), self._values_source(view), message,
                                                    where)
        else:
            self.skip(SUPERSEDED, action, pending.at)
            pending.message, pending.at = message, where

    def _chat(self, view: PlayerView, message: dict[str, Any], where: tuple[int, dict[str, Any]]) -> None:
        to = message.get("to")
        delivered = view.phase in CHAT_PHASES and isinstance(to, list) and len(to) > 0
        if not self.include_chat:
            self.result.chat_not_included += 1
        elif view.phase not in CHAT_PHASES:
            self.skip(WRONG_PHASE, CHAT, where)
        else:
            try:
                # With a cap, as the agents are held to it: a chat longer than an agent may send
                # (CHAT_MAX_CHARS) is no answer to learn (and a 200 KB word takes minutes to count in tokens).
                answer = validate_action(message, view, CHAT, cap=self.cap)
            except ActionError as exc:
                self.skip(MALFORMED, CHAT, where, str(exc))
            else:
                self._emit(view.number or 0, CHAT, self._prompt(view, CHAT), answer, self._values_source(view),
                           self._state(view, CHAT))
        if delivered:
            view.apply_sent(message)

    def close_phase(self) -> None:
        """The phase ends: each pending decision becomes an example from its last submission, or a skip."""
        for pending in self.pending.values():
            view = self.views[pending.seat]
            try:
                answer = validate_action(pending.message, view, pending.action, cap=None)
            except ActionError as exc:
                self.skip(MALFORMED, pending.action, pending.at, str(exc))
            else:
                self._emit(pending.seat, pending.action, pending.prompt, answer, pending.values_source,
                           pending.state)
        for seat, message in self.accepted.items():
            self.views[seat].apply_sent(message)
        self.pending.clear()
        self.accepted.clear()

    # -- frames ------------------------------------------------------------------------------------------------

    def deliver(self, seats: Iterable[int], frame: dict[str, Any]) -> None:
        apply_to_all(self.all_views if seats is SEAT_NUMBERS else [self.views[seat] for seat in seats], frame)

    def assign_role_data(self, round_number: int, seat: int, data: dict[str, Any]) -> dict[str, Any]:
        """assign-role data with the values the plan trusts for this round (none when unknown)."""
        source, values = self.plan.get(round_number, (UNKNOWN, {}))
        prop = dict(data.get("property") or {})
        if seat in values and source != UNKNOWN:
            prop["v"] = [*values[seat], *prop.get("v", [])[2:]] if isinstance(prop.get("v"), list) else values[seat]
        else:
            prop.pop("v", None)
        return {**data, "property": prop}

    def mark_values(self, round_number: int) -> None:
        source = self.plan.get(round_number, (UNKNOWN, {}))[0]
        for view in self.views.values():
            rec = view.record(round_number)
            if rec.values is not None:
                rec.values_source = source


def _recipients(game: _Game, event: dict[str, Any]) -> list[PlayerView]:
    recipient = event["meta"]["recipient"]
    if recipient == "all":
        return game.all_views
    if event["sent"]["type"] in ROLE_BROADCASTS:
        return [game.views[seat] for seat in SEAT_NUMBERS if seat_role(seat) == recipient]
    return [game.views[recipient]] if recipient in game.views else []


_NO_DATA: dict[str, Any] = {}


def _segment(item: dict[str, Any]) -> tuple[int, int]:
    return item["round"], item["phase"]


def _same_delivery(event: dict[str, Any], first: dict[str, Any]) -> bool:
    data = event["sent"].get("data", {})
    return (event["sent"]["type"] == "message-received" and data.get("sender") == first.get("sender")
            and data.get("to") == first.get("to") and data.get("text") == first.get("text")
            and data.get("time") == first.get("time"))


def _replay(game: _Game) -> None:
    """Logs with server-log: every event to its recipients, every client message just before the server's reply."""
    events = game.log.server_log or []
    n = len(events)
    segments = [_segment(event["meta"]) for event in events]
    pos = 0

    all_views, views = game.all_views, game.views

    def dispatch(event: dict[str, Any]) -> None:
        # What the recipients' clients received ({"type": "event", "eventType": kind, "data": data}) is folded
        # into their views without building that frame: lib.ibex.log has checked that data is an object.
        sent, meta = event["sent"], event["meta"]
        kind, data = sent["type"], sent.get("data", _NO_DATA)
        if kind == "phase-transition":
            game.close_phase()
            if meta["recipient"] == "all" and _is_int(data.get("round")) and _is_int(data.get("phase")):
                game.phase_reached = (data["round"], data["phase"])
        handler = EVENT_HANDLERS.get(kind)
        if handler is None:
            return
        recipient = meta["recipient"]
        if kind == "assign-role":
            recipients = _recipients(game, event)
            if len(recipients) == 1:
                data = game.assign_role_data(meta["round"], recipient, data)
            for view in recipients:
                handler(view, data)
            game.mark_values(meta["round"])
        elif recipient == "all":
            for view in all_views:
                handler(view, data)
        elif kind in ROLE_BROADCASTS:
            for view in _recipients(game, event):
                handler(view, data)
        elif recipient in views:
            handler(views[recipient], data)

    def anchor(entry: dict[str, Any], start: int) -> int | None:
        seat, message = entry.get("number"), entry["content"]
        ack = ACKS.get(message["type"])
        if seat is None or ack is None:
            return None
        segment = _segment(entry)
        for j in range(start, n):
            event = events[j]
            if segments[j] != segment:
                return None
            if event["sent"]["type"] != ack:
                continue
            if ack == "message-received":
                data = event["sent"].get("data", {})
                if data.get("sender") == seat and data.get("text") == message.get("text") \
                        and data.get("to") == message.get("to"):
                    return j
            elif event["meta"]["recipient"] == seat:
                return j
        return None

    for index, entry in enumerate(game.log.entries):
        if entry["type"] != MESSAGE:
            continue
        segment = _segment(entry)
        # Everything sent in earlier phases, and the transition into the message's phase (its meta already
        # carries the new phase, while the frames announcing it carry the old one).
        while pos < n:
            at = segments[pos]
            if not (at < segment or (at == segment and game.phase_reached != segment)):
                break
            dispatch(events[pos])
            pos += 1
        j = anchor(entry, pos)
        if j is not None:
            while pos < j:
                dispatch(events[pos])
                pos += 1
        game.submission(index, entry)
        if j is not None:
            # The server answers a message before it reads the next one: deliver the whole answer now (all
            # deliveries of a chat message), so that a later message that got no answer comes after it.
            first = events[pos]["sent"].get("data", {})
            dispatch(events[pos])
            pos += 1
            while first.get("sender") is not None and pos < n and _same_delivery(events[pos], first):
                dispatch(events[pos])
                pos += 1
    while pos < n:
        dispatch(events[pos])
        pos += 1
    game.close_phase()


class _Reconstruction:
    """Logs without server-log: the frames the real server would have sent, rebuilt from the client messages."""

    def __init__(self, game: _Game) -> None:
        self.game = game
        self.params = game.params
        self.round, self.phase = _first_round(self.params), 0
        self.requests: dict[int, Any] = {}
        self.offer: Any = None
        self.decisions: dict[int, Any] = {}
        self.chat_counter = 0
        self.broadcast(_event("phase-transition", {"round": self.round, "phase": 0}))

    def broadcast(self, frame: dict[str, Any]) -> None:
        self.game.deliver(SEAT_NUMBERS, frame)

    def run(self) -> None:
        for index, entry in enumerate(self.game.log.entries):
            if entry["type"] != MESSAGE:
                continue  # phase timeouts add nothing: every phase of every round is entered in order
            target = _segment(entry)
            while (self.round, self.phase) < target:
                self.step()
            self.game.submission(index, entry)
            if entry["content"]["type"] == CHAT and (self.round, self.phase) == target:
                self.chat(entry)
            self.remember(entry)
        self.game.close_phase()

    def remember(self, entry: dict[str, Any]) -> None:
        """What the server stored from a message it accepted in this phase (from any role, as it does)."""
        message, seat = entry["content"], entry.get("number")
        if seat is None or (entry["round"], entry["phase"]) != (self.round, self.phase):
            return
        if ACCEPTED_IN_PHASE.get(self.phase) != message["type"]:
            return
        if self.phase == 3:
            self.requests[seat] = message.get("compensationRequests")
        elif self.phase == 4:
            self.offer = message.get("compensationOffers")
        else:
            self.decisions[seat] = message.get("compensationDecisions")

    def chat(self, entry: dict[str, Any]) -> None:
        message, seat = entry["content"], entry.get("number")
        to = message.get("to")
        if seat is None or self.phase not in CHAT_PHASES or not isinstance(to, list):
            return
        for number in to:
            if number in SEAT_NUMBERS and not isinstance(number, bool):
                data = {"sender": seat, "to": to, "number": self.chat_counter, "text": message.get("text")}
                self.chat_counter += 1
                self.game.views[number].apply(_event("message-received", data))

    def step(self) -> None:
        """Leave the current phase and enter the next one, with the frames the server sends in between."""
        self.game.close_phase()
        if self.phase == LAST_PHASE:
            self.end_round()
            self.round, self.phase = self.round + 1, 0
            self.requests, self.offer, self.decisions, self.chat_counter = {}, None, {}, 0
            self.broadcast(_event("phase-transition", {"round": self.round, "phase": 0}))
            return
        self.phase += 1
        r, p = self.round, self.phase
        if p == 1:
            self.assign_roles()
        elif p == 4:
            requests = [{"number": seat, "compensationRequests": self.requests.get(seat)} for seat in SEAT_NUMBERS]
            for item in requests:
                if item["compensationRequests"] is None and seat_role(item["number"]) == ROLE_OWNER:
                    item["compensationRequests"] = [0, 0]  # what the server records for a silent owner
            self.game.deliver((DEVELOPER_SEAT,), _event("compensation-requests-received",
                                                        {"compensationRequests": requests}))
        elif p == 5:
            offer = self.offer if self.offer is not None and self.offer != [] else [0, 0]
            owners = tuple(seat for seat in SEAT_NUMBERS if seat_role(seat) == ROLE_OWNER)
            self.game.deliver(owners, _event("compensation-offer-made", {"compensationOffers": offer}))
        elif p == 7:
            for seat, outcome in self.outcomes().items():
                self.game.views[seat].apply(_event("final-profit", outcome))
        self.broadcast(_event("phase-transition", {"round": r, "phase": p}))

    def assign_roles(self) -> None:
        try:
            boundaries: dict[str, Any] | None = self.params.boundaries()
        except ParamError:
            boundaries = None
        for seat in SEAT_NUMBERS:
            data: dict[str, Any] = {"role": seat_role(seat), "property": {"id": seat, "owner": seat},
                                    "id": seat - 1, "number": seat, "tag": seat_tag(seat),
                                    "conditions": [dict(c) for c in CONDITIONS]}
            if boundaries is not None:
                data["boundaries"] = boundaries
            self.game.views[seat].apply(_event("assign-role", self.game.assign_role_data(self.round, seat, data)))
        self.game.mark_values(self.round)
        players = [{"number": seat, "role": seat_role(seat), "tag": seat_tag(seat)} for seat in SEAT_NUMBERS]
        self.broadcast(_event("players-known", {"players": players}))

    def outcomes(self) -> dict[int, dict[str, Any]]:
        """final-profit per seat, by the server's rules. Without known values the value is the word "unknown":
        the real server always sent a number, and lib.games.voting.prompts prints the value as it is (a null reads
        "None")."""
        owners = [seat for seat in SEAT_NUMBERS if seat_role(seat) == ROLE_OWNER]
        condition, tally = winner(self.decisions.get(seat) or [] for seat in owners)
        amount = offer_for(self.offer, condition)
        values = self.game.plan.get(self.round, (UNKNOWN, {}))[1]
        result = {}
        for seat in SEAT_NUMBERS:
            value = values[seat][condition] if seat in values else UNKNOWN
            result[seat] = {"condition": condition, "tally": tally, "value": value,
                            "compensation": compensation(seat_role(seat), amount)}
        return result

    def end_round(self) -> None:
        self.broadcast(_event("round-end", {"round": self.round}))
        for seat, outcome in self.outcomes().items():
            value = outcome["value"]
            profit = value + outcome["compensation"] if _is_int(value) else None
            self.game.views[seat].apply(_event("round-summary", {"round": self.round, **outcome, "profit": profit}))


def game_examples(log: IbexLog, *, sessions: SessionsTable | None = None, include_chat: bool = False,
                  sink: Sink | None = None) -> GameResult:
    """Every example one game gives, in the order the decisions were made. With `sink`, the lines and their states
    go to it in batches as they are made, and result.lines and result.states hold only the last ones: a game's
    memory does not grow with its number of examples (a log may hold thousands of chat messages)."""
    game = _Game(log, sessions, include_chat, sink)
    if log.server_log is not None:
        _replay(game)
    else:
        _Reconstruction(game).run()
    return game.result

