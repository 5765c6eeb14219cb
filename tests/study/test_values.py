"""Fresh values: a session in the real server's table format, the same for game k of every arm."""

from __future__ import annotations

from lib.games.market.rules import round_signals, round_values, seat_layout
from lib.ibex.params import GameParams, parameters_from_dict
from lib.ibex.sessions import parse_sessions
from lib.study.values import fresh_session, fresh_table

VOTING = dict(parameters_from_dict({"round_count": 3}).values)


def test_game_k_gets_the_same_values_whoever_asks_and_other_games_others():
    first = fresh_session("voting", VOTING, seed=7, index=2)
    assert fresh_session("voting", VOTING, seed=7, index=2) == first
    assert fresh_session("voting", VOTING, seed=7, index=3) != first
    assert fresh_session("voting", VOTING, seed=8, index=2) != first


def test_values_are_whole_thousands_within_each_roles_range_for_every_round():
    params = GameParams(VOTING)
    table = parse_sessions(fresh_table("voting", VOTING, seed=1, index=0))
    for r in range(0, 4):  # the practice round's slot and rounds 1..3
        for seat in range(1, 7):
            values = table.values(1, r, seat)
            assert values is not None and all(v % 1000 == 0 for v in values)
            role = 2 if seat == 2 else 3
            for condition, value in enumerate(values):
                low, high = params.value_range(role, condition)
                assert low <= value <= high
    assert table.values(1, 4, 1) is None
    assert "signals" not in table.sessions[1][0]


def test_a_market_game_gets_signals_the_market_rules_read():
    params = {**VOTING, "game_type": "futarchy", "speculators_count": 6, "tax_rate_final": 33,
              "signal_low": 0.95, "signal_high": 1.05, "generate_signals": False, "session_number": 1,
              "owner_project_b_fixed": 150000, "developer_project_b_fixed": 1750000}
    table = fresh_table("futarchy", params, seed=3, index=5)
    seats = seat_layout()
    values = round_values(table, params, 1, seats)
    signals = round_signals(table, params, 1, seats, values)
    assert sorted(signals) == list(range(1, 13))
    for condition in (0, 1):
        total = sum(v[condition] for v in values.values())
        fundamental = total * 0.33 / 100
        for s in signals.values():  # 1 % of the values' sum x tax rate x U(0.95, 1.05)
            assert 0.95 * fundamental - 1 <= s[condition] <= 1.05 * fundamental + 1


def test_one_table_serves_a_whole_study_with_game_k_as_session_k_plus_1():
    from lib.study.values import fresh_sessions_table, session_number_of

    table = parse_sessions(fresh_sessions_table("voting", VOTING, seed=7, indices=range(4)))
    alone = parse_sessions(fresh_table("voting", VOTING, seed=7, index=2))
    assert sorted(table.sessions) == [1, 2, 3, 4]
    for seat in range(1, 7):
        assert table.values(session_number_of(2), 1, seat) == alone.values(1, 1, seat)
