"""Secrets out of everything the tools print or record: one way, for handler.py and finetune.py alike.

What is hidden: the strings registered as secrets (the API key, the IBEX password, recovery codes) wherever they
occur, also as they appear inside a JSON string; anything shaped like an OpenAI key (`sk-...`) or a bearer token,
which an endpoint's error body may echo; and the `user:password@` part of any URL. Each becomes "[redacted]".

`install` puts a Redactor in front of sys.stdout and sys.stderr for the rest of the process, so no printed line,
present or added later, can carry a secret; `scrub` is the same redaction for text a tool writes to a file.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

REDACTED = "[redacted]"
SECRET_SETTINGS = ("OPENAI_API_KEY", "IBEX_PASSWORD")
MIN_SECRET_CHARS = 6  # scrubbing a shorter string ("a", "1234") would mangle every line

# Key-shaped strings are scrubbed even when nobody registered them (an SDK error may quote another key).
_KEY = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"\b(Bearer)(\s+)[A-Za-z0-9._~+/=\-]{8,}")
_USERINFO = re.compile(r"(//)[^/\s@\"'<>]+@")


def public_url(url: str) -> str:
    """The URL without its user:password part, fit to print and to record."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(r"\1" + REDACTED + "@", url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


def secrets_from_env(env: Mapping[str, str]) -> list[str]:
    """The settings' secrets: the API key, the IBEX password, and a password written into OPENAI_BASE_URL."""
    found = [env.get(name, "").strip() for name in SECRET_SETTINGS]
    for name in ("OPENAI_BASE_URL", "IBEX_API_URL", "IBEX_WS_URL"):
        try:
            password = urlsplit(env.get(name, "").strip()).password
        except ValueError:
            password = None
        found.append(password or "")
    return [secret for secret in found if len(secret) >= MIN_SECRET_CHARS]


class Redactor:
    """Replaces registered secrets, key-shaped strings, bearer tokens and URL credentials by "[redacted]"."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        self._patterns: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Never let this string through again. Strings under MIN_SECRET_CHARS are ignored."""
        if not secret or len(secret) < MIN_SECRET_CHARS or secret in self._secrets:
            return
        self._secrets.append(secret)
        self._secrets.sort(key=len, reverse=True)  # a secret containing another is scrubbed whole
        # Each secret as it appears in a JSON line too: escaped when it holds quotes or backslashes.
        self._patterns = []
        for known in self._secrets:
            self._patterns.append(known)
            escaped = json.dumps(known, ensure_ascii=False)[1:-1]
            if escaped != known:
                self._patterns.append(escaped)

    def __call__(self, text: str) -> str:
        for pattern in self._patterns:
            if pattern in text:
                text = text.replace(pattern, REDACTED)
        # The cheap tests first: most lines (every frame of a transcript) hold none of these.
        if "sk-" in text:
            text = _KEY.sub(REDACTED, text)
        if "Bearer" in text:
            text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        if "@" in text and "//" in text:
            text = _USERINFO.sub(r"\1" + REDACTED + "@", text)
        return text


class RedactingStream:
    """A text stream that writes through a Redactor, a whole line at a time (a secret split over two write
    calls is still found); what is left without a newline goes out at flush()."""

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        self.stream = stream
        self.redactor = redactor
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending or "\r" in self._pending:
            cut = max(self._pending.rfind("\n"), self._pending.rfind("\r")) + 1
            ready, self._pending = self._pending[:cut], self._pending[cut:]
            self.stream.write(self.redactor(ready))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            ready, self._pending = self._pending, ""
            self.stream.write(self.redactor(ready))
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ... of the real stream
        return getattr(self.stream, name)


_installed = Redactor()


def install(secrets: Iterable[str | None] = ()) -> Redactor:
    """Register `secrets` and redact everything printed from now on (sys.stdout and sys.stderr)."""
    for secret in secrets:
        _installed.add(secret)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream, _installed))
    return _installed


def uninstall() -> None:
    """Put the real streams back (after flushing what waits), e.g. at the end of main() in a test's process."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, RedactingStream):
            stream.flush()
            setattr(sys, name, stream.stream)


def scrub(text: str) -> str:
    """`text` with every installed secret and every key, token or URL credential hidden."""
    return _installed(text)
