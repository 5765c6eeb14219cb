"""The ultimatum game's rule-based policy (the baseline) and its fallback: offer a fixed share of the pie, accept
any offer of at least a threshold share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lib.agents.transcript import Transcript
from tests.games.ultimatum.actions import OFFER, RESPONSE
from tests.games.ultimatum.view import UltimatumView

OFFER_SHARE = 0.4  # of the pie, rounded down
ACCEPT_SHARE = 0.3  # the smallest share accepted, rounded up


def baseline_action(view: UltimatumView, wire_type: str, cap: int) -> dict[str, Any]:
    """The baseline's message for `wire_type` (ValueError for a decision it cannot make)."""
    if wire_type == OFFER:
        return {"gameId": view.game_id, "type": OFFER, "offer": math.floor(cap * OFFER_SHARE)}
    if wire_type == RESPONSE:
        offer = view.current.offer
        if offer is None:
            raise ValueError("no offer to respond to")
        return {"gameId": view.game_id, "type": RESPONSE, "accept": offer >= math.ceil(cap * ACCEPT_SHARE)}
    raise ValueError(f"{wire_type!r} is not an action of the ultimatum game")


@dataclass
class Baseline:
    """The rules above as a lib.games.protocols.Policy."""

    seed: int = 0  # the rules draw nothing; kept for the Policy's callers, which pass one
    name: str = "baseline"

    async def decide(self, view: UltimatumView, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Transcript | None) -> dict[str, Any] | None:
        return baseline_action(view, wire_type, cap)
