"""The fitted policy: the baseline's rules (lib.games.voting.policy) with their three parameters estimated from human
decisions.

- request markup m: an owner asks for its loss from the Project times (1 + m), rounded up to 1,000 (baseline:
  m = 0.10). Fitted: the m whose loss x (1 + m), capped at the amount cap, has the least total absolute error
  against the human requests (before rounding; in effect the loss-weighted median of request / loss, minus 1).
  Owners whose Project raises their value (loss 0) ask for 0 whatever m is, and do not inform it.
- offer share s: the developer offers s times the median request it received, but less than its break-even
  (5 x offer < its gain from the Project), rounded down to 1,000 (baseline: s = 1). Fitted: the s with the least
  total absolute error against the human offers (before rounding). Rounds without a usable request, or where the
  Project does not pay for the developer, do not inform s.
- vote threshold t: an owner votes for the Project iff v_project + offer - v_noProject >= t (baseline: t = 0).
  Fitted: the t that agrees with the most human votes.

Only decisions whose private values are known are used. Where several values fit equally well, the one nearest the
baseline's is taken, and a parameter with no decision to inform it keeps the baseline's value, so the fitted policy
is the baseline wherever the data say nothing else. The estimates are exact (a sweep over the breakpoints of the
piecewise-linear error), not a grid search.

`finetune.py --evaluate` fits on the training set's games only; a game that is both evaluated and a training game is
scored with parameters fitted on the other training games (leave one game out). It saves the parameters fitted on
all training games to data/fitted_policy.json, which `handler.py --policy fitted` plays.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.dataset.sidecar import Example
from lib.evaluation.fits import fit_scale
from lib.evaluation.saved import newest_saved
from lib.evaluation.scores import leave_one_game_out
from lib.games.voting.actions import DECISION, OFFER, REQUEST
from lib.games.voting.policy import (
    DEFAULT_MARKUP,
    DEFAULT_OFFER_SHARE,
    DEFAULT_VOTE_THRESHOLD,
    _amount,
    current_offer,
)
from lib.games.voting.rules import OWNER_SEATS
from lib.ibex.params import NO_PROJECT, PROJECT
from lib.util.atomic import write_text_atomic

PARAMS_FILE = "fitted_policy.json"
BASELINE = {"markup": DEFAULT_MARKUP, "offer_share": DEFAULT_OFFER_SHARE, "vote_threshold": DEFAULT_VOTE_THRESHOLD}
INFORMS = {REQUEST: "markup", OFFER: "offer_share", DECISION: "vote_threshold"}  # which decisions fit which parameter


class FittedError(ValueError):
    """The saved parameters cannot be used; the message names the file and what to do."""


# ---------------------------------------------------------------------------------------------------------------
# One-parameter estimates




def fit_threshold(margins: Sequence[float], votes: Sequence[int], default: float) -> float:
    """The whole-number t agreeing with most votes under "vote 1 iff margin >= t"; `default` without data."""
    if not margins:
        return default
    points = sorted(set(margins))
    yes_at = {m: 0 for m in points}
    no_at = {m: 0 for m in points}
    for m, vote in zip(margins, votes, strict=True):
        (yes_at if vote == 1 else no_at)[m] += 1
    # t in (-inf, points[0]]: everyone votes 1, agreeing with all the 1s. Moving t past a margin turns its votes to 0.
    agree = sum(yes_at.values())
    intervals = [(-math.inf, points[0], agree)]
    for i, m in enumerate(points):
        agree += no_at[m] - yes_at[m]
        upper = points[i + 1] if i + 1 < len(points) else math.inf
        intervals.append((m, upper, agree))  # t in (m, upper]
    top = max(a for _, _, a in intervals)

    def nearest(low: float, high: float) -> float:
        first = -math.inf if low == -math.inf else math.floor(low) + 1  # the smallest whole t above `low`
        return min(max(default, first), high)

    candidates = [nearest(low, high) for low, high, a in intervals if a == top]
    return min(candidates, key=lambda t: abs(t - default))


# ---------------------------------------------------------------------------------------------------------------
# Decisions -> parameters


def _values(example: Example) -> tuple[int, int] | None:
    values = example.state["view"]["current"].get("values")
    if isinstance(values, list) and len(values) >= 2:
        return values[NO_PROJECT], values[PROJECT]
    return None


def request_sample(example: Example) -> tuple[float, float, float] | None:
    """(human request, loss, cap) of an owner with known values and a positive loss."""
    values = _values(example)
    if values is None or values[0] - values[1] <= 0:
        return None
    return example.human["compensationRequests"][1], values[0] - values[1], example.cap


def offer_sample(example: Example) -> tuple[float, float, float] | None:
    """(human offer, median request received, largest offer that still pays) where the rule scales an offer."""
    values = _values(example)
    if values is None or values[1] - values[0] <= 0:
        return None
    most = (values[1] - values[0] - 1) // len(OWNER_SEATS)
    view = example.view()
    requests = [x for x in (_amount(r, example.cap) for r in view.current.requests.values()) if x is not None]
    target = statistics.median_low(requests) if requests else 0
    if target <= 0:
        return None
    return example.human["compensationOffers"][1], target, most


def vote_sample(example: Example) -> tuple[float, int] | None:
    """(v_project + offer - v_noProject, human vote) of an owner with known values."""
    values = _values(example)
    if values is None:
        return None
    margin = values[1] + current_offer(example.view(), example.cap) - values[0]
    return margin, example.human["compensationDecisions"][0]


@dataclass
class Fit:
    """Parameters and what they were estimated from."""

    params: dict[str, float]
    n: dict[str, int]  # decisions that informed each parameter
    games: list[str]  # the games those decisions came from
    left_out: list[str] = field(default_factory=list)  # training games not used (leave one game out)

    def to_dict(self) -> dict[str, Any]:
        return {"parameters": self.params, "n": self.n, "games": self.games, "left_out": self.left_out}


def fit(examples: Iterable[Example], left_out: Iterable[str] = ()) -> Fit:
    """The three parameters from these decisions (see the module docstring)."""
    excluded = set(left_out)
    used = [e for e in examples if e.game not in excluded]
    requests = [s for e in used if e.action == REQUEST and (s := request_sample(e)) is not None]
    offers = [s for e in used if e.action == OFFER and (s := offer_sample(e)) is not None]
    votes = [s for e in used if e.action == DECISION and (s := vote_sample(e)) is not None]
    scale = fit_scale([r for r, _, _ in requests], [loss for _, loss, _ in requests], [c for _, _, c in requests],
                      1 + DEFAULT_MARKUP)
    share = fit_scale([o for o, _, _ in offers], [t for _, t, _ in offers], [m for _, _, m in offers],
                      DEFAULT_OFFER_SHARE)
    threshold = fit_threshold([m for m, _ in votes], [v for _, v in votes], DEFAULT_VOTE_THRESHOLD)
    params = {"markup": round(scale - 1, 6), "offer_share": round(share, 6), "vote_threshold": threshold}
    games = sorted({e.game for e in used}, key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g))
    return Fit(params, {REQUEST: len(requests), OFFER: len(offers), DECISION: len(votes)}, games,
               sorted(excluded & {e.game for e in examples}))


def fits_for_games(evaluated_games: Iterable[str], training: Sequence[Example]) -> dict[str, Fit]:
    """Per evaluated game, the fit it is scored with: on every training game but itself (leave one game out)."""
    return leave_one_game_out(evaluated_games, {e.game for e in training},
                              lambda leave: fit(training, left_out=leave))


# ---------------------------------------------------------------------------------------------------------------
# The saved parameters: data/fitted_policy.json


def save(path: str | Path, fitted: Fit, source: dict[str, Any]) -> None:
    """Write the parameters atomically, with what they were fitted on."""
    path = Path(path)
    record = {"policy": "fitted", "rules": "lib/games/voting/policy.py (the baseline's rules)", **fitted.to_dict(),
              "fitted_on": source, "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def load(path: str | Path) -> dict[str, float]:
    """The saved parameters as keyword arguments of policy.BaselinePolicy; FittedError when unusable."""
    path = Path(path)
    hint = "fit them with python finetune.py --evaluate"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FittedError(f"{path}: no fitted parameters yet; {hint}") from None
    except (OSError, ValueError) as exc:
        raise FittedError(f"{path}: cannot read the fitted parameters ({exc}); {hint}") from None
    params = record.get("parameters") if isinstance(record, dict) else None
    if not isinstance(params, dict):
        raise FittedError(f"{path}: no \"parameters\" object; {hint}")
    out = {}
    for key in BASELINE:
        value = params.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise FittedError(f"{path}: parameters.{key} must be a number, got {json.dumps(value)}; {hint}")
        out[key] = float(value)
    if out["markup"] < -1 or out["offer_share"] < 0:
        raise FittedError(f"{path}: markup must be at least -1 and offer_share at least 0; {hint}")
    return out


def in_words(params: dict[str, float]) -> str:
    """The parameters as a sentence a researcher reads without knowing the code."""
    markup, share, threshold = params["markup"], params["offer_share"], params["vote_threshold"]
    sign = "+" if markup >= 0 else "-"
    if threshold > 0:
        vote = f"for the Project when it pays them at least {threshold:,.0f} more than no Project"
    elif threshold < 0:
        vote = f"for the Project even when it pays them up to {-threshold:,.0f} less than no Project"
    else:
        vote = "for the Project when it pays them at least as much as no Project"
    return (f"owners ask their loss {sign} {abs(markup) * 100:.1f} %; the developer offers {share * 100:.1f} % of the "
            f"median request (below its break-even); owners vote {vote} (with the offer)")


def newest_params(data_dir: str | Path) -> Path:
    """The fitted parameters handler.py plays by default (lib.evaluation.saved.newest_saved)."""
    return newest_saved(data_dir, PARAMS_FILE)
