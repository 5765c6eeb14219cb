"""What generic code may ask of a game: small Protocols, one per seam, and the record that gathers them.

A game (lib/games/<name>/game.py) is a `GameDefinition` whose parts each implement one Protocol here:

- `rules` (GameRules): its parameters (the web UI's defaults, typed and checked), seats and seat groups, phases.
- `scores` (ScoreRules): how `finetune.py --evaluate` scores its decisions: action kinds, rule policies, strict
  parsing of a model's answer, its section of the report, table, per-decision CSV and picture.

Generic modules type against these Protocols and reach a game only through lib.games.game_for; nothing outside
lib/games branches on a game's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lib.games.voting.rules import GameParams


class GameRules(Protocol):
    """A game's facts and parameters, as the real IBEX server has them."""

    last_phase: int  # the last phase with a timer; phase 0 waits for players

    def default_parameters(self) -> dict[str, Any]:
        """The real server's web UI defaults for this game, flat, named as a game log names them."""
        ...

    def parameters(self, flat: Mapping[str, Any] | None = None, where: str = "gameParameters") -> GameParams:
        """The defaults with `flat` applied, typed and checked; ParamError (one line naming the key) otherwise."""
        ...

    def local_parameters(self, rounds: int, practice: bool, timer_scale: float) -> dict[str, Any]:
        """Flat overrides for a game on the local server: round count, practice round, timers scaled."""
        ...

    def seat_roles(self, params: GameParams | None = None) -> dict[int, int]:
        """Seat number -> role (lib.games.voting.rules.ROLE_*), in join order, for a game with `params`."""
        ...

    def seat_groups(self, params: GameParams | None = None) -> dict[str, tuple[int, ...]]:
        """Seat-group name (developer, owners, speculators) -> its seats; only the groups this game has."""
        ...

    def timeout(self, params: GameParams) -> float:
        """Seconds after which a game with `params` that has not ended is given up (a bound, not an estimate)."""
        ...


class RuleDecisions(Protocol):
    """A rule policy's decisions on one game's evaluated examples (lib.dataset.sidecar.Example)."""

    def decide(self, example: Any) -> Any:
        """The lib.evaluation.scores.Decision on a scored example: the validated message, or None and why."""
        ...

    def info(self) -> dict[str, Any]:
        """What the report says of these rules (merged into the policy's policy_info)."""
        ...

    def save(self, out: Path) -> list[str]:
        """Write what `handler.py --policy` plays (fitted parameters, samples) into `out`; the file names."""
        ...

    def summary(self, out: Path) -> str | None:
        """A line for stdout after the tables (what `save` wrote into `out`), or None."""
        ...


class ScoreRules(Protocol):
    """How `finetune.py --evaluate` scores a game's decisions; games that share it share one report section."""

    noun: str  # what its decisions are called on stdout: "decisions", "market decisions"
    kinds: Mapping[str, Any]  # action type -> lib.evaluation.scores.Kind: how a decision of that type is scored
    models: tuple[str, ...]  # the model policies (llm, local, ...) asked on its examples
    answer_nll: bool  # whether a model's NLL of the recorded answer is asked for on its examples
    has_picture: bool  # whether its ScoredSection draws a picture
    output_files: tuple[str, ...]  # the files its rule policies may save: an older evaluation's are removed

    def rule_decisions(self, policy: str, training: Any, evaluated_games: Sequence[str]) -> RuleDecisions | None:
        """The rule policy `policy` (baseline, fitted, empirical) on this game's examples, fitted on `training` (the
        training set, a lib.dataset.sidecar.EvalSet of every game; None for the baseline) leaving each evaluated
        training game out; None when the game has no such rules."""
        ...

    def answer_schema(self, example: Any) -> tuple[str, int]:
        """(decision type, cap) a model's structured output is asked for with on `example`."""
        ...

    def chat_client(self, **options: Any) -> Any:
        """The chat client (lib.agents.llm.LLMPolicy or the game's own) that asks for its structured output."""
        ...

    def parse_answer(self, answer: Any, example: Any) -> dict[str, Any]:
        """A model's answer on `example` checked strictly, as at play time; a ValueError (the game's ActionError, one
        line naming what is wrong) otherwise."""
        ...

    def score(self, examples: Sequence[Any], decisions: Mapping[str, Sequence[Any]], policies: Sequence[str],
              training: Sequence[Any] | None) -> ScoredSection:
        """Its examples scored: `decisions` are those of the policies asked on them (one per example), `policies`
        names every policy evaluated, `training` the training set's examples of this game (None without one)."""
        ...


class ScoredSection(Protocol):
    """One game's scores in an evaluation: its part of the report, its table, CSV rows and picture."""

    report: dict[str, Any]  # its keys of evaluation_report.json: scores, intervals, references, distances

    def table(self) -> str:
        """The report part as printed on stdout."""
        ...

    def decision_rows(self) -> tuple[list[str], list[list[Any]]]:
        """The per-decision CSV's columns and rows (one per example and policy or reference); none: ([], [])."""
        ...

    def draw(self, path: Path, title: str) -> None:
        """Its picture, as PNG, to `path` (only asked when its ScoreRules.has_picture)."""
        ...


class Game(Protocol):
    """A registered game: its name (the server's game_type) and its parts."""

    name: str
    title: str  # for people: "voting", "Harberger", "futarchy"
    rules: GameRules
    scores: ScoreRules | None  # None: `finetune.py --evaluate` cannot score it


@dataclass(frozen=True)
class GameDefinition:
    """The record a game folder builds its Game from."""

    name: str
    title: str
    rules: GameRules
    scores: ScoreRules | None = None


GROUP_ROLES = {"developer": 2, "owners": 3, "speculators": 1}  # lib.games.voting.rules ROLE_* by seat-group name


def groups_from_roles(roles: Mapping[int, int]) -> dict[str, tuple[int, ...]]:
    """Seat groups from seat -> role, leaving out groups without a seat."""
    groups = {name: tuple(seat for seat, r in sorted(roles.items()) if r == role) for name, role in GROUP_ROLES.items()}
    return {name: seats for name, seats in groups.items() if seats}
