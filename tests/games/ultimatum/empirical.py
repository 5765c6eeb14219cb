"""The ultimatum game's empirical policy: the training proposers' offer shares and the training responders' answers
as samples, drawn from per decision; the baseline's rule where no sample informs it.

Its samples are the "ultimatum" section of the evaluation's one samples file (lib.evaluation.saved), which
`handler.py --policy empirical` plays in every game: its scores part gives the section (RuleDecisions.samples), its
play part reads it back, from the chosen policy's file whichever game loaded it. No generic module knows this game's
section: it shows that a game's samples travel in the shared file without another game or lib/evaluation naming
them.

- offer: a proposer draws one share offer / pie uniformly from the samples and offers that share of its pie,
  rounded down;
- response: a responder accepts with the share of accepting answers among the sampled answers to an offer of at most
  its own share of the pie (none such: the baseline's threshold).
Draws come from a random.Random seeded by sha256 of (seed, game, round, seat, decision): fixed by who decides when.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lib.agents.transcript import Transcript
from lib.evaluation.saved import SavedSamples
from lib.evaluation.scores import Decision
from tests.games.ultimatum.actions import OFFER, RESPONSE
from tests.games.ultimatum.policy import baseline_action
from tests.games.ultimatum.rules import NAME
from tests.games.ultimatum.view import UltimatumView

SECTION = NAME


@dataclass
class Samples:
    offer_share: list[float] = field(default_factory=list)  # offer / pie of the training proposers
    answers: list[tuple[float, int]] = field(default_factory=list)  # (offer / pie shown, accepted 0/1)

    def summary(self) -> str:
        return (f"{SECTION}: {len(self.offer_share)} offers, {len(self.answers)} responses of the recorded "
                "players")

    def section(self) -> dict[str, Any]:
        """The samples as this game's section of the samples file."""
        return {"rules": "tests/games/ultimatum/empirical.py", "offer_share": self.offer_share,
                "answers": [list(a) for a in self.answers], "summary": self.summary()}


def collect(examples: Iterable[Any]) -> Samples:
    """The samples of the ultimatum examples (lib.dataset.sidecar.Example) among `examples`."""
    out = Samples()
    for example in examples:
        if example.game_type != NAME or not example.cap:
            continue
        if example.action == OFFER:
            out.offer_share.append(round(example.human["offer"] / example.cap, 9))
        elif example.action == RESPONSE and example.view().current.offer is not None:
            out.answers.append((round(example.view().current.offer / example.cap, 9), int(example.human["accept"])))
    return out


def from_saved(saved: SavedSamples | None) -> Samples:
    """This game's samples of a samples file (none in it: no samples, so the baseline's rules); SamplesError (one
    line) for a section that does not fit."""
    record = saved.section(SECTION) if saved is not None else None
    if record is None:
        return Samples()
    assert saved is not None
    shares, answers = record.get("offer_share"), record.get("answers")
    if not (isinstance(shares, list) and all(isinstance(s, int | float) and 0 <= s <= 1 for s in shares)):
        raise saved.error(f"section {SECTION}: offer_share must be a list of shares from 0 to 1")
    if not (isinstance(answers, list) and all(isinstance(a, list) and len(a) == 2 and isinstance(a[0], int | float)
                                              and a[1] in (0, 1) for a in answers)):
        raise saved.error(f"section {SECTION}: answers must be a list of [share, 0 or 1]")
    return Samples([float(s) for s in shares], [(float(x), int(y)) for x, y in answers])


def empirical_action(view: UltimatumView, wire_type: str, cap: int, samples: Samples, seed: int = 0
                     ) -> dict[str, Any]:
    """The policy's message for `wire_type` now (ValueError as the baseline's)."""
    key = f"{seed}:{view.game_id}:{view.round}:{view.number}:{wire_type}".encode()
    rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
    if wire_type == OFFER and samples.offer_share:
        return {"gameId": view.game_id, "type": OFFER, "offer": math.floor(cap * rng.choice(samples.offer_share))}
    offer = view.current.offer
    if wire_type == RESPONSE and offer is not None and cap:
        seen = [accepted for share, accepted in samples.answers if share <= offer / cap]
        if seen:
            return {"gameId": view.game_id, "type": RESPONSE, "accept": rng.random() < sum(seen) / len(seen)}
    return baseline_action(view, wire_type, cap)


@dataclass
class EmpiricalPolicy:
    """The draws as a lib.games.protocols.Policy; `saved`: the file they came from."""

    samples: Samples
    seed: int = 0
    saved: SavedSamples | None = None
    name: str = "empirical"

    async def decide(self, view: UltimatumView, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Transcript | None) -> dict[str, Any] | None:
        return empirical_action(view, wire_type, cap, self.samples, self.seed)


class EmpiricalDecisions:
    """lib.games.protocols.RuleDecisions of the empirical policy on ultimatum examples: the samples of every
    training example (a test game's: no leave-one-game-out)."""

    def __init__(self, training: Any) -> None:
        self.overall = collect(training.examples)

    def decide(self, example: Any) -> Decision:
        try:
            return Decision(empirical_action(example.view(), example.action, example.cap or 0, self.overall))
        except ValueError as exc:
            return Decision(None, str(exc))

    def info(self) -> dict[str, Any]:
        return {"rules": "tests/games/ultimatum/empirical.py", SECTION: self.overall.summary()}

    def save(self, out: Any) -> list[str]:
        return []  # its samples go to the shared file (samples())

    def summary(self, out: Any) -> str | None:
        return None

    def samples(self) -> Mapping[str, Any]:
        return {SECTION: self.overall.section()}
