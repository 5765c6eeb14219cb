"""The generic evaluation asks each game's ScoreRules (lib.games.protocols): examples grouped by their game's scores,
rule policies dispatched per game, the per-decision CSV merged from the games' columns, the first printed line."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

from lib.dataset.sidecar import EvalSet, Example
from lib.evaluation import cli as evalcli
from lib.evaluation.policies import RulesPolicy, scored
from lib.evaluation.scores import Decision
from lib.games import game_for


def example(line: int, game: str, game_type: str, action: str) -> Example:
    state: dict[str, Any] = {"game": game, "action": action}
    if game_type != "voting":
        state["game_type"] = game_type
    return Example(line, game, action, [], {}, state)


def mixed_set(tmp_path: Path) -> EvalSet:
    examples = [example(1, "7", "futarchy", "declare"), example(2, "1", "voting", "compensation-request"),
                example(3, "5", "harberger", "cancel-order"), example(4, "2", "voting", "chat-with-players")]
    return EvalSet(tmp_path / "set.jsonl", tmp_path / "set.state.jsonl", "ab" * 32, examples)


def test_the_set_is_split_by_the_scores_of_its_games_and_the_market_games_share_one_part(tmp_path):
    parts = evalcli.parts_of(mixed_set(tmp_path))

    assert [part.game_types for part in parts] == [["voting"], ["harberger", "futarchy"]]
    assert parts[0].scores is game_for("voting").scores
    assert parts[1].scores is game_for("harberger").scores is game_for("futarchy").scores
    assert [e.line for e in parts[0].examples] == [2, 4] and [e.line for e in parts[1].examples] == [1, 3]
    assert parts[0].set.games == ["1", "2"] and parts[1].set.games == ["5", "7"]


def test_a_rule_policy_asks_each_game_for_its_rules_and_no_one_about_what_is_only_counted(tmp_path):
    class Recorder:
        def __init__(self) -> None:
            self.asked: list[int] = []

        def decide(self, e: Example) -> Decision:
            self.asked.append(e.line)
            return Decision({"line": e.line})

        def info(self) -> dict[str, Any]:
            return {"rules": "recorded"}

    voting = Recorder()
    policy = RulesPolicy("baseline", {id(game_for("voting").scores): voting})
    decided = asyncio.run(policy.decide_all(mixed_set(tmp_path).examples))

    assert voting.asked == [2]  # chat is counted, not asked
    assert [d.action for d in decided] == [None, {"line": 2}, None, None]
    assert decided[0].error == "no baseline rules for game_type futarchy"
    assert decided[2].error == "not asked: a market cancel is counted, not scored"
    assert decided[3].error == "not asked: chat is counted, not scored"
    assert [scored(e) for e in mixed_set(tmp_path).examples] == [True, True, False, False]
    assert policy.info() == {"rules": "recorded"}


class _Section:
    def __init__(self, columns: list[str], rows: list[list[Any]]) -> None:
        self.report: dict[str, Any] = {}
        self.columns, self.rows = columns, rows

    def table(self) -> str:
        return ""

    def decision_rows(self) -> tuple[list[str], list[list[Any]]]:
        return self.columns, self.rows

    def draw(self, path: Path, title: str) -> None:
        raise AssertionError("not drawn")


def test_the_csv_holds_every_game_s_columns_each_row_under_its_own(tmp_path):
    path = tmp_path / "decisions.csv"
    first = _Section(["policy", "game", "v_project"], [["baseline", "1", 5]])
    second = _Section(["policy", "game", "signal"], [["llm", "7", 0.5]])

    assert evalcli.write_csv(path, [first, second])
    with path.open(newline="") as f:
        assert list(csv.reader(f)) == [["policy", "game", "v_project", "signal"], ["baseline", "1", "5", ""],
                                       ["llm", "7", "", "0.5"]]
    assert not evalcli.write_csv(tmp_path / "none.csv", [_Section([], [])])
    assert not (tmp_path / "none.csv").exists()


def test_the_first_line_names_each_game_s_decisions_and_says_when_there_is_no_picture(tmp_path):
    evaluated = mixed_set(tmp_path)
    parts = evalcli.parts_of(evaluated)

    line = evalcli.evaluated_line(evaluated, parts, pictured=True)
    assert line == (f"Evaluated on {evaluated.path}: 2 decisions from 2 game(s) (1, 2), sha256 abababababab; and 2 "
                    "market decisions, scored apart below")
    market_only = evalcli.parts_of(EvalSet(evaluated.path, evaluated.sidecar, evaluated.sha256,
                                           [e for e in evaluated.examples if e.game_type != "voting"]))
    assert evalcli.evaluated_line(evaluated, market_only, pictured=False).endswith(
        "2 market decisions from 2 game(s) (5, 7), sha256 abababababab; no voting decision, so no picture")
