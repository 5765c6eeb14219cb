"""A TCP proxy on loopback between agents and the local server: a reverse proxy with TLS, or a flaky network.

- With a certificate it terminates TLS, standing in for the reverse proxy in front of a real IBEX server: clients
  use wss://127.0.0.1:PORT/wss and https://127.0.0.1:PORT/api/v1, the proxy pipes the plain bytes to the local
  server, paths untouched. The certificate is self-signed for 127.0.0.1 (made with the openssl command line);
  clients trust it through SSL_CERT_FILE, as a user would for a private CA.
- `outage(seconds)` cuts every connection through it and refuses new ones for that long, then listens again on
  the same port: a network failure for the agents behind it only.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from pathlib import Path


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, valid one day."""
    openssl = shutil.which("openssl")
    if openssl is None:
        import pytest

        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = folder / "proxy-cert.pem", folder / "proxy-key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


class Proxy:
    def __init__(self, upstream_port: int, cert: Path | None = None, key: Path | None = None) -> None:
        self.upstream_port = upstream_port
        self.context: ssl.SSLContext | None = None
        if cert is not None and key is not None:
            self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.context.load_cert_chain(cert, key)
        self.port = 0
        self.connections = 0
        self.outages = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        await self._listen()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def outage(self, seconds: float) -> None:
        """Cut every connection, refuse new ones for `seconds`, then accept again on the same port."""
        self.outages += 1
        await self._close()
        await asyncio.sleep(seconds)
        await self._listen()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pipes = [asyncio.ensure_future(self._pipe(reader, up_writer)),
                 asyncio.ensure_future(self._pipe(up_reader, writer))]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
                self._pipes.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
