"""lib.games.protocols.ScoreRules for the ultimatum game: how `finetune.py --evaluate` scores its decisions.

An offer is an amount (the share offered), a response a choice (accept or reject), scored with the generic
statistics of lib.evaluation.scores against the recorded players; the only rule policy is the baseline (policy.py);
a model's answer is checked with actions.parse against the example's view and pie, as at play time. Its section of
the report is "ultimatum"; it draws no picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lib.evaluation.scores import AMOUNT, CHOICE, Decision, Kind, format_table, invalid_reasons, references, score
from tests.games.ultimatum import actions
from tests.games.ultimatum.actions import OFFER, RESPONSE
from tests.games.ultimatum.policy import baseline_action
from tests.games.ultimatum.rules import NAME

KINDS: dict[str, Kind] = {
    OFFER: Kind(AMOUNT, lambda message: message["offer"], "offers"),
    RESPONSE: Kind(CHOICE, lambda message: message["accept"], "responses"),
}


class BaselineDecisions:
    """lib.games.protocols.RuleDecisions of the baseline on ultimatum examples."""

    def decide(self, example: Any) -> Decision:
        try:
            return Decision(baseline_action(example.view(), example.action, example.cap))
        except ValueError as exc:
            return Decision(None, str(exc))

    def info(self) -> dict[str, Any]:
        return {"rules": "tests/games/ultimatum/policy.py"}

    def save(self, out: Path) -> list[str]:
        return []  # nothing fitted

    def summary(self, out: Path) -> str | None:
        return None

    def samples(self) -> dict[str, Any]:
        return {}  # draws from no samples


class UltimatumSection:
    """lib.games.protocols.ScoredSection of the ultimatum examples."""

    def __init__(self, examples: Sequence[Any], decisions: Mapping[str, Sequence[Decision]]) -> None:
        self.examples = list(examples)
        self.decisions = {name: list(ds) for name, ds in decisions.items()}
        self.scores = {name: score(self.examples, ds, KINDS) for name, ds in self.decisions.items()}
        self.refs = references(self.examples, KINDS)
        self.report: dict[str, Any] = {NAME: {"examples": len(self.examples), "policies": self.scores,
                                              "references": self.refs,
                                              "invalid_reasons": invalid_reasons(self.decisions)}}

    def table(self) -> str:
        return f"{NAME} decisions (n={len(self.examples)}):\n" + format_table(self.scores, self.refs, KINDS)

    def decision_rows(self) -> tuple[list[str], list[list[Any]]]:
        rows = [[example.game, example.state["seat"], example.action, name,
                 actions.wire_json(decision.action) if decision.action is not None else "", decision.error or ""]
                for name, decided in self.decisions.items()
                for example, decision in zip(self.examples, decided, strict=True)]
        return ["game", "seat", "action", "policy", "answer", "invalid"], rows

    def draw(self, path: Path, title: str) -> None:
        raise NotImplementedError("the ultimatum game draws no picture (has_picture is False)")


class UltimatumScores:
    """lib.games.protocols.ScoreRules for the ultimatum game (see the module docstring)."""

    noun = "ultimatum decisions"
    kinds = KINDS
    models = ("llm",)
    answer_nll = False
    has_picture = False
    output_files: tuple[str, ...] = ()

    def rule_decisions(self, policy: str, training: Any, evaluated_games: Sequence[str]) -> Any:
        if policy == "baseline":
            return BaselineDecisions()
        if policy == "empirical":
            from tests.games.ultimatum.empirical import EmpiricalDecisions

            return EmpiricalDecisions(training)
        return None

    def answer_schema(self, example: Any) -> tuple[str, int]:
        return example.action, example.cap

    def chat_client(self, **options: Any) -> Any:
        from lib.agents.llm import LLMPolicy
        from lib.games import game_for

        return LLMPolicy(game=game_for(NAME), **options)

    def parse_answer(self, answer: Any, example: Any) -> dict[str, Any]:
        return actions.parse(answer, example.view(), example.action, example.cap)

    def score(self, examples: Sequence[Any], decisions: Mapping[str, Sequence[Decision]], policies: Sequence[str],
              training: Sequence[Any] | None) -> UltimatumSection:
        return UltimatumSection(examples, decisions)


SCORES = UltimatumScores()
