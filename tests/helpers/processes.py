"""What a child process is doing with its signals, for a test whose child did not stop on one."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

_FIELDS = ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")


def signal_state(pid: int, signum: int = signal.SIGINT) -> str:
    """One line: whether the process blocks, ignores, catches or has pending `signum`, its state and where the
    kernel has it waiting (Linux /proc; elsewhere, or once it is gone, says so). A child that inherited an ignored or
    blocked signal from the test's process never sees it: this tells that apart from a child that saw it and hung."""
    status = Path(f"/proc/{pid}/status")
    try:
        lines = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
    except OSError as exc:
        return f"pid {pid}: no /proc status ({exc.__class__.__name__})"
    bit = 1 << (int(signum) - 1)
    parts = [f"pid {pid}", f"state {lines.get('State', '?').strip()}"]
    for field in _FIELDS[1:]:
        mask = lines.get(field, "").strip()
        if mask:
            parts.append(f"{field} {'yes' if int(mask, 16) & bit else 'no'}")
    try:
        parts.append(f"wchan {Path(f'/proc/{pid}/wchan').read_text().strip() or '-'}")
    except OSError:
        pass
    return f"{signal.Signals(signum).name}: " + ", ".join(parts)


@contextlib.contextmanager
def children_take_sigint() -> Iterator[None]:
    """Child processes started inside see SIGINT at its default, however the suite was started.

    A process started in the background of a non-interactive shell (`cmd &`, nohup, some CI runners) has SIGINT
    ignored, and a child inherits that: a Python child then has no KeyboardInterrupt at all, and a test that presses
    Ctrl-C on it waits in vain. A signal this process catches is reset to its default in a child at exec, so the
    handler is set to Python's own while the child starts and put back afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGINT, previous)
