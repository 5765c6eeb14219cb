"""A study's report: `studies/<name>/report.md` and its PNG figures, each arm's game outcomes against the recorded
reference games (arm `humans` of the store: the human logs of the study file's `compare_with`).

Which outcomes and plots a report has comes from the game (lib.study.outcomes.report_description); nothing here
names a game. Every number is computed by lib.evaluation.stats:

- an outcome's mean over the paid rounds (and seats, for a per-seat outcome) of an arm, with a 95 % percentile
  bootstrap interval that resamples whole games (a session is one game: its rounds are not independent);
- the arm-minus-reference difference of means, with the same bootstrap over the games of both sides pooled (each
  resampled game keeps its side; a resample without a game of either side is left out; no interval when a side has
  a single game);
- Wasserstein and Kolmogorov-Smirnov distances between the two sides' observations (amounts only; the KS p-value
  assumes independent observations, so it is optimistic);
- the number of games behind each number, the few-sessions sentence, and the smallest difference that many games
  would detect (80 % power, 5 % level, normal approximation from the SD of the per-game means of each side).

`python -m lib.study.report STUDY_DIR` rebuilds the report from STUDY_DIR/study.sqlite alone.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lib.evaluation import stats
from lib.study.logtables import HUMANS, LogTableError, record_tables, tables_from_log
from lib.study.outcomes import RATE, Outcome, OutcomeReport, Relation, report_description
from lib.study.store import FINISHED, ResultsStore, StoreError, column_names

REPORT_FILE = "report.md"
LEVEL = 0.95
POWER, ALPHA = 0.80, 0.05


class ReportError(ValueError):
    """A report that cannot be written; the message is one line naming the file."""


@dataclass(frozen=True)
class Sample:
    """One side's observations of an outcome, each labelled with its game (the cluster)."""

    values: list[float]
    games: list[str]

    @property
    def sessions(self) -> int:
        return len(set(self.games))


@dataclass(frozen=True)
class OutcomeResult:
    """An outcome of one arm against the reference games."""

    outcome: Outcome
    arm: str
    mean: stats.Interval
    reference: stats.Interval
    difference: stats.Interval  # arm minus reference
    wasserstein: float | None  # amounts only
    ks: float | None
    ks_p: float | None  # asymptotic, for independent observations: optimistic here
    detectable: float | None  # the smallest true difference these games detect with 80 % power


@dataclass
class Report:
    path: Path
    study: str
    game_type: str
    description: OutcomeReport
    arms: list[str]
    sessions: dict[str, int]  # sessions per arm, as the intervals count them (CLUSTER), the reference included
    results: list[OutcomeResult] = field(default_factory=list)
    games: dict[str, int] = field(default_factory=dict)  # finished games per arm: more than its sessions where
    # games replay recorded sessions' values
    figures: list[Path] = field(default_factory=list)
    seats: dict[str, str] = field(default_factory=dict)  # arm -> who played its seats (arm_seats)

    @property
    def reference_sessions(self) -> int:
        return self.sessions.get(HUMANS, 0)


# ----- reading the store


def _game_type(store: ResultsStore) -> str:
    types = sorted({t for (t,) in store.db.execute("SELECT DISTINCT game_type FROM games WHERE status = ?",
                                                   (FINISHED,))})
    if not types:
        raise ReportError(f"{store.path}: no finished game to report on")
    if len(types) > 1:
        raise ReportError(f"{store.path}: games of several types ({', '.join(map(str, types))}); a report compares "
                          "games of one type")
    return types[0]


def _arms(store: ResultsStore) -> list[str]:
    """The arms with finished games, in the order they were first played (the reference left out)."""
    rows = store.db.execute("SELECT arm, MIN(rowid) FROM games WHERE status = ? GROUP BY arm ORDER BY 2", (FINISHED,))
    return [arm for arm, _ in rows if arm != HUMANS]


# The cluster of an observation: its game, except when games replay the values of one recorded session (a study's
# `sessions` or `logs` values): the replays of one session share its values, so they are one cluster, and an arm
# that replays 3 sessions ten times each has 3 sessions behind its intervals, not 30.
CLUSTER = "CASE WHEN g.values_source IS NULL OR g.values_source = 'fresh' THEN g.game_uid ELSE g.values_source END"


def sample(store: ResultsStore, arm: str, table: str, column: str, role: str | None = None) -> Sample:
    """The non-empty `column` of `table` over the paid rounds of `arm`'s finished games (seats of `role` only, when
    given), in game and round order."""
    if table not in ("rounds", "seat_rounds") or column not in column_names(table):
        raise ReportError(f"{store.path}: {table} has no column {column!r}")
    if table == "rounds":
        sql = (f'SELECT r."{column}", {CLUSTER} FROM rounds r JOIN games g ON g.game_uid = r.game_uid '
               f'WHERE g.status = ? AND r.arm = ? AND r.practice = 0 AND r."{column}" IS NOT NULL '
               "ORDER BY r.game_index, r.round")
        args: tuple[Any, ...] = (FINISHED, arm)
    else:
        sql = (f'SELECT s."{column}", {CLUSTER} FROM seat_rounds s JOIN games g ON g.game_uid = s.game_uid '
               "JOIN rounds r ON r.game_uid = s.game_uid AND r.round = s.round "
               f'WHERE g.status = ? AND s.arm = ? AND r.practice = 0 AND s."{column}" IS NOT NULL'
               + (" AND s.role = ?" if role else "") + " ORDER BY s.game_index, s.round, s.seat")
        args = (FINISHED, arm, role) if role else (FINISHED, arm)
    rows = store.db.execute(sql, args).fetchall()
    return Sample([float(v) for v, _ in rows], [uid for _, uid in rows])


# ----- statistics (all of it lib.evaluation.stats)


def difference(a: Sample, b: Sample, level: float = LEVEL) -> stats.Interval:
    """mean(a) - mean(b) with a bootstrap over the games of both sides pooled (see the module's docstring)."""
    tagged = [(True, v) for v in a.values] + [(False, v) for v in b.values]
    clusters = [("a", g) for g in a.games] + [("b", g) for g in b.games]

    def gap(values: list[tuple[bool, float]]) -> float | None:
        left = stats.mean([v for side, v in values if side])
        right = stats.mean([v for side, v in values if not side])
        return None if left is None or right is None else left - right

    interval = stats.cluster_bootstrap(tagged, clusters, gap, level=level)
    if min(a.sessions, b.sessions) < 2:
        # a side of one session is that session in every resample: the spread would be the other side's alone
        return replace(interval, low=None, high=None)
    return interval


def detectable_difference(a: Sample, b: Sample) -> float | None:
    """The smallest true difference of means that these games detect with 80 % power at the 5 % level: the two
    sides' per-game SDs over their numbers of games, combined as independent samples."""
    parts = []
    for side in (a, b):
        sd = stats.sd(stats.cluster_means(side.values, side.games))
        if sd is None:
            return None
        part = stats.min_detectable_difference(sd, side.sessions, ALPHA, POWER)
        if part is None:
            return None
        parts.append(part)
    return math.sqrt(sum(p * p for p in parts))


def outcome_result(store: ResultsStore, outcome: Outcome, arm: str) -> OutcomeResult:
    mine = sample(store, arm, outcome.table, outcome.column, outcome.role)
    theirs = sample(store, HUMANS, outcome.table, outcome.column, outcome.role)
    amounts = outcome.kind != RATE
    ks, p = stats.ks_2samp(mine.values, theirs.values) if amounts else (None, None)
    return OutcomeResult(
        outcome, arm,
        stats.cluster_bootstrap(mine.values, mine.games, level=LEVEL),
        stats.cluster_bootstrap(theirs.values, theirs.games, level=LEVEL),
        difference(mine, theirs),
        stats.wasserstein1(mine.values, theirs.values) if amounts else None, ks, p,
        detectable_difference(mine, theirs))


# ----- the text


def number(value: float | None) -> str:
    """How the report writes every number (the tests format theirs the same way)."""
    return "-" if value is None else f"{value:,.3f}"


def _interval(interval: stats.Interval) -> str:
    return stats.format_interval(interval, number)


def sessions_sentence(arm_sessions: int, reference_sessions: int, reference: str, arm_games: int | None = None
                      ) -> str:
    """What this many sessions can and cannot show: the few-sessions sentence of each side that has too few, or that
    the intervals rest on enough, and what the 'detectable' column means. `arm_games`: the arm's games, when more
    than its sessions (games that replay recorded sessions' values count as the sessions they replay)."""
    notes = [f"{who}: {note}." for who, n in (("This arm", arm_sessions), (reference[0].upper() + reference[1:],
                                                                          reference_sessions))
             if (note := stats.few_clusters_note(n, "sessions"))]
    if arm_games is not None and arm_games > arm_sessions:
        mine = (f"{arm_games} games of this arm, which replay the values of {arm_sessions} recorded sessions and so "
                f"count as {arm_sessions} sessions,")
    else:
        mine = f"{arm_sessions} sessions of this arm"
    head = (f"Behind these numbers: {mine} and {reference_sessions} sessions of {reference} (a session is one game, "
            "or every replay of one recorded session's values; every interval resamples whole sessions).")
    if notes:
        body = " ".join(notes) + (
            " The intervals are printed but are not to be quoted, and a difference can only be called a direction "
            "to test with more sessions, never a finding.")
    else:
        body = (f"With at least {stats.MIN_CLUSTERS} sessions on each side the intervals can be quoted; a difference "
                "whose interval excludes 0 is unlikely to be resampling noise.")
    return (f"{head} {body} A true difference smaller than the 'detectable' column (80 % power at the 5 % level) "
            "would most likely go unseen with this many sessions: no difference shown is not no difference.")


def _figure_name(name: str) -> str:
    return f"{name}.png"


def _table(results: Sequence[OutcomeResult], arm: str, reference: str) -> list[str]:
    short = reference.removeprefix("the ")
    lines = [f"| outcome | {arm}: mean [95 % CI] | {short}: mean [95 % CI] | {arm} minus {short} [95 % CI] | "
             f"Wasserstein | KS D (approx. p) | sessions ({arm} / {short}) | detectable |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ks = "-" if r.ks is None else f"{number(r.ks)} ({number(r.ks_p)})"
        lines.append(f"| {r.outcome.label} | {_interval(r.mean)} | {_interval(r.reference)} | "
                     f"{_interval(r.difference)} | {number(r.wasserstein)} | {ks} | "
                     f"{r.mean.clusters} / {r.reference.clusters} | {number(r.detectable)} |")
    return lines


def render(report: Report) -> str:
    d = report.description
    ref = d.reference
    lines = [f"# Study {report.study}: the arms against {ref}", "",
             f"Game: {report.game_type}. Arms: {', '.join(report.arms) or '(none)'}. Reference: {ref}, "
             f"{report.reference_sessions} recorded sessions. Every number is over the paid rounds (practice rounds "
             "left out); an outcome's observations are its rounds (or owners' seats in a round, where said), and "
             "every 95 % interval is a percentile bootstrap that resamples whole sessions (games). 'minus' is the "
             f"arm's mean minus that of {ref}. Distances compare the two sides' observations (amounts only); the KS "
             "p-value assumes independent observations and is optimistic. See docs/studies.md, 'Reading the "
             "report'.", ""]
    if report.reference_sessions == 0:
        lines += [f"No recorded session of {ref} is in the store: the columns against them are empty "
                  "(name the logs in the study file's `compare_with`).", ""]
    if not report.arms:
        lines += ["No arm has a finished game yet: there is nothing to set beside the recorded sessions.", ""]
    for arm in report.arms:
        mine = [r for r in report.results if r.arm == arm]
        lines += [f"## Arm {arm}", ""]
        if report.seats.get(arm):
            lines += [f"Seats: {report.seats[arm]}.", ""]
        lines += [*_table(mine, arm, ref), "",
                  sessions_sentence(report.sessions.get(arm, 0), report.reference_sessions, ref,
                                    report.games.get(arm)), ""]
    lines += ["## Distributions", ""]
    for outcome in d.outcomes:
        lines += [f"![{outcome.label}]({_figure_name(outcome.name)})", ""]
    if d.relations:
        lines += ["## Relations", ""]
        for relation in d.relations:
            lines += [f"![{relation.label}]({_figure_name(relation.name)})", ""]
    return "\n".join(lines)


# ----- the figures


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def _groups(report: Report) -> list[tuple[str, str]]:
    """(store arm, legend label), the reference first."""
    return [(HUMANS, report.description.reference), *((a, f"arm {a}") for a in report.arms)]


def _plot_outcome(plt: Any, store: ResultsStore, report: Report, outcome: Outcome, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4))
    if outcome.kind == RATE:
        labels, means, errors = [], [], [[], []]
        for arm, label in _groups(report):
            s = sample(store, arm, outcome.table, outcome.column, outcome.role)
            interval = stats.cluster_bootstrap(s.values, s.games, level=LEVEL)
            labels.append(f"{label}\n({s.sessions} sessions)")
            m = interval.estimate or 0.0
            means.append(m)
            errors[0].append(m - interval.low if interval.low is not None else 0.0)
            errors[1].append(interval.high - m if interval.high is not None else 0.0)
        ax.bar(range(len(labels)), means, yerr=errors, capsize=4, color="#8fb3d9")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share of rounds (95 % CI over sessions)")
    else:
        for arm, label in _groups(report):
            s = sample(store, arm, outcome.table, outcome.column, outcome.role)
            if not s.values:
                continue
            xs = sorted(s.values)
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post",
                    label=f"{label} ({len(xs)} obs., {s.sessions} sessions)")
        ax.set_xlabel(outcome.label)
        ax.set_ylabel("share of observations at or below")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    ax.set_title(outcome.label)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _both(store: ResultsStore, arm: str, relation: Relation) -> list[tuple[float, float]]:
    alias = "r" if relation.table == "rounds" else "s"
    for column in (relation.x, relation.y):
        if column not in column_names(relation.table):
            raise ReportError(f"{store.path}: {relation.table} has no column {column!r}")
    join = "" if relation.table == "rounds" else \
        "JOIN rounds r ON r.game_uid = s.game_uid AND r.round = s.round "
    role = " AND s.role = ?" if relation.role and relation.table == "seat_rounds" else ""
    sql = (f'SELECT {alias}."{relation.x}", {alias}."{relation.y}" FROM {relation.table} {alias} '
           f"JOIN games g ON g.game_uid = {alias}.game_uid {join}WHERE g.status = ? AND {alias}.arm = ? "
           f'AND r.practice = 0 AND {alias}."{relation.x}" IS NOT NULL AND {alias}."{relation.y}" IS NOT NULL{role}')
    args = (FINISHED, arm, relation.role) if role else (FINISHED, arm)
    return [(float(a), float(b)) for a, b in store.db.execute(sql, args)]


def _plot_relation(plt: Any, store: ResultsStore, report: Report, relation: Relation, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4))
    markers = "os^vD<>ph*"
    lifted = False
    for k, (arm, label) in enumerate(_groups(report)):
        pairs = _both(store, arm, relation)
        # 0/1 answers of every group would hide each other: lift each group's a little
        lift = 0.03 * k if all(b in (0.0, 1.0) for _, b in pairs) else 0.0
        lifted = lifted or (lift > 0 and bool(pairs))
        if pairs:
            ax.scatter([a for a, _ in pairs], [b + lift for _, b in pairs], s=18, alpha=0.6, marker=markers[k % 10],
                       label=f"{label} ({len(pairs)})")
    ax.set_xlabel(relation.x_label)
    ax.set_ylabel(relation.y_label + (" (groups lifted 0.03 apart)" if lifted else ""))
    ax.set_title(relation.label)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


# ----- putting it together


def record_references(store: ResultsStore, logs: Sequence[Path], sessions: Path | None = None) -> int:
    """Store the recorded logs as the reference arm, unless the store already holds it; how many were stored."""
    if any(arm == HUMANS for arm, _ in store.finished()):
        return 0
    table = None
    if sessions is not None:
        from lib.ibex.sessions import SessionsError, load_sessions

        try:
            table = load_sessions(sessions)
        except SessionsError as exc:
            raise ReportError(str(exc)) from None
    built = []
    for log in logs:
        try:
            built.append(tables_from_log(log, table))
        except LogTableError as exc:
            raise ReportError(str(exc)) from None
    for index, tables in enumerate(built):
        record_tables(store, tables, index)
    return len(built)


def arm_seats(store: ResultsStore, arm: str) -> str:
    """Who played an arm's seats, from its finished games' seat rows: each policy (a model with its prompt variant
    where that is not the default: lib.study.runner names it so) with its seats and their role."""
    rows = store.db.execute("SELECT DISTINCT s.policy, s.seat, s.role FROM seat_rounds s JOIN games g ON "
                            "g.game_uid = s.game_uid WHERE g.status = ? AND s.arm = ? ORDER BY s.seat",
                            (FINISHED, arm))
    by_policy: dict[str, list[tuple[int, str]]] = {}
    for policy, seat, role in rows:
        by_policy.setdefault(str(policy), []).append((seat, role))
    parts = []
    for policy, seats in by_policy.items():
        roles = sorted({str(role) for _seat, role in seats if role})
        numbers = ", ".join(str(seat) for seat, _role in dict.fromkeys(seats))
        parts.append(f"{policy}: seat{'s' if len(seats) > 1 else ''} {numbers}"
                     + (f" ({', '.join(roles)})" if roles else ""))
    return "; ".join(parts)


def build_report(store: ResultsStore, folder: Path) -> Report:
    """Compute every number, write `folder`/report.md and its figures; the report."""
    game_type = _game_type(store)
    description = report_description(game_type)
    if description is None:
        raise ReportError(f"{store.path}: a {game_type!r} game has no outcomes to report")
    name = store.meta("name") or folder.name
    arms = _arms(store)
    sessions = dict(store.db.execute(f"SELECT g.arm, COUNT(DISTINCT {CLUSTER}) FROM games g WHERE g.status = ? "
                                     "GROUP BY g.arm", (FINISHED,)))
    report = Report(folder / REPORT_FILE, name, game_type, description, arms, sessions)
    report.games = dict(store.db.execute("SELECT arm, COUNT(*) FROM games WHERE status = ? GROUP BY arm",
                                         (FINISHED,)))
    report.results = [outcome_result(store, outcome, arm) for arm in arms for outcome in description.outcomes]
    report.seats = {arm: arm_seats(store, arm) for arm in arms}
    plt = _pyplot()
    for outcome in description.outcomes:
        path = folder / _figure_name(outcome.name)
        _plot_outcome(plt, store, report, outcome, path)
        report.figures.append(path)
    for relation in description.relations:
        path = folder / _figure_name(relation.name)
        _plot_relation(plt, store, report, relation, path)
        report.figures.append(path)
    partial = folder / f".{REPORT_FILE}.partial"
    partial.write_text(render(report), encoding="utf-8")
    partial.replace(report.path)  # a reader never sees half a report
    return report


def open_store(folder: Path) -> ResultsStore:
    """The existing store of the study in `folder` (never makes one)."""
    path = folder / "study.sqlite"
    if not path.is_file():
        raise ReportError(f"{path}: no such study database (run the study first)")
    try:
        store = ResultsStore(path, "")
        name = store.meta("name")
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"{path}: not a usable study database ({exc})") from None
    store.study = name or folder.name
    return store


def write_report(folder: str | Path, study: Any = None) -> Report:
    """The report of the study in `folder`, from its store. With a lib.study.spec.Study, its `compare_with` logs
    (values from its `compare_sessions` table) are first stored as the reference arm if the store lacks it."""
    folder = Path(folder)
    store = open_store(folder)
    try:
        if study is not None:
            if store.meta("name") not in (None, study.name):
                raise ReportError(f"{store.path}: belongs to study {store.meta('name')!r}, not {study.name!r}")
            record_references(store, study.compare_with, study.compare_sessions)
        return build_report(store, folder)
    except StoreError as exc:
        raise ReportError(str(exc)) from None
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lib.study.report",
        description="Write the study report and its figures into STUDY_DIR from STUDY_DIR/study.sqlite.")
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study's folder (studies/<name>)")
    parser.add_argument("--study", metavar="FILE", help="the study file: store its compare_with logs as the "
                                                        "reference first, if the store has none")
    args = parser.parse_args(argv)
    try:
        study = None
        if args.study:
            from lib.study.spec import load_study

            study = load_study(args.study)
        report = write_report(args.study_dir, study)
    except ValueError as exc:  # ReportError, StudyError: one line each
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {report.path} ({len(report.figures)} figures, {len(report.arms)} arms, "
          f"{report.reference_sessions} reference sessions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
