"""lib.games.protocols.PlayRules for the ultimatum game: what the run modes (lib.agents.modes) ask of it — its
policies, its phases with actions, and the round report (offer, response, payoffs)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.games.protocols import Policy, PolicyRefused
from lib.ibex.params import GameParams
from tests.games.ultimatum.policy import Baseline
from tests.games.ultimatum.rules import PHASES, PROPOSAL_PHASE, RESPONSE_PHASE, SEATS

if TYPE_CHECKING:
    from lib.agents.decisions import Decision


class UltimatumPlay:
    seats = SEATS
    chat = False
    action_phases = (PROPOSAL_PHASE, RESPONSE_PHASE)
    ruleset = None
    seats_description = "the ultimatum game's two seats (a proposer and a responder)"
    seat_counts: Mapping[str, int] = {"developers_count": 1, "owners_count": 1, "speculators_count": 0}

    def timer_scale(self, policy_name: str) -> float:
        return 0.25 if policy_name == "llm" else 0.02

    def policy_refusal(self, policy_name: str) -> str | None:
        return (None if policy_name in ("baseline", "empirical", "llm")
                else f"--policy {policy_name}: the ultimatum game has none")

    def rule_policy(self, name: str, *, seed: int, path: Path | None, data_dir: Path) -> tuple[Policy, str | None]:
        if name == "empirical":
            from lib.evaluation.saved import SAMPLES_FILE, SamplesError, newest_saved
            from lib.evaluation.saved import read as read_saved
            from tests.games.ultimatum.empirical import EmpiricalPolicy, from_saved

            try:
                saved = read_saved(path or newest_saved(data_dir, SAMPLES_FILE))
                samples = from_saved(saved)
            except SamplesError as exc:
                raise PolicyRefused(str(exc)) from None
            return EmpiricalPolicy(samples, seed, saved), saved.playing_line(samples.summary(), seed)
        if name != "baseline":
            raise PolicyRefused(f"--policy {name} is no rule-based policy of the ultimatum game (baseline or "
                                "empirical)")
        return Baseline(seed=seed), None

    def policy(self, chosen: Policy, seed: int) -> Policy:
        if chosen.name == "baseline":
            return Baseline(seed=seed)
        if chosen.name == "empirical":
            from lib.evaluation.saved import SamplesError
            from tests.games.ultimatum.empirical import EmpiricalPolicy, from_saved

            # The run's empirical policy, whichever game loaded it, keeps its samples file: this game's section.
            saved = getattr(chosen, "saved", None)
            try:
                return EmpiricalPolicy(from_saved(saved), seed, saved)
            except SamplesError as exc:
                raise PolicyRefused(str(exc)) from None
        if chosen.name == "llm":
            from lib.games import game_for

            model: Any = chosen  # lib.agents.llm.LLMPolicy
            return model.for_game(game_for("ultimatum"))
        raise PolicyRefused(f"--policy {chosen.name} has no ultimatum version (use baseline, empirical or llm)")

    def agent_options(self, params: GameParams | None, *, seed: int, local: bool, known: bool = True) -> dict[str, Any]:
        return {}

    def deciding_line(self, round_number: int, phase: int) -> str | None:
        return f"  round {round_number}, phase {phase} ({PHASES.get(phase, '?')}): the model is deciding ..."

    def finished_rounds(self, views: list[Any], params: GameParams | None) -> list[int]:
        if all(v.game_over for v in views):
            return params.rounds() if params is not None else sorted({n for v in views for n in v.rounds})
        playing = min(v.round for v in views if not v.game_over)
        return sorted({n for v in views for n, rec in v.rounds.items() if n < playing and rec.payoff is not None})

    def unfinished_round(self, views: list[Any]) -> int | None:
        current = max((v.round for v in views), default=None)
        return current if current is not None and any(current in v.rounds for v in views) else None

    def round_lines(self, views: list[Any], number: int, fallbacks: list[Decision],
                    unfinished: bool = False) -> list[str]:
        marked = {(r.seat, r.action_type): r.fallback_reason for r in fallbacks if r.round == number}
        lines = [f"round {number}" + (" (unfinished)" if unfinished else "")]
        for view in sorted(views, key=lambda v: v.number or 0):
            rec = view.rounds.get(number)
            said = "-" if rec is None or rec.accepted is None else "accepted" if rec.accepted else "rejected"
            mark = "".join(f" [fallback: {why}]" for (seat, _), why in marked.items() if seat == view.number)
            lines.append(f"  {view.tag}: offer {rec.offer if rec else '-'}, {said}, payoff "
                         f"{rec.payoff if rec and rec.payoff is not None else '-'}{mark}")
        return lines

    def compact_line(self, lines: list[str]) -> str:
        return f"{lines[0]}: " + "; ".join(line.strip() for line in lines[1:])


PLAY = UltimatumPlay()
