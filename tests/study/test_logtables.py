"""Outcome rows from recorded logs, checked against values worked out by hand from the fixtures."""

from __future__ import annotations

import gzip
import json

import pytest

from lib.ibex.sessions import load_sessions
from lib.study.logtables import HUMANS, LogTableError, record_tables, tables_from_data, tables_from_log
from lib.study.store import column_names, open_study
from tests.helpers.paths import FIXTURES

VOTING_LOG = FIXTURES / "dataset" / "logs" / "902.log.json"  # 2023 format, practice round + 1 round, session 3
SESSIONS = FIXTURES / "dataset" / "sessions.json"


def market_log(name: str) -> dict:
    with gzip.open(FIXTURES / "market_logs.json.gz") as fh:
        return json.load(fh)["logs"][name]


def test_voting_rounds_worked_out_by_hand():
    tables = tables_from_log(VOTING_LOG, load_sessions(SESSIONS))
    assert tables.game_type == "voting" and tables.game_id == 902
    practice, paid = tables.rounds
    # Round 0: all five owners vote for the project at an offer of 280,000; values of session 3, round 0.
    assert (practice["round"], practice["practice"], practice["outcome"], practice["approved"]) == (0, 1, 1, 1)
    assert practice["votes_for_project"] == 5 and practice["values_source"] == "sessions"
    assert practice["total_value"] == 160_000 + 2_600_000 + 340_000 + 290_000 + 180_000 + 230_000
    assert practice["total_surplus"] == 3_800_000 - (480_000 + 590_000 + 360_000 + 410_000 + 520_000 + 440_000)
    assert practice["efficient"] == 1
    developer_profit = 2_600_000 - 5 * 280_000
    assert practice["developer_share"] == pytest.approx((developer_profit - 480_000) / 1_000_000)
    assert practice["owners_share"] == pytest.approx(1 - 0.72)
    # Round 1: one vote for the project (seat 4): no project, which is the efficient outcome.
    assert (paid["outcome"], paid["approved"], paid["votes_for_project"]) == (0, 0, 1)
    assert paid["total_value"] == 2_500_000 and paid["total_surplus"] == 0 and paid["efficient"] == 1
    assert paid["developer_share"] is None
    assert paid["break_even_offer"] == (700_000 - 220_000) / 5
    assert paid["offer_1"] == 200_000 and paid["offer_over_break_even"] == pytest.approx(200_000 / 96_000)
    # requests over loss: seat 1 400k/25k, seat 3 350k/400k, seat 4 300k/300k, seat 5 150k/60k; seat 6 silent
    assert paid["requests_made"] == 4
    assert paid["mean_request_over_loss"] == pytest.approx((16 + 0.875 + 1 + 2.5) / 4)
    seats = {s["seat"]: s for s in tables.seat_rounds if s["round"] == 1}
    assert seats[6]["request_1"] is None and seats[6]["loss"] == 190_000 and "request_over_loss" not in seats[6]
    assert seats[5]["request_over_loss"] == pytest.approx(2.5)
    assert seats[2]["role"] == "developer" and seats[2]["offer_made_1"] == 200_000
    assert seats[2]["profit"] == 220_000  # no project: its value, no compensation
    assert seats[4]["vote_project"] == 1 and seats[1]["vote_project"] == 0
    assert seats[1]["offer_received_1"] == 200_000 and seats[1]["profit"] == 370_000
    practice_seats = {s["seat"]: s for s in tables.seat_rounds if s["round"] == 0}
    assert practice_seats[1]["profit"] == 160_000 + 280_000 and practice_seats[2]["profit"] == developer_profit


def test_voting_values_unknown_without_a_table_leave_the_value_columns_empty():
    tables = tables_from_log(VOTING_LOG)
    assert all(r["values_source"] == "unknown" and "total_surplus" not in r for r in tables.rounds)
    assert all(s["value_0"] is None and "profit" not in s for s in tables.seat_rounds)
    assert tables.rounds[1]["outcome"] == 0  # the votes alone still decide the outcome


def test_harberger_round_worked_out_by_hand():
    tables = tables_from_data(market_log("harberger-12"), "harberger-12")
    assert tables.game_type == "harberger" and tables.game_id == 12
    row = next(r for r in tables.rounds if r["round"] == 2)
    assert (row["outcome"], row["values_source"], row["trades"], row["final_price"]) == (1, "server-log", 10, 12837)
    with_project = 276_000 + 2_608_000 + 273_000 + 306_000 + 227_000 + 284_000
    without = 498_000 + 351_000 + 368_000 + 396_000 + 375_000 + 469_000
    assert row["total_value"] == with_project and row["total_surplus"] == with_project - without
    assert row["efficient"] == 1 and row.get("developer_share") is None
    assert row["fundamental_price"] == pytest.approx(with_project * 0.33 / 100)
    assert row["price_over_fundamental"] == pytest.approx(12837 / (with_project * 0.33 / 100))
    seats = {s["seat"]: s for s in tables.seat_rounds if s["round"] == 2}
    assert seats[1]["declaration_1"] == 221_000 and seats[1]["declaration_over_value_1"] == pytest.approx(221 / 276)
    assert seats[1]["times_sniped"] == 1 and seats[1]["trades_sold"] == 2
    # v - taxes + repurchases + balance + shares x price, from its round-summary
    assert seats[1]["profit"] == pytest.approx(276_000 - 2_210 - 77_550 - 27_500 - 20_500 + 86_159 + 4 * 12_837)
    assert seats[7]["role"] == "speculator" and seats[7]["snipes_made"] == 1 and seats[7]["trades_bought"] == 2
    assert seats[7]["profit"] == pytest.approx(4_583.333333 + 20_500 + 23_717 + 7 * 12_837)
    assert row["snipes"] == sum(s.get("snipes_made", 0) for s in seats.values())


def test_futarchy_rows_have_the_same_columns(tmp_path):
    tables = tables_from_data(market_log("futarchy-13"), "futarchy-13")
    assert [r["outcome"] for r in tables.rounds] == [0, 1, 1]
    with open_study(tmp_path, "h", "d") as store:
        record_tables(store, tables, 0)
        record_tables(store, tables_from_log(VOTING_LOG, load_sessions(SESSIONS)), 1)
        assert store.count("rounds") == 5
        games = store.rows("games")
        assert {g["arm"] for g in games} == {HUMANS} and [g["game_type"] for g in games] == ["futarchy", "voting"]
        rows = store.rows("rounds")
        assert list(rows[0]) == column_names("rounds")


def test_an_unusable_log_is_one_line(tmp_path):
    path = tmp_path / "x.log.json"
    path.write_text("[1, 2")
    with pytest.raises(LogTableError, match=r"x\.log\.json: not valid JSON"):
        tables_from_log(path)
    with pytest.raises(LogTableError, match="not an IBEX log"):
        tables_from_data({"log": []}, "y")
    broken = market_log("harberger-12")
    broken = {**broken, "server-log": None}
    with pytest.raises(LogTableError, match="harberger: .*server-log"):
        tables_from_data(broken, "harberger")


def test_a_share_of_a_loss_is_left_empty():
    from lib.study.outcomes import shares

    roles = {1: 3, 2: 2}
    assert shares({1: 10.0, 2: 30.0}, roles, 40.0) == {"developer_share": 0.75, "owners_share": 0.25}
    assert shares({1: 10.0, 2: -50.0}, roles, -40.0) == {"developer_share": None, "owners_share": None}
    assert shares({}, roles, 0) == {"developer_share": None, "owners_share": None}


def test_market_values_from_a_sessions_table_that_agrees_with_the_results():
    table_path = FIXTURES / "market_sessions.json"
    raw = json.loads(table_path.read_text())
    tables = tables_from_data(market_log("harberger-12"), "harberger-12", load_sessions(table_path))
    row = next(r for r in tables.rounds if r["round"] == 1)  # the server-log alone cannot give round 1's values
    session = next(s for s in raw if s["id"] == 1)["rounds"][1]["values"]
    by_hand = [1000 * (c["developer"] + sum(c["owner"])) for c in session]
    assert row["values_source"] == "sessions" and row["outcome"] == 0
    assert row["total_value"] == by_hand[0] and row["total_surplus"] == 0
    assert row["efficient"] == int(by_hand[0] >= by_hand[1])
    wrong = [{"id": 1, "rounds": [{"values": [{"developer": 1, "owner": [1] * 5}] * 2}] * 3}]
    from lib.ibex.sessions import parse_sessions

    disagreeing = tables_from_data(market_log("harberger-12"), "harberger-12", parse_sessions(wrong))
    assert next(r for r in disagreeing.rounds if r["round"] == 1)["values_source"] == "unknown"
