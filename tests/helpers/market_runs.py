"""Settings for agents playing whole market games on the local server in tests: short timers, quick reconnects,
the recorded sessions the local server is checked against, and the decisions table read back."""

from __future__ import annotations

import csv
from pathlib import Path

from lib.agents.agent import AgentSettings
from tests.helpers.paths import FIXTURES

SESSIONS = FIXTURES / "market_sessions.json"
FAST = {"timer_phase_1": 0.2, "timer_phase_2": 1.5, "timer_phase_3": 1.5, "timer_phase_4": 0.2,
        "timer_phase_5": 0.2, "timer_phase_6": 3.0, "timer_phase_7": 1.5, "timer_phase_8": 1.5,
        "timer_phase_9": 0.2, "round_count": 1, "practice_round": False}
SETTINGS = AgentSettings(safety_margin=0.3, ready_delay=0.05, ready_resend=0.3,
                         reconnect_delays=(0.05, 0.1, 0.2, 0.4, 0.8))


def decisions(path: Path) -> list[dict[str, str]]:
    """The rows of a decisions table (lib.agents.decisions), as strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
