"""What one game's log gives the dataset builder, whatever the game: its examples as JSONL lines with their sidecar
state lines, and the numbers the report needs.

A game's data part (lib.games.protocols.DataRules.examples) replays its log and hands each example to
`GameResult.add` as it is made: the line is written here (the same text as json.dumps of the chat, without walking
it), token-counted and checked (lib.dataset.ftcheck) at once, and with a sink the lines go to the builder's spool in
batches, so that a game's memory does not grow with its number of examples.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _encode_string
from typing import Any

from lib.dataset import ftcheck

SAMPLES_PER_REASON = 5
LINES_PER_SINK_CALL = 256  # examples a game keeps before handing them to the builder's spool
# Where a round's private values came from, when they are not known (the report's key, for every game).
UNKNOWN = "unknown"

Sink = Callable[[list[str], list[str]], None]  # (example lines, their state lines) -> written

_encoded_systems: dict[str, str] = {}  # a player's system prompt is the same all game: encoded once


def example_line(system: str, user: str, assistant: str) -> str:
    """json.dumps({"messages": [system, user, assistant messages]}, ensure_ascii=False), written out: the same
    text, without walking the example."""
    encoded = _encoded_systems.get(system)
    if encoded is None:
        encoded = ftcheck.remember(_encoded_systems, system, _encode_string(system), ftcheck.CACHE_MAX_SYSTEMS)
    return ('{"messages": [{"role": "system", "content": ' + encoded
            + '}, {"role": "user", "content": ' + _encode_string(user)
            + '}, {"role": "assistant", "content": ' + _encode_string(assistant) + "}]}")


@dataclass
class GameResult:
    """What one log gave: the JSONL lines (those not yet handed to `sink`) and, per example, only the numbers the
    report needs."""

    source: str
    game_id: int
    log_format: str  # "server-log" or "reconstructed"
    game_type: str
    played_by_agents: str | None = None  # why the log is known to hold no human decisions (lib.ibex.log)
    sink: Sink | None = field(default=None, repr=False, compare=False)  # stays in the process that made the lines
    lines: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)  # per example: its sidecar state line
    meta: list[tuple[int, str, str, str]] = field(default_factory=list)  # per example: seat, role name, action,
    # values source
    tokens: array[int] = field(default_factory=lambda: array("l"))  # per example
    # lib.dataset.ftcheck's checks of `lines`, made with them: the output files are these lines, so the files'
    # reports are the games' checks put together (lib.dataset.ftcheck.report_of).
    check: ftcheck.LinesCheck = field(default_factory=ftcheck.LinesCheck)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)  # reason -> action -> count
    samples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few "where: what" lines
    values_by_round: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    chat_not_included: int = 0  # chat messages left out because --include-chat was not given

    def __getstate__(self) -> dict[str, Any]:
        # A worker process sends the result back without its sink (the spool's open files stay there).
        return {**self.__dict__, "sink": None}

    def add(self, system: str, user_lines: list[str], assistant: str, state: str, *, seat: int, role: str,
            action: str, values_source: str, user: str | None = None) -> None:
        """One example: its prompt (the user prompt in lines, as tokens are counted per line; `user` is their
        join when the caller has it), the answer's text, its sidecar state line, and the report's numbers."""
        if user is None:
            user = "\n".join(user_lines)
        # Counted per line: most lines repeat from one prompt to the next and are counted once (lib.dataset.ftcheck).
        tokens = ftcheck.chat_example_tokens(system, user_lines, assistant)
        self.lines.append(example_line(system, user, assistant))
        self.states.append(state)
        if self.sink is not None and len(self.lines) >= LINES_PER_SINK_CALL:
            self.sink(self.lines, self.states)
            self.lines, self.states = [], []
        self.meta.append((seat, role, action, values_source))
        self.tokens.append(tokens[0])
        self.check.add_chat(system, user, assistant, tokens)

    def skip(self, reason: str, action: str, describe: Callable[[], str] | None = None, count: int = 1) -> None:
        """Count a submission that gives no example; `describe` says where and what, called only if sampled."""
        self.skipped.setdefault(reason, Counter())[action] += count
        samples = self.samples.setdefault(reason, [])
        if describe is not None and len(samples) < SAMPLES_PER_REASON:
            samples.append(describe())
