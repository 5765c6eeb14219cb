"""One agent plays one seat of a voting game over one WebSocket connection.

The receive loop reads every frame, writes it to the transcript, folds it into the PlayerView (the same view the
dataset builder uses) and reacts; it never waits for a model. Decisions run as separate tasks:

- Ready: right after join, and at every phase-0 transition after a short pause, `player-is-ready` is sent and
  re-sent until `ready-received` arrives (the real server silently drops a ready that arrives while it saves the
  new round, PROTOCOL.md section 4), for as long as the game stays in that phase 0.
- Actions: when the player's role owes an action (lib.actions.action_due: owners in phase 3 and 6, the developer
  in 4, anyone in 2 and 5 when chat is on), or when the server itself sends an action-required (top-level or
  nested in an `instruction` event), a decision task asks the policy. The task works on a snapshot of the view.
  A server's action-required is obeyed only for this player's role and the current phase (one that arrives just
  before its phase begins waits for it), and at most once per phase and action.
- Deadline: the phase's end is the earlier of two estimates: the set-timer `end` (server clock, epoch ms) read
  against the local clock plus `clock_offset_ms`, and, when the game parameters are known, the phase timer
  counted from the moment its set-timer arrived (which needs no clock agreement). Nothing better is available:
  the server never says what time it is. The policy must answer by the deadline minus `safety_margin`.
- Fallback: no valid answer by then (timeout, model error, invalid answers exhausted) sends the documented
  fallback action of lib.policy (baseline request/offer/vote; nothing for chat).
- Stale answers: a decision still running when its round/phase ends is cancelled, and an answer that comes back
  after its phase has passed is dropped, never sent into the next phase.
- Everything sent is validated by lib.actions.validate_action: plain integers in range, right role, right phase.

Shutdown: cancelling `Agent.run` closes the socket with code 1001 (going away), cancels the decision and ready
tasks and writes a final "shutdown" record; the caller closes the transcript.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from lib.actions import (
    SPECS,
    ActionError,
    action_due,
    build_action_required,
    server_action_type,
    validate_action,
    wire_json,
)
from lib.game import GameParams
from lib.policy import Policy, amount_cap, fallback_action
from lib.transcript import Transcript
from lib.view import PlayerView

# The join was refused: the game does not exist or has no free seat (PROTOCOL.md section 2).
_JOIN_REFUSED = re.compile(r"^Game \S+ not found|is full", re.IGNORECASE)


@dataclass
class AgentSettings:
    """How an agent behaves; the defaults suit the real server's timers (minutes per phase)."""

    chat: bool = False  # take part in the chat phases 2 and 5
    safety_margin: float = 2.0  # seconds before the phase deadline by which an action must be out
    ready_delay: float = 0.2  # pause after a phase-0 transition before the first ready
    ready_resend: float = 1.0  # seconds between ready re-sends until ready-received
    clock_offset_ms: int = 0  # server clock minus local clock, when known (ms)
    unknown_deadline: float = 30.0  # seconds allowed to decide when no timer is known at all
    open_timeout: float = 10.0
    close_timeout: float = 2.0


class AgentError(RuntimeError):
    """The agent cannot play this game (refused join, unreachable server); the message says why."""


class Agent:
    """One seat: connection, view and decisions. `await agent.run()` plays until game-over."""

    def __init__(self, ws_url: str, game_id: int, recovery: str, policy: Policy, transcript: Transcript, *,
                 params: GameParams | None = None, settings: AgentSettings | None = None,
                 name: str = "agent", joined: asyncio.Event | None = None) -> None:
        self.ws_url = ws_url
        self.game_id = game_id
        self.recovery = recovery
        self.policy = policy
        self.transcript = transcript
        self.params = params
        self.settings = settings or AgentSettings()
        self.name = name
        self.joined = joined or asyncio.Event()
        self.view = PlayerView(game_id=game_id)
        if params is not None:
            self.view.round_count = params.round_count
            self.view.practice_round = params.practice_round
        self.sent: list[dict[str, Any]] = []  # every wire message sent, in order
        self.fallbacks = 0
        self.dropped = 0
        self.end_reason: str | None = None
        self._ws: ClientConnection | None = None
        self._ready_task: asyncio.Task[None] | None = None
        self._decisions: dict[tuple[int, int, str], asyncio.Task[None]] = {}
        self._handled: set[tuple[int, int, str]] = set()  # (round, phase, wire type) already decided
        self._tasks: set[asyncio.Task[Any]] = set()
        self._set_timer_at: float | None = None  # monotonic time of the last set-timer
        self._phase_started: float = time.monotonic()
        self._join_error: str | None = None
        self._deferred_action: dict[str, Any] | None = None  # a server action-required for the coming phase
        transcript.add_secret(recovery)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> PlayerView:
        """Join, play to game-over and return the view. Raises AgentError when the game cannot be played."""
        self.transcript.write("start", agent=self.name, ws_url=self.ws_url, game_id=self.game_id,
                              policy=self.policy.name, model=getattr(self.policy, "model", None),
                              settings=asdict(self.settings))
        reason = "error"
        try:
            try:
                ws = await connect(self.ws_url, open_timeout=self.settings.open_timeout,
                                   close_timeout=self.settings.close_timeout)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                raise AgentError(f"cannot connect to {self.ws_url}: {exc}") from None
            self._ws = ws
            try:
                reason = await self._play(ws)
            except asyncio.CancelledError:
                reason = "cancelled"
                await self._close(1001, "agent shutting down")
                raise
            await self._close(1000, "game over" if self.view.game_over else reason)
            if self._join_error:
                raise AgentError(f"game {self.game_id} refused the join: {self._join_error}")
            return self.view
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except AgentError as exc:
            reason = f"error: {exc}"
            raise
        except Exception as exc:  # a bug must not leave the transcript without its end
            reason = f"error: {type(exc).__name__}: {exc}"
            raise
        finally:
            self.joined.set()  # nobody waits for a join that will never come
            await self._stop_tasks()
            self.end_reason = reason
            self.transcript.write("shutdown", agent=self.name, reason=reason, seat=self.view.number,
                                  round=self.view.round, phase=self.view.phase, game_over=self.view.game_over,
                                  sent=len(self.sent), fallbacks=self.fallbacks, dropped=self.dropped)

    async def _play(self, ws: ClientConnection) -> str:
        await self._send({"gameId": self.game_id, "type": "join", "recovery": self.recovery})
        self._start_ready(delay=0.0)
        try:
            async for raw in ws:
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                try:
                    self._on_text(text)
                except Exception as exc:  # one odd frame must not end the game for this seat
                    self.transcript.write("meta", event="frame handling failed",
                                          error=f"{type(exc).__name__}: {exc}", raw=text[:2000])
                if self.view.game_over:
                    return "game-over"
                if self._join_error:
                    return "join refused"
        except ConnectionClosed as exc:
            self.transcript.write("meta", event="connection closed", code=exc.rcvd.code if exc.rcvd else None)
        return "connection closed"

    async def _close(self, code: int, reason: str) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            await asyncio.wait_for(ws.close(code, reason[:120]), self.settings.close_timeout + 1)
        except (TimeoutError, ConnectionClosed, OSError):
            pass
        self.transcript.write("meta", event="socket closed", code=code)

    async def _stop_tasks(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.transcript.write("meta", event="task failed", error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ frames in

    def _on_text(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except json.JSONDecodeError:
            self.transcript.write("recv", raw=text[:2000], error="not JSON")
            return
        self.transcript.write("recv", msg=frame)
        if not isinstance(frame, dict):
            return
        view = self.view
        before = (view.round, view.phase)
        server_action_before = view.server_action
        kind = frame.get("eventType") if frame.get("type") == "event" else None
        if kind == "set-timer":
            self._set_timer_at = time.monotonic()
        view.apply(frame)
        self._note_join(frame)
        if kind == "phase-transition" and (view.round, view.phase) != before:
            self._on_new_phase()
        elif kind == "phase-transition":
            self._phase_started = self._set_timer_at or time.monotonic()
        if view.server_action is not None and view.server_action is not server_action_before:
            self._on_server_action(view.server_action)
        self._consider()

    def _note_join(self, frame: dict[str, Any]) -> None:
        message = frame.get("message") if frame.get("type") in ("info", "error") else frame.get("error")
        if not isinstance(message, str):
            if frame.get("type") == "event":
                self.joined.set()
            return
        if frame.get("type") == "info" and ("joined" in message or "rejoined" in message):
            self.joined.set()
        elif not self.joined.is_set() and self.view.number is None and _JOIN_REFUSED.search(message):
            self._join_error = message

    def _on_new_phase(self) -> None:
        view = self.view
        # The set-timer of a phase arrives just before its phase-transition; phase 0 has none.
        recent = self._set_timer_at is not None and view.deadline_ms is not None
        self._phase_started = self._set_timer_at if recent else time.monotonic()
        self._set_timer_at = None
        for key, task in list(self._decisions.items()):
            if key[:2] != (view.round, view.phase) and not task.done():
                task.cancel()
                self.dropped += 1
                self.transcript.write("dropped", wire_type=key[2], round=key[0], phase=key[1],
                                      reason=f"phase moved on to round {view.round} phase {view.phase} "
                                             "before an answer was sent")
        if view.phase == 0 and not view.game_over:
            self._start_ready(delay=self.settings.ready_delay)
        deferred, self._deferred_action = self._deferred_action, None
        if deferred is not None:
            self._on_server_action(deferred, deferred=True)

    def _on_server_action(self, data: dict[str, Any], deferred: bool = False) -> None:
        view = self.view
        wire_type = server_action_type(data)
        spec = SPECS.get(wire_type) if wire_type else None
        why = None
        if spec is None:
            why = "unknown action type"
        elif spec.role is not None and spec.role != view.role:
            why = f"{wire_type} is not an action of role {view.role}"
        elif view.phase not in spec.phases:
            why = f"{wire_type} does not belong to phase {view.phase}"
        key = (view.round, view.phase, wire_type or "?")
        if why is None and (key in self._handled or key in self._decisions):
            why = "already answered or being answered in this phase"
        if why is not None and spec is not None and view.phase + 1 in spec.phases and not deferred:
            # Sent just before its phase-transition: obey it when that phase begins.
            self._deferred_action = data
            self.transcript.write("meta", event="server action-required deferred to the next phase", reason=why,
                                  actionType=data.get("actionType"))
            return
        if why is not None:
            self.transcript.write("meta", event="server action-required ignored", reason=why,
                                  actionType=data.get("actionType"))
            return
        assert wire_type is not None
        self._start_decision(key, wire_type, server_data=data)

    def _consider(self) -> None:
        """Start the decision the player owes now, once per round, phase and action."""
        view = self.view
        wire_type = action_due(view, chat=self.settings.chat)
        if wire_type is None:
            return
        key = (view.round, view.phase, wire_type)
        if key in self._handled or key in self._decisions:
            return
        self._start_decision(key, wire_type, server_data=None)

    # ------------------------------------------------------------------ ready

    def _start_ready(self, delay: float) -> None:
        if self._ready_task is not None and not self._ready_task.done():
            self._ready_task.cancel()
        self._ready_task = self._spawn(self._ready_loop(self.view.round, delay))

    async def _ready_loop(self, round_number: int, delay: float) -> None:
        view = self.view
        await asyncio.sleep(delay)
        while view.phase == 0 and view.round == round_number and not view.ready_acked and not view.game_over:
            if self._join_error:
                return
            await self._send({"gameId": self.game_id, "type": "player-is-ready"})
            await asyncio.sleep(self.settings.ready_resend)

    # ------------------------------------------------------------------ decisions

    def _deadline(self) -> tuple[float, str]:
        """(monotonic time at which the current phase ends, how it was estimated)."""
        view = self.view
        now = time.monotonic()
        estimates = []
        if view.deadline_ms is not None:
            server_now_ms = time.time() * 1000 + self.settings.clock_offset_ms
            estimates.append((now + (view.deadline_ms - server_now_ms) / 1000, "set-timer end vs local clock"))
        seconds = self.params.timer(view.phase) if self.params is not None else None
        if seconds is not None:
            estimates.append((self._phase_started + seconds, "phase timer from set-timer arrival"))
        if not estimates:
            return now + self.settings.unknown_deadline, "no timer known"
        return min(estimates)

    def _start_decision(self, key: tuple[int, int, str], wire_type: str, server_data: dict[str, Any] | None) -> None:
        self._handled.add(key)
        task = self._spawn(self._decide(key, wire_type, server_data))
        self._decisions[key] = task
        task.add_done_callback(lambda _t: self._decisions.pop(key, None))

    async def _decide(self, key: tuple[int, int, str], wire_type: str, server_data: dict[str, Any] | None) -> None:
        snapshot = copy.deepcopy(self.view)
        cap = amount_cap(snapshot, self.params)
        phase_end, how = self._deadline()
        act_by = phase_end - self.settings.safety_margin
        if server_data is not None:
            action_required = {"type": "event", "eventType": "action-required", "data": server_data}
        else:
            timer = self.params.timer(snapshot.phase) if self.params is not None else None
            action_required = build_action_required(snapshot, wire_type, cap=cap, timer_seconds=timer)
        self.transcript.write("decide", wire_type=wire_type, round=key[0], phase=key[1],
                              source="server" if server_data is not None else "agent",
                              seconds_left=round(phase_end - time.monotonic(), 3), deadline_from=how,
                              act_within=round(act_by - time.monotonic(), 3), cap=cap)
        message, reason = None, None
        budget = act_by - time.monotonic()
        try:
            if budget > 0:
                message = await asyncio.wait_for(
                    self.policy.decide(snapshot, wire_type, cap=cap, action_required=action_required,
                                       deadline=act_by, transcript=self.transcript), budget)
                if message is None:
                    reason = "no valid answer"
            else:
                reason = "no time left before the safety margin"
        except TimeoutError:
            reason = "deadline minus safety margin reached"
        except Exception as exc:  # whatever the policy's failure, the fallback still goes out
            reason = f"{type(exc).__name__}: {exc}"
        source = self.policy.name
        if message is None:
            self.fallbacks += 1
            try:
                message = fallback_action(snapshot, wire_type, cap)
            except ActionError as exc:
                message, reason = None, f"{reason}; no fallback possible: {exc}"
            source = "fallback"
            self.transcript.write("fallback", wire_type=wire_type, round=key[0], phase=key[1], reason=reason,
                                  action=message)
            if message is None:
                return
        if (self.view.round, self.view.phase) != key[:2] or self.view.game_over:
            self.dropped += 1
            self.transcript.write("dropped", wire_type=wire_type, round=key[0], phase=key[1], action=message,
                                  reason=f"stale: the game is now in round {self.view.round} phase {self.view.phase}")
            return
        try:
            message = validate_action(message, snapshot, wire_type, cap=cap)
        except ActionError as exc:  # a policy bug; never send what the checks refuse
            self.transcript.write("meta", event="refused to send an invalid action", error=str(exc), action=message)
            return
        await self._send(message, source=source)

    # ------------------------------------------------------------------ frames out

    async def _send(self, message: dict[str, Any], **note: Any) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            await ws.send(wire_json(message))
        except ConnectionClosed:
            self.transcript.write("meta", event="send failed: connection closed", msg=message)
            return
        self.view.apply_sent(message)
        self.sent.append(message)
        self.transcript.write("send", msg=message, **note)


async def run_agent(ws_url: str, game_id: int, recovery: str, policy: Policy, transcript: Transcript, *,
                    params: GameParams | None = None, settings: AgentSettings | None = None,
                    name: str = "agent", joined: asyncio.Event | None = None) -> PlayerView:
    """Play one seat of game `game_id` on the server at `ws_url` until game-over; the final view."""
    agent = Agent(ws_url, game_id, recovery, policy, transcript, params=params, settings=settings, name=name,
                  joined=joined)
    return await agent.run()
