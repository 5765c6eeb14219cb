"""tests/helpers/processes.py: a child started under children_take_sigint sees SIGINT at its default even when this
process ignores it, as a suite started in the background of a shell does."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.helpers.processes import children_take_sigint, signal_state

# The child says whether it ignores SIGINT, then waits for its stdin to close.
CHILD = "import signal, sys; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN, flush=True); sys.stdin.read()"


def child_ignores_sigint() -> tuple[bool, str]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ignored = proc.stdout.readline().strip() == "True"
        return ignored, signal_state(proc.pid)
    finally:
        proc.communicate("", timeout=30)


@pytest.fixture
def sigint_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def test_a_child_inherits_an_ignored_sigint_unless_started_under_children_take_sigint(sigint_ignored):
    ignored, state = child_ignores_sigint()
    assert ignored and "SigIgn yes" in state
    with children_take_sigint():
        ignored, state = child_ignores_sigint()
    assert not ignored and "SigIgn no" in state and "SigCgt yes" in state
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # put back as it was
