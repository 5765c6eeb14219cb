"""The baseline policy and the fallback actions.

Baseline policy: a fixed, deterministic rule set on the player's own private values and what it has seen this
round, so that a game runs without any model and researchers have a benchmark to compare models with.

- Owner, request (phase 3): its own loss from the Project, v_noProject - v_project floored at 0, plus a markup
  (default 10 %), rounded up to a multiple of 1000.
- Developer, offer (phase 4): the median of the owners' valid requests (lower median), but never so much that the
  Project stops paying: 5 x offer < v_project - v_noProject. Without any valid request, half of that maximum.
  Rounded down to a multiple of 1000; 0 when the Project does not pay for the developer at all.
- Owner, vote (phase 6): Project [1] if v_project + offer >= v_noProject, else No Project [0]. An offer that is
  missing counts as 0.
- Chat (phases 2 and 5, only when chat is on): one short factual message to everyone else: what the player will
  ask or offer, or how it will vote. The seed picks between two phrasings, per seat and round.
- Values still unknown (no assign-role yet): the middle of the value ranges from the boundaries stands in.

The markup, a share of the median request for the offer (1 here) and a vote threshold on v_project + offer -
v_noProject (0 here) are the rules' parameters: the fitted policy (lib.games.voting.fitted) plays the same rules with
values
estimated from human decisions.

Fallback actions, sent when a model has no valid answer by the deadline minus the safety margin: the baseline
policy's request, offer or vote for that moment. Chat has no fallback: chat is optional, so an unanswered chat
turn sends nothing rather than words the model did not choose.

Every action here still goes through lib.games.voting.actions.validate_action before it is sent.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Any

from lib.agents.transcript import Transcript
from lib.games.protocols import Policy as Policy  # the agent's, whatever the game; kept importable from here
from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST, validate_action
from lib.games.voting.rules import OWNER_SEATS, SEATS
from lib.games.voting.view import PlayerView
from lib.ibex.params import NO_PROJECT, PROJECT, ROLE_DEVELOPER, GameParams, parameters_from_dict

ROUND_TO = 1000
DEFAULT_MARKUP = 0.10
DEFAULT_OFFER_SHARE = 1.0  # the offer is this share of the median request (below the developer's break-even)
DEFAULT_VOTE_THRESHOLD = 0  # Project iff v_project + offer - v_noProject >= this


def amount_cap(view: PlayerView, params: GameParams | None) -> int:
    """The largest amount an agent may request or offer.

    From the game parameters when known (GameParams.amount_cap); else the largest `high` in the boundaries of
    assign-role (the same quantity, as the player sees it); else the real server's default parameters.
    """
    if params is not None:
        try:
            return params.amount_cap()
        except ValueError:
            pass  # parameters without value ranges: use what the player saw
    highs = []
    if isinstance(view.boundaries, dict):
        for per_role in view.boundaries.values():
            if isinstance(per_role, dict):
                for bounds in per_role.values():
                    high = bounds.get("high") if isinstance(bounds, dict) else None
                    if isinstance(high, int | float) and not isinstance(high, bool) and high > 0:
                        highs.append(int(high))
    return max(highs) if highs else parameters_from_dict().amount_cap()


def own_values(view: PlayerView) -> tuple[int, int] | None:
    """(v_noProject, v_project) this round: the values assign-role gave, else the middle of the ranges."""
    values = view.current.values
    if values is not None:
        return values[NO_PROJECT], values[PROJECT]
    who = "developer" if view.role == ROLE_DEVELOPER else "owner"
    ranges = view.boundaries.get(who) if isinstance(view.boundaries, dict) else None
    try:
        mids = [(ranges[key]["low"] + ranges[key]["high"]) // 2 for key in ("noProject", "projectA")]
    except (TypeError, KeyError):
        return None
    return mids[0], mids[1]


def _amount(amounts: Any, cap: int) -> int | None:
    """X of [null, X] when it is a plain integer in [0, cap]."""
    if isinstance(amounts, list) and len(amounts) == 2:
        x = amounts[PROJECT]
        if isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= cap:
            return x
    return None


def owner_request(view: PlayerView, cap: int, markup: float = DEFAULT_MARKUP) -> int:
    values = own_values(view)
    loss = max(0, values[NO_PROJECT] - values[PROJECT]) if values else 0
    # Rounded to a millionth of a unit before rounding up: 200,000 x 1.1 is 220,000.00000000003 in floating point,
    # which would round up to 221,000.
    request = math.ceil(round(loss * (1 + markup), 6) / ROUND_TO) * ROUND_TO
    return min(max(request, 0), cap)


def developer_offer(view: PlayerView, cap: int, share: float = DEFAULT_OFFER_SHARE) -> int:
    values = own_values(view)
    gain = values[PROJECT] - values[NO_PROJECT] if values else 0
    if gain <= 0:
        return 0
    most = (gain - 1) // len(OWNER_SEATS)  # 5 x offer < gain: the Project still pays for the developer
    requests = [x for x in (_amount(r, cap) for r in view.current.requests.values()) if x is not None]
    target = share * statistics.median_low(requests) if requests else most // 2
    offer = int(round(min(target, most), 6)) // ROUND_TO * ROUND_TO  # 0.29 x 100,000 is 28,999.999...
    return min(max(offer, 0), cap)


def current_offer(view: PlayerView, cap: int) -> int:
    """The developer's offer this round as an owner knows it; missing or unusable counts as 0."""
    offer = _amount(view.current.offer, cap)
    return offer if offer is not None else 0


def owner_vote(view: PlayerView, cap: int, threshold: float = DEFAULT_VOTE_THRESHOLD) -> int:
    values = own_values(view)
    if values is None:
        return NO_PROJECT
    margin = values[PROJECT] + current_offer(view, cap) - values[NO_PROJECT]
    return PROJECT if margin >= threshold else NO_PROJECT


def chat_text(view: PlayerView, cap: int, markup: float = DEFAULT_MARKUP, seed: int = 0) -> str:
    """One short factual sentence for the current chat phase."""
    rng = random.Random(f"{seed}:{view.number}:{view.round}:{view.phase}")
    me = view.tag or f"Player {view.number}"
    if view.role == ROLE_DEVELOPER:
        if view.phase == 2:
            options = (f"{me} here. I will offer what keeps the Project worthwhile for all of us.",
                       f"{me} here. Send me your requests; my offer will follow from them.")
        else:
            offer = _amount(view.current.offer, cap)
            shown = f"{offer}" if offer is not None else "on the table"
            options = (f"My offer is {shown} per owner. Please vote for the Project.",
                       f"{me} here: the offer is {shown} per owner. A vote for the Project pays you that.")
    elif view.phase == 2:
        request = owner_request(view, cap, markup)
        options = (f"{me} here. I will ask for {request} to accept the Project.",
                   f"{me} here. I vote for the Project only if the offer covers my loss.")
    else:
        vote = "the Project" if owner_vote(view, cap) == PROJECT else "No Project"
        offer = current_offer(view, cap)
        options = (f"{me} here. The offer is {offer}; I will vote for {vote}.",
                   f"{me} here. With an offer of {offer} I vote for {vote}.")
    return rng.choice(options)


def baseline_action(view: PlayerView, wire_type: str, cap: int, *, markup: float = DEFAULT_MARKUP,
                    offer_share: float = DEFAULT_OFFER_SHARE, vote_threshold: float = DEFAULT_VOTE_THRESHOLD,
                    seed: int = 0) -> dict[str, Any]:
    """The baseline policy's wire message for `wire_type` now (validated; raises ActionError if it cannot be).
    The keyword parameters are the rules' (the fitted policy, lib.games.voting.fitted, plays the same rules with its
    own)."""
    gid = view.game_id
    if wire_type == REQUEST:
        message: dict[str, Any] = {"gameId": gid, "type": REQUEST,
                                   "compensationRequests": [None, owner_request(view, cap, markup)]}
    elif wire_type == OFFER:
        message = {"gameId": gid, "type": OFFER, "compensationOffers": [None, developer_offer(view, cap, offer_share)]}
    elif wire_type == DECISION:
        message = {"gameId": gid, "type": DECISION, "compensationDecisions": [owner_vote(view, cap, vote_threshold)]}
    elif wire_type == CHAT:
        others = [n for n in range(1, SEATS + 1) if n != view.number]
        message = {"gameId": gid, "type": CHAT, "to": others, "text": chat_text(view, cap, markup, seed)}
    else:
        raise ValueError(f"unknown action type {wire_type!r}")
    return validate_action(message, view, wire_type, cap=cap)


def fallback_action(view: PlayerView, wire_type: str, cap: int) -> dict[str, Any] | None:
    """What goes out when a model has no valid answer in time: the baseline's request, offer or vote; no chat."""
    if wire_type == CHAT:
        return None
    return baseline_action(view, wire_type, cap)


@dataclass
class BaselinePolicy:
    """The rule set above as a Policy."""

    markup: float = DEFAULT_MARKUP
    seed: int = 0
    name: str = "baseline"
    offer_share: float = DEFAULT_OFFER_SHARE
    vote_threshold: float = DEFAULT_VOTE_THRESHOLD

    async def decide(self, view: PlayerView, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Transcript | None) -> dict[str, Any] | None:
        return baseline_action(view, wire_type, cap, markup=self.markup, offer_share=self.offer_share,
                               vote_threshold=self.vote_threshold, seed=self.seed)
