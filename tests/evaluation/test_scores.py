"""lib/evaluation/scores.py's game-free helpers."""

from __future__ import annotations

from lib.evaluation.scores import Decision, invalid_reasons


def test_the_main_reasons_for_invalid_answers_most_frequent_first():
    decisions = {"llm": [Decision(None, "not JSON"), Decision({"x": 1}), Decision(None, "amount above the cap"),
                         Decision(None, "not JSON")],
                 "baseline": [Decision({"x": 1})]}
    assert invalid_reasons(decisions) == {"llm": {"not JSON": 2, "amount above the cap": 1}}
