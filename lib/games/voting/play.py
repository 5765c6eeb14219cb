"""The voting game's PlayRules (lib.games.protocols): what the run modes (lib.agents.modes) ask of it — its
policies, its phases with actions, and the round report printed as each round ends (requests, offer, votes,
outcome, each seat's profit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.games.protocols import Policy, PolicyRefused
from lib.games.voting.actions import DECISION, OFFER, REQUEST
from lib.games.voting.policy import BaselinePolicy
from lib.games.voting.rules import CONDITIONS, PHASES, PROJECT, SEATS, GameParams, seat_tag
from lib.games.voting.view import PlayerView

if TYPE_CHECKING:
    from lib.agents.decisions import Decision

CONDITION_NAMES = {cond["id"]: cond["name"] for cond in CONDITIONS}
# Local timers: the real server's defaults (minutes per phase) scaled down. A model needs seconds per answer, the
# rules none.
DEFAULT_SCALE = {"baseline": 0.02, "fitted": 0.02, "empirical": 0.02, "llm": 0.25}


def _x(amounts: Any) -> str:
    if isinstance(amounts, list) and len(amounts) > PROJECT:
        return str(amounts[PROJECT])
    return "-"


def _vote(vote: Any) -> str:
    if isinstance(vote, list) and len(vote) == 1 and vote[0] in CONDITION_NAMES:
        return CONDITION_NAMES[vote[0]]
    return "-"


def rounds_seen(views: Sequence[PlayerView]) -> list[int]:
    """The rounds any of the players has a result for (when the game's parameters are unknown)."""
    return sorted({n for v in views for n, rec in v.rounds.items() if rec.outcome or rec.profit is not None})


def summary_lines(views: Sequence[PlayerView], rounds: Sequence[int],
                  marks: Mapping[tuple[int, int, str], str] | None = None, unfinished: bool = False) -> list[str]:
    """Per round: requests, offer, votes, outcome and each seat's profit, from what the players saw (seats played
    by others show "-"). `marks[(round, seat, action type)]` follows that seat's action: a fallback's reason."""
    marks = marks or {}

    def mark(number: int, seat: int | None, wire_type: str) -> str:
        text = marks.get((number, seat or 0, wire_type))
        return f" [{text}]" if text else ""

    by_seat = {v.number: v for v in views if v.number is not None}
    developer = next((v for v in by_seat.values() if v.role == 2), None)
    owners = [by_seat[n] for n in sorted(by_seat) if by_seat[n].role == 3]
    lines = []
    for number in rounds:
        label = (" (practice)" if number == 0 else "") + (" (unfinished)" if unfinished else "")
        lines.append(f"round {number}{label}")
        dev_rec = developer.rounds.get(number) if developer else None
        requests = []
        for owner in owners:
            rec = owner.rounds.get(number)
            seen = dev_rec.requests.get(owner.number) if dev_rec else None
            requests.append(f"{owner.tag} {_x(seen if seen is not None else rec.my_request if rec else None)}"
                            f"{mark(number, owner.number, REQUEST)}")
        lines.append("  requests: " + ", ".join(requests))
        offer = dev_rec.offer if dev_rec else None
        if offer is None:
            offer = next((o.rounds[number].offer for o in owners if number in o.rounds), None)
        lines.append(f"  offer:    {_x(offer)}{mark(number, developer.number if developer else None, OFFER)}")
        lines.append("  votes:    " + ", ".join(
            f"{o.tag} {_vote(o.rounds[number].my_vote if number in o.rounds else None)}"
            f"{mark(number, o.number, DECISION)}" for o in owners))
        outcome = next((v.rounds[number].outcome for v in by_seat.values()
                        if number in v.rounds and v.rounds[number].outcome), None)
        if outcome:
            lines.append(f"  outcome:  {CONDITION_NAMES.get(outcome.get('condition'), '?')} "
                         f"({outcome.get('tally')} votes)")
        else:
            lines.append("  outcome:  -")
        profits = []
        for seat in range(1, SEATS + 1):
            rec = by_seat[seat].rounds.get(number) if seat in by_seat else None
            profits.append(f"{seat_tag(seat)} {rec.profit if rec and rec.profit is not None else '-'}")
        lines.append("  profit:   " + ", ".join(profits))
    return lines


def _began(rec: Any) -> bool:
    """Whether a round record holds anything of a round that began (a view may hold an empty one)."""
    return any(x is not None for x in (rec.values, rec.my_request, rec.offer, rec.my_vote, rec.outcome,
                                       rec.profit)) or bool(rec.requests or rec.chat)


class VotingPlay:
    """lib.games.protocols.PlayRules for the voting game: six seats, chat in phases 2 and 5, actions in 3, 4, 6."""

    seats = SEATS
    chat = True
    action_phases = (3, 4, 6)
    ruleset = None  # the real server's status names the market games' ruleset only; every other game is this one
    seats_description = "the voting game's six seats (one developer, five owners)"
    seat_counts: Mapping[str, int] = {"developers_count": 1, "owners_count": 5, "speculators_count": 0}

    def timer_scale(self, policy_name: str) -> float:
        return DEFAULT_SCALE[policy_name]

    def policy_refusal(self, policy_name: str) -> str | None:
        return None  # every policy has a voting version

    def rule_policy(self, name: str, *, seed: int, path: Path | None, data_dir: Path) -> tuple[Policy, str | None]:
        if name == "baseline":
            return BaselinePolicy(seed=seed), None
        if name == "fitted":
            from lib.games.voting import fitted

            where = path or fitted.newest_params(data_dir)
            try:
                params = fitted.load(where)
            except fitted.FittedError as exc:
                raise PolicyRefused(str(exc)) from None
            shown = ", ".join(f"{key} {value:g}" for key, value in params.items())
            return BaselinePolicy(seed=seed, name="fitted", **params), (
                f"policy: fitted ({shown}, from {where}{'' if path else ', the newest'})")
        if name == "empirical":
            from lib.games.voting import empirical

            try:
                return empirical.playing(path or empirical.newest_samples(data_dir), seed)
            except empirical.EmpiricalError as exc:
                raise PolicyRefused(str(exc)) from None
        raise PolicyRefused(f"--policy {name} is no rule-based policy of the voting game (baseline, fitted or "
                            "empirical)")

    def policy(self, chosen: Policy, seed: int) -> Policy:
        return chosen  # the run's policies are the voting game's own

    def agent_options(self, params: GameParams | None, *, seed: int, local: bool, known: bool = True) -> dict[str, Any]:
        return {}

    def deciding_line(self, round_number: int, phase: int) -> str | None:
        return f"  round {round_number}, phase {phase} ({PHASES.get(phase, '?')}): the model is deciding ..."

    def finished_rounds(self, views: list[Any], params: GameParams | None) -> list[int]:
        if all(v.game_over for v in views):
            return params.rounds() if params is not None else rounds_seen(views)
        playing = min(v.round for v in views if not v.game_over)
        return sorted({n for v in views for n, rec in v.rounds.items() if n < playing and _began(rec)})

    def unfinished_round(self, views: list[Any]) -> int | None:
        current = max((v.round for v in views), default=None)
        if current is not None and any(_began(v.rounds[current]) for v in views if current in v.rounds):
            return current
        return None

    def round_lines(self, views: list[Any], number: int, fallbacks: list[Decision],
                    unfinished: bool = False) -> list[str]:
        marks = {(r.round, r.seat, r.action_type): f"fallback: {r.fallback_reason}" for r in fallbacks}
        return summary_lines(views, [number], marks, unfinished=unfinished)

    def compact_line(self, lines: list[str]) -> str:
        parts = [line.strip() for line in lines[1:] if line.strip().startswith(("offer", "outcome"))]
        return f"{lines[0]}: " + ", ".join(" ".join(p.split()) for p in parts)


PLAY = VotingPlay()
