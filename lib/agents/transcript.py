"""One JSONL transcript per agent: every frame in and out, every model call, every fallback, and how it ended.

Each record is one line, written whole, so a transcript cut short by a crash or a kill is still valid JSONL up to
its last line. By default each line reaches the OS as it is written. With `flush_delay` (the agents use it), lines
written inside an event loop are encoded and written in one batch at most `flush_delay` seconds later: hundreds
of agents in one process then spend no time on their transcripts between a frame and their answer (see
bench/agents_bench.py); a SIGKILL loses at most that much, close() writes everything. In that mode the fields
passed to write() must not be changed afterwards (they are encoded later). Record times are those of write().

A transcript never fails on text: a lone surrogate (a model's answer, a frame another seat made up) is written as
its JSON escape (`\\ud800`), which reads back as the same string. A record that cannot be encoded at all (a
circular structure) is replaced by a `transcript-error` line, and a write the OS refuses (a full disk) is counted;
neither raises into the caller nor costs the other records of a batch. `failures` counts both, `last_failure`
says the last, and the first is printed as one line to stderr.

Secrets (the API key, recovery codes, anything else registered) are replaced by "[redacted]" in the serialised
line before it reaches the disk, wherever they occur: in a join frame, in an SDK error message, in a prompt. The
redaction is lib.util.redact's, the same as for every line handler.py and finetune.py print.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lib.util.redact import REDACTED, Redactor

__all__ = ["REDACTED", "RawJSON", "Transcript", "read_transcript", "utc_iso_ms"]
# One encoder for every line: json.dumps with options builds a new one per call. Hundreds of agents write a line
# per frame, so the cost per line matters (bench/agents_bench.py).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
_second_cache: tuple[int, str] = (-1, "")
_ms_cache: tuple[int, str] = (-1, "")


def utc_iso_ms(now: float) -> str:
    """`now` (epoch seconds) as ISO 8601 UTC with milliseconds, e.g. 2026-11-25T16:29:24.301+00:00."""
    global _second_cache, _ms_cache
    ms = int(now * 1000)
    if _ms_cache[0] == ms:  # a frame goes to six seats' transcripts within the same millisecond
        return _ms_cache[1]
    second = int(now)
    if _second_cache[0] != second:  # formatting the date part once a second is enough
        _second_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    _ms_cache = (ms, f"{_second_cache[1]}.{ms % 1000:03d}+00:00")
    return _ms_cache[1]


class RawJSON(str):
    """A field's value that is already JSON text, written into the line as it is: a frame an agent received, which
    it has just parsed (encoding the parsed frame again would only give the same JSON, and a line per frame of every
    seat is most of what transcripts cost). One JSON value with no line break in it; secrets are scrubbed from the
    whole line all the same."""


class Transcript:
    """Append-only JSONL writer. Records: {"t", "ts_ms", "kind", ...fields}; RawJSON fields come last."""

    def __init__(self, path: str | Path, secrets: list[str] | tuple[str, ...] = (), *,
                 flush_delay: float = 0.0, sync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._redactor = Redactor(secrets)
        self.flush_delay = max(0.0, flush_delay)
        self.sync = sync  # fsync at close (a study's transcripts skip it: its store is its record of what finished)
        self._pending: list[dict[str, Any]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        # Line-buffered text: each write of a full line (or of a batch of them) reaches the OS immediately.
        # backslashreplace: a lone surrogate, which strict UTF-8 cannot encode, can only stand inside a JSON string
        # here (the encoder escapes every backslash), so its \uXXXX escape is exactly the JSON for it.
        self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)
        self.closed = False
        self.failures = 0  # records lost or replaced by a transcript-error line, and writes the OS refused
        self.last_failure: str | None = None

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
        self._put(self._line(record))

    def _line(self, record: dict[str, Any]) -> str:
        """One record as its line; a record that cannot be encoded becomes a line saying so (each record on its
        own: in a batch, the others are still written)."""
        try:
            msg = record.get("msg")
            if type(msg) is RawJSON and len(record) == 4:
                # A received frame, most of every transcript: the line the general case below gives, in one step
                # ("t" is an ISO time, which JSON writes as it is).
                return self.scrub(f'{{"t": "{record["t"]}", "ts_ms": {record["ts_ms"]}, "kind": '
                                  f'{_ENCODER.encode(record["kind"])}, "msg": {msg}}}') + "\n"
            raw = [(key, value) for key, value in record.items() if isinstance(value, RawJSON)]
            if not raw:
                return self.scrub(_ENCODER.encode(record)) + "\n"
            text = _ENCODER.encode({key: value for key, value in record.items() if not isinstance(value, RawJSON)})
            return self.scrub(text[:-1] + "".join(f", {_ENCODER.encode(key)}: {value}" for key, value in raw)
                              + "}") + "\n"
        except (ValueError, TypeError, RecursionError) as exc:  # circular or too deep structures, odd keys
            error = self.scrub(f"{type(exc).__name__}: {exc}")
            self._failed(f"a {record.get('kind')!r} record could not be encoded ({error})")
            return _ENCODER.encode({"t": record.get("t"), "ts_ms": record.get("ts_ms"), "kind": "transcript-error",
                                    "lost_kind": str(record.get("kind")), "error": error}) + "\n"

    def _put(self, text: str) -> None:
        try:
            self._file.write(text)
        except (OSError, ValueError) as exc:  # a full disk, a file closed under us: the caller plays on
            self._failed(f"{text.count(chr(10))} line(s) not written ({type(exc).__name__}: {exc})")

    def _failed(self, what: str) -> None:
        self.failures += 1
        self.last_failure = what
        if self.failures == 1:  # one line, never a traceback; the count goes into the agent's shutdown record
            print(f"transcript {self.path}: {what}", file=sys.stderr)

    def flush(self) -> None:
        """Write the records waiting for their batch. Runs as an event-loop callback: it never raises."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._pending:
            pending, self._pending = self._pending, []
            self._put("".join(self._line(record) for record in pending))

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        try:
            self._file.flush()
            if self.sync:
                os.fsync(self._file.fileno())
        except OSError:
            pass  # not every file system supports fsync; a refused write was counted when it was made
        try:
            self._file.close()
        except OSError as exc:
            self._failed(f"closing failed ({type(exc).__name__}: {exc})")

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
