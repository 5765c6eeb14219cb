"""The study report end to end without the runner: arms from games the local server played and recorded
(`handler.py --local`, baseline), the reference from recorded logs; every number checked against values computed
here from the store's rows."""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist, stdev

import numpy as np
import pytest

from lib.evaluation import stats
from lib.study.logtables import HUMANS, record_tables, tables_from_log
from lib.study.outcomes import RATE, game_modules, report_description
from lib.study.report import ReportError, main, number, record_references, write_report
from lib.study.spec import load_study
from lib.study.store import column_names, open_study
from tests.helpers.paths import FIXTURES, REPO

# Under -n, one worker runs this file: its module fixtures play four games, which every worker would play again.
pytestmark = pytest.mark.xdist_group("study-report")

HUMAN_LOGS = [REPO / "jsonFiles" / f"{n}.log.json" for n in (1, 2, 3, 4)]
SESSIONS = REPO / "jsonFiles" / "sessions.json"
PNG = b"\x89PNG\r\n\x1a\n"


def start_local_games(folder: Path, game_type: str, games: int, rounds: int) -> list[tuple[Path, subprocess.Popen]]:
    """Start `games` baseline games of `game_type` on local servers, one handler process each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IBEX_"))}
    env["PYTHON_DOTENV_DISABLED"] = "1"
    running = []
    for k in range(games):
        where = folder / f"{game_type}{k}"
        where.mkdir(parents=True)
        running.append((where, subprocess.Popen(
            [sys.executable, str(REPO / "handler.py"), "--local", "--game-type", game_type, "--rounds", str(rounds),
             "--no-practice", "--timer-scale", "0.005", "--seed", str(k), "--records", str(where / "records"),
             "--logs-dir", str(where / "logs")],
            cwd=where, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    return running


def recorded_logs(running: list[tuple[Path, subprocess.Popen]]) -> list[Path]:
    """The game log each finished handler recorded."""
    logs = []
    for where, process in running:
        _out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err[-2000:]
        [log] = (where / "records").glob("*.log.json")
        logs.append(log)
    return logs


@pytest.fixture(scope="module")
def played(tmp_path_factory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("played")
    # all four games at once: they mostly wait on (scaled) phase timers
    voting, harberger = start_local_games(folder, "voting", 2, 2), start_local_games(folder, "harberger", 2, 1)
    return {"voting": recorded_logs(voting), "harberger": recorded_logs(harberger)}


# ----- independent computations from the store's rows


def observations(store, arm: str, outcome) -> tuple[list[float], list[str]]:
    """The outcome's values and their games, picked from the rows in Python (the report picks them in SQL)."""
    paid = {(r["game_uid"], r["round"]) for r in store.rows("rounds") if r["practice"] == 0}
    values, games = [], []
    for row in store.rows(outcome.table, "arm = ?", (arm,)):
        if (row["game_uid"], row["round"]) not in paid or row[outcome.column] is None:
            continue
        if outcome.role is not None and row["role"] != outcome.role:
            continue
        values.append(float(row[outcome.column]))
        games.append(row["game_uid"])
    return values, games


def ecdf_distances(x: list[float], y: list[float]) -> tuple[float, float]:
    """(Wasserstein-1, KS D) from numpy's empirical CDFs on the pooled points."""
    points = np.unique(np.concatenate([x, y]))
    fx = np.searchsorted(np.sort(x), points, side="right") / len(x)
    fy = np.searchsorted(np.sort(y), points, side="right") / len(y)
    gap = np.abs(fx - fy)
    return float(np.sum(gap[:-1] * np.diff(points))), float(gap.max())


def per_game_means(values: list[float], games: list[str]) -> list[float]:
    by_game: dict[str, list[float]] = {}
    for v, g in zip(values, games, strict=True):
        by_game.setdefault(g, []).append(v)
    return [sum(v) / len(v) for v in by_game.values()]


def detectable(a: tuple[list[float], list[str]], b: tuple[list[float], list[str]]) -> float | None:
    if min(len(set(a[1])), len(set(b[1]))) < 2:
        return None  # no spread between games to size a difference with
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.80)
    return z * math.sqrt(sum(stdev(per_game_means(*side)) ** 2 / len(set(side[1])) for side in (a, b)))


def expected_row(store, arm: str, outcome) -> tuple[str, float, str]:
    """The report's table row of `outcome` for `arm` as computed here: (the text up to the difference's interval,
    the difference, the text after that interval)."""
    mine, theirs = observations(store, arm, outcome), observations(store, HUMANS, outcome)
    mean_a, mean_b = sum(mine[0]) / len(mine[0]), sum(theirs[0]) / len(theirs[0])
    interval_a, interval_b = stats.cluster_bootstrap(*mine), stats.cluster_bootstrap(*theirs)
    assert interval_a.estimate == pytest.approx(mean_a) and interval_b.estimate == pytest.approx(mean_b)
    if outcome.kind == RATE:
        distances = "- | -"
    else:
        w, d = ecdf_distances(mine[0], theirs[0])
        _, p = stats.ks_2samp(mine[0], theirs[0])
        distances = f"{number(w)} | {number(d)} ({number(p)})"
    head = (f"| {outcome.label} | {stats.format_interval(interval_a, number)} | "
            f"{stats.format_interval(interval_b, number)} | {number(mean_a - mean_b)} [")
    tail = f"] | {distances} | {len(set(mine[1]))} / {len(set(theirs[1]))} | {number(detectable(mine, theirs))} |"
    return head, mean_a - mean_b, tail


def row_of(text: str, label: str, after: str) -> str:
    section = text[text.index(after):]
    return next(line for line in section.splitlines() if line.startswith(f"| {label} |"))


# ----- voting: two arms against the human sessions


@pytest.fixture(scope="module")
def voting_report(played, tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    study_file = root / "t.toml"
    study_file.write_text(
        'name = "t"\ngame = "voting"\ngames_per_arm = 2\n'
        f"compare_with = {json.dumps([str(p) for p in HUMAN_LOGS])}\n"
        f"compare_sessions = {json.dumps(str(SESSIONS))}\n"
        '[arms.rules]\ndeveloper = "baseline"\nowners = "baseline"\n'
        '[arms.single]\ndeveloper = "baseline"\nowners = "baseline"\n', encoding="utf-8")
    study = load_study(study_file)
    folder = root / "t"
    with open_study(folder, study.name, study.digest, study.canonical) as store:
        for index, log in enumerate(played["voting"]):
            record_tables(store, tables_from_log(log), index, arm="rules", server="local")
        record_tables(store, tables_from_log(played["voting"][1]), 0, arm="single", server="local")
    report = write_report(folder, study)
    return folder, study, report


def test_every_voting_number_matches_the_rows(voting_report):
    folder, _study, report = voting_report
    text = (folder / "report.md").read_text(encoding="utf-8")
    description = report_description("voting")
    assert report.arms == ["rules", "single"] and report.reference_sessions == 4
    with open_study(folder, "t", report_digest(folder)) as store:
        assert {r["arm"] for r in store.rows("games")} == {"rules", "single", HUMANS}
        for arm in ("rules", "single"):
            for outcome in description.outcomes:
                line = row_of(text, outcome.label, f"## Arm {arm}")
                head, gap, tail = expected_row(store, arm, outcome)
                assert line.startswith(head) and line.endswith(tail), (arm, outcome.name, line, head, tail)
                # the difference's interval holds the difference (an arm of one session has none)
                bounds = line[len(head):-len(tail)]
                if bounds != "-":
                    low, high = (float(x.replace(",", "")) for x in bounds.split(", "))
                    assert low - 1e-3 <= gap <= high + 1e-3, (arm, outcome.name, bounds, gap)


def report_digest(folder: Path) -> str:
    import sqlite3

    with sqlite3.connect(folder / "study.sqlite") as db:
        return db.execute("SELECT value FROM meta WHERE key = 'digest'").fetchone()[0]


def test_the_voting_report_names_its_sessions_and_what_they_cannot_show(voting_report):
    folder, _study, _report = voting_report
    text = (folder / "report.md").read_text(encoding="utf-8")
    rules = text[text.index("## Arm rules"):text.index("## Arm single")]
    assert "2 sessions of this arm and 4 sessions of the humans" in rules
    assert stats.few_clusters_note(2, "sessions") in rules and stats.few_clusters_note(4, "sessions") in rules
    assert "1 sessions of this arm and 4 sessions of the humans" in text[text.index("## Arm single"):]
    assert "would most likely go unseen" in rules


def test_every_voting_figure_is_a_png_named_in_the_report(voting_report):
    folder, _study, report = voting_report
    text = (folder / "report.md").read_text(encoding="utf-8")
    description = report_description("voting")
    names = [o.name for o in description.outcomes] + [r.name for r in description.relations]
    assert [p.name for p in report.figures] == [f"{n}.png" for n in names]
    assert {"approval_by_margin.png", "request_by_loss.png"} <= {p.name for p in report.figures}
    for path in report.figures:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 1000, path
        assert f"]({path.name})" in text


def test_the_cli_rebuilds_the_same_report_from_the_store_alone(voting_report, tmp_path):
    folder, _study, report = voting_report
    before = report.path.read_text(encoding="utf-8")
    for path in [report.path, *report.figures]:
        path.unlink()
    result = subprocess.run([sys.executable, "-m", "lib.study.report", str(folder)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"report: {report.path} (7 figures, 2 arms, 4 reference sessions)"
    assert report.path.read_text(encoding="utf-8") == before  # seeded bootstrap: the same numbers again
    assert all(p.read_bytes()[:8] == PNG for p in report.figures)
    # the reference is stored once: a second report with the study file adds no human game
    write_report(folder, load_study(_study.path))
    with open_study(folder, "t", report_digest(folder)) as store:
        assert len(store.rows("games", "arm = ?", (HUMANS,))) == 4


def test_bad_input_gets_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such study database" in err
    with open_study(tmp_path / "mixed", "mixed", "d") as store:
        record_tables(store, tables_from_log(HUMAN_LOGS[0]), 0, arm="a")
        harberger = tmp_path / "h.json"
        with gzip.open(FIXTURES / "market_logs.json.gz") as fh:
            harberger.write_text(json.dumps(json.load(fh)["logs"]["harberger-12"]), encoding="utf-8")
        record_tables(store, tables_from_log(harberger), 1, arm="a")
    with pytest.raises(ReportError, match="games of several types"):
        write_report(tmp_path / "mixed")


# ----- a market study says "the recorded players"


def test_a_market_report_compares_with_the_recorded_players(played, tmp_path):
    reference = tmp_path / "harberger-12.log.json"
    with gzip.open(FIXTURES / "market_logs.json.gz") as fh:
        reference.write_text(json.dumps(json.load(fh)["logs"]["harberger-12"]), encoding="utf-8")
    folder = tmp_path / "m"
    with open_study(folder, "m", "d") as store:
        for index, log in enumerate(played["harberger"]):
            record_tables(store, tables_from_log(log), index, arm="rules", server="local")
        assert record_references(store, [reference]) == 1
    report = write_report(folder)
    text = report.path.read_text(encoding="utf-8")
    assert "the recorded players" in text and "human" not in text.lower()
    assert "2 sessions of this arm and 1 sessions of the recorded players" in text
    description = report_description("harberger")
    with open_study(folder, "m", "d") as store:
        for outcome in description.outcomes:
            line = row_of(text, outcome.label, "## Arm rules")
            mine, theirs = observations(store, "rules", outcome), observations(store, HUMANS, outcome)
            if mine[0]:
                assert line.split("|")[2].strip().startswith(number(sum(mine[0]) / len(mine[0])))
            if theirs[0]:
                assert line.split("|")[3].strip().startswith(number(sum(theirs[0]) / len(theirs[0])))
            assert line.split("|")[7].strip() == f"{len(set(mine[1]))} / {len(set(theirs[1]))}"
            # one reference session: a difference, but no interval around it
            assert line.split("|")[4].strip().endswith(" [-]") or line.split("|")[4].strip() == "-", line
    for path in report.figures:
        assert path.read_bytes()[:8] == PNG


# ----- the report is generic


def test_every_game_describes_outcomes_the_tables_hold():
    for game_type, module in game_modules().items():
        description = report_description(game_type)
        assert description is module.REPORT and description.outcomes, game_type
        for item in (*description.outcomes, *description.relations):
            columns = [item.column] if hasattr(item, "column") else [item.x, item.y]
            assert set(columns) <= set(column_names(item.table)), (game_type, item)
            assert re.fullmatch(r"[a-z0-9_]+", item.name)
    assert report_description("no-such-game") is None


def test_the_report_names_no_game():
    source = (REPO / "lib" / "study" / "report.py").read_text(encoding="utf-8").lower()
    assert not re.search(r"voting|harberger|futarchy|market", source)


def test_replays_of_one_recorded_session_are_one_cluster(tmp_path):
    # Ten replays of the same session's values are not ten independent sessions: the interval must not pretend so.
    from lib.study.report import sample

    with open_study(tmp_path, "replays", "d") as store:
        for index in range(6):
            uid = store.begin_game("arm", index, seed=index, server="local", game_type="voting", parameters={},
                                   values_source=f"session {index % 2 + 1}")
            store.finish_game(uid, game_id=index, rounds=[{"round": 1, "practice": 0, "approved": index % 2}],
                              seat_rounds=[])
        for index in range(3):
            uid = store.begin_game("fresh-arm", index, seed=index, server="local", game_type="voting",
                                   parameters={}, values_source="fresh")
            store.finish_game(uid, game_id=10 + index, rounds=[{"round": 1, "practice": 0, "approved": 1}],
                              seat_rounds=[])
        replayed = sample(store, "arm", "rounds", "approved")
        fresh = sample(store, "fresh-arm", "rounds", "approved")
    assert len(replayed.values) == 6 and sorted(set(replayed.games)) == ["session 1", "session 2"]
    assert len(set(fresh.games)) == 3  # fresh values: every game is its own cluster


def test_the_report_counts_replays_of_a_session_as_that_session(tmp_path):
    # Thirty games replaying three sessions are three sessions behind the report's intervals: the sentence under the
    # table, the sessions column and the few-sessions warning must all say 3, not 30.
    from lib.study.report import build_report

    folder = tmp_path / "replays"
    with open_study(folder, "replays", "d") as store:
        for index in range(30):
            uid = store.begin_game("arm", index, seed=index, server="local", game_type="voting", parameters={},
                                   values_source=f"session {index % 3 + 1}")
            store.finish_game(uid, game_id=index, rounds=[{"round": 1, "practice": 0, "approved": index % 2}],
                              seat_rounds=[])
        for index in range(3):
            uid = store.begin_game(HUMANS, index, seed=None, server="log", game_type="voting", parameters={})
            store.finish_game(uid, game_id=100 + index, rounds=[{"round": 1, "practice": 0, "approved": 1}],
                              seat_rounds=[])
        report = build_report(store, folder)
    assert report.sessions == {"arm": 3, HUMANS: 3} and report.games == {"arm": 30, HUMANS: 3}
    text = report.path.read_text(encoding="utf-8")
    assert "30 games of this arm, which replay the values of 3 recorded sessions and so count as 3 sessions" in text
    assert "This arm: 3 sessions: an interval over sessions is not meaningful" in text
    assert "| 3 / 3 |" in text
