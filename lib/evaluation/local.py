"""The `local` and `local-base` policies of `finetune.py --evaluate`: an open model run in this process.

    python finetune.py --evaluate --policies baseline,fitted,local,local-base --model data/models/NAME

`local` is the model at --model (a LoRA adapter folder that finetune.py --trainer trl wrote, a merged or any other
model folder, or a hub id), or, without --model, the adapter of the TRL training recorded in data/finetune_job.json.
`local-base` is that adapter's base model, so that the fine-tuned model and the model it started from are scored side
by side. Each is scored twice over on every example that is scored:

- its greedy answer (the most likely token at every step) to the example's exact system and user messages, parsed
  and validated as at play time (the game's ScoreRules.parse_answer, lib.games.protocols), and scored like any
  policy's decision;
- the negative log-likelihood of the human's exact answer (its tokens and the chat template's end of turn, the tokens
  the training loss covers) given the same messages: `nll`, in nats per answer (minus the log-probability of the
  whole answer: Centaur's measure), and `nll_per_token`. lib.evaluation.scores averages both per action type.

Needs the training requirements (requirements-train.txt); the model is loaded when the policy first decides, so a
--dry-run loads nothing.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from lib.dataset.sidecar import Example
from lib.evaluation.policies import not_asked, scored, scores_of
from lib.evaluation.scores import Decision
from lib.training import jobrecord
from lib.training import requirements as trainreqs

MAX_NEW_TOKENS = 160   # a wire message is a few dozen tokens; a model that rambles on is cut off and invalid
PROGRESS_EVERY = 5.0   # seconds between progress lines


class LocalPolicyError(ValueError):
    """A local policy that cannot be set up; one line."""


def recorded_adapter(record_path: Path) -> str | None:
    """The adapter of the succeeded TRL training that data/finetune_job.json names as its current job."""
    record = jobrecord.read_record(record_path) or {}
    if record.get("kind") == "trl" and record.get("status") == "succeeded" and record.get("adapter_path"):
        return str(record["adapter_path"])
    return None


def model_path(model: str | None, record_path: Path) -> tuple[str, str]:
    """(model, where it came from) for the local policies."""
    if model:
        return model, "--model"
    adapter = recorded_adapter(record_path)
    if adapter is None:
        raise LocalPolicyError(f"the local policies need --model PATH (a model or adapter folder, or a hub id), or a "
                               f"finished training by finetune.py --trainer trl recorded in {record_path}")
    return adapter, str(record_path)


class LocalEvalPolicy:
    """See the module docstring. base=True: the base model of the adapter at `model`."""

    def __init__(self, name: str, model: str, source: str, *, base: bool = False,
                 max_new_tokens: int = MAX_NEW_TOKENS, progress: TextIO | None = sys.stderr) -> None:
        problem = trainreqs.problem(f"the {name} policy")
        if problem:
            raise LocalPolicyError(problem)
        from lib.training import localmodel

        self.name, self.source, self.max_new_tokens, self.progress = name, source, max_new_tokens, progress
        self.model = model
        if base:
            adapter_of = localmodel.adapter_base(model) if localmodel.is_local(model) else None
            if adapter_of is None:
                raise LocalPolicyError(f"{name}: {model} is not a LoRA adapter folder (no adapter_config.json), so "
                                       "it has no base model to compare with; leave local-base out")
            self.model = adapter_of
        self.lm: Any = None
        self.stats: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"model": self.model, "model_source": self.source, "decoding": "greedy",
                                "max_new_tokens": self.max_new_tokens,
                                "nll": "nats per answer: the human's answer tokens and the end of turn",
                                **dict(self.stats), "invalid_reasons": dict(self.reasons.most_common(10))}
        if self.lm is not None:
            info.update(base=self.lm.base, adapter=self.lm.adapter, device=self.lm.device,
                        dtype=str(self.lm.model.dtype).replace("torch.", ""))
        return info

    def _load(self) -> Any:
        from lib.training import localmodel

        if self.lm is None:
            try:
                self.lm = localmodel.load(self.model)
            except localmodel.LocalModelError as exc:
                raise LocalPolicyError(f"{self.name}: {exc}") from None
        return self.lm

    def decide(self, example: Example) -> Decision:
        from lib.training import localmodel

        lm = self._load()
        try:
            text = localmodel.decide(lm, example.messages, self.max_new_tokens)
            score = localmodel.answer_nll(lm, example.messages, example.answer) if example.answer else None
        except localmodel.LocalModelError as exc:   # an example over the model's context
            self.stats["too_long"] += 1
            self.reasons[str(exc)[:120]] += 1
            return Decision(None, str(exc))
        extra = {"nll": score.nll, "nll_per_token": score.per_token} if score else {}
        try:
            return Decision(scores_of(example).parse_answer(text, example), extra=extra)
        except ValueError as exc:  # the game's ActionError: the answer is invalid, and the reason says why
            self.reasons[str(exc)[:120]] += 1
            return Decision(None, f"invalid answer: {exc}", extra=extra)

    async def decide_all(self, examples: Sequence[Example]) -> list[Decision]:
        todo = sum(scored(e) for e in examples)
        done, last = 0, time.monotonic()
        decisions = []
        for example in examples:
            if not scored(example):
                decisions.append(not_asked(example))
                continue
            decisions.append(self.decide(example))
            self.stats["answered"] += 1
            done += 1
            if self.progress is not None and (time.monotonic() - last >= PROGRESS_EVERY or done == todo):
                last = time.monotonic()
                print(f"{self.name}: {done}/{todo} decided and scored", file=self.progress, flush=True)
        return decisions
