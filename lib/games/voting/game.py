"""The voting game as the registry sees it (lib.games.protocols): its parts, each from this folder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib.games.protocols import GameDefinition, groups_from_roles
from lib.games.voting import outcomes
from lib.games.voting.answers import ANSWERS
from lib.games.voting.data import DATA
from lib.games.voting.play import PLAY
from lib.games.voting.rules import LAST_PHASE, SEATS, seat_role
from lib.games.voting.scores import SCORES
from lib.games.voting.seat import SEAT
from lib.games.voting.serverrules import VotingServerRules
from lib.games.voting.variants import PROMPTS
from lib.ibex.params import DEFAULT_PARAMETERS, SEAT_GROUPS, GameParams, parameters_from_dict


class VotingRules:
    """lib.games.protocols.GameRules for the voting game: six seats, one developer, phases 1-7."""

    last_phase = LAST_PHASE

    def default_parameters(self) -> dict[str, Any]:
        return dict(parameters_from_dict().values)

    def parameters(self, flat: Mapping[str, Any] | None = None, where: str = "gameParameters") -> GameParams:
        return parameters_from_dict(flat, where)

    def local_parameters(self, rounds: int, practice: bool, timer_scale: float) -> dict[str, Any]:
        defaults = {key: value for key, _kind, value in DEFAULT_PARAMETERS}
        overrides: dict[str, Any] = {"round_count": rounds, "practice_round": practice}
        for phase in range(1, LAST_PHASE + 1):
            overrides[f"timer_phase_{phase}"] = round(float(defaults[f"timer_phase_{phase}"]) * timer_scale, 3)
        return overrides

    def seat_roles(self, params: GameParams | None = None) -> dict[int, int]:
        return {seat: seat_role(seat) for seat in range(1, SEATS + 1)}

    def seat_groups(self, params: GameParams | None = None) -> dict[str, tuple[int, ...]]:
        return groups_from_roles(self.seat_roles(params), SEAT_GROUPS)

    def timeout(self, params: GameParams) -> float:
        # Every phase at its full timer, twice over, plus time to join: a game past this is stuck.
        per_round = sum(params.timer(phase) or 0 for phase in range(1, LAST_PHASE + 1))
        return 2 * per_round * len(params.rounds()) + 30


GAME = GameDefinition(name="voting", title="voting", rules=VotingRules(), server=VotingServerRules(), seat=SEAT,
                      answers=ANSWERS, play=PLAY, data=DATA, scores=SCORES, outcomes=outcomes, prompts=PROMPTS)
