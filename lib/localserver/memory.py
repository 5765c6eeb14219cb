"""In-memory connections to an in-process local server: the same frames, without sockets or WebSocket framing.

A study's agents and its local server run in one process, yet every frame between them went through the kernel
twice and through websockets' framing four times (an agent's send, the server's receive, and back): measured on a
study of 100 five-round games, the sockets and the framing took about half of all its CPU. `LocalServer.
connect_in_memory()` gives an agent a connection that hands each text frame to the other side's queue instead.
Everything else is as over a WebSocket: the server's handler reads the same texts (JSON parsed by the same code),
the agent reads the texts the server wrote, in the order it wrote them, one connection per seat, and a connection
ends as a WebSocket does (a clean close ends the peer's `async for`; an abort raises ConnectionClosedError in it).
What it leaves out is what loopback sockets add: no keepalive pings (no network to lose), no frame size limit (the
agent's 16 MB cap guards against a server it does not know; this one is in the same process) and no delay.

Only what the agent (lib.agents.agent) and the server's handler (lib.localserver.server) use of websockets'
connections is here: `send`, `async for`, `close`, and `transport.abort()`; and `send_nowait`, with which the server
puts a frame in the agent's queue the moment a game sends it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

_OK_CODES = (1000, 1001)  # websockets ends `async for` quietly after these, and raises after any other


class _Abort:
    def __init__(self, end: MemoryConnection) -> None:
        self._end = end

    def abort(self) -> None:
        self._end.abort()


class MemoryConnection:
    """One end of an in-memory connection (the other end is `peer`)."""

    def __init__(self) -> None:
        self.peer: MemoryConnection = self
        self._inbox: collections.deque[str] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed: ConnectionClosed | None = None  # what a read or a send raises once the connection is over
        self.transport = _Abort(self)

    @classmethod
    def pair(cls) -> tuple[MemoryConnection, MemoryConnection]:
        """(the client's end, the server's end)."""
        client, server = cls(), cls()
        client.peer, server.peer = server, client
        return client, server

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _ended(self, exc: ConnectionClosed) -> None:
        if self._closed is None:
            self._closed = exc
            self._wake()

    async def send(self, message: str) -> None:
        self.send_nowait(message)

    def send_nowait(self, message: str) -> None:
        """`send` without the coroutine: an in-memory send never waits."""
        if self._closed is not None:
            raise self._closed
        self.peer._inbox.append(message)
        self.peer._wake()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str]:
        while True:
            if self._inbox:  # what arrived before a close is read first, as over a WebSocket
                yield self._inbox.popleft()
                continue
            if self._closed is not None:
                if isinstance(self._closed, ConnectionClosedOK):
                    return
                raise self._closed
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake, done at once: both ends are closed with this code, as sent by this end."""
        if self._closed is not None:
            return
        frame = Close(code, reason)
        kind = ConnectionClosedOK if code in _OK_CODES else ConnectionClosedError
        self._ended(kind(frame, frame, rcvd_then_sent=False))
        self.peer._ended(kind(frame, frame, rcvd_then_sent=True))

    def abort(self) -> None:
        """The connection is cut (no closing handshake): both ends raise ConnectionClosedError."""
        self._ended(ConnectionClosedError(None, None))
        self.peer._ended(ConnectionClosedError(None, None))
