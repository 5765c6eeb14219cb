"""A study's results: `studies/<name>/study.sqlite` (standard-library sqlite3, WAL) and its CSV exports.

Each finished game is written in one transaction (its rows in every table and its status), so a kill loses at most
the games in progress, and a game is finished at most once per (arm, game index) (a partial unique index says so).
Every row carries the study's name, the arm, the game index and a run-unique game uid (never the server's game id
alone, which repeats across runs and servers), so CSV files of different studies concatenate without collisions.

Resuming: `open_study` refuses a study file whose digest differs from the one the store was made with, unless
told to accept it; `abandon_unfinished` marks the games a killed run left running; `to_play` lists the (arm, game)
pairs still to play, game k of every arm before game k+1.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lib.study.outcomes import round_columns, seat_columns

RUNNING, FINISHED, FAILED, ABANDONED = "running", "finished", "failed", "abandoned"
KEY_COLUMNS = (("study", "TEXT NOT NULL"), ("arm", "TEXT NOT NULL"), ("game_index", "INTEGER NOT NULL"),
               ("game_uid", "TEXT NOT NULL"))
GAME_COLUMNS = (
    ("server", "TEXT"), ("game_id", "TEXT"), ("game_type", "TEXT"), ("parameters", "TEXT"), ("seed", "INTEGER"),
    ("values_source", "TEXT"), ("status", "TEXT NOT NULL"), ("started_at", "REAL"), ("finished_at", "REAL"),
    ("study_digest", "TEXT"), ("note", "TEXT"),
)
DECISION_COLUMNS = (
    ("round", "INTEGER"), ("phase", "INTEGER"), ("seat", "INTEGER"), ("action", "TEXT"), ("policy", "TEXT"),
    ("made_by", "TEXT"),  # the policy, or the fallback that stood in for it
    ("fallback", "INTEGER"), ("latency_s", "REAL"), ("attempts", "INTEGER"), ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"), ("cost_usd", "REAL"), ("answer", "TEXT"),
)
CALL_COLUMNS = (
    ("seat", "INTEGER"), ("round", "INTEGER"), ("attempt", "INTEGER"), ("endpoint", "TEXT"), ("model", "TEXT"),
    ("temperature", "REAL"), ("cache_key", "TEXT"), ("cached", "INTEGER"), ("latency_s", "REAL"),
    ("prompt_tokens", "INTEGER"), ("completion_tokens", "INTEGER"), ("cost_usd", "REAL"), ("status", "TEXT"),
    ("prompt", "TEXT"),  # the prompt variant (lib.games.protocols.PromptRules); last: older stores get it added
)
TABLES = ("games", "rounds", "seat_rounds", "decisions", "calls")


class StoreError(ValueError):
    """A results store that cannot be used as asked; the message is one line naming the file."""


def _columns(table: str) -> tuple[tuple[str, str], ...]:
    extra = {"games": GAME_COLUMNS, "rounds": round_columns(), "seat_rounds": seat_columns(),
             "decisions": DECISION_COLUMNS, "calls": CALL_COLUMNS}[table]
    return KEY_COLUMNS + extra


def column_names(table: str) -> list[str]:
    """The columns of `table`, in the order of its CSV export."""
    return [name for name, _ in _columns(table)]


def _plain(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


class ResultsStore:
    """One study's database. Use `open_study` to make or reopen one; close it (or use `with`)."""

    def __init__(self, path: Path, study: str) -> None:
        self.path, self.study = path, study
        self.db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit: BEGIN ... COMMIT
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for table in TABLES:
            cols = ", ".join(f'"{name}" {kind}' for name, kind in _columns(table))
            primary = ", PRIMARY KEY (game_uid)" if table == "games" else ""
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols}{primary})")
            if table != "games":
                self.db.execute(f"CREATE INDEX IF NOT EXISTS {table}_uid ON {table} (game_uid)")
            # A store made before a column was added to its table gets it, empty for its old rows (a column is only
            # ever added at the end, so the table's order stays that of column_names).
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for name, kind in _columns(table):
                if name not in have:
                    self.db.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}')
        self.db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS one_finished ON games (arm, game_index) "
                        f"WHERE status = '{FINISHED}'")

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                        "excluded.value", (key, value))

    # ----- games

    def begin_game(self, arm: str, index: int, *, seed: int | None, server: str, game_type: str,
                   parameters: Mapping[str, Any] | None = None, values_source: str | None = None) -> str:
        """Record that game `index` of `arm` starts now; its run-unique uid."""
        uid = uuid.uuid4().hex
        self.db.execute("INSERT INTO games (study, arm, game_index, game_uid, server, game_type, parameters, seed, "
                        "values_source, status, started_at, study_digest) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (self.study, arm, index, uid, server, game_type, _plain(dict(parameters or {})), seed,
                         values_source, RUNNING, time.time(), self.meta("digest")))
        return uid

    def finish_game(self, uid: str, *, game_id: Any = None, rounds: Iterable[Mapping[str, Any]] = (),
                    seat_rounds: Iterable[Mapping[str, Any]] = (), decisions: Iterable[Mapping[str, Any]] = (),
                    calls: Iterable[Mapping[str, Any]] = (), status: str = FINISHED, note: str | None = None) -> None:
        """Write a game's rows and its final status in one transaction (all of it or nothing)."""
        row = self.db.execute("SELECT arm, game_index, status FROM games WHERE game_uid = ?", (uid,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no game with uid {uid}")
        arm, index, was = row
        if was != RUNNING:
            raise StoreError(f"{self.path}: game {arm}/{index} ({uid}) is {was}, not running")
        keys = {"study": self.study, "arm": arm, "game_index": index, "game_uid": uid}
        try:
            self.db.execute("BEGIN IMMEDIATE")
            for table, rows in (("rounds", rounds), ("seat_rounds", seat_rounds), ("decisions", decisions),
                                ("calls", calls)):
                self._insert(table, [{**r, **keys} for r in rows])
            self.db.execute("UPDATE games SET status = ?, game_id = ?, finished_at = ?, note = ? WHERE game_uid = ?",
                            (status, None if game_id is None else str(game_id), time.time(), note, uid))
            self.db.execute("COMMIT")
        except sqlite3.IntegrityError:
            self.db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: game {index} of arm {arm!r} is already finished") from None
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        allowed = set(column_names(table))
        for r in rows:
            unknown = sorted(set(r) - allowed)
            if unknown:
                raise StoreError(f"{self.path}: {table} has no column(s) {', '.join(unknown)}")
        names = column_names(table)
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
        self.db.executemany(sql, [tuple(_plain(r.get(n)) for n in names) for r in rows])

    def abandon_unfinished(self) -> int:
        """Mark the games a killed or interrupted run left running as abandoned (their rows were never written);
        the number marked. They are played again with the same values and seed."""
        cur = self.db.execute("UPDATE games SET status = ? WHERE status = ?", (ABANDONED, RUNNING))
        return cur.rowcount

    def finished(self) -> set[tuple[str, int]]:
        """(arm, game index) of every finished game."""
        return {(a, i) for a, i in self.db.execute("SELECT arm, game_index FROM games WHERE status = ?", (FINISHED,))}

    def to_play(self, arms: Iterable[str], games_per_arm: int) -> list[tuple[str, int]]:
        """(arm, game index) still to play, game k of every arm before game k+1 (so time and endpoint load do not
        confound arms)."""
        done = self.finished()
        arms = list(arms)
        return [(arm, k) for k in range(games_per_arm) for arm in arms if (arm, k) not in done]

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise StoreError(f"{self.path}: no table {table!r}")
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def rows(self, table: str, where: str = "", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of `table` as dicts (for tests and notebooks); `where` is an SQL condition with ? placeholders."""
        if table not in TABLES:
            raise StoreError(f"{self.path}: no table {table!r}")
        cur = self.db.execute(f"SELECT * FROM {table}" + (f" WHERE {where}" if where else ""), args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    def export_csv(self, folder: Path) -> list[Path]:
        """`<table>.csv` for every table into `folder` (written beside, then renamed: a reader never sees half)."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for table in TABLES:
            target = folder / f"{table}.csv"
            partial = folder / f".{table}.csv.partial"
            names = column_names(table)
            with partial.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(names)
                order = "game_index, arm" + ("" if table == "games" else ", game_uid")
                writer.writerows(self.db.execute(f"SELECT {', '.join(names)} FROM {table} ORDER BY {order}"))
            partial.replace(target)
            written.append(target)
        return written


def study_folder(root: Path, name: str) -> Path:
    """studies/<name>/ under `root`."""
    return root / name


def open_study(folder: Path, name: str, digest: str, canonical: str = "", *, accept_changed: bool = False
               ) -> ResultsStore:
    """The store of study `name` in `folder` (made when new). A store made from a different study file (another
    digest) is refused with one line, unless `accept_changed`, which records the new digest and keeps the games."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.sqlite"
    try:
        store = ResultsStore(path, name)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable study database ({exc})") from None
    known_name, known = store.meta("name"), store.meta("digest")
    if known_name is not None and known_name != name:
        store.close()
        raise StoreError(f"{path}: belongs to study {known_name!r}, not {name!r}")
    if known is not None and known != digest and not accept_changed:
        store.close()
        raise StoreError(f"{path}: the study file changed since its games were played (digest {known[:12]} -> "
                         f"{digest[:12]}); keep the old file, use another name, or accept the change explicitly")
    store._set_meta("name", name)
    store._set_meta("digest", digest)
    if canonical:
        store._set_meta("canonical", canonical)
    return store
