"""The ultimatum game's facts: two seats, one pie per round, one proposal phase and one response phase.

Seat 1 proposes how much of the pie the responder gets (a whole number from 0 to the pie); seat 2 accepts or
rejects. Accepted: the responder gets the offer, the proposer the rest; rejected: both get nothing. Phases: 0 waits
for the players, 1 presents the roles, 2 is the proposal, 3 the response, 4 shows the result.

Its seat groups are its own: "proposer" and "responder" (a study's arms and handler.py --seat-policy name them).
The two roles take the numbers of the IBEX developer and owner roles only because create-for-llm's seat counts
(developers_count, owners_count) are the IBEX server's and the local server checks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lib.games.protocols import groups_from_roles
from lib.ibex.params import GameParams, ParamError

NAME = "ultimatum"
ROLE_PROPOSER, ROLE_RESPONDER = 2, 3  # the IBEX developer and owner numbers: create-for-llm counts them
SEAT_GROUPS = {"proposer": ROLE_PROPOSER, "responder": ROLE_RESPONDER}  # group name -> role
ROLE_NAMES = {ROLE_PROPOSER: "proposer", ROLE_RESPONDER: "responder"}
PROPOSER_SEAT, RESPONDER_SEAT = 1, 2
SEATS = 2
PROPOSAL_PHASE, RESPONSE_PHASE, LAST_PHASE = 2, 3, 4
PHASES = {0: "waiting for players", 1: "presentation", 2: "proposal", 3: "response", 4: "results"}

# Flat, named as a game log names them; the real server has no such game, so these are this folder's own.
DEFAULTS: dict[str, Any] = {
    "game_type": NAME, "round_count": 3, "practice_round": False, "session_number": 1, "pie": 100,
    "developers_count": 1, "owners_count": 1, "speculators_count": 0,  # the seat groups, as create-for-llm counts
    "show_up_fee": 5, "timer_phase_1": 5, "timer_phase_2": 60, "timer_phase_3": 60, "timer_phase_4": 5,
}
MAX_PIE = 10**9


def seat_role(number: int) -> int:
    if number not in (PROPOSER_SEAT, RESPONDER_SEAT):
        raise ValueError(f"seat {number} does not exist in an ultimatum game (seats 1..{SEATS})")
    return ROLE_PROPOSER if number == PROPOSER_SEAT else ROLE_RESPONDER


def seat_tag(number: int) -> str:
    return ROLE_NAMES[seat_role(number)].capitalize()


def parameters(flat: Mapping[str, Any] | None = None, where: str = "gameParameters") -> GameParams:
    """The defaults with `flat` applied, typed and checked; ParamError (one line naming the key) otherwise.

    Typed here, not with lib.games.voting.rules.parameters_from_dict: that one starts from the voting game's
    defaults, and this game's log would carry fifty voting parameters."""
    values: dict[str, Any] = {}
    for key, value in {**DEFAULTS, **(flat or {})}.items():
        values[key] = _typed(key, DEFAULTS.get(key, value), value, where)
    params = GameParams(values)
    check(params, where)
    return params


def _typed(key: str, like: Any, value: Any, where: str) -> Any:
    """`value` as the type of `like` (a log stores every value as a string)."""
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ParamError(f"{where}: parameter {key!r} must be true or false, got {value!r}")
    if isinstance(like, int | float):
        if isinstance(value, bool):
            raise ParamError(f"{where}: parameter {key!r} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParamError(f"{where}: parameter {key!r} must be a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ParamError(f"{where}: parameter {key!r} must be finite, got {value!r}")
        return int(number) if number == int(number) else number
    return value if isinstance(value, str) else str(value)


def check(params: GameParams, where: str) -> None:
    """ParamError (one line naming the key) for parameters this game cannot be played with."""
    if params.game_type != NAME:
        raise ParamError(f"{where}: parameter 'game_type' must be {NAME!r}, got {params.game_type!r}")
    pie = params.get("pie")
    if not isinstance(pie, int) or isinstance(pie, bool) or not 1 <= pie <= MAX_PIE:
        raise ParamError(f"{where}: parameter 'pie' must be a whole number from 1 to {MAX_PIE:,}, got {pie!r}")
    if not 1 <= params.round_count <= 1000:
        raise ParamError(f"{where}: parameter 'round_count' must be from 1 to 1,000, got {params.round_count}")
    for phase in range(1, LAST_PHASE + 1):
        seconds = params.timer(phase)
        if seconds is None or seconds <= 0:
            raise ParamError(f"{where}: parameter 'timer_phase_{phase}' must be a positive number of seconds")


def pie(params: GameParams) -> int:
    return int(params.get("pie") or DEFAULTS["pie"])


def payoffs(pie_size: int, offer: Any, accepted: Any) -> tuple[int, int]:
    """(proposer, responder) of a round: the split when accepted, nothing otherwise (no offer: nothing)."""
    if accepted is True and isinstance(offer, int) and not isinstance(offer, bool):
        return pie_size - offer, offer
    return 0, 0


class UltimatumRules:
    """lib.games.protocols.GameRules for the ultimatum game."""

    last_phase = LAST_PHASE

    def default_parameters(self) -> dict[str, Any]:
        return dict(parameters().values)

    def parameters(self, flat: Mapping[str, Any] | None = None, where: str = "gameParameters") -> GameParams:
        return parameters(flat, where)

    def local_parameters(self, rounds: int, practice: bool, timer_scale: float) -> dict[str, Any]:
        timers = {f"timer_phase_{n}": round(float(DEFAULTS[f"timer_phase_{n}"]) * timer_scale, 3)
                  for n in range(1, LAST_PHASE + 1)}
        return {"game_type": NAME, "round_count": rounds, "practice_round": practice, **timers}

    def seat_roles(self, params: GameParams | None = None) -> dict[int, int]:
        return {seat: seat_role(seat) for seat in (PROPOSER_SEAT, RESPONDER_SEAT)}

    def seat_groups(self, params: GameParams | None = None) -> dict[str, tuple[int, ...]]:
        return groups_from_roles(self.seat_roles(params), SEAT_GROUPS)

    def timeout(self, params: GameParams) -> float:
        # Every phase at its full timer, twice over, plus time to join: a game past this is stuck.
        per_round = sum(params.timer(phase) or 0 for phase in range(1, LAST_PHASE + 1))
        return 2 * per_round * len(params.rounds()) + 30
