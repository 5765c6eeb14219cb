"""The voting game's lib.games.protocols.ScoreRules: how `finetune.py --evaluate` scores voting decisions.

Requests and offers are amounts, votes choices, chat is counted (lib.games.voting.kinds); the rule policies are the
baseline's rules (lib.games.voting.policy), the fitted ones (lib.games.voting.fitted) and the empirical ones
(lib.games.voting.empirical), each fitted on the training set's voting games with leave-one-game-out; a model's answer
is checked with lib.games.voting.actions.parse_answer against the player's state and cap, as at play time. Its
section is the report's top-level "policies", "references", "uncertainty" (lib.games.voting.fidelity),
"invalid_reasons" and "notes", its table the humans' scores with their intervals, its CSV rows the per-decision values
with the players' private values, its picture lib.games.voting.plot's three panels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lib.evaluation.scores import Decision, format_table, invalid_reasons, references, score
from lib.games.voting import fidelity, fitted
from lib.games.voting.actions import ActionError, parse_answer
from lib.games.voting.kinds import KINDS
from lib.games.voting.policy import baseline_action

GAME_TYPE = "voting"

NOTES = ["an invalid vote counts as a disagreement; MAE, median AE, bias and Spearman cover the valid answers only "
         "(n - invalid)",
         "'references' are the best constants in hindsight (the majority vote and the median amount of the evaluated "
         "humans themselves); the honest references, taken from the other games, are under uncertainty.references "
         "with the prefix 'out of sample'",
         "intervals: 95 % percentile bootstrap resampling persons (a seat in a game; quote these) and, second, "
         "games; the KS p-value assumes independent decisions and is optimistic",
         "chat is counted, not scored"]


def voting_examples(examples: Sequence[Any]) -> list[Any]:
    return [e for e in examples if e.game_type == GAME_TYPE]


def training_source(training: Any) -> dict[str, Any]:
    return {"path": str(training.path), "sha256": training.sha256, "games": training.games}


class _Rules:
    """lib.games.protocols.RuleDecisions on voting examples: `decide_one(example)` -> Decision."""

    def __init__(self, decide_one: Any, info: dict[str, Any], save: Any = None, summary: Any = None,
                 samples: Any = None) -> None:
        self.decide, self._info, self._save, self._summary = decide_one, info, save, summary
        self._samples = samples

    def info(self) -> dict[str, Any]:
        return self._info

    def save(self, out: Path) -> list[str]:
        return self._save(out) if self._save is not None else []

    def summary(self, out: Path) -> str | None:
        return self._summary(out) if self._summary is not None else None

    def samples(self) -> dict[str, Any]:
        return self._samples() if self._samples is not None else {}


def _with_params(params_for: Any) -> Any:
    def decide(example: Any) -> Decision:
        try:
            return Decision(baseline_action(example.view(), example.action, example.cap, **params_for(example)))
        except ActionError as exc:
            return Decision(None, str(exc))
    return decide


def baseline_rules() -> _Rules:
    return _Rules(_with_params(lambda example: {}),
                  {"rules": "lib/games/voting/policy.py", "parameters": dict(fitted.BASELINE)})


def fitted_rules(training: Any, evaluated_games: Sequence[str]) -> _Rules:
    voting = voting_examples(training.examples)
    per_game = fitted.fits_for_games(evaluated_games, voting)
    overall = fitted.fit(voting)
    source = training_source(training)
    info = {"training_set": source, "all_training_games": overall.to_dict(),
            "scored_with": {game: f.to_dict() for game, f in per_game.items()},
            "leave_one_game_out": sorted(g for g, f in per_game.items() if f.left_out)}

    def save(out: Path) -> list[str]:
        fitted.save(out / fitted.PARAMS_FILE, overall, source)
        return [fitted.PARAMS_FILE]

    def summary(out: Path) -> str:
        return (f"fitted on all training games: {fitted.in_words(overall.params)}; saved in "
                f"{out / fitted.PARAMS_FILE}")

    return _Rules(_with_params(lambda example: per_game[example.game].params), info, save, summary)


def empirical_rules(training: Any, evaluated_games: Sequence[str]) -> _Rules:
    from lib.games.voting import empirical

    made = empirical.EmpiricalEvalPolicy.from_training(training, evaluated_games)
    # its samples go to the evaluation's one samples file (lib.evaluation.saved), in the section "voting"
    return _Rules(made.decide, made.info(), samples=made.samples)


class VotingSection:
    """lib.games.protocols.ScoredSection of the voting examples."""

    def __init__(self, examples: Sequence[Any], decisions: Mapping[str, Sequence[Decision]],
                 training: Sequence[Any] | None) -> None:
        self.examples, self.decisions = list(examples), {name: list(ds) for name, ds in decisions.items()}
        self.scores = {name: score(self.examples, ds, KINDS) for name, ds in self.decisions.items()}
        self.refs = references(self.examples, KINDS)
        pool = list(training) if training is not None else self.examples
        self.uncertainty, self.rows = fidelity.analyse(self.examples, self.decisions, pool, self.refs)
        self.reasons = invalid_reasons(self.decisions)
        self.report: dict[str, Any] = {"policies": self.scores, "references": self.refs,
                                       "uncertainty": self.uncertainty, "invalid_reasons": self.reasons,
                                       "notes": list(NOTES)}

    def table(self) -> str:
        invalid = {name: {a: e.get("invalid", 0) for a, e in s.items()} for name, s in self.scores.items()}
        lines = [format_table(self.scores, self.refs, KINDS),
                 fidelity.format_uncertainty(self.uncertainty, invalid)]
        for name, counted in self.reasons.items():
            lines.append(f"invalid answers of {name}: "
                         + "; ".join(f"{n} x {why}" for why, n in list(counted.items())[:3]))
        return "\n".join(lines)

    def decision_rows(self) -> tuple[list[str], list[list[Any]]]:
        return fidelity.csv_rows(self.rows, self.decisions, self.examples)

    def draw(self, path: Path, title: str) -> None:
        from lib.games.voting import plot

        plot.draw(path, self.examples, self.decisions, self.scores, self.refs, title, self.uncertainty)


class VotingScores:
    """lib.games.protocols.ScoreRules for the voting game (see the module docstring)."""

    noun = "decisions"
    kinds = KINDS
    models = ("llm", "local", "local-base")
    answer_nll = True
    has_picture = True
    output_files = (fitted.PARAMS_FILE,)

    def rule_decisions(self, policy: str, training: Any, evaluated_games: Sequence[str]) -> _Rules | None:
        if policy == "baseline":
            return baseline_rules()
        if policy == "fitted":
            return fitted_rules(training, evaluated_games)
        if policy == "empirical":
            return empirical_rules(training, evaluated_games)
        return None

    def answer_schema(self, example: Any) -> tuple[str, int | None]:
        return example.action, example.cap

    def chat_client(self, **options: Any) -> Any:
        from lib.agents.llm import LLMPolicy

        return LLMPolicy(**options)

    def parse_answer(self, answer: Any, example: Any) -> dict[str, Any]:
        return parse_answer(answer, example.view(), example.action, cap=example.cap)

    def score(self, examples: Sequence[Any], decisions: Mapping[str, Sequence[Decision]], policies: Sequence[str],
              training: Sequence[Any] | None) -> VotingSection:
        return VotingSection(examples, decisions, training)


SCORES = VotingScores()
