"""The voting game's fixed facts and rules: roles, seats, conditions, phases, parameters, winner and profit.

Shared by the local server, the player view, the dataset builder and the agents, so that every part of the
project computes the game the same way the real IBEX server does (docs/protocol.md sections 1, 3 and 5).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lib.ibex.params import CONDITIONS, NO_PROJECT, PROJECT, ROLE_DEVELOPER, ROLE_OWNER

SEATS = 6
DEVELOPER_SEAT = 2
# Owner k (1-based) sits in OWNER_SEATS[k-1]; sessions.json lists owner values in this order.
OWNER_SEATS = (1, 3, 4, 5, 6)


PHASES = {
    0: "waiting for players",
    1: "presentation",
    2: "deliberation (chat)",
    3: "compensation request",
    4: "compensation offer",
    5: "deliberation (chat)",
    6: "vote",
    7: "results",
}
CHAT_PHASES = (2, 5)
LAST_PHASE = 7


def seat_role(number: int) -> int:
    """The role the real server gives seat `number` (seats are assigned in join order)."""
    if not 1 <= number <= SEATS:
        raise ValueError(f"seat {number} does not exist in a voting game (seats 1..{SEATS})")
    return ROLE_DEVELOPER if number == DEVELOPER_SEAT else ROLE_OWNER


def seat_tag(number: int) -> str:
    """The public name of a seat: "Owner 1", "Developer", "Owner 2".."Owner 5"."""
    if seat_role(number) == ROLE_DEVELOPER:
        return "Developer"
    return f"Owner {OWNER_SEATS.index(number) + 1}"



def winner(decisions: Iterable[list[Any] | None]) -> tuple[int, int]:
    """(winning condition, its vote count) from the owners' decisions, with the real server's rule.

    Votes are counted over owners with a non-empty decision; quorum = floor(valid / 2); conditions counted at
    least quorum times are candidates; none: No Project; a single leader wins; a tie: Project.
    A decision counts for every condition id it contains (the server uses `includes`).
    """
    valid = [d for d in decisions if isinstance(d, list) and len(d) > 0]
    quorum = len(valid) // 2
    counts = {cond["id"]: sum(1 for d in valid if cond["id"] in d) for cond in CONDITIONS}
    candidates = sorted((c for c in counts if counts[c] >= quorum), key=lambda c: -counts[c])
    if not candidates:
        return NO_PROJECT, counts[NO_PROJECT]
    if len(candidates) == 1 or counts[candidates[0]] > counts[candidates[1]]:
        return candidates[0], counts[candidates[0]]
    return PROJECT, counts[PROJECT]


def offer_for(offers: list[Any] | None, condition: int) -> int:
    """The compensation per owner under `condition` (a missing or null offer pays nothing)."""
    if not isinstance(offers, list) or condition >= len(offers):
        return 0
    amount = offers[condition]
    return int(amount) if isinstance(amount, int | float) and not isinstance(amount, bool) else 0


def compensation(role: int, offer: int, owners: int = len(OWNER_SEATS)) -> int:
    """What a player receives: owners get the offer, the developer pays it to every owner."""
    return -offer * owners if role == ROLE_DEVELOPER else offer


def profit(role: int, value: int, offer: int, owners: int = len(OWNER_SEATS)) -> int:
    """Round profit: owner v[c] + offer[c], developer v[c] - offer[c] x owners."""
    return value + compensation(role, offer, owners)
