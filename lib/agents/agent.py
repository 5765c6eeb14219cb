"""One agent plays one seat of any registered game over one WebSocket connection.

The agent is the seat's session and its decision scheduler; everything about the game itself it asks the game's
`seat` part (lib.games.protocols.SeatRules): the view, what is due, the server's action-required, the last check,
the fallback, the resync, what the decisions table records. No game has its own agent class.

The receive loop reads every frame, writes it to the transcript, folds it into the game's view (the same view the
dataset builder uses) and reacts; it never waits for a model. Decisions run as separate tasks:

- Ready: once the server has acknowledged the join, and at every phase-0 transition after a short pause,
  `player-is-ready` is sent and re-sent until `ready-received` arrives (the real server silently drops a ready that
  arrives while it saves the new round, docs/protocol.md section 4), for as long as the game stays in that phase 0.
  Never together with the join: when the last seat's join and ready reach the real server in one read, both
  messages test phase 0 complete, the game advances twice (phase 1 is skipped) and crashes at game-over.
- Actions: when the seat owes a decision (SeatRules.due), or when the server itself sends an action-required
  (top-level or nested in an `instruction` event) that the game obeys, a decision task asks the policy. The task
  works on a snapshot of the view. A server's action-required is obeyed only when the game says so (for voting:
  this player's role and the current phase; one that arrives just before its phase begins waits for it), and at
  most once per phase and action. A decision is taken once per phase, or, when the game gives it a cadence (the
  market's trading), again whenever the view's version changes, at most once per interval, one at a time.
- Deadline: the phase's end is the earlier of two estimates: the set-timer `end` (server clock, epoch ms) read
  against the local clock plus `clock_offset_ms`, and, when the game parameters are known, the phase timer
  counted from the moment its set-timer arrived (which needs no clock agreement). Nothing better is available:
  the server never says what time it is. The policy must answer by the deadline minus `safety_margin`.
- Fallback: no valid answer by then (timeout, model error, invalid answers exhausted) sends the game's fallback
  (SeatRules.fallback).
- Stale answers: a decision still running when its round/phase ends is cancelled, and an answer that comes back
  after its phase has passed (or while it is closing) is dropped, never sent into the next phase.
- Everything sent passes the game's last check (SeatRules.validate); one the game has overtaken meanwhile is
  dropped.
- Who decided: every decision becomes one row of the run's decisions table (lib.agents.decisions.DecisionLog): the
  model (first answer, or after retries), the fallback and why (timeout, model error, invalid answers), the rule
  policy, or nothing sent. A model policy reports its attempts into the decision's lib.agents.decisions.Trace;
  whoever cancels a decision writes the reason there first, so a cut model call says what cut it.

Network (docs/protocol.md sections 2 and 4): a lost connection is reconnected with backoff (`reconnect_delays`: one
pause per attempt, so the attempts are bounded and a server that stays away ends the agent with an AgentError
that says so), the seat is rejoined with the same recovery code, and, because the server replays nothing, the
view is resynced from GET /games/status (SeatRules.resync); until then no decision starts (the view misses what
happened meanwhile), and an answer that comes back meanwhile is recorded as not sent, never as sent on a dead
socket. An action owed in the current phase is then still delivered: the server's snapshot says what it already
has; an answer chosen but not delivered is sent again when the game says a repeat is safe (SeatRules.resend), an
answer not chosen yet is decided. The game ends at
game-over, or with an AgentError naming the reason when the server says the game is gone. Error frames from the
server are written to the transcript ("server-error"; a warning frame, "server-warning") and counted: as a race no
client can avoid when the game says so (SeatRules.race, asked before the view folds the frame; the record then
names the race) or when it answers a ready re-sent as the round started (_session_race, every game), else as a
refusal (`refusals`), which the run reports and the local server's --strict fails.

Shutdown: cancelling `Agent.run` closes the socket with code 1001 (going away), cancels the decision and ready
tasks and writes a final "shutdown" record; the caller closes the transcript.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from lib.agents import decisions
from lib.agents.transcript import RawJSON, Transcript
from lib.games import DEFAULT_GAME, game_for
from lib.games.protocols import ActionError, Game, NoLongerValid, Policy
from lib.ibex.api import GameNotFound, IbexApi, IbexApiError
from lib.ibex.log import loads_json

if TYPE_CHECKING:
    from lib.ibex.params import GameParams

# The join was refused: the game does not exist or has no free seat (docs/protocol.md section 2).
_JOIN_REFUSED = re.compile(r"^Game \S+ not found|is full", re.IGNORECASE)
_GONE = re.compile(r"^Game \S+ not found", re.IGNORECASE)
# The compact JSON of a wire message, as the training set's assistant turns hold it (one encoder: json.dumps builds
# one per call).
_WIRE_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
MAX_FRAME_BYTES = 16 * 1024 * 1024  # far above any real frame; a bigger one closes the socket (1009) and we rejoin


def _server_problem(frame: dict[str, Any]) -> tuple[str, str] | None:
    """(its transcript record kind, its text) for a frame in which the server says it did not take a message (an
    error frame, or a warning frame such as the market's "declaration update. This is not allowed"), else None."""
    kind = frame.get("type")
    if kind == "error" or ("error" in frame and kind is None):
        return "server-error", str(frame.get("message", frame.get("error")))
    if kind == "warning":
        return "server-warning", str(frame.get("message"))
    return None


def _parse(text: str) -> Any:
    """A frame's JSON, through lib.ibex.log's loader: orjson where it gives exactly what json gives (every frame of
    every seat is parsed), json for the rest."""
    try:
        raw = text.encode()
    except UnicodeEncodeError:  # a lone surrogate, which no WebSocket text frame holds
        return json.loads(text)
    return loads_json(raw)


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


class Agent:
    """One seat of `game` (None: voting): connection, view and decisions. `await agent.run()` plays until game-over.

    `game_options` are the game's own (SeatRules.configured: for the market games game_type, baseline,
    trade_interval, trade_seconds, min_trade_seconds); an option the game does not take is a TypeError."""

    def __init__(self, ws_url: str, game_id: int, recovery: str, policy: Policy, transcript: Transcript, *,
                 game: Game | None = None, params: GameParams | None = None, settings: AgentSettings | None = None,
                 name: str = "agent", joined: asyncio.Event | None = None, api: IbexApi | None = None,
                 resume: bool = False, decision_log: decisions.DecisionLog | None = None,
                 on_phase: Callable[[Agent], None] | None = None,
                 connector: Callable[[], Awaitable[Any]] | None = None, **game_options: Any) -> None:
        self.game = game if game is not None else game_for(DEFAULT_GAME)  # the call sites from before games were parts
        self.seat = self.game.seat.configured(**game_options)
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
        # Opens the connection instead of a WebSocket to ws_url (LocalServer.connect_in_memory: an in-process
        # study's agents reach its server without sockets); what it returns is used as a ClientConnection.
        self.connector = connector
        self.view: Any = self.seat.new_view(game_id, params)
        self.sent: list[dict[str, Any]] = []  # every wire message sent, in order
        self.fallbacks = 0
        self.dropped = 0
        self.reconnects = 0
        # Frames whose handling failed (or whose transcript line did): counted so the run can say so, not only a
        # line in the transcript nobody reads.
        self.frame_errors = 0
        self._last_frame_error: str | None = None
        # The server's error and warning frames: the ones the game calls a race no client can avoid, by race, and the
        # others, refusals of what this seat sent (the strict local server refuses none of a correct agent's).
        self.races: Counter[str] = Counter()
        self.refusals = 0
        self.end_reason: str | None = None
        self._ws: ClientConnection | None = None
        self._connection = 0  # how many sockets this agent has opened
        self._ready_task: asyncio.Task[None] | None = None
        # player-is-ready sent and not yet answered (ready-received, or the error of a ready that came too late);
        # back to 0 at each phase 0, where the real server may drop one silently
        self._readies_unanswered = 0
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
        self._repeats = 0  # repeated decisions started (the market's trading)
        self._repeat_seen = -1  # the view's version the last repeated decision started from
        self._repeat_started = 0.0
        self._repeat_task: asyncio.Task[None] | None = None
        self._seat_lookup: asyncio.Task[None] | None = None
        self._seat_lookup_over = False  # the status lookup of the seat's number answered (or failed)
        # The view may be acted on: False from a lost connection until the rejoin's resync has run, so no decision
        # starts from a view that misses what happened meanwhile, and none is counted as sent on a dead socket.
        self._synced = not resume
        transcript.add_secret(recovery)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> Any:
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
                                  refusals=self.refusals, races=sum(self.races.values()),
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
            self._synced = False
            self.transcript.write("meta", event="connection lost; reconnecting", round=self.view.round,
                                  phase=self.view.phase, reconnects=self.reconnects)

    async def _connect(self) -> ClientConnection:
        """A new socket; after a failed attempt, the next pause of `reconnect_delays`, and AgentError after the last."""
        delays = self.settings.reconnect_delays
        started = time.monotonic()
        failures = 0
        while True:
            try:
                ws = await (self.connector() if self.connector is not None else connect(
                    self.ws_url, open_timeout=self.settings.open_timeout, close_timeout=self.settings.close_timeout,
                    compression=None, ping_interval=self.settings.ping_interval,
                    ping_timeout=self.settings.ping_interval, max_size=MAX_FRAME_BYTES))
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
        sync = self.seat.resync(view, game_data)
        self.transcript.write("resync", **sync.record)
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
        """Re-send answers chosen for this phase that the server may not have, where the game says a repeat is
        safe (SeatRules.resend); decide what is still owed. `snapshot`: `acted` comes from the server's status
        snapshot."""
        view = self.view
        self._synced = True
        if view.phase == 0 and not view.ready_acked and (self._ready_task is None or self._ready_task.done()):
            self._start_ready(delay=0.0)
        for key, message in list(self._chosen.items()):
            if key[:2] != (view.round, view.phase) or key in self._decisions:
                continue
            again, note = self.seat.resend(view, key[2], acted=acted, acknowledged=key in self._acked,
                                           delivered=key in self._delivered, snapshot=snapshot)
            if note is not None:
                self.transcript.write("meta", **note)
            if again:
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
            frame = _parse(text)
        except (json.JSONDecodeError, RecursionError):
            self.transcript.write("recv", raw=text[:2000], error="not JSON")
            return
        try:
            # The text itself, which is the frame's JSON, unless a line break in it would split the record.
            self.transcript.write("recv", msg=frame if "\n" in text or "\r" in text else RawJSON(text))
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
        elif kind == "ready-received":
            self._readies_unanswered = max(0, self._readies_unanswered - 1)
        problem = _server_problem(frame)
        # Asked before the view folds the frame: the view may forget what the error answers (a cancel in flight).
        race = None
        if problem is not None and problem[0] == "server-error":
            race = self.seat.race(view, problem[1]) or self._session_race(problem[1])
        view.apply(frame)
        if problem is not None:
            self._note_problem(frame, problem[0], race)
        self._note_join(frame)
        if (self._seat_lookup is None and self._join_confirmed and self.api is not None
                and self.seat.seat_lookup(view)):
            self._seat_lookup = self._spawn(self._find_seat())
        acked = self.seat.acknowledged(frame)
        if acked is not None:
            self._acked.add((view.round, view.phase, acked))
        if kind == "phase-transition" and (view.round, view.phase) != before:
            if view.phase == 0:
                self._readies_unanswered = 0
            self._on_new_phase()
        elif kind == "phase-transition":
            self._phase_started = self._set_timer_at or time.monotonic()
        if view.server_action is not None and view.server_action is not server_action_before:
            self._on_server_action(view.server_action)
        self._consider()
        if view.game_over and not over_before:
            self._tell_phase()

    async def _find_seat(self) -> None:
        """The seat's number from GET /games/status, for a game whose frames do not say it (SeatRules.seat_lookup)."""
        assert self.api is not None
        try:
            status = await self.api.status(self.game_id, self.recovery)
        except IbexApiError as exc:
            self.transcript.write("meta", event="seat lookup failed", error=str(exc))
            return
        else:
            if self.seat.learn_seat(self.view, status.game_data or {}):
                self.transcript.write("meta", event="seat known", number=self.view.number)
        finally:
            # Decisions waited for this answer (_seat_awaited); a failed lookup must not hold them any longer.
            self._seat_lookup_over = True
            self._consider()

    def _seat_awaited(self) -> bool:
        """The seat's number is still being looked up (SeatRules.seat_lookup): a decision taken now would be
        recorded without its seat, so it waits for the lookup (which takes one REST round trip)."""
        return self.api is not None and not self._seat_lookup_over and self.seat.seat_lookup(self.view)

    def _note_problem(self, frame: dict[str, Any], record: str, race: str | None) -> None:
        """An error or warning frame: its transcript record, counted as a race (named) or a refusal."""
        message = frame.get("message") if frame.get("type") in ("error", "warning") else frame.get("error")
        if race is not None:
            self.races[race] += 1
        else:
            self.refusals += 1
        self.transcript.write(record, message=message, round=self.view.round, phase=self.view.phase,
                              **({"race": race} if race is not None else {}))

    def _note_join(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event" and self._join_confirmed:
            return  # the common case, once joined: nothing to note
        error = kind == "error" or ("error" in frame and kind is None)
        message = frame.get("message") if frame.get("type") in ("info", "error") else frame.get("error")
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
        obey = self.seat.server_action(view, data)
        why = obey.refusal
        key = (view.round, view.phase, obey.wire_type or "?")
        if obey.wire_type is not None and why is None and (key in self._handled or key in self._decisions):
            why = "already answered or being answered in this phase"
        if why is not None and obey.wire_type is not None and obey.next_phase and not deferred:
            # Sent just before its phase-transition: obey it when that phase begins.
            self._deferred_action = data
            self.transcript.write("meta", event="server action-required deferred to the next phase", reason=why,
                                  actionType=data.get("actionType"))
            return
        if why is not None or obey.wire_type is None:
            reason = {"reason": why} if why is not None else {}
            self.transcript.write("meta", event=obey.note, **reason, actionType=data.get("actionType"))
            return
        self._start_decision(key, obey.wire_type, server_data=data)

    def _consider(self) -> None:
        """Start the decision the seat owes now: once per round, phase and action, or, for a decision the game
        repeats (SeatRules.cadence), again when the view has changed since the last one started."""
        view = self.view
        if not self._synced or self._seat_awaited():
            return  # the rejoin's resync, or the seat lookup, calls again when it is done
        wire_type = self.seat.due(view, chat=self.settings.chat)
        if wire_type is None:
            return
        cadence = self.seat.cadence(wire_type)
        if cadence is None:
            key = (view.round, view.phase, wire_type)
            if key in self._handled or key in self._decisions:
                return
            self._start_decision(key, wire_type, server_data=None)
            return
        if self._repeat_task is not None and not self._repeat_task.done():
            return  # one repeated decision at a time; it looks again when it ends
        if self._repeat_seen == self.seat.version(view):
            return  # nothing changed since the last decision
        delay = max(0.0, self._repeat_started + cadence.interval - time.monotonic())
        self._repeat_task = self._spawn(self._decide_again(view.round, view.phase, wire_type, delay))

    async def _decide_again(self, round_number: int, phase: int, wire_type: str, delay: float) -> None:
        """One more of the decisions the game repeats, after `delay`, unless its phase has passed meanwhile or
        too little time is left for it."""
        cadence = self.seat.cadence(wire_type)
        assert cadence is not None
        if delay > 0:
            await asyncio.sleep(delay)
        view = self.view
        if (view.round, view.phase) != (round_number, phase) or view.game_over or self.seat.phase_closing(view):
            return
        if not self._synced:
            return  # the connection was lost meanwhile: the rejoin's resync starts the next one (_after_rejoin)
        left = self._deadline()[0] - self.settings.safety_margin - time.monotonic()
        if left < cadence.min_seconds:
            # The phase is about to end: no new decision (and so no fallback) starts now.
            self.transcript.write("meta", event=cadence.too_late, round=view.round, seconds_left=round(left, 3),
                                  minimum=cadence.min_seconds)
            return
        self._repeat_seen = self.seat.version(view)
        self._repeat_started = time.monotonic()
        self._repeats += 1
        key = (view.round, view.phase, f"{wire_type}#{self._repeats}")
        self._handled.add(key)
        try:
            await self._decide(key, wire_type, None)
        finally:
            self._repeat_task = None
            self._consider()

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
            self._readies_unanswered += 1
            await self._send({"gameId": self.game_id, "type": "player-is-ready"})
            await asyncio.sleep(self.settings.ready_resend)

    def _session_race(self, message: str) -> str | None:
        """A race of the game session itself, which no client can avoid, whatever the game. A ready re-sent just
        as the last seat's ready moved the round on: the server ends phase 0, tells everyone, then answers the
        re-send with "could not find an handler for player-is-ready"; the re-send left before its sender could see
        the new phase, and the server changed nothing."""
        view = self.view
        if ("handler for player-is-ready" in message and self._readies_unanswered > 0
                and (view.phase != 0 or view.ready_acked)):
            self._readies_unanswered -= 1
            return "a ready re-send crossed the round's start"
        return None

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
        seat = self.seat
        snapshot = seat.snapshot(self.view)
        cap = seat.cap(snapshot, self.params)
        phase_end, how = self._deadline()
        act_by = phase_end - self.settings.safety_margin
        cadence = seat.cadence(wire_type)
        if cadence is not None:
            act_by = min(act_by, time.monotonic() + cadence.seconds)
        if server_data is not None:
            action_required = {"type": "event", "eventType": "action-required", "data": server_data}
        else:
            timer = self.params.timer(snapshot.phase) if self.params is not None else None
            action_required = seat.action_required(snapshot, wire_type, cap=cap, timer_seconds=timer)
        # A game without amounts to cap takes no server action-required either: its records name neither.
        origin = {"source": "server" if server_data is not None else "agent"} if cap is not None else {}
        self.transcript.write("decide", wire_type=wire_type, round=key[0], phase=key[1], **origin,
                              seconds_left=round(phase_end - time.monotonic(), 3), deadline_from=how,
                              act_within=round(act_by - time.monotonic(), 3),
                              **({"cap": cap} if cap is not None else {}))
        trace, started, model = self._open_decision(key, snapshot, wire_type, act_by)
        message, reason, why = None, None, None
        budget = act_by - time.monotonic()
        try:
            if budget > 0:
                # asyncio.timeout, not wait_for: no extra task, so an instant policy answers in the same step.
                async with asyncio.timeout(budget):
                    answer = await self.policy.decide(snapshot, wire_type, cap=cap or 0,
                                                      action_required=action_required, deadline=act_by,
                                                      transcript=self.transcript)
                if answer is not None:
                    try:
                        message = seat.check_answer(answer, snapshot, wire_type, cap)
                    except ActionError as exc:  # a rule policy's answer the game's checks refuse: a bug, never sent
                        reason, why = f"invalid answer: {exc}", decisions.INVALID
                else:
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
            made_by, source = decisions.FALLBACK, "fallback"
            detail = f"{reason}; {trace.summary()}" if trace.attempts else reason
            nothing = None
            try:
                message, nothing = seat.fallback(self.view, snapshot, wire_type, cap, self._repeats)
            except (ActionError, ValueError) as exc:
                message, reason = None, f"{reason}; no fallback possible: {exc}"
                detail = f"{detail}; no fallback possible: {exc}"
            self.transcript.write("fallback", wire_type=wire_type, round=key[0], phase=key[1], reason=reason,
                                  fallback_reason=why, action=message)
            if message is None:
                self._record(key, snapshot, wire_type, None, made_by, started, trace, model, why=why,
                             detail=f"{detail}; {nothing}" if nothing else detail)
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
        # Kept to re-send after a rejoin where the game says a repeat is safe (SeatRules.resend).
        self._chosen[key] = checked
        if not self._synced:
            # The connection was lost while the policy thought: nothing goes out on a dead socket, nor before the
            # rejoin's resync says what the server has.
            lost = "not sent: the connection was lost"
            self.transcript.write("meta", event=lost, wire_type=wire_type, round=key[0], phase=key[1], action=checked)
            record(checked, detail=f"{detail}; {lost}" if detail else lost)
            return
        went = False
        try:
            went = await self._send(checked, source=source, made_by=made_by)
        finally:  # recorded even when cancelled mid-send, and as sent only when it went out on the socket
            record(checked, detail=detail if went else f"{detail}; not sent: the connection closed" if detail
                   else "not sent: the connection closed", sent=went)

    def _stale_reason(self, key: Key) -> str | None:
        """Why an answer decided for `key` may no longer go out (None: it may)."""
        if self.seat.phase_closing(self.view) and self.view.phase == key[1]:
            return f"stale: phase {key[1]} has ended"  # e.g. the market is closing: no order goes out now
        if (self.view.round, self.view.phase) != key[:2] or self.view.game_over:
            return f"stale: the game is now in round {self.view.round} phase {self.view.phase}"
        return None

    def _check_to_send(self, key: Key, snapshot: Any, wire_type: str, message: dict[str, Any],
                       detail: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """The game's last check before sending: (the message to send, None), or (None, the record's detail)."""
        try:
            checked = self.seat.validate(message, self.view, snapshot, wire_type, self.seat.cap(snapshot, self.params))
        except NoLongerValid as exc:  # the game moved while the policy thought
            self.dropped += 1
            self.transcript.write("dropped", wire_type=wire_type, round=key[0], phase=key[1], action=message,
                                  reason=f"no longer valid: {exc}")
            return None, f"no longer valid when it was to be sent: {exc}"
        except ActionError as exc:  # a policy bug; never send what the checks refuse
            self.transcript.write("meta", event="refused to send an invalid action", error=str(exc), action=message)
            return None, f"refused to send an invalid action: {exc}"
        return checked, None if checked is not None else detail  # None: nothing to send (a wait), recorded

    def _record(self, key: Key, view: Any, wire_type: str, action: dict[str, Any] | None, made_by: str,
                started: float, trace: decisions.Trace, model: str | None, *, why: str | None = None,
                detail: str | None = None, sent: bool = False) -> None:
        """One row of the decisions table (`sent`: the action was chosen to go out now)."""
        self._traces.pop(key, None)
        if self.decision_log is None:
            return
        fields = self.seat.decision_fields(view, wire_type, action)
        self.decision_log.add(decisions.Decision(
            game=self.game_id, round=key[0], phase=key[1], seat=view.number, role=fields["role"], agent=self.name,
            action_type=fields["action_type"], made_by=made_by, action=action,
            private_values=fields["private_values"],
            fallback_reason=why if made_by == decisions.FALLBACK else None, detail=detail,
            model=model if trace.attempts else None, attempts=trace.attempts,
            latency_s=time.monotonic() - started, sent=sent))

    # ------------------------------------------------------------------ frames out

    async def _send(self, message: dict[str, Any], **note: Any) -> bool:
        """Send one wire message on the current socket; False when it did not go out."""
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(_WIRE_JSON.encode(message))
        except ConnectionClosed:
            # Kept in _chosen when it is an action: re-sent after the rejoin if the server does not have it.
            self.transcript.write("meta", event="send failed: connection closed", msg=message)
            return False
        if isinstance(message.get("type"), str):
            self._delivered.add((self.view.round, self.view.phase, message["type"]))
        self.view.apply_sent(message)
        self.sent.append(message)
        self.transcript.write("send", msg=message, **note)
        return True


async def run_agent(ws_url: str, game_id: int, recovery: str, policy: Policy, transcript: Transcript, *,
                    game: Game | None = None, params: GameParams | None = None, settings: AgentSettings | None = None,
                    name: str = "agent", joined: asyncio.Event | None = None,
                    api: IbexApi | None = None, resume: bool = False,
                    decision_log: decisions.DecisionLog | None = None, **game_options: Any) -> Any:
    """Play one seat of game `game_id` on the server at `ws_url` until game-over; the final view."""
    agent = Agent(ws_url, game_id, recovery, policy, transcript, game=game, params=params, settings=settings, name=name,
                  joined=joined, api=api, resume=resume, decision_log=decision_log, **game_options)
    return await agent.run()
