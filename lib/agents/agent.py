"""One agent plays one seat of a voting game over one WebSocket connection.

The receive loop reads every frame, writes it to the transcript, folds it into the PlayerView (the same view the
dataset builder uses) and reacts; it never waits for a model. Decisions run as separate tasks:

- Ready: once the server has acknowledged the join, and at every phase-0 transition after a short pause,
  `player-is-ready` is sent and re-sent until `ready-received` arrives (the real server silently drops a ready that
  arrives while it saves the new round, docs/protocol.md section 4), for as long as the game stays in that phase 0.
  Never together with the join: when the last seat's join and ready reach the real server in one read, both
  messages test phase 0 complete, the game advances twice (phase 1 is skipped) and crashes at game-over.
- Actions: when the player's role owes an action (lib.games.voting.actions.action_due: owners in phase 3 and 6, the
developer
  in 4, anyone in 2 and 5 when chat is on), or when the server itself sends an action-required (top-level or
  nested in an `instruction` event), a decision task asks the policy. The task works on a snapshot of the view.
  A server's action-required is obeyed only for this player's role and the current phase (one that arrives just
  before its phase begins waits for it), and at most once per phase and action.
- Deadline: the phase's end is the earlier of two estimates: the set-timer `end` (server clock, epoch ms) read
  against the local clock plus `clock_offset_ms`, and, when the game parameters are known, the phase timer
  counted from the moment its set-timer arrived (which needs no clock agreement). Nothing better is available:
  the server never says what time it is. The policy must answer by the deadline minus `safety_margin`.
- Fallback: no valid answer by then (timeout, model error, invalid answers exhausted) sends the documented
  fallback action of lib.games.voting.policy (baseline request/offer/vote; nothing for chat).
- Stale answers: a decision still running when its round/phase ends is cancelled, and an answer that comes back
  after its phase has passed is dropped, never sent into the next phase.
- Everything sent is validated by lib.games.voting.actions.validate_action: plain integers in range, right role, right
phase.
- Who decided: every decision becomes one row of the run's decisions table (lib.agents.decisions.DecisionLog): the
  model (first answer, or after retries), the fallback and why (timeout, model error, invalid answers), the rule
  policy, or nothing sent. A model policy reports its attempts into the decision's lib.agents.decisions.Trace; whoever
  cancels a decision writes the reason there first, so a cut model call says what cut it.

Network (docs/protocol.md sections 2 and 4): a lost connection is reconnected with backoff (`reconnect_delays`: one
pause per attempt, so the attempts are bounded and a server that stays away ends the agent with an AgentError
that says so), the seat is rejoined with the same recovery code, and, because the server replays nothing, the
view is resynced from GET /games/status (lib.games.voting.resync; an earlier round's `player.result` is never taken for
this
round's). An action owed in the current phase is then still delivered: the server's snapshot says what it already
has; an answer chosen but not delivered is sent again, an answer not chosen yet is decided. The game ends at
game-over, or with an AgentError naming the reason when the server says the game is gone. Error frames from the
server are written to the transcript ("server-error") and change nothing else.

Shutdown: cancelling `Agent.run` closes the socket with code 1001 (going away), cancels the decision and ready
tasks and writes a final "shutdown" record; the caller closes the transcript.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from lib.agents import decisions
from lib.agents.transcript import Transcript
from lib.games.voting.actions import (
    CHAT,
    SPECS,
    ActionError,
    action_due,
    build_action_required,
    server_action_type,
    validate_action,
    wire_json,
)
from lib.games.voting.policy import Policy, amount_cap, fallback_action
from lib.games.voting.resync import apply_resync
from lib.games.voting.rules import ROLE_NAMES, GameParams
from lib.games.voting.view import PlayerView
from lib.ibex.api import GameNotFound, IbexApi, IbexApiError

# The join was refused: the game does not exist or has no free seat (docs/protocol.md section 2).
_JOIN_REFUSED = re.compile(r"^Game \S+ not found|is full", re.IGNORECASE)
_GONE = re.compile(r"^Game \S+ not found", re.IGNORECASE)
# Acknowledgements of our own actions: the server has them.
_ACKS = {"compensation-request-received": "compensation-request", "compensation-offer-received": "compensation-offer",
         "compensation-decision-received": "compensation-decision"}
MAX_FRAME_BYTES = 16 * 1024 * 1024  # far above any real frame; a bigger one closes the socket (1009) and we rejoin


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
    # Pause before each new connection attempt after a failed or lost one; its length bounds the attempts
    # (about a minute in all by default, then the agent gives up with an AgentError).
    reconnect_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0)
    ping_interval: float = 10.0  # keepalive: a silent, half-open connection is noticed within two intervals
    resync_attempts: int = 5  # status snapshots to try after a rejoin (one may be mid round change)


class AgentError(RuntimeError):
    """The agent cannot play this game (refused join, unreachable server, game gone); the message says why."""


Key = tuple[int, int, str]  # (round, phase, wire type)


def view_snapshot(view: PlayerView) -> PlayerView:
    """A copy of the view that later frames cannot change, for a decision that outlives the frame.

    The view replaces (never mutates) the values it stores, except chat lists and request dicts, which are copied
    here; this is much cheaper than a deepcopy, and it runs for every decision of every agent.
    """
    rounds = {number: dataclasses.replace(rec, chat=list(rec.chat), requests=dict(rec.requests))
              for number, rec in view.rounds.items()}
    return dataclasses.replace(view, rounds=rounds, players=list(view.players), errors=list(view.errors))


class Agent:
    """One seat: connection, view and decisions. `await agent.run()` plays until game-over."""

    def __init__(self, ws_url: str, game_id: int, recovery: str, policy: Policy, transcript: Transcript, *,
                 params: GameParams | None = None, settings: AgentSettings | None = None,
                 name: str = "agent", joined: asyncio.Event | None = None, api: IbexApi | None = None,
                 resume: bool = False, decision_log: decisions.DecisionLog | None = None,
                 on_phase: Callable[[Agent], None] | None = None) -> None:
        self.ws_url = ws_url
        self.game_id = game_id
        self.recovery = recovery
        self.policy = policy
        self.transcript = transcript
        self.params = params
        self.settings = settings or AgentSettings()
        self.name = name
        self.joined = joined or asyncio.Event()
        self.api = api  # for the status snapshot after a rejoin; without it the view catches up at the next phase
        self.resume = resume  # the code already holds a seat (a crashed run's): the first join is a rejoin too
        self.decision_log = decision_log  # the run's decisions table, one row per decision
        self.on_phase = on_phase  # told of every new round/phase and of game-over (live progress)
        self.view = PlayerView(game_id=game_id)
        if params is not None:
            self.view.round_count = params.round_count
            self.view.practice_round = params.practice_round
        self.sent: list[dict[str, Any]] = []  # every wire message sent, in order
        self.fallbacks = 0
        self.dropped = 0
        self.reconnects = 0
        # Frames whose handling failed (or whose transcript line did): counted so the run can say so, not only a
        # line in the transcript nobody reads.
        self.frame_errors = 0
        self._last_frame_error: str | None = None
        self.end_reason: str | None = None
        self._ws: ClientConnection | None = None
        self._connection = 0  # how many sockets this agent has opened
        self._ready_task: asyncio.Task[None] | None = None
        self._decisions: dict[Key, asyncio.Task[None]] = {}
        self._traces: dict[Key, decisions.Trace] = {}  # of the decisions running, to say why one is cancelled
        self._delivered: set[Key] = set()  # answers whose send went out on a socket (the server may have them)
        self._handled: set[Key] = set()  # (round, phase, wire type) already decided
        self._chosen: dict[Key, dict[str, Any]] = {}  # the answer decided for a key, kept to re-send after a rejoin
        self._acked: set[Key] = set()  # actions the server acknowledged
        self._tasks: set[asyncio.Task[Any]] = set()
        self._set_timer_at: float | None = None  # monotonic time of the last set-timer
        self._phase_started: float = time.monotonic()
        self._join_error: str | None = None
        self._join_confirmed = False  # on the current socket
        self._join_acked = asyncio.Event()  # the same, for the ready loop to wait on
        self._gone: str | None = None  # why the game is over for us without a game-over (deleted, lost)
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
                reason = await self._session()
            except asyncio.CancelledError:
                reason = "cancelled"
                await self._close(1001, "agent shutting down")
                raise
            await self._close(1000, "game over" if self.view.game_over else reason)
            if self._join_error:
                raise AgentError(f"game {self.game_id} refused the join: {self._join_error}")
            if self._gone:
                raise AgentError(self._gone)
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
                                  sent=len(self.sent), fallbacks=self.fallbacks, dropped=self.dropped,
                                  reconnects=self.reconnects, frame_errors=self.frame_errors,
                                  last_frame_error=self._last_frame_error,
                                  transcript_failures=getattr(self.transcript, "failures", 0))

    async def _session(self) -> str:
        """Connections one after another until game-over, a refused join or a game that is gone."""
        while True:
            ws = await self._connect()
            self._ws = ws
            reason = await self._play(ws, rejoin=self._connection > 1 or self.resume)
            if reason != "connection closed" or self.view.game_over or self._gone:
                return "game-over" if self.view.game_over else reason
            self.reconnects += 1
            self.transcript.write("meta", event="connection lost; reconnecting", round=self.view.round,
                                  phase=self.view.phase, reconnects=self.reconnects)

    async def _connect(self) -> ClientConnection:
        """A new socket; after a failed attempt, the next pause of `reconnect_delays`, and AgentError after the last."""
        delays = self.settings.reconnect_delays
        started = time.monotonic()
        failures = 0
        while True:
            try:
                ws = await connect(self.ws_url, open_timeout=self.settings.open_timeout,
                                   close_timeout=self.settings.close_timeout, compression=None,
                                   ping_interval=self.settings.ping_interval,
                                   ping_timeout=self.settings.ping_interval, max_size=MAX_FRAME_BYTES)
            except InvalidURI as exc:
                raise AgentError(f"cannot connect to {self.ws_url}: {exc}") from None
            except InvalidStatus as exc:
                code = exc.response.status_code
                if 400 <= code < 500:  # a wrong path or a refused upgrade: waiting will not change it
                    raise AgentError(f"cannot connect to {self.ws_url}: the server answered HTTP {code} to the "
                                     "WebSocket handshake (is the URL, or the proxy path, right?)") from None
                error = f"HTTP {code}"
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                self._connection += 1
                self._join_confirmed = False
                self._join_acked.clear()
                if failures or self._connection > 1:
                    self.transcript.write("meta", event="connected", connection=self._connection,
                                          failed_attempts=failures)
                return ws
            if failures >= len(delays):
                raise AgentError(f"cannot connect to {self.ws_url}: {error} (gave up after {failures + 1} attempts "
                                 f"over {time.monotonic() - started:.0f} s)")
            pause = delays[failures]
            failures += 1
            self.transcript.write("meta", event="connect failed", attempt=failures, error=error, retry_in=pause)
            await asyncio.sleep(pause)

    async def _play(self, ws: ClientConnection, rejoin: bool) -> str:
        await self._send({"gameId": self.game_id, "type": "join", "recovery": self.recovery})
        if rejoin:
            self._spawn(self._resync(self._connection))
        else:
            self._start_ready(delay=0.0)
        try:
            async for raw in ws:
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                try:
                    self._on_text(text)
                except Exception as exc:  # one odd frame must not end the game for this seat
                    self.frame_errors += 1
                    self._last_frame_error = f"{type(exc).__name__}: {exc}"
                    self.transcript.write("meta", event="frame handling failed",
                                          error=f"{type(exc).__name__}: {exc}", raw=text[:2000])
                if self.view.game_over:
                    return "game-over"
                if self._join_error:
                    return "join refused"
                if self._gone:
                    return "game gone"
        except ConnectionClosed as exc:
            close = exc.rcvd or exc.sent  # sent: we closed it, e.g. 1009 for a frame above max_size
            self.transcript.write("meta", event="connection closed", code=close.code if close else None,
                                  by="server" if exc.rcvd else "agent" if exc.sent else "network",
                                  reason=close.reason if close else None)
        if self.view.game_over:
            return "game-over"
        return "game gone" if self._gone else "connection closed"

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
        for trace in self._traces.values():
            trace.cancel_reason = trace.cancel_reason or "the agent is shutting down"
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

    # ------------------------------------------------------------------ rejoin

    async def _resync(self, connection: int) -> None:
        """After a rejoin: fold the server's status snapshot into the view and deliver what is still owed."""
        if self.api is None:
            self._after_rejoin(acted=set())
            return
        for attempt in range(1, self.settings.resync_attempts + 1):
            try:
                status = await self.api.status(self.game_id, self.recovery)
            except GameNotFound as exc:
                self._game_gone(f"game {self.game_id} is gone from the server ({exc.message})")
                return
            except IbexApiError as exc:
                self.transcript.write("meta", event="resync failed", error=str(exc))
                self._after_rejoin(acted=set())
                return
            if connection != self._connection or self.view.game_over:
                return  # another socket took over meanwhile, or the game ended
            game = (status.game_data or {}).get("game") or {}
            snapshot_at = (game.get("round"), game.get("phase"))
            if not status.found or status.game_data is None:
                self.transcript.write("meta", event="resync: the server does not know this code yet")
                self._after_rejoin(acted=set())
                return
            usable = all(isinstance(x, int) and not isinstance(x, bool) for x in snapshot_at)
            if usable and snapshot_at >= (self.view.round, self.view.phase):
                self._apply_snapshot(status.game_data)
                return
            # Between rounds (null phase), or older than a frame the new socket already brought: ask again.
            self.transcript.write("meta", event="resync snapshot not usable yet", snapshot=list(snapshot_at),
                                  view=[self.view.round, self.view.phase], attempt=attempt)
            await asyncio.sleep(0.05 * attempt)
        self._after_rejoin(acted=set())

    def _apply_snapshot(self, game_data: dict[str, Any]) -> None:
        view = self.view
        before = (view.round, view.phase)
        sync = apply_resync(view, game_data)
        self.transcript.write("resync", round=sync.round, phase=sync.phase, deadline_ms=sync.deadline_ms,
                              acted=sorted(sync.acted), ignored_result=sync.ignored_result,
                              chat_added=sync.chat_added, frames=sync.frames)
        if view.game_over:
            self._tell_phase()
            self._finish_connection()
            return
        if (view.round, view.phase) != before:
            self._set_timer_at = None  # the snapshot's deadline is all we know of this phase
            self._on_new_phase()
        for wire_type in sync.acted:
            self._handled.add((view.round, view.phase, wire_type))
            self._acked.add((view.round, view.phase, wire_type))
        self._after_rejoin(sync.acted, snapshot=True)

    def _after_rejoin(self, acted: set[str], snapshot: bool = False) -> None:
        """Re-send answers chosen for this phase that the server may not have; decide what is still owed.

        `snapshot`: `acted` comes from the server's status snapshot. Without one, a chat that went out on the
        old socket is never sent again: the server may have relayed it, and a second copy would reach every
        recipient (a repeated request, offer or vote only replaces the first, so those are re-sent)."""
        view = self.view
        if view.phase == 0 and not view.ready_acked and (self._ready_task is None or self._ready_task.done()):
            self._start_ready(delay=0.0)
        for key, message in list(self._chosen.items()):
            if key[:2] != (view.round, view.phase) or key[2] in acted or key in self._acked or key in self._decisions:
                continue
            if key[2] == CHAT and not snapshot and key in self._delivered:
                self.transcript.write("meta", event="chat not re-sent: no snapshot says whether it arrived",
                                      round=key[0], phase=key[1])
                continue
            self.transcript.write("meta", event="re-sending an answer the server may not have", wire_type=key[2])
            self._spawn(self._send(message, source="re-sent after rejoin"))
        self._consider()

    def _game_gone(self, why: str) -> None:
        self._gone = why
        self.transcript.write("meta", event="game gone", reason=why)
        self._finish_connection()

    def _finish_connection(self) -> None:
        """End the receive loop of the current socket (game over, or gone) from outside it."""
        ws = self._ws
        if ws is not None:
            self._spawn(ws.close(1000, "game over"))

    # ------------------------------------------------------------------ frames in

    def _on_text(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            self.transcript.write("recv", raw=text[:2000], error="not JSON")
            return
        try:
            self.transcript.write("recv", msg=frame)
        except Exception as exc:  # the transcript records play, it never decides it: the frame is applied anyway
            self.frame_errors += 1
            self._last_frame_error = f"transcript: {type(exc).__name__}: {exc}"
        if not isinstance(frame, dict):
            return
        view = self.view
        before = (view.round, view.phase)
        server_action_before = view.server_action
        over_before = view.game_over
        kind = frame.get("eventType") if frame.get("type") == "event" else None
        if kind == "set-timer":
            self._set_timer_at = time.monotonic()
        view.apply(frame)
        self._note_join(frame)
        if kind in _ACKS:
            self._acked.add((view.round, view.phase, _ACKS[kind]))
        if kind == "phase-transition" and (view.round, view.phase) != before:
            self._on_new_phase()
        elif kind == "phase-transition":
            self._phase_started = self._set_timer_at or time.monotonic()
        if view.server_action is not None and view.server_action is not server_action_before:
            self._on_server_action(view.server_action)
        self._consider()
        if view.game_over and not over_before:
            self._tell_phase()

    def _note_join(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event" and self._join_confirmed:
            return  # the common case, once joined: nothing to note
        error = kind == "error" or ("error" in frame and kind is None)
        message = frame.get("message") if frame.get("type") in ("info", "error") else frame.get("error")
        if error:
            self.transcript.write("server-error", message=message, round=self.view.round, phase=self.view.phase)
        if not isinstance(message, str):
            if frame.get("type") == "event":
                self._confirm_join()
            return
        if frame.get("type") == "info" and ("joined" in message or "rejoined" in message):
            self._confirm_join()
        elif error and not self._join_confirmed and _JOIN_REFUSED.search(message):
            if self._connection > 1 and _GONE.search(message):
                self._gone = f"game {self.game_id} is gone from the server: {message}"
            elif self._connection <= 1 and self.view.number is None:
                self._join_error = message

    def _confirm_join(self) -> None:
        self._join_confirmed = True
        self._join_acked.set()
        self.joined.set()

    def _on_new_phase(self) -> None:
        view = self.view
        # The set-timer of a phase arrives just before its phase-transition; phase 0 has none.
        recent = self._set_timer_at is not None and view.deadline_ms is not None
        self._phase_started = self._set_timer_at if recent else time.monotonic()
        self._set_timer_at = None
        for key, task in list(self._decisions.items()):
            if key[:2] != (view.round, view.phase) and not task.done():
                trace = self._traces.get(key)
                if trace is not None:
                    trace.cancel_reason = f"the phase moved on to round {view.round} phase {view.phase}"
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
        self._tell_phase()

    def _tell_phase(self) -> None:
        if self.on_phase is not None:
            try:
                self.on_phase(self)
            except Exception as exc:  # progress printing must never cost a decision
                self.transcript.write("meta", event="progress callback failed", error=f"{type(exc).__name__}: {exc}")

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
        await self._join_acked.wait()
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

    def _start_decision(self, key: Key, wire_type: str, server_data: dict[str, Any] | None) -> None:
        self._handled.add(key)
        task = self._spawn(self._decide(key, wire_type, server_data))
        self._decisions[key] = task
        task.add_done_callback(lambda _t: self._decisions.pop(key, None))

    async def _decide(self, key: Key, wire_type: str, server_data: dict[str, Any] | None) -> None:
        snapshot = view_snapshot(self.view)
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
        trace, started, model = self._open_decision(key, snapshot, wire_type, act_by)
        message, reason, why = None, None, None
        budget = act_by - time.monotonic()
        try:
            if budget > 0:
                # asyncio.timeout, not wait_for: no extra task, so an instant policy answers in the same step.
                async with asyncio.timeout(budget):
                    message = await self.policy.decide(snapshot, wire_type, cap=cap, action_required=action_required,
                                                       deadline=act_by, transcript=self.transcript)
                if message is None:
                    reason, why = "no valid answer", trace.why_no_answer()
            else:
                reason, why = "no time left before the safety margin", decisions.TIMEOUT
        except TimeoutError:
            reason, why = "deadline minus safety margin reached", decisions.TIMEOUT
        except asyncio.CancelledError:
            self._record(key, snapshot, wire_type, None, decisions.NONE, started, trace, model,
                         detail=f"no answer sent: {trace.cancel_reason or 'cancelled'}")
            raise
        except Exception as exc:  # whatever the policy's failure, the fallback still goes out
            reason = f"{type(exc).__name__}: {exc}"
            why = decisions.MODEL_ERROR if trace.attempts else decisions.POLICY_ERROR
        source = self.policy.name
        if message is not None:
            made_by, detail = self._answered_by(trace)
        else:
            self.fallbacks += 1
            made_by = decisions.FALLBACK
            detail = f"{reason}; {trace.summary()}" if trace.attempts else reason
            try:
                message = fallback_action(snapshot, wire_type, cap)
            except ActionError as exc:
                message, reason = None, f"{reason}; no fallback possible: {exc}"
                detail = f"{detail}; no fallback possible: {exc}"
            source = "fallback"
            self.transcript.write("fallback", wire_type=wire_type, round=key[0], phase=key[1], reason=reason,
                                  fallback_reason=why, action=message)
            if message is None:
                self._record(key, snapshot, wire_type, None, made_by, started, trace, model, why=why,
                             detail=detail if wire_type != CHAT else f"{detail}; chat has no fallback: nothing sent")
                return
        await self._deliver(key, snapshot, wire_type, message, source=source, made_by=made_by, detail=detail,
                            record=functools.partial(self._record, key, snapshot, wire_type, made_by=made_by,
                                                     started=started, trace=trace, model=model, why=why))

    def _open_decision(self, key: Key, snapshot: Any, wire_type: str,
                       act_by: float) -> tuple[decisions.Trace, float, str | None]:
        """A decision begins, whatever the game: its trace (the model policy reports its attempts into it, through
        this task's context) and its `started` row in the decisions table. Returns (trace, started, model)."""
        trace = decisions.Trace(deadline=act_by)
        decisions.begin(trace)
        self._traces[key] = trace
        started = time.monotonic()
        model = getattr(self.policy, "model", None)
        if self.decision_log is not None:
            self.decision_log.started(game=self.game_id, round=key[0], phase=key[1], seat=snapshot.number,
                                      agent=self.name, action_type=wire_type, model=model)
        return trace, started, model

    def _answered_by(self, trace: decisions.Trace) -> tuple[str, str | None]:
        """Who made the policy's answer (the policy, the model, the model after retries) and the record's detail."""
        made_by = self.policy.name if not trace.attempts else decisions.MODEL if trace.attempts == 1 \
            else decisions.MODEL_RETRIED
        return made_by, trace.summary() if trace.attempts > 1 else None

    async def _deliver(self, key: Key, snapshot: Any, wire_type: str, message: dict[str, Any], *, source: str,
                       made_by: str, detail: str | None, record: Callable[..., None]) -> None:
        """The tail of every decision, whatever the game: an answer whose phase has ended is dropped, one the last
        check refuses is not sent, the rest is sent; each recorded once (`record`: `_record` less the action)."""
        stale = self._stale_reason(key)
        if stale is not None:
            self.dropped += 1
            self.transcript.write("dropped", wire_type=wire_type, round=key[0], phase=key[1], action=message,
                                  reason=stale)
            record(message, detail=f"{detail}; {stale}" if detail else stale)
            return
        checked, refusal = self._check_to_send(key, snapshot, wire_type, message, detail)
        if checked is None:
            record(message, detail=refusal)
            return
        self._chosen[key] = checked
        record(checked, detail=detail, sent=True)
        await self._send(checked, source=source, made_by=made_by)

    def _stale_reason(self, key: Key) -> str | None:
        """Why an answer decided for `key` may no longer go out (None: it may)."""
        if (self.view.round, self.view.phase) != key[:2] or self.view.game_over:
            return f"stale: the game is now in round {self.view.round} phase {self.view.phase}"
        return None

    def _check_to_send(self, key: Key, snapshot: Any, wire_type: str, message: dict[str, Any],
                       detail: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """The last check before sending: (the message to send, None), or (None, the record's detail)."""
        try:
            return validate_action(message, snapshot, wire_type, cap=amount_cap(snapshot, self.params)), None
        except ActionError as exc:  # a policy bug; never send what the checks refuse
            self.transcript.write("meta", event="refused to send an invalid action", error=str(exc), action=message)
            return None, f"refused to send an invalid action: {exc}"

    def _record(self, key: Key, view: Any, wire_type: str, action: dict[str, Any] | None, made_by: str,
                started: float, trace: decisions.Trace, model: str | None, *, why: str | None = None,
                detail: str | None = None, sent: bool = False) -> None:
        """One row of the decisions table (`sent`: the action was chosen to go out now)."""
        self._traces.pop(key, None)
        if self.decision_log is None:
            return
        self.decision_log.add(decisions.Decision(
            game=self.game_id, round=key[0], phase=key[1], seat=view.number,
            role=ROLE_NAMES.get(view.role) if view.role is not None else None, agent=self.name,
            action_type=self._action_type(wire_type, action), made_by=made_by, action=action,
            private_values=self._private_values(view),
            fallback_reason=why if made_by == decisions.FALLBACK else None, detail=detail,
            model=model if trace.attempts else None, attempts=trace.attempts,
            latency_s=time.monotonic() - started, sent=sent))

    def _action_type(self, wire_type: str, action: dict[str, Any] | None) -> str:
        """The decision's action type as the decisions table names it."""
        return wire_type

    def _private_values(self, view: Any) -> Any:
        """What the seat privately knew when it decided, as the decisions table records it."""
        return view.current.values

    # ------------------------------------------------------------------ frames out

    async def _send(self, message: dict[str, Any], **note: Any) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            await ws.send(wire_json(message))
        except ConnectionClosed:
            # Kept in _chosen when it is an action: re-sent after the rejoin if the server does not have it.
            self.transcript.write("meta", event="send failed: connection closed", msg=message)
            return
        if isinstance(message.get("type"), str):
            self._delivered.add((self.view.round, self.view.phase, message["type"]))
        self.view.apply_sent(message)
        self.sent.append(message)
        self.transcript.write("send", msg=message, **note)


async def run_agent(ws_url: str, game_id: int, recovery: str, policy: Policy, transcript: Transcript, *,
                    params: GameParams | None = None, settings: AgentSettings | None = None,
                    name: str = "agent", joined: asyncio.Event | None = None,
                    api: IbexApi | None = None, resume: bool = False,
                    decision_log: decisions.DecisionLog | None = None) -> PlayerView:
    """Play one seat of game `game_id` on the server at `ws_url` until game-over; the final view."""
    agent = Agent(ws_url, game_id, recovery, policy, transcript, params=params, settings=settings, name=name,
                  joined=joined, api=api, resume=resume, decision_log=decision_log)
    return await agent.run()
