"""What `finetune.py --evaluate` saves for `handler.py --policy` to play, and where the newest of it is.

- `newest_saved`: the file of a rule policy handler.py plays by default, the newest of the evaluation folders.
- The empirical samples, `empirical_policy.json`: one file for every game, so that `handler.py --policy empirical`
  plays whichever game it is in from the one file it was given. Each game's rules write their own section (a
  RuleDecisions' `samples()`, lib.games.protocols: section name -> JSON) and read it back (their PlayRules); this
  module owns only the file: its envelope, its writing, its reading and the run's first line. A section is opaque
  here, apart from its `summary` (a few words on what it draws from, for that line).

The file (version 2)::

    {"format": "ibex-empirical-samples", "version": 2, "policy": "empirical",
     "sections": {"voting": {...}, "market": {...}}, "fitted_on": {...}, "created_at": "..."}

A file of version 1 (evaluations before the sections: the voting samples at the top, the market's under "market")
is still read: `SavedSamples.legacy` holds it whole, and each game knows where its part of it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.util.atomic import write_text_atomic

SAMPLES_FILE = "empirical_policy.json"
FORMAT = "ibex-empirical-samples"
VERSION = 2
HINT = "collect them with python finetune.py --evaluate --policies empirical"


def newest_saved(data_dir: str | Path, file_name: str) -> Path:
    """The rule policy's saved file handler.py plays by default: the newest `file_name` of the evaluation folders
    (DATA_DIR/evaluations/*/), else DATA_DIR/`file_name` (where evaluations wrote it before)."""
    data_dir = Path(data_dir)
    found = sorted((data_dir / "evaluations").glob(f"*/{file_name}"), key=lambda p: (p.stat().st_mtime, str(p)))
    return found[-1] if found else data_dir / file_name


class SamplesError(ValueError):
    """A samples file that cannot be used; the message is one line naming the file and what to do."""


@dataclass(frozen=True)
class SavedSamples:
    """An empirical samples file as read: each game's section (opaque here), or a version-1 file whole."""

    path: Path
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    legacy: Mapping[str, Any] | None = None  # a version-1 file's record, which its games read in their own way

    def section(self, name: str) -> Mapping[str, Any] | None:
        """The section a game wrote under `name`, or None (none written: that game had no training examples)."""
        return self.sections.get(name)

    def error(self, problem: str) -> SamplesError:
        """A game's complaint about its section, as one line naming the file and what to do."""
        return SamplesError(f"{self.path}: {problem}; {HINT}")

    def playing_line(self, own: str, seed: int) -> str:
        """The run's first line for `handler.py --policy empirical`: `own` (what the playing game draws from, in its
        words) first, then the other sections' summaries, the seed and the file."""
        others = [str(s["summary"]) for s in self.sections.values()
                  if isinstance(s.get("summary"), str) and s["summary"] != own]
        return f"policy: empirical (draws from {'; '.join([own, *others])}; seed {seed}, from {self.path})"


def write(path: str | Path, sections: Mapping[str, Mapping[str, Any]], source: Mapping[str, Any]) -> None:
    """Write the sections atomically, with what they were collected from (the training set)."""
    path = Path(path)
    record = {"format": FORMAT, "version": VERSION, "policy": "empirical", "sections": dict(sections),
              "fitted_on": dict(source), "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")


def read(path: str | Path) -> SavedSamples:
    """The samples file at `path`; SamplesError (one line) when it is missing, unreadable or of another format."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SamplesError(f"{path}: no empirical samples yet; {HINT}") from None
    except (OSError, ValueError) as exc:
        raise SamplesError(f"{path}: cannot read the empirical samples ({exc}); {HINT}") from None
    if not isinstance(record, dict):
        raise SamplesError(f"{path}: not an empirical samples file (a JSON object); {HINT}")
    if "format" not in record and isinstance(record.get("samples"), dict):
        return SavedSamples(path, legacy=record)  # version 1: before the sections
    if record.get("format") != FORMAT:
        raise SamplesError(f"{path}: not an empirical samples file written by finetune.py --evaluate; {HINT}")
    if record.get("version") != VERSION:
        raise SamplesError(f"{path}: empirical samples of version {record.get('version')!r}; this toolkit reads "
                           f"version {VERSION} (and the files of before the sections); {HINT}")
    sections = record.get("sections")
    if not isinstance(sections, dict) or not all(isinstance(s, dict) for s in sections.values()):
        raise SamplesError(f"{path}: \"sections\" must be an object of objects; {HINT}")
    return SavedSamples(path, sections)


def merged(parts: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, Mapping[str, Any]]:
    """The sections of several games' rules in order; two writing the same section is a bug."""
    out: dict[str, Mapping[str, Any]] = {}
    for part in parts:
        for name, section in part.items():
            if name in out:
                raise ValueError(f"two games' rules wrote the empirical samples section {name!r}")
            out[name] = section
    return out
