"""The results store: one transaction per finished game, resumability, a changed study refused, CSV exports."""

from __future__ import annotations

import csv
import sqlite3

import pytest

from lib.study.store import ABANDONED, FINISHED, RUNNING, StoreError, column_names, open_study

ROUND = {"round": 1, "practice": 0, "outcome": 1, "outcome_name": "Project", "approved": 1, "total_surplus": 5.0}
SEATS = [{"round": 1, "seat": s, "role": "owner", "policy": "baseline", "profit": 10.0 * s} for s in (1, 3)]


def play(store, arm, index, *, seed=1, rounds=(ROUND,), seat_rounds=tuple(SEATS)):
    uid = store.begin_game(arm, index, seed=seed, server="local", game_type="voting", parameters={"round_count": 1})
    store.finish_game(uid, game_id=4, rounds=rounds, seat_rounds=seat_rounds,
                      decisions=[{"round": 1, "seat": 1, "action": "request", "policy": "baseline",
                                  "made_by": "baseline", "attempts": 1}],
                      calls=[{"seat": 1, "attempt": 0, "model": "m", "cached": 0, "prompt_tokens": 3}])
    return uid


def test_the_database_is_wal_and_a_finished_game_has_all_its_rows(tmp_path):
    with open_study(tmp_path / "s", "s", "d1") as store:
        uid = play(store, "rules", 0)
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        game = store.rows("games")[0]
        assert game["status"] == FINISHED and game["game_uid"] == uid and game["game_id"] == "4"
        assert game["parameters"] == '{"round_count":1}' and game["study_digest"] == "d1"
        assert [r["profit"] for r in store.rows("seat_rounds")] == [10.0, 30.0]
        for table in ("rounds", "seat_rounds", "decisions", "calls"):
            assert {(r["study"], r["arm"], r["game_index"], r["game_uid"]) for r in store.rows(table)} == \
                {("s", "rules", 0, uid)}
    # another connection (a later run) sees the committed game
    other = sqlite3.connect(tmp_path / "s" / "study.sqlite")
    assert other.execute("SELECT COUNT(*) FROM seat_rounds").fetchone()[0] == 2


def test_a_game_whose_rows_fail_leaves_nothing_behind(tmp_path):
    with open_study(tmp_path / "s", "s", "d1") as store:
        uid = store.begin_game("rules", 0, seed=1, server="local", game_type="voting")
        with pytest.raises(StoreError, match="seat_rounds has no column"):
            store.finish_game(uid, rounds=[ROUND], seat_rounds=[{"round": 1, "seat": 1, "mood": "happy"}])
        assert store.count("rounds") == 0 and store.rows("games")[0]["status"] == RUNNING


def test_resuming_replays_exactly_the_unfinished_games_interleaved(tmp_path):
    folder = tmp_path / "s"
    with open_study(folder, "s", "d1") as store:
        play(store, "a", 0)
        play(store, "b", 0)
        play(store, "a", 1)
        store.begin_game("b", 1, seed=1, server="local", game_type="voting")  # a run killed here
    with open_study(folder, "s", "d1") as store:
        assert store.abandon_unfinished() == 1
        assert store.finished() == {("a", 0), ("b", 0), ("a", 1)}
        assert store.to_play(["a", "b"], 3) == [("b", 1), ("a", 2), ("b", 2)]
        play(store, "b", 1)
        assert [g["status"] for g in store.rows("games", "arm = ? AND game_index = ?", ("b", 1))] == \
            [ABANDONED, FINISHED]
        assert store.count("rounds") == 4  # the abandoned attempt wrote none


def test_a_game_is_never_counted_twice(tmp_path):
    with open_study(tmp_path / "s", "s", "d1") as store:
        play(store, "a", 0)
        with pytest.raises(StoreError, match="game 0 of arm 'a' is already finished"):
            play(store, "a", 0)
        assert store.count("rounds") == 1 and store.count("calls") == 1
        with pytest.raises(StoreError, match="not running"):
            store.finish_game(store.rows("games")[0]["game_uid"])


def test_a_changed_study_file_is_refused_unless_accepted(tmp_path):
    folder = tmp_path / "s"
    open_study(folder, "s", "d1").close()
    with pytest.raises(StoreError) as info:
        open_study(folder, "s", "d2")
    assert "the study file changed" in str(info.value) and str(folder / "study.sqlite") in str(info.value)
    with pytest.raises(StoreError, match="belongs to study 's'"):
        open_study(folder, "t", "d1")
    with open_study(folder, "s", "d2", accept_changed=True) as store:
        assert store.meta("digest") == "d2"


def test_a_damaged_database_is_one_line(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "study.sqlite").write_bytes(b"not a database at all, just text" * 100)
    with pytest.raises(StoreError, match="not a usable study database"):
        open_study(folder, "s", "d1")


def test_csv_exports_of_two_studies_concatenate_without_collisions(tmp_path):
    uids = []
    for name in ("one", "two"):
        with open_study(tmp_path / name, name, "d") as store:
            uids.append(play(store, "rules", 0))
            store.export_csv(tmp_path / name)
    for table in ("games", "rounds", "seat_rounds", "decisions", "calls"):
        rows = []
        for name in ("one", "two"):
            with (tmp_path / name / f"{table}.csv").open(encoding="utf-8", newline="") as fh:
                reader = csv.reader(fh)
                assert next(reader) == column_names(table)
                rows += list(reader)
        keys = [tuple(r[:4]) for r in rows]
        if table in ("games", "rounds"):
            assert len(set(keys)) == len(keys) == 2  # the same arm, index and server game id, yet distinct
    assert uids[0] != uids[1]
    assert not list((tmp_path / "one").glob(".*partial"))
