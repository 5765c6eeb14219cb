"""The negative log-likelihood of a human's exact answer, for a model in this process (lib/training/localmodel.py) and
for a
served one, so that both report the same number.

The answer's tokens are those after the prompt (system and user messages, rendered by the chat template with the
assistant's turn opened) in the whole conversation: the assistant's text and the template's end of turn, the tokens
the training loss of finetune.py --trainer trl covers.

A served model: vLLM's OpenAI-compatible server returns the log-probability of every prompt token when asked
(`prompt_logprobs`, a vLLM extension to chat completions). The conversation with the human's answer as the assistant
turn is sent as the prompt, rendered without a new generation prompt; a second request with the prompt alone says
where the answer starts. OpenAI's API has no such field: served_answer_nll raises LogprobsRefused there.

Whatever the endpoint answers is checked before it is used: a body the SDK cannot read (not JSON, nested too deeply,
an integer past Python's digit limit), choices or usage of the wrong shape (lib.agents.llm.read_completion, as at
play time), log-probabilities that are not finite numbers at most 0, or token ids that are not integers raise
MalformedAnswer (a NoPromptLogprobs: one line, with the reason), never another exception.

Two kinds of NoPromptLogprobs, because a caller treats them differently (lib.evaluation.policies): LogprobsRefused
says the endpoint does not do prompt log-probabilities at all (it refuses the request's arguments, or ignores them
and answers without the field), so no other answer will have them either; any other (MalformedAnswer, a token
without its log-probability, an answer with no tokens of its own) is about this one answer, and the next may be
fine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import openai

from lib.agents.llm import MalformedResponse, _unreadable, read_completion, writable


@dataclass(frozen=True)
class AnswerNLL:
    """The negative log-likelihood, in nats, of an answer's tokens given the prompt. nll is the sum over the answer's
    tokens (minus the log-probability of the whole answer); per_token divides by their number."""
    nll: float
    tokens: int

    @property
    def per_token(self) -> float:
        return self.nll / self.tokens if self.tokens else math.nan

    @property
    def probability(self) -> float:
        return math.exp(-self.nll)


class NoPromptLogprobs(Exception):
    """The endpoint gives no usable prompt log-probabilities; one line."""


class LogprobsRefused(NoPromptLogprobs):
    """The endpoint does not give prompt log-probabilities at all: it refused the request, or answered without
    them; one line."""


class MalformedAnswer(NoPromptLogprobs):
    """The endpoint's answer to a prompt log-probability request cannot be read; one line with the reason."""


async def _prompt_logprobs(client: openai.AsyncOpenAI, model: str, messages: list[dict],
                           generation_prompt: bool) -> tuple[list[Any], list[int] | None, int | None]:
    try:
        completion = await client.chat.completions.create(
            model=model, messages=messages, max_tokens=1, temperature=0,
            extra_body={"prompt_logprobs": 0, "add_generation_prompt": generation_prompt,
                        "return_token_ids": True})
    except (ValueError, RecursionError) as exc:
        # raised by the SDK only while reading a 200 body (see lib.agents.llm._create)
        raise MalformedAnswer(f"{client.base_url} sent an unreadable answer: {_unreadable(exc)}") from None
    except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
        said = exc.body.get("message") if isinstance(exc.body, dict) else None
        raise LogprobsRefused(f"{client.base_url} refused a prompt log-probability request ({exc.status_code}: "
                              f"{writable(str(said or exc.message)[:160])})") from None
    try:
        _, _, usage = read_completion(completion)
    except MalformedResponse as exc:
        raise MalformedAnswer(f"{client.base_url} sent a malformed answer: {exc}") from None
    extra = completion.model_extra or {}
    logprobs = extra.get("prompt_logprobs")
    if not isinstance(logprobs, list) or not logprobs:
        raise LogprobsRefused(f"{client.base_url} returned no prompt log-probabilities (vLLM does; OpenAI does not)")
    ids = extra.get("prompt_token_ids")
    if not (isinstance(ids, list) and len(ids) == len(logprobs)):
        ids = None
    elif not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise MalformedAnswer(f"{client.base_url} sent prompt_token_ids that are not all integers")
    return logprobs, ids, usage["prompt_tokens"] if usage else None


def _logprob(entry: Any, token: int | None, position: int) -> float:
    if not isinstance(entry, dict) or not entry:
        raise NoPromptLogprobs(f"no log-probability for prompt token {position}")
    if token is not None and str(token) in entry:
        return _number(entry[str(token)], position)
    if len(entry) == 1:   # prompt_logprobs=0: the prompt token's own, alone
        return _number(next(iter(entry.values())), position)
    raise NoPromptLogprobs(f"several candidates for prompt token {position} and no prompt_token_ids to tell which "
                           "was the prompt's")


def _number(candidate: Any, position: int) -> float:
    value = candidate.get("logprob") if isinstance(candidate, dict) else None
    # a bool is an int to Python, and a log-probability above 0 or not finite is no probability
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer of hundreds of digits
        number = math.nan
    if not -math.inf < number <= 0:
        raise MalformedAnswer(f"the log-probability of prompt token {position} is not a number at most 0: "
                              f"{writable(repr(candidate)[:80])}")
    return number


async def served_answer_nll(client: openai.AsyncOpenAI, model: str, prompt: list[dict], answer: str) -> AnswerNLL:
    """The NLL of `answer` to `prompt` (system and user messages) by a served model whose endpoint returns prompt
    log-probabilities (vLLM). LogprobsRefused when it does not, MalformedAnswer when what it sent cannot be read,
    another NoPromptLogprobs when this answer's tokens cannot be scored from it."""
    full, full_ids, full_count = await _prompt_logprobs(
        client, model, [*prompt, {"role": "assistant", "content": answer}], generation_prompt=False)
    head, head_ids, head_count = await _prompt_logprobs(client, model, prompt, generation_prompt=True)
    if full_ids is not None and head_ids is not None:
        start = 0
        while start < min(len(head_ids), len(full_ids)) and head_ids[start] == full_ids[start]:
            start += 1
    elif full_count == len(full) and head_count is not None and head_count == len(head):
        start = head_count
    else:
        raise NoPromptLogprobs("the endpoint says neither the prompt's token ids nor its token count, so the answer's "
                               "tokens cannot be told from the prompt's")
    if not 0 < start < len(full):
        raise NoPromptLogprobs("the answer has no tokens of its own after the prompt's")
    total = -sum(_logprob(full[i], full_ids[i] if full_ids else None, i) for i in range(start, len(full)))
    return AnswerNLL(nll=total, tokens=len(full) - start)
