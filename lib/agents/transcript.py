"""One JSONL transcript per agent: every frame in and out, every model call, every fallback, and how it ended.

Each record is one line, written whole, so a transcript cut short by a crash or a kill is still valid JSONL up to
its last line. By default each line reaches the OS as it is written. With `flush_delay` (the agents use it), lines
written inside an event loop are encoded and written in one batch at most `flush_delay` seconds later: hundreds
of agents in one process then spend no time on their transcripts between a frame and their answer (see
bench/agents_bench.py); a SIGKILL loses at most that much, close() writes everything. In that mode the fields
passed to write() must not be changed afterwards (they are encoded later). Record times are those of write().

Secrets (the API key, recovery codes, anything else registered) are replaced by "[redacted]" in the serialised
line before it reaches the disk, wherever they occur: in a join frame, in an SDK error message, in a prompt. The
redaction is lib.util.redact's, the same as for every line handler.py and finetune.py print.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from lib.util.redact import REDACTED, Redactor

__all__ = ["REDACTED", "Transcript", "read_transcript", "utc_iso_ms"]
# One encoder for every line: json.dumps with options builds a new one per call. Hundreds of agents write a line
# per frame, so the cost per line matters (bench/agents_bench.py).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
_second_cache: tuple[int, str] = (-1, "")


def utc_iso_ms(now: float) -> str:
    """`now` (epoch seconds) as ISO 8601 UTC with milliseconds, e.g. 2026-11-25T16:29:24.301+00:00."""
    global _second_cache
    second = int(now)
    if _second_cache[0] != second:  # formatting the date part once a second is enough
        _second_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_cache[1]}.{int(now * 1000) % 1000:03d}+00:00"


class Transcript:
    """Append-only JSONL writer. Records: {"t", "ts_ms", "kind", ...fields}."""

    def __init__(self, path: str | Path, secrets: list[str] | tuple[str, ...] = (), *,
                 flush_delay: float = 0.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._redactor = Redactor(secrets)
        self.flush_delay = max(0.0, flush_delay)
        self._pending: list[dict[str, Any]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        # Line-buffered text: each write of a full line (or of a batch of them) reaches the OS immediately.
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)
        self.closed = False

    def add_secret(self, secret: str | None) -> None:
        """Never write this string (it is scrubbed from every later line). Short strings are ignored: scrubbing
        "a" would mangle every record."""
        self._redactor.add(secret)

    def scrub(self, text: str) -> str:
        return self._redactor(text)

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record (now, or within flush_delay). Writing to a closed transcript does nothing."""
        if self.closed:
            return
        now = time.time()
        record = {"t": utc_iso_ms(now), "ts_ms": int(now * 1000), "kind": kind, **fields}
        if self.flush_delay > 0:
            if self._flush_handle is None:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                if loop is not None:
                    self._flush_handle = loop.call_later(self.flush_delay, self.flush)
            if self._flush_handle is not None:
                self._pending.append(record)
                return
        self._file.write(self.scrub(_ENCODER.encode(record)) + "\n")

    def flush(self) -> None:
        """Write the records waiting for their batch."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending:
            pending, self._pending = self._pending, []
            self._file.write("".join(self.scrub(_ENCODER.encode(record)) + "\n" for record in pending))

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        self._file.flush()
        try:
            os.fsync(self._file.fileno())
        except OSError:
            pass  # not every file system supports fsync; the data is flushed to the OS anyway
        self._file.close()

    def __enter__(self) -> Transcript:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_transcript(path: str | Path) -> list[dict[str, Any]]:
    """All records of a transcript (for tests and tools); raises ValueError naming the line that is not JSON."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return records
