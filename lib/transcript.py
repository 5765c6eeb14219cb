"""One JSONL transcript per agent: every frame in and out, every model call, every fallback, and how it ended.

Each record is one line, written and flushed at once, so a transcript cut short by a crash or a kill is still
valid JSONL up to its last line. Secrets (the API key, recovery codes, anything else registered) are replaced by
"[redacted]" in the serialised line before it reaches the disk, wherever they occur: in a join frame, in an SDK
error message, in a prompt.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REDACTED = "[redacted]"
# Key-shaped strings are scrubbed even when nobody registered them (an SDK error may quote another key).
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")


class Transcript:
    """Append-only JSONL writer. Records: {"t", "ts_ms", "kind", ...fields}."""

    def __init__(self, path: str | Path, secrets: list[str] | tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._secrets: list[str] = []
        for secret in secrets:
            self.add_secret(secret)
        # Line-buffered text: each write of a full line reaches the OS immediately.
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)
        self.closed = False

    def add_secret(self, secret: str | None) -> None:
        """Never write this string (it is scrubbed from every later line). Short strings are ignored: scrubbing
        "a" would mangle every record."""
        if secret and len(secret) >= 6 and secret not in self._secrets:
            self._secrets.append(secret)
            # Longest first, so a secret containing another is scrubbed whole.
            self._secrets.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
            escaped = json.dumps(secret)[1:-1]
            if escaped != secret:
                text = text.replace(escaped, REDACTED)
        return _KEY_PATTERN.sub(REDACTED, text)

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record and flush it. Writing to a closed transcript does nothing (late callbacks)."""
        if self.closed:
            return
        now = time.time()
        record = {
            "t": datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds"),
            "ts_ms": int(now * 1000),
            "kind": kind,
            **fields,
        }
        line = self.scrub(json.dumps(record, ensure_ascii=False, default=str))
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self.closed:
            return
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
