"""Text from logs and paths made fit to write as UTF-8.

A JSON log may hold a lone surrogate ("\\udc00": valid JSON, no valid character), and a file name that is not
valid UTF-8 reaches Python as lone surrogates too (os.fsdecode's surrogateescape). Written as UTF-8, either raises
UnicodeEncodeError, and one such field would end a whole run. Everything a tool writes (JSONL, reports, progress
and error lines) goes through these functions where such text can reach it.
"""

from __future__ import annotations

import os
from pathlib import Path


def printable(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (a surrogate pair becomes its character); any other
    text is returned as it is."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def display_path(path: str | Path) -> str:
    """A path as text that can be written anywhere: the bytes of a file name that is not valid UTF-8 are shown
    as \\xNN escapes, so the name can still be told apart from others and found."""
    text = str(path)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return os.fsencode(text).decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # not from the file system: a lone surrogate of another kind
            return printable(text)
