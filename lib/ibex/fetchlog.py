"""A finished game's recorded log fetched from an IBEX server into a folder (issue #23 item 3): games played on the
real server then leave their log here, as the local server's do, and can go into `constructDataset.py`.

One call does it all: log in as the admin (`/auth/login`), ask `/games/json` with the token (lib.ibex.api), and
write `<folder>/<game id>.log.json` atomically, byte for byte the text the server recorded. Every failure is one
FetchError line naming the game and the server (its URL without user:password); neither the password nor the token
ever appears in it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lib.ibex.api import DEFAULT_RETRIES, DEFAULT_TIMEOUT, IbexApi, IbexApiError
from lib.util.redact import REDACTED, public_url


class FetchError(Exception):
    """The log could not be fetched or written: the message is one line, fit to print."""


def log_name(game_id: int) -> str:
    """The file name of game `game_id`'s log, as the servers' records folders name it."""
    return f"{game_id}.log.json"


async def fetch_game_log(api_url: str, game_id: int, folder: str | Path, *, username: str, password: str,
                         timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
                         backoff: float = 0.5) -> Path:
    """Fetch finished game `game_id`'s recorded log from the server at `api_url` (…/api/v1) into `folder` (made if
    missing) and return the file's path; FetchError (one line) otherwise. A game not over yet has no log: the
    server's "no such file" answer is retried `retries` times (it writes the log just after game-over)."""
    where = public_url(api_url)
    secrets = [s for s in (password,) if s]

    def fail(why: str) -> FetchError:
        line = " ".join(why.split())
        for secret in secrets:
            line = line.replace(secret, REDACTED)
        return FetchError(f"cannot fetch game {game_id}'s log from {where}: {line}")

    try:
        api = IbexApi(api_url, timeout=timeout, retries=retries, backoff=backoff)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        token = await api.login(username, password)
        secrets.append(token)
        text, _log = await api.game_log(game_id, token)
    except IbexApiError as exc:
        raise fail(str(exc)) from None
    finally:
        await api.close()
    return _write(Path(folder), log_name(game_id), text, fail)


def _write(folder: Path, name: str, text: str, fail: Callable[[str], FetchError]) -> Path:
    path = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write(text)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except (OSError, UnicodeEncodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise fail(f"cannot write {path} ({reason})") from None
    return path

