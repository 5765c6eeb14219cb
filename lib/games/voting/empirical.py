"""The empirical policy: the baseline's rules (lib.games.voting.policy) made stochastic with the training humans' own
variation.

Where the fitted policy (lib.games.voting.fitted) plays one estimated markup, offer share and vote threshold, this one
keeps the
training humans' decisions as samples and draws from them, so that its decisions can be as varied as the humans'.
What is stored (the samples themselves, not a parametric fit), and what each decision draws:

- request: the sample of markups request / loss - 1 of the training owners with known values and a positive loss
  (lib.games.voting.fitted.request_sample). An owner draws one markup uniformly from the sample and asks loss x (1 +
  markup),
  rounded up to 1,000 and capped (lib.games.voting.policy.owner_request). An owner whose Project raises its value asks
  0, as in
  the baseline (those humans say nothing about a markup over a loss).
- offer: the sample of shares offer / median request received of the training developers whose Project pays and who
  received a positive request (lib.games.voting.fitted.offer_sample). A developer draws one share uniformly and offers
  that
  share of the median request, below its break-even, rounded down to 1,000 (lib.games.voting.policy.developer_offer).
- vote: the sample of (relative margin, vote) of the training owners with known values, the relative margin being
  (v_project + offer - v_noProject) / v_noProject. The humans' noise around the margin is the distribution of e in
  "vote for the Project iff margin + e >= 0"; each vote only says on which side of -margin e fell, so its empirical
  (nonparametric maximum-likelihood) distribution is the isotonic regression of the votes on the margin (pool
  adjacent violators): P(yes | x) is a non-decreasing step function of the relative margin x, the share of yes votes
  in the block of training margins x falls in (below the smallest margin: the first block's share, above the
  largest: the last one's). An owner votes for the Project iff a uniform draw u < P(yes | x).
- chat: the baseline's message.

A sample with no decision in it leaves that decision to the baseline's rule (so the empirical policy is the baseline
wherever the training data say nothing). Every draw comes from a random.Random seeded by sha256 of (seed, game,
round, seat, phase, action type, draw number): the decisions are deterministic given the seed and who decides when.

`finetune.py --evaluate` collects the samples from the training set's games only, leaving out an evaluated game that
is a training game (as lib.games.voting.fitted does). Its decision on an example is draw 0 (what the distributions and
the usual
scores are computed on); its expected error over draws is the mean over DRAWS seeded draws (0 .. DRAWS-1) per
decision, reported per action type as `exp_ae` (amounts: the mean absolute error of a draw) and
`exp_agree` (votes: the probability that a draw agrees with the human). The samples of all training games are this
game's section ("voting") of the evaluation's empirical samples file (lib.evaluation.saved: every game's samples in
one empirical_policy.json), which `handler.py --policy empirical` plays; the policy played keeps the file, so that
another game played with it takes its own section.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.agents.transcript import Transcript
from lib.dataset.sidecar import Example
from lib.evaluation import saved as samplesfile
from lib.evaluation.fits import isotonic_steps, step_value  # the humans' noise around the margin
from lib.evaluation.scores import Decision, leave_one_game_out
from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST, ActionError, validate_action
from lib.games.voting.fitted import offer_sample, request_sample, vote_sample
from lib.games.voting.policy import (
    baseline_action,
    chat_text,
    current_offer,
    developer_offer,
    own_values,
    owner_request,
)
from lib.games.voting.rules import SEATS
from lib.games.voting.view import PlayerView
from lib.ibex.params import NO_PROJECT, PROJECT

PARAMS_FILE = samplesfile.SAMPLES_FILE  # every game's samples, this game's in its section
SECTION = "voting"
DRAWS = 50  # seeded draws per decision for the expected error: enough for a stable mean, cheap on every set
NAME = "empirical"
RULES = "lib/games/voting/policy.py (the baseline's rules), draws as in lib/games/voting/empirical.py"

EmpiricalError = samplesfile.SamplesError  # the saved samples cannot be used; the message names the file and what to do


def draw_rng(seed: int, game: Any, round_number: Any, seat: Any, phase: Any, action: str, draw: int = 0
             ) -> random.Random:
    """The random draws of one decision: fixed by the seed and who decides when, whatever was drawn before."""
    key = f"{seed}:{game}:{round_number}:{seat}:{phase}:{action}:{draw}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


# ---------------------------------------------------------------------------------------------------------------
# The samples


def relative_margin(margin: float, v_no_project: float) -> float:
    return margin / max(abs(v_no_project), 1)


@dataclass
class Samples:
    """The training humans' decisions the policy draws from (see the module docstring)."""

    markup: list[float] = field(default_factory=list)
    offer_share: list[float] = field(default_factory=list)
    vote: list[tuple[float, int]] = field(default_factory=list)  # (relative margin, vote)
    games: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._steps = isotonic_steps(self.vote) if self.vote else []

    def yes_probability(self, x: float) -> float | None:
        """P(vote for the Project | relative margin x); None without vote samples."""
        return step_value(self._steps, x) if self._steps else None

    def to_dict(self) -> dict[str, Any]:
        return {"samples": {"markup": self.markup, "offer_share": self.offer_share,
                            "vote": [[x, v] for x, v in self.vote]},
                "n": {REQUEST: len(self.markup), OFFER: len(self.offer_share), DECISION: len(self.vote)},
                "games": self.games, "left_out": self.left_out}


def collect(examples: Iterable[Example], left_out: Iterable[str] = ()) -> Samples:
    """The samples of these voting decisions, leaving out the games in `left_out`."""
    excluded = set(left_out)
    examples = list(examples)
    used = [e for e in examples if e.game not in excluded and e.game_type == SECTION]
    markups, shares, votes = [], [], []
    for e in used:
        if e.action == REQUEST and (r := request_sample(e)) is not None:
            markups.append(round(r[0] / r[1] - 1, 9))
        elif e.action == OFFER and (o := offer_sample(e)) is not None:
            shares.append(round(o[0] / o[1], 9))
        elif e.action == DECISION and (v := vote_sample(e)) is not None:
            v_no = e.state["view"]["current"]["values"][NO_PROJECT]
            votes.append((round(relative_margin(v[0], v_no), 9), int(v[1])))
    games = sorted({e.game for e in used}, key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g))
    return Samples(markups, shares, votes, games, sorted(excluded & {e.game for e in examples}))


def samples_for_games(evaluated_games: Iterable[str], training: Sequence[Example]) -> dict[str, Samples]:
    """Per evaluated game, the samples it is played with: every training game's but its own."""
    return leave_one_game_out(evaluated_games, {e.game for e in training},
                              lambda leave: collect(training, left_out=leave))


# ---------------------------------------------------------------------------------------------------------------
# Drawing a decision


def empirical_action(view: PlayerView, wire_type: str, cap: int, samples: Samples, *, seed: int = 0,
                     draw: int = 0) -> dict[str, Any]:
    """The policy's wire message for `wire_type` now, draw number `draw` (validated; raises ActionError if it cannot
    be). Draw 0 is what is played."""
    rng = draw_rng(seed, view.game_id, view.round, view.number, view.phase, wire_type, draw)
    gid = view.game_id
    if wire_type == REQUEST and samples.markup:
        markup = rng.choice(samples.markup)
        message: dict[str, Any] = {"gameId": gid, "type": REQUEST,
                                   "compensationRequests": [None, owner_request(view, cap, markup)]}
    elif wire_type == OFFER and samples.offer_share:
        share = rng.choice(samples.offer_share)
        message = {"gameId": gid, "type": OFFER, "compensationOffers": [None, developer_offer(view, cap, share)]}
    elif wire_type == DECISION and samples.vote and (values := own_values(view)) is not None:
        margin = values[PROJECT] + current_offer(view, cap) - values[NO_PROJECT]
        p = samples.yes_probability(relative_margin(margin, values[NO_PROJECT]))
        message = {"gameId": gid, "type": DECISION,
                   "compensationDecisions": [PROJECT if rng.random() < p else NO_PROJECT]}
    elif wire_type == CHAT:
        others = [n for n in range(1, SEATS + 1) if n != view.number]
        message = {"gameId": gid, "type": CHAT, "to": others, "text": chat_text(view, cap, seed=seed)}
    else:  # no sample informs this decision: the baseline's rule
        return baseline_action(view, wire_type, cap, seed=seed)
    return validate_action(message, view, wire_type, cap=cap)


@dataclass
class EmpiricalPolicy:
    """The policy as agents play it (lib.games.voting.policy.Policy): draw 0 of each decision."""

    samples: Samples
    seed: int = 0
    name: str = NAME
    # The file the samples came from: another game played with this policy takes its own section of it (its
    # PlayRules.policy), so that one file plays every game.
    saved: samplesfile.SavedSamples | None = None

    async def decide(self, view: PlayerView, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Transcript | None) -> dict[str, Any] | None:
        return empirical_action(view, wire_type, cap, self.samples, seed=self.seed)


# ---------------------------------------------------------------------------------------------------------------
# Scored by finetune.py --evaluate


def _value(message: dict[str, Any]) -> Any:
    if message["type"] == REQUEST:
        return message["compensationRequests"][1]
    if message["type"] == OFFER:
        return message["compensationOffers"][1]
    return message["compensationDecisions"][0]


def expected_score(example: Example, samples: Samples, seed: int = 0, draws: int = DRAWS) -> dict[str, float]:
    """The mean over `draws` seeded draws of the error against the human: {"exp_ae": ...} for an amount,
    {"exp_agree": ...} for a vote; {} when a draw is invalid (it is then counted invalid by the scores)."""
    human = _value(example.human)
    view = example.view()
    values = []
    for k in range(draws):
        try:
            values.append(_value(empirical_action(view, example.action, example.cap, samples, seed=seed, draw=k)))
        except ActionError:
            return {}
    if example.action == DECISION:
        return {"exp_agree": sum(v == human for v in values) / draws}
    return {"exp_ae": sum(abs(v - human) for v in values) / draws}


class EmpiricalEvalPolicy:
    """The empirical rules on the evaluated voting examples (lib.games.protocols.RuleDecisions, through
    lib.games.voting.scores): draw 0 decides; the expected score over DRAWS draws is added to each decision (computed
    against the human's answer after deciding: the draws never see it)."""

    name = NAME

    def __init__(self, per_game: dict[str, Samples], info: dict[str, Any], seed: int = 0,
                 overall: Samples | None = None) -> None:
        self.per_game, self._info, self.seed = per_game, info, seed
        self.overall = overall or Samples()

    @classmethod
    def from_training(cls, training: Any, evaluated_games: Iterable[str]) -> EmpiricalEvalPolicy:
        """The samples of the training set's voting examples (lib.dataset.sidecar.EvalSet), per evaluated game
        leaving it out."""
        voting = [e for e in training.examples if e.game_type == SECTION]
        per_game = samples_for_games(evaluated_games, voting)
        overall = collect(voting)
        source = {"path": str(training.path), "sha256": training.sha256, "games": training.games}
        info = {"training_set": source, "draws_per_decision": DRAWS,
                "expected_scores": "exp_ae / exp_agree: the mean over the draws 0..DRAWS-1 per decision; "
                                   "the other scores and the distributions are those of draw 0",
                "all_training_games": overall.to_dict()["n"],
                "leave_one_game_out": sorted(g for g, s in per_game.items() if s.left_out)}
        return cls(per_game, info, overall=overall)

    def decide(self, example: Example) -> Decision:
        samples = self.per_game.get(example.game) or Samples()
        try:
            action = empirical_action(example.view(), example.action, example.cap, samples, seed=self.seed)
        except ActionError as exc:
            return Decision(None, str(exc))
        return Decision(action, extra=expected_score(example, samples, self.seed))

    def info(self) -> dict[str, Any]:
        return self._info

    def samples(self) -> dict[str, Any]:
        """This game's section of the evaluation's samples file: the samples of all training games, which
        `handler.py --policy empirical` plays."""
        return {SECTION: section(self.overall)}


# ---------------------------------------------------------------------------------------------------------------
# The saved samples: the "voting" section of empirical_policy.json (lib.evaluation.saved)


def summary(samples: Samples) -> str:
    """What the policy draws from, in a few words (the run's first line)."""
    n = samples.to_dict()["n"]
    return f"{n[REQUEST]} requests, {n[OFFER]} offers, {n[DECISION]} votes of training humans"


def section(samples: Samples) -> dict[str, Any]:
    """The samples as this game's section of the samples file."""
    return {"rules": RULES, **samples.to_dict(), "draws_per_decision_in_evaluation": DRAWS,
            "summary": summary(samples)}


def save(path: str | Path, samples: Samples, source: dict[str, Any],
         others: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """A samples file holding these voting samples (and `others`, other games' sections), as an evaluation writes
    it."""
    samplesfile.write(path, {SECTION: section(samples), **(others or {})}, source)


def _numbers(values: Any, where: str) -> list[float]:
    if not isinstance(values, list) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                               and math.isfinite(v) for v in values):
        raise EmpiricalError(f"{where} must be a list of numbers")
    return [float(v) for v in values]


def _pairs(values: Any, where: str) -> list[tuple[float, int]]:
    if not isinstance(values, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], int | float) and not isinstance(p[0], bool)
            and math.isfinite(p[0]) and p[1] in (0, 1) and not isinstance(p[1], bool) for p in values):
        raise EmpiricalError(f"{where} must be a list of [number, 0 or 1] pairs")
    return [(float(x), int(y)) for x, y in values]


def newest_samples(data_dir: str | Path) -> Path:
    """The samples handler.py plays by default: the newest empirical_policy.json of the evaluations (newest_saved)."""
    return samplesfile.newest_saved(data_dir, PARAMS_FILE)


def from_saved(saved: samplesfile.SavedSamples) -> Samples:
    """The voting samples of a samples file: its "voting" section, or the top of a file of version 1 (where they
    were before the sections); no samples when it has neither (a set without voting games: the baseline's rules).
    SamplesError (one line) when they do not fit."""
    record = saved.section(SECTION)
    where = f"section {SECTION}: " if record is not None else ""
    if record is None and saved.legacy is not None:
        record = saved.legacy
    if record is None:
        return Samples()
    samples = record.get("samples")
    if not isinstance(samples, dict):
        raise saved.error(f"{where}no \"samples\" object")
    try:
        voting = Samples(_numbers(samples.get("markup", []), "samples.markup"),
                         _numbers(samples.get("offer_share", []), "samples.offer_share"),
                         _pairs(samples.get("vote", []), "samples.vote"),
                         games=[str(g) for g in record.get("games") or []])
    except EmpiricalError as exc:
        raise saved.error(f"{where}{exc}") from None
    if any(m < -1 for m in voting.markup) or any(s < 0 for s in voting.offer_share):
        raise saved.error(f"{where}markups must be at least -1 and offer shares at least 0")
    return voting


def load(path: str | Path) -> Samples:
    """The voting samples saved in `path`; EmpiricalError (one line) when unusable."""
    return from_saved(samplesfile.read(path))


def playing(path: str | Path, seed: int) -> tuple[EmpiricalPolicy, str]:
    """handler.py --policy empirical: the policy of the saved samples, and the run's first line saying which."""
    saved = samplesfile.read(path)
    voting = from_saved(saved)
    return EmpiricalPolicy(voting, seed=seed, saved=saved), saved.playing_line(summary(voting), seed)
