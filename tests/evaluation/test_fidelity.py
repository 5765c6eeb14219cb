"""lib/evaluation/fidelity.py, the part of the evaluation's uncertainty every game shares, on hand-computed values."""

import math

import pytest

from lib.evaluation import fidelity

# six paired decisions of three persons in two games; differences 1, 0, -1, 1, 0, 7
XS = [3, 1, 4, 1, 5, 9]
YS = [2, 1, 5, 0, 5, 2]
PERSONS = ["1/1", "1/1", "1/2", "1/2", "2/1", "2/1"]
GAMES = ["1", "1", "1", "1", "2", "2"]
Z = 1.959963984540054 + 0.8416212335729143  # two-sided 5 % and 80 % power


def test_paired_differences_sign_test_and_power_by_hand():
    d = fidelity.paired(XS, YS, PERSONS, GAMES, "absolute error")
    assert d["measure"] == "absolute error" and d["n"] == 6
    assert d["persons"]["estimate"] == pytest.approx(8 / 6) and d["persons"]["clusters"] == 3
    assert d["games"]["estimate"] == pytest.approx(8 / 6) and d["games"]["clusters"] == 2
    assert d["persons"]["low"] <= 8 / 6 <= d["persons"]["high"]
    # per person: 0.5, 0 (a tie, dropped), 3.5: two positive of two, p = 2 * 1/4
    assert d["sign_test_persons"] == {"positive": 2, "negative": 0, "ties": 1, "p_value": 0.5}
    # SD of 0.5, 0, 3.5 around 4/3: sqrt((25/36 + 16/9 + 169/36) / 2) = sqrt(43/12)
    assert d["sd_person_differences"] == pytest.approx(math.sqrt(43 / 12))
    assert d["min_detectable_difference"] == pytest.approx(Z * math.sqrt(43 / 12) / math.sqrt(3))
    assert d["persons_needed_for_this_difference"] == math.ceil((Z * math.sqrt(43 / 12) / (4 / 3)) ** 2) == 16


def test_intervals_resample_persons_then_games():
    both = fidelity.intervals(XS, PERSONS, GAMES, lambda xs: sum(xs) / len(xs))
    assert both["persons"]["estimate"] == both["games"]["estimate"] == pytest.approx(23 / 6)
    assert (both["persons"]["clusters"], both["games"]["clusters"]) == (3, 2)
    one_game = fidelity.intervals(XS[:4], PERSONS[:4], GAMES[:4], lambda xs: sum(xs) / len(xs))
    assert one_game["games"]["low"] is None  # one game resampled is always itself


def test_comparisons_later_minus_earlier_then_each_reference():
    assert fidelity.comparisons(["baseline", "fitted", "empirical"], ["ref"]) == [
        ("fitted", "baseline"), ("empirical", "baseline"), ("empirical", "fitted"),
        ("baseline", "ref"), ("fitted", "ref"), ("empirical", "ref")]
    assert fidelity.comparisons(["baseline"], []) == []


def test_section_says_when_games_are_too_few():
    few = fidelity.section(3)
    assert list(few) == ["level", "resamples", "seed", "clusters", "notes", "policies", "references", "differences"]
    assert few["notes"] == ["3 games: an interval over games is not meaningful (fewer than 10; a bootstrap over 3 "
                            "games can only recombine those 3)"]
    assert fidelity.section(10)["notes"] == []


def test_difference_line_and_header():
    d = {"a": "fitted", "b": "baseline", **fidelity.paired(XS, YS, PERSONS, GAMES, "absolute error")}
    d["persons"].update(low=0.25, high=2.5)  # fixed bounds, so the line is known to the letter
    d["games"].update(low=0.5, high=3.5)
    line = fidelity.difference_line(d, "requests", lambda v: "-" if v is None else f"{v:.2f}")
    assert line == ("  requests: fitted - baseline (absolute error, n=6): 1.33 [0.25, 2.50] over 3 persons, "
                    "[0.50, 3.50] over 2 games; sign test 2+/0- (1 ties), p=0.50; MDD 3.06")
    assert "negative = a closer to the recorded players;" in fidelity.differences_header("the recorded players")
