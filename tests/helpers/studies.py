"""Small study files and their store, for the study runner's tests (tests/study/)."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

# One short round: a study of a few games takes seconds.
TIMERS = """round_count = 1
practice_round = false
timer_phase_1 = 0.1
timer_phase_2 = 0.2
timer_phase_3 = 1.5
timer_phase_4 = 1.5
timer_phase_5 = 0.2
timer_phase_6 = 1.5
timer_phase_7 = 0.1
"""

RULE_ARMS = """
[values]
source = "fresh"
seed = 11
[arms.rules]
developer = "baseline"
owners = "baseline"
[arms.again]
developer = "baseline"
owners = "baseline"
"""


# The same round with decision phases long enough for a loaded machine: for tests whose assertion needs every
# decision in time (a re-run that replays the first run's games call for call).
SLOW_TIMERS = TIMERS.replace("= 1.5", "= 8")


def study_file(folder: Path, name: str, body: str, games: int = 2, concurrency: int = 2,
               timers: str = TIMERS) -> Path:
    """`folder/<name>.toml`: a voting study of `games` games per arm with the top-level keys and tables of `body`."""
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\ngame = "voting"\ngames_per_arm = {games}\nconcurrency = {concurrency}\n'
                    f"{body}\n[parameters]\n{timers}", encoding="utf-8")
    return path


def rows(folder: Path, table: str, where: str = "") -> list[dict]:
    """The rows of `table` in the study store of `folder`."""
    db = sqlite3.connect(folder / "study.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(f"SELECT * FROM {table} {where}")]
    finally:
        db.close()


def wait_for_states(folder: Path, enough: Callable[[Counter[str]], bool], timeout: float = 90) -> Counter[str]:
    """Poll the store of a study running in another process until the count of its games per status is `enough`
    (or `timeout` passes); the last count."""
    states: Counter[str] = Counter()
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if (folder / "study.sqlite").exists():
            try:
                states = Counter(g["status"] for g in rows(folder, "games"))
            except sqlite3.OperationalError:  # the tables are being made
                states = Counter()
            if enough(states):
                break
        time.sleep(0.05)
    return states
