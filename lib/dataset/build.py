"""IBEX logs -> chat fine-tuning examples: one example per decision a human actually made.

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

`build_dataset` streams the files one at a time (in worker processes, whose results are taken in input order, so
the output is the same for any number of them): each example is token-counted and checked (lib.dataset.ftcheck) as it is
written, each process appends its games' lines to its own spool file, and only their place and numbers reach the
builder; the split by game (a copy of each game's bytes to its side, and of its examples' states to that side's
state sidecar, lib.dataset.sidecar), the files' check reports
(put together from the examples' checks) and the report come at the end, and the output files (the two sets, their
state sidecars and the report) replace the old ones only when everything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import secrets
import signal
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _encode_string
from pathlib import Path
from typing import Any

from lib.dataset import ftcheck
from lib.dataset.sidecar import example_state, header, market_example_state, sidecar_path, state_line
from lib.games.market.examples import market_examples
from lib.games.voting.actions import (
    CHAT,
    DECISION,
    OFFER,
    REQUEST,
    SPECS,
    ActionError,
    build_action_required,
    validate_action,
    wire_json,
)
from lib.games.voting.prompts import system_prompt, user_prompt_lines
from lib.games.voting.rules import (
    CHAT_PHASES,
    CONDITIONS,
    DEVELOPER_SEAT,
    LAST_PHASE,
    ROLE_NAMES,
    ROLE_OWNER,
    SEATS,
    GameParams,
    ParamError,
    compensation,
    offer_for,
    parameters_from_dict,
    seat_role,
    seat_tag,
    winner,
)
from lib.games.voting.view import EVENT_HANDLERS, PlayerView, apply_to_all
from lib.ibex.log import MESSAGE, IbexLog, LogError, MarketLog, read_log
from lib.ibex.sessions import SessionsTable
from lib.util.text import display_path, printable

TRAINING_FILE, VALIDATION_FILE, REPORT_FILE = "training_set.jsonl", "validation_set.jsonl", "dataset_report.json"
SEAT_NUMBERS = tuple(range(1, SEATS + 1))

# Where a round's private values came from (also the report's keys).
FROM_SESSIONS, FROM_SERVER_LOG, UNKNOWN = "sessions", "server-log", "unknown"

# Reasons a human submission gives no example (the report's keys).
SUPERSEDED = "superseded by a later submission in the same phase"
WRONG_ROLE = "wrong role"
WRONG_PHASE = "wrong phase"
MALFORMED = "malformed"
NOT_AN_ACTION = "not a game action"
NO_SEAT = "no seat number"
OUT_OF_ORDER = "logged in another phase than the replay reached"
SAMPLES_PER_REASON = 5
LINES_PER_SINK_CALL = 256  # examples a game keeps before handing them to the builder's spool

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


_encoded_systems: dict[str, str] = {}  # a player's system prompt is the same all game: encoded once


def _example_line(system: str, user: str, assistant: str) -> str:
    """json.dumps({"messages": [system, user, assistant messages]}, ensure_ascii=False), written out: the same
    text, without walking the example."""
    encoded = _encoded_systems.get(system)
    if encoded is None:
        encoded = ftcheck.remember(_encoded_systems, system, _encode_string(system), ftcheck.CACHE_MAX_SYSTEMS)
    return ('{"messages": [{"role": "system", "content": ' + encoded
            + '}, {"role": "user", "content": ' + _encode_string(user)
            + '}, {"role": "assistant", "content": ' + _encode_string(assistant) + "}]}")


# ---------------------------------------------------------------------------------------------------------------
# One game -> examples


@dataclass
class GameResult:
    """What one log gave: the JSONL lines (those not yet handed to the builder's spool, see game_examples) and, per
    example, only the numbers the report needs."""

    source: str
    game_id: int
    log_format: str  # "server-log" or "reconstructed"
    lines: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)  # per example: its lib.dataset.sidecar state line
    meta: list[tuple[int, str, str]] = field(default_factory=list)  # per example: seat, action, values source
    tokens: array[int] = field(default_factory=lambda: array("l"))  # per example
    # lib.dataset.ftcheck's checks of `lines`, made with them: the output files are these lines, so the files' reports
    # are
    # the games' checks put together (lib.dataset.ftcheck.report_of).
    check: ftcheck.LinesCheck = field(default_factory=ftcheck.LinesCheck)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)  # reason -> action -> count
    samples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few "where: what" lines
    values_by_round: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    chat_not_included: int = 0  # chat messages left out because --include-chat was not given
    played_by_agents: str | None = None  # why the log is known to hold no human decisions (lib.ibex.log)
    game_type: str = "voting"
    roles: list[str] | None = None  # per example, a market game's role names (a voting seat's role is its number's)

    def skip(self, reason: str, action: str, at: tuple[int, dict[str, Any]], detail: str = "") -> None:
        """Count a submission that gives no example; `at` is (index in `log`, entry), described only if sampled."""
        self.skipped.setdefault(reason, Counter())[action] += 1
        samples = self.samples.setdefault(reason, [])
        if len(samples) < SAMPLES_PER_REASON:
            index, entry = at
            seat = entry.get("number")
            who = f"seat {seat} ({seat_tag(seat)})" if seat else "no seat"
            samples.append(f"{self.source} log[{index}]: {entry['content'].get('type')} from {who}, round "
                           f"{entry['round']} phase {entry['phase']}" + (f": {detail}" if detail else ""))


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
                 sink: Callable[[list[str], list[str]], None] | None = None) -> None:
        if log.game_id is None:
            raise LogError(f"{log.source}: no gameId in any client message or parameter")
        self.log = log
        self.sink = sink
        self.params: GameParams = log.params
        self.include_chat = include_chat
        try:
            self.cap = self.params.amount_cap()
        except ParamError:
            self.cap = _default_cap()  # the value ranges are missing: the prompt states the server's default cap
        self.result = GameResult(log.source, log.game_id,
                                 "server-log" if log.server_log is not None else "reconstructed",
                                 played_by_agents=log.played_by_agents)
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
        user, assistant = "\n".join(user_lines), printable(wire_json(answer))
        # Counted per line: most lines repeat from one prompt to the next and are counted once (lib.dataset.ftcheck).
        tokens = ftcheck.chat_example_tokens(system, user_lines, assistant)
        self.result.lines.append(_example_line(system, user, assistant))
        self.result.states.append(state)
        if self.sink is not None and len(self.result.lines) >= LINES_PER_SINK_CALL:
            self.sink(self.result.lines, self.result.states)
            self.result.lines, self.result.states = [], []
        self.result.meta.append((seat, action, values_source))
        self.result.tokens.append(tokens[0])
        self.result.check.add_chat(system, user, assistant, tokens)

    def submission(self, index: int, entry: dict[str, Any]) -> None:
        """A client message, at the moment the server received it."""
        message, seat = entry["content"], entry.get("number")
        action = message["type"]
        if action in NOT_DECISIONS:
            return
        where = (index, entry)
        if seat is None:
            self.result.skip(NO_SEAT, action, where)
            return
        if action not in SPECS:
            self.result.skip(NOT_AN_ACTION, action, where)
            return
        view = self.views[seat]
        if (entry["round"], entry["phase"]) != (view.round, view.phase):
            self.result.skip(OUT_OF_ORDER, action, where)
            return
        if action == CHAT:
            self._chat(view, message, where)
            return
        spec = SPECS[action]
        if ACCEPTED_IN_PHASE.get(view.phase) != action:
            self.result.skip(WRONG_PHASE, action, where)
            return
        self.accepted[seat] = message  # the server keeps it whoever sent it (an owner's offer can become the offer)
        if spec.role != view.role:
            self.result.skip(WRONG_ROLE, action, where)
            return
        pending = self.pending.get((seat, action))
        if pending is None:
            self.pending[(seat, action)] = _Pending(seat, action, self._prompt(view, action),
                                                    self._state(view, action), self._values_source(view), message,
                                                    where)
        else:
            self.result.skip(SUPERSEDED, action, pending.at)
            pending.message, pending.at = message, where

    def _chat(self, view: PlayerView, message: dict[str, Any], where: tuple[int, dict[str, Any]]) -> None:
        to = message.get("to")
        delivered = view.phase in CHAT_PHASES and isinstance(to, list) and len(to) > 0
        if not self.include_chat:
            self.result.chat_not_included += 1
        elif view.phase not in CHAT_PHASES:
            self.result.skip(WRONG_PHASE, CHAT, where)
        else:
            try:
                # With a cap, as the agents are held to it: a chat longer than an agent may send
                # (CHAT_MAX_CHARS) is no answer to learn (and a 200 KB word takes minutes to count in tokens).
                answer = validate_action(message, view, CHAT, cap=self.cap)
            except ActionError as exc:
                self.result.skip(MALFORMED, CHAT, where, str(exc))
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
                self.result.skip(MALFORMED, pending.action, pending.at, str(exc))
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


def market_game_examples(log: MarketLog, *, sessions: SessionsTable | None = None,
                         sink: Callable[[list[str], list[str]], None] | None = None) -> GameResult:
    """Every example a Harberger or futarchy log gives (lib.games.market.examples: declarations, snipes, orders,
    cancels),
    as lines, sidecar states and report numbers like a voting game's. Raises LogError (one line) for a log the
    market reader cannot use."""
    source = log.name
    table = None if sessions is None else [{"id": k, "rounds": v} for k, v in sessions.sessions.items()]
    try:
        made = market_examples(log.data, sessions=table)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise LogError(printable(f"{source}: a {log.game_type} game the market reader cannot use: {exc}")) from None
    if made.game_id is None:
        raise LogError(f"{source}: no gameId in any client message")
    result = GameResult(source, made.game_id, "server-log", played_by_agents=log.played_by_agents,
                        game_type=made.game_type, roles=[])
    result.values_by_round = dict(made.values_by_round)
    for reason_action, count in made.skipped.items():
        reason, _, action = reason_action.rpartition(": ")
        result.skipped.setdefault(reason, Counter())[action] += count
    key = str(made.game_id)
    for example in made.examples:
        system, user, answer = (m["content"] for m in example.messages)
        assistant = printable(answer)
        user_lines = user.split("\n")
        tokens = ftcheck.chat_example_tokens(system, user_lines, assistant)
        result.lines.append(_example_line(system, user, assistant))
        result.states.append(state_line(market_example_state(key, example)))
        if sink is not None and len(result.lines) >= LINES_PER_SINK_CALL:
            sink(result.lines, result.states)
            result.lines, result.states = [], []
        result.meta.append((example.seat, example.action_type, example.values_source))
        assert result.roles is not None
        result.roles.append(ROLE_NAMES[example.role])
        result.tokens.append(tokens[0])
        result.check.add_chat(system, user, assistant, tokens)
    return result


def game_examples(log: IbexLog, *, sessions: SessionsTable | None = None, include_chat: bool = False,
                  sink: Callable[[list[str], list[str]], None] | None = None) -> GameResult:
    """Every example one game gives, in the order the decisions were made. With `sink`, the lines and their states
    go to it in batches as they are made, and result.lines and result.states hold only the last ones: a game's
    memory does not grow with its number of examples (a log may hold thousands of chat messages)."""
    game = _Game(log, sessions, include_chat, sink)
    if log.server_log is not None:
        _replay(game)
    else:
        _Reconstruction(game).run()
    return game.result


# ---------------------------------------------------------------------------------------------------------------
# Many files -> training/validation sets and a report


class UsageError(ValueError):
    """A bad option value (exit code 2)."""


def find_logs(inputs: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """The log files named by `inputs` (files, or folders searched for *.log.json), and one error per bad path."""
    found: list[Path] = []
    errors: list[str] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*.log.json") if p.is_file())
            if not candidates:
                errors.append(f"{display_path(path)}: no *.log.json files in this folder")
        elif path.is_file():
            candidates = [path]
        else:
            errors.append(f"{display_path(path)}: no such file or folder")
            candidates = []
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found, errors


@dataclass
class _FileOutcome:
    source: str
    error: str | None = None
    result: GameResult | None = None  # its lines are in a spool file by then, at `spooled`
    spooled: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # spool number, offset and length of the lines, of
    # the states


class _Spool:
    """The file one process appends the JSONL lines of its games to. The lines stay in the process that made them
    (only their place goes back to the builder), and the builder copies each game's bytes to its output file."""

    def __init__(self, number: int, paths: tuple[Path, Path]) -> None:
        self.number, self.size, self.states_size = number, 0, 0
        self.start = self.states_start = 0  # where the game being built began
        self.file, self.states = paths[0].open("ab"), paths[1].open("ab")  # lines; the sidecar's state lines

    def begin(self) -> None:
        """A new game starts here. What a game that then fails wrote stays unused, its place not handed on."""
        self.start, self.states_start = self.size, self.states_size

    def write(self, lines: list[str], states: list[str]) -> None:
        blob = "".join(line + "\n" for line in lines).encode("utf-8")
        self.file.write(blob)
        self.size += len(blob)
        blob = "".join(line + "\n" for line in states).encode("utf-8")
        self.states.write(blob)
        self.states_size += len(blob)

    def put(self, result: GameResult) -> tuple[int, int, int, int, int]:
        """The game's last lines; its place in the spools: (spool number, offset and length of its lines, of its
        examples' states)."""
        self.write(result.lines, result.states)
        result.lines, result.states = [], []
        # On disk before the builder reads them: a worker may be ended without closing the files.
        self.file.flush()
        self.states.flush()
        return (self.number, self.start, self.size - self.start, self.states_start,
                self.states_size - self.states_start)


def _process(path: Path, sessions: SessionsTable | None, include_chat: bool, spool: _Spool) -> _FileOutcome:
    spool.begin()
    outcome = _build(path, sessions, include_chat, spool.write)
    if outcome.result is not None:
        # Outside _build's error handling: a spool that cannot be written (a full disk) ends the run, with the
        # previous output files left as they were; it is not this log's fault.
        outcome.spooled = spool.put(outcome.result)
    return outcome


def _build(path: Path, sessions: SessionsTable | None, include_chat: bool,
           sink: Callable[[list[str], list[str]], None] | None = None) -> _FileOutcome:
    name = display_path(path)
    try:
        try:
            log = read_log(path)
        except MarketLog as market:
            return _FileOutcome(name, result=market_game_examples(market, sessions=sessions, sink=sink))
        return _FileOutcome(name, result=game_examples(log, sessions=sessions, include_chat=include_chat,
                                                       sink=sink))
    except OSError:  # writing to the spool (a full disk): not this log's fault, and the run cannot go on
        raise
    except LogError as exc:
        return _FileOutcome(name, error=printable(str(exc)))
    except RecursionError:
        return _FileOutcome(name, error=f"{name}: nested too deeply to be an IBEX log")
    except Exception as exc:  # a bug, not the user's mistake: name it, and go on with the other files
        return _FileOutcome(name, error=printable(f"{name}: internal error while building examples "
                                                  f"({type(exc).__name__}: {exc}); please report it"))


# Worker processes get the options once, through the pool initializer, and each takes its own spool.
_WORKER: tuple[SessionsTable | None, bool, _Spool | None] = (None, False, None)


def _init_worker(sessions: SessionsTable | None, include_chat: bool, spools: Any) -> None:
    global _WORKER
    # The pool ends its workers with SIGTERM: the builder's own handler (constructDataset.py) is not theirs.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    number, paths = spools.get()
    _WORKER = (sessions, include_chat, _Spool(number, paths))


def _process_in_worker(path: Path) -> _FileOutcome:
    sessions, include_chat, spool = _WORKER
    assert spool is not None
    return _process(path, sessions, include_chat, spool)


MAX_DEFAULT_WORKERS = 4
FILES_PER_WORKER = 4  # fewer files than this per process, and starting the processes costs more than it saves


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()  # not on Windows: one process there


def default_workers() -> int:
    """The CPUs this process may use, at most MAX_DEFAULT_WORKERS."""
    if not _can_fork():
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, cpus))


def _processes(n_files: int, workers: int) -> int:
    """How many processes build examples: 1 means the builder itself, no workers."""
    return max(1, min(workers, n_files // FILES_PER_WORKER)) if _can_fork() else 1


def _outcomes(paths: list[Path], sessions: SessionsTable | None, include_chat: bool,
              spool_paths: list[tuple[Path, Path]]) -> Iterator[_FileOutcome]:
    """Each file's outcome, in input order (so the output never depends on the number of workers), from one
    process per spool file."""
    if len(spool_paths) == 1:
        spool = _Spool(0, spool_paths[0])
        for path in paths:
            yield _process(path, sessions, include_chat, spool)
        return
    ftcheck.load_tokenizer()  # once, before forking, so workers share it
    context = multiprocessing.get_context("fork")
    spools = context.SimpleQueue()
    for numbered in enumerate(spool_paths):
        spools.put(numbered)
    with context.Pool(len(spool_paths), initializer=_init_worker,
                      initargs=(sessions, include_chat, spools)) as pool:
        yield from pool.imap(_process_in_worker, paths, chunksize=2)


def split_games(keys: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The games that go to validation: round(n x fraction) of them (at least one when there are two or more
    games and fraction > 0, never all), chosen by a seeded hash of the game key, so a game's side does not depend
    on the order of the files, and mostly stays put when games are added."""
    keys = sorted(set(keys))
    if fraction <= 0 or len(keys) < 2:
        return set()
    n_validation = min(len(keys) - 1, max(1, int(len(keys) * fraction + 0.5)))
    ranked = sorted(keys, key=lambda k: hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=16).digest())
    return set(ranked[:n_validation])


@dataclass
class BuildOptions:
    inputs: list[Path]
    output_dir: Path
    sessions: SessionsTable | None = None
    include_chat: bool = False
    validation_fraction: float = 0.2
    seed: int = 0
    model: str | None = None
    workers: int = 1


@dataclass
class BuildResult:
    report: dict[str, Any]
    errors: list[str]  # one line per unusable input
    n_examples: int
    checks_ok: bool
    outputs: dict[str, Path]


class _Tally:
    """The report's numbers, accumulated file by file."""

    def __init__(self) -> None:
        self.per_game: dict[str, dict[str, Any]] = {}
        self.per_role: Counter[str] = Counter()
        self.per_action: Counter[str] = Counter()
        self.per_role_action: dict[str, Counter[str]] = {}
        self.values: Counter[str] = Counter()
        self.skipped: dict[str, Counter[str]] = {}
        self.samples: dict[str, list[str]] = {}
        self.chat_not_included = 0
        self.files: list[dict[str, Any]] = []
        self.by_agents: list[tuple[str, str]] = []  # (file, why) of games known to be played by agents
        self.unknown_values: list[tuple[str, int]] = []  # (file, examples) of files with unknown private values

    def add(self, result: GameResult, game_key: str) -> None:
        roles: Counter[str] = Counter()
        actions: Counter[str] = Counter()
        values: Counter[str] = Counter()
        for k, (seat, action, values_source) in enumerate(result.meta):
            role = result.roles[k] if result.roles is not None else ROLE_NAMES[seat_role(seat)]
            roles[role] += 1
            actions[action] += 1
            values[values_source] += 1
            self.per_role_action.setdefault(role, Counter())[action] += 1
        self.per_role.update(roles)
        self.per_action.update(actions)
        self.values.update(values)
        for reason, by_action in result.skipped.items():
            self.skipped.setdefault(reason, Counter()).update(by_action)
            samples = self.samples.setdefault(reason, [])
            samples.extend(result.samples.get(reason, [])[:SAMPLES_PER_REASON - len(samples)])
        self.chat_not_included += result.chat_not_included
        game = self.per_game.setdefault(game_key, {"files": [], "examples": 0, "by_role": Counter(),
                                                   "by_action": Counter(), "values": Counter()})
        game["files"].append(result.source)
        game["examples"] += len(result.meta)
        game["by_role"].update(roles)
        game["by_action"].update(actions)
        game["values"].update(values)
        if result.played_by_agents:
            self.by_agents.append((result.source, result.played_by_agents))
        if values[UNKNOWN]:
            self.unknown_values.append((result.source, values[UNKNOWN]))
        self.files.append({
            "file": result.source, "game": game_key, "format": result.log_format, "examples": len(result.meta),
            "private_values": _counter(values), "played_by_agents": result.played_by_agents,
            "values_by_round": {str(r): s for r, s in sorted(result.values_by_round.items())},
            "skipped": {reason: sum(c.values()) for reason, c in result.skipped.items()},
            "notes": result.notes,
            **({"game_type": result.game_type} if result.game_type != "voting" else {}),
        })


def _tmp_in(directory: Path, name: str, temps: list[Path]) -> Path:
    """A new empty file next to the final one (same file system, so os.replace is atomic), created with the
    permissions the umask gives ordinary files (mkstemp's 0600 would survive the rename). It goes into `temps` as
    soon as it exists, so that an interruption at any moment leaves it to the caller's clean-up."""
    for _ in range(100):
        path = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            path.open("xb").close()
        except FileExistsError:
            continue
        temps.append(path)
        return path
    raise OSError(f"{directory}: cannot create a temporary file")


_TEMP_NAME = re.compile(r"\.(examples|states|training_set|validation_set|training_state|validation_state|"
                        r"dataset_report|(?:training|validation)_set\.jsonl\.state)\.(\d+)\.[0-9a-f]{8}\.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process, or no such number: not ours to judge
    return True


def _remove_stale_temps(out: Path) -> None:
    """Remove the temporary files a build killed outright (SIGKILL, out of memory) left in the output folder: no
    clean-up of its own ran. Only this builder's names, and only those of processes that no longer run, so that
    a build still running in the same folder keeps its files."""
    try:
        entries = list(out.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match and not _alive(int(match.group(2))):
            with contextlib.suppress(OSError):
                entry.unlink()


def build_dataset(options: BuildOptions, *, progress: Callable[[int, int], None] | None = None,
                  on_error: Callable[[str], None] | None = None) -> BuildResult:
    """Read every log, write the training and validation sets and the report into options.output_dir.

    The old output files are replaced only at the end, all three together, so an interrupted or failed run leaves
    them as they were. `on_error` gets one line per unusable input as soon as it is found.
    """
    model = options.model or ftcheck.DEFAULT_MODEL
    if not 0 <= options.validation_fraction < 1:
        raise UsageError(f"--validation-fraction must be at least 0 and below 1, got {options.validation_fraction}")
    paths, errors = find_logs(options.inputs)
    for error in errors:
        if on_error:
            on_error(error)
    out = options.output_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{display_path(out)}: cannot create the output folder ({exc.strerror or exc})") from None
    _remove_stale_temps(out)
    temps: list[Path] = []
    tally = _Tally()
    started = time.monotonic()
    try:
        spool_paths = [(_tmp_in(out, "examples", temps), _tmp_in(out, "states", temps))
                       for _ in range(_processes(len(paths), options.workers))]
        # Per usable file: game key, where its lines are in the spools, its examples' tokens and the checks of
        # its lines (small: a few numbers per example).
        games: list[tuple[str, tuple[int, int, int, int, int], array[int], ftcheck.LinesCheck, str]] = []
        for done, outcome in enumerate(_outcomes(paths, options.sessions, options.include_chat, spool_paths), 1):
            if outcome.error is not None:
                errors.append(outcome.error)
                if on_error:
                    on_error(outcome.error)
            elif outcome.result is not None:
                result = outcome.result
                key = str(result.game_id)
                tally.add(result, key)
                games.append((key, outcome.spooled, result.tokens, result.check, result.game_type))
            if progress:
                progress(done, len(paths))
        timings = {"read_build_and_check_examples": time.monotonic() - started}
        validation_games = split_games((k for k, spooled, *_ in games if spooled[2]), options.validation_fraction,
                                       options.seed)
        train_path, val_path = _tmp_in(out, "training_set", temps), _tmp_in(out, "validation_set", temps)
        state_bodies = {"training": _tmp_in(out, "training_state", temps),
                        "validation": _tmp_in(out, "validation_state", temps)}
        digests = {"training": hashlib.sha256(), "validation": hashlib.sha256()}  # the sidecars name their set's
        state_digests = {"training": hashlib.sha256(), "validation": hashlib.sha256()}  # and their own lines'
        counts = {"training": 0, "validation": 0}
        tokens = {"training": array("l"), "validation": array("l")}
        checked: dict[str, list[ftcheck.LinesCheck]] = {"training": [], "validation": []}
        game_types: dict[str, set[str]] = {"training": set(), "validation": set()}  # the sidecars' headers name them
        with contextlib.ExitStack() as stack:
            spools = [stack.enter_context(lines.open("rb")) for lines, _ in spool_paths]
            state_spools = [stack.enter_context(states.open("rb")) for _, states in spool_paths]
            train, val = stack.enter_context(train_path.open("wb")), stack.enter_context(val_path.open("wb"))
            state_files = {side: stack.enter_context(path.open("wb")) for side, path in state_bodies.items()}
            for key, (number, offset, length, state_offset, state_length), file_tokens, file_check, kind in games:
                side = "validation" if key in validation_games else "training"
                if len(file_tokens):
                    game_types[side].add(kind)
                spools[number].seek(offset)
                blob = spools[number].read(length)
                (val if side == "validation" else train).write(blob)
                digests[side].update(blob)
                state_spools[number].seek(state_offset)
                blob = state_spools[number].read(state_length)
                state_files[side].write(blob)
                state_digests[side].update(blob)
                counts[side] += len(file_tokens)
                tokens[side].extend(file_tokens)
                checked[side].append(file_check)
        for key, game in tally.per_game.items():
            game["split"] = "validation" if key in validation_games else "training"
        n_examples = counts["training"] + counts["validation"]
        timings["split_and_write"] = time.monotonic() - started - sum(timings.values())
        # The files are the games' lines in this order, so their reports are the games' checks put together.
        train_check = ftcheck.report_of(checked["training"], source=display_path(out / TRAINING_FILE), model=model)
        val_check = ftcheck.report_of(checked["validation"], source=display_path(out / VALIDATION_FILE), model=model,
                                      min_examples=1) if counts["validation"] else None
        shared = ftcheck.shared_examples(train_check, val_check) if val_check is not None else 0
        checks_ok = train_check.ok and (val_check is None or val_check.ok) and shared == 0
        timings["check_reports"] = time.monotonic() - started - sum(timings.values())
        report = _report(options, model, paths, errors, tally, counts, tokens, train_check, val_check, shared,
                         validation_games, timings)
        report_path = _tmp_in(out, "dataset_report", temps)
        # printable: whatever text from a log or a path the report quotes, it is written (lib.util.text).
        report_path.write_text(printable(json.dumps(report, indent=1, ensure_ascii=False)) + "\n",
                               encoding="utf-8")
        outputs = {"training": out / TRAINING_FILE, "validation": out / VALIDATION_FILE, "report": out / REPORT_FILE,
                   "training_state": sidecar_path(out / TRAINING_FILE),
                   "validation_state": sidecar_path(out / VALIDATION_FILE)}
        states = {side: _sidecar(out, state_bodies[side], outputs[side].name, counts[side], digests[side], temps,
                                 game_types[side], state_digests[side])
                  for side in ("training", "validation")}
        if n_examples:  # a run that produced nothing leaves the previous files alone
            os.replace(train_path, outputs["training"])
            os.replace(states["training"], outputs["training_state"])
            if counts["validation"]:
                os.replace(val_path, outputs["validation"])
                os.replace(states["validation"], outputs["validation_state"])
            else:
                # A validation file left from an earlier run would no longer match the training set.
                outputs["validation"].unlink(missing_ok=True)
                outputs["validation_state"].unlink(missing_ok=True)
            os.replace(report_path, outputs["report"])
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return BuildResult(report, errors, n_examples, checks_ok, outputs)


def _sidecar(out: Path, body: Path, set_name: str, examples: int, digest: Any, temps: list[Path],
             game_types: set[str], states_digest: Any) -> Path:
    """A set's state sidecar (lib.dataset.sidecar), complete in a temporary file: its header, then the states."""
    path = _tmp_in(out, set_name + ".state", temps)
    with path.open("wb") as f, body.open("rb") as states:
        f.write((json.dumps(header(set_name, examples, digest.hexdigest(), game_types,
                                   states_sha256=states_digest.hexdigest())) + "\n").encode("utf-8"))
        while chunk := states.read(1 << 20):
            f.write(chunk)
    return path


def _counter(c: Counter[str]) -> dict[str, int]:
    return dict(sorted(c.items()))


def _report(options: BuildOptions, model: str, paths: list[Path], errors: list[str], tally: _Tally,
            counts: dict[str, int], tokens: dict[str, array[int]], train_check: Any, val_check: Any, shared: int,
            validation_games: set[str], timings: dict[str, float]) -> dict[str, Any]:
    skipped = {reason: {"count": sum(c.values()), "by_action": _counter(c), "samples": tally.samples.get(reason, [])}
               for reason, c in sorted(tally.skipped.items())}
    return {
        "options": {
            "inputs": [display_path(p) for p in options.inputs], "output_dir": display_path(options.output_dir),
            "sessions": options.sessions.source if options.sessions else None,
            "include_chat": options.include_chat, "validation_fraction": options.validation_fraction,
            "seed": options.seed, "model": model,
        },
        "files": {"found": len(paths), "used": len(tally.files), "failed": len(errors), "errors": errors},
        "examples": {"total": counts["training"] + counts["validation"], **counts},
        "games": {"training": sorted(k for k in tally.per_game if k not in validation_games),
                  "validation": sorted(validation_games)},
        "per_role": _counter(tally.per_role),
        "per_action": _counter(tally.per_action),
        "per_role_action": {role: _counter(c) for role, c in sorted(tally.per_role_action.items())},
        "private_values": _counter(tally.values),
        "skipped": skipped,
        "chat_messages_not_included": tally.chat_not_included,
        "per_game": {key: {"split": g["split"], "files": g["files"], "examples": g["examples"],
                           "by_role": _counter(g["by_role"]), "by_action": _counter(g["by_action"]),
                           "private_values": _counter(g["values"])}
                     for key, g in sorted(tally.per_game.items())},
        "per_file": tally.files,
        "warnings": _warnings(options, tally),
        "tokens": {side: ftcheck.distribution(values) for side, values in tokens.items()},
        "training_cost": {
            "model": model, "epochs": train_check.epochs, "billed_tokens": train_check.billed_tokens,
            "estimated_cost_usd": train_check.estimated_cost_usd, "usd_per_1m_training_tokens": train_check.usd_per_1m,
        },
        "checks": {"training": train_check.to_dict(),
                   "validation": val_check.to_dict() if val_check is not None else None,
                   "examples_in_both_files": shared},
        "seconds": {**{k: round(v, 3) for k, v in timings.items()}, "total": round(sum(timings.values()), 3)},
    }


UNKNOWN_VALUES_WARN_SHARE = 0.1  # more unknown private values than this share of the examples: a warning
FILES_NAMED = 10  # files a warning names; the report's per_file has them all


def _files_text(files: list[str]) -> str:
    more = f" and {len(files) - FILES_NAMED} more" if len(files) > FILES_NAMED else ""
    return ", ".join(files[:FILES_NAMED]) + more


def _warnings(options: BuildOptions, tally: _Tally) -> list[str]:
    """What a researcher must know before training on this set (printed, and listed in the report)."""
    warnings = [f"game {key} comes from {len(g['files'])} files ({', '.join(g['files'])}): its decisions are "
                "counted once per file" for key, g in sorted(tally.per_game.items()) if len(g["files"]) > 1]
    if tally.by_agents:
        reasons = "; ".join(f"{n} {why}" for why, n in sorted(Counter(why for _, why in tally.by_agents).items()))
        files = _files_text([source for source, _ in tally.by_agents])
        warnings.append(f"{len(tally.by_agents)} log(s) hold games played by this project's agents or scripts, not by "
                        f"humans ({reasons}): {files}. Their decisions are in the dataset as if humans made them: "
                        "remove these files unless that is what you want")
    total, unknown = sum(tally.values.values()), tally.values[UNKNOWN]
    if total and unknown > UNKNOWN_VALUES_WARN_SHARE * total:
        files = [f"{source} ({n})" for source, n in tally.unknown_values]
        if options.sessions is None:
            fix = ("--sessions FILE (the server's sessions.json for these sessions) fills them in where the logs "
                   "cannot be trusted")
        else:
            fix = (f"the sessions table {options.sessions.source} does not cover them (see each file's notes in "
                   "per_file): give the sessions.json of these sessions with --sessions")
        warnings.append(f"{unknown} of {total} examples ({unknown / total:.0%}) have unknown private values (their "
                        f"prompts say so), from {len(files)} log(s): {_files_text(files)}; {fix}")
    return warnings


def check_file_report(path: Path, model: str | None = None) -> Any:
    """lib.dataset.ftcheck's checks on any JSONL file (the --check option)."""
    return ftcheck.check_file(path, model=model or ftcheck.DEFAULT_MODEL)
