"""Model calls for the agents, through the openai SDK (AsyncOpenAI), against OpenAI or any OpenAI-compatible server.

- The prompt is lib.prompts.build_messages, exactly what the training set holds.
- Structured output first: response_format json_schema (lib.actions.answer_schema). An endpoint that answers 400
  to it (Ollama, llama.cpp and vLLM builds without it) is remembered, and later calls ask for plain JSON, which
  lib.actions.parse_answer reads (a code fence around it is tolerated).
- Every answer is validated (lib.actions). An invalid one is retried with the reason fed back to the model as one
  more user message. API errors (429, 5xx, timeouts, connection) are retried too, after the server's Retry-After or
  a short backoff. Attempts are bounded by `max_retries` and by the deadline: each call's timeout is the time left
  before `deadline` (the agent subtracts its safety margin before passing it). The SDK's own retries are off,
  because they know nothing of the deadline and would hide attempts from the transcript.
- One asyncio.Semaphore per policy bounds the concurrent calls of all the agents sharing it.
- Each attempt is one "model-call" transcript record: model, attempt, the messages sent, the raw answer, the parsed
  action or the error, latency, and whether structured output was used. The API key never appears in it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
from openai import AsyncOpenAI

from lib.actions import ActionError, answer_schema, parse_answer
from lib.prompts import build_messages
from lib.transcript import Transcript
from lib.view import PlayerView

DEFAULT_MAX_RETRIES = 2  # extra attempts after an invalid answer or an API error
DEFAULT_MAX_CONCURRENT_CALLS = 8
MIN_CALL_SECONDS = 0.2  # below this much time left, a call cannot finish: stop trying
BACKOFF_SECONDS = 0.5
FEEDBACK = "That answer cannot be sent: {reason}. Answer again with exactly one JSON object in the format given."


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """Seconds the server asks us to wait (retry-after-ms or retry-after headers), if it says."""
    headers = getattr(exc.response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def _refuses_response_format(exc: openai.BadRequestError, confirmed: bool) -> bool:
    """A 400 that means "no structured output here". Before structured output ever worked on this endpoint any
    400 counts (servers word it differently); afterwards only one that names response_format / json_schema."""
    if not confirmed:
        return True
    text = f"{getattr(exc, 'param', '')} {exc}".lower()
    return "response_format" in text or "json_schema" in text


class LLMPolicy:
    """A Policy that asks a chat model (see the module docstring)."""

    name = "llm"

    def __init__(self, *, api_key: str, model: str, base_url: str | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES, max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS,
                 temperature: float | None = None) -> None:
        if not api_key:
            raise ValueError("an API key is needed (any non-empty value for a local server that ignores it)")
        self.model = model
        self.max_retries = max(0, max_retries)
        self.temperature = temperature
        self._api_key = api_key
        self.client = AsyncOpenAI(api_key=api_key, base_url=base_url or None, max_retries=0, timeout=60.0)
        self.base_url = str(self.client.base_url)
        self.semaphore = asyncio.Semaphore(max(1, max_concurrent_calls))
        self.structured: bool | None = None  # None: untried; True: works; False: this endpoint refuses it

    async def close(self) -> None:
        await self.client.close()

    async def _create(self, messages: list[dict[str, str]], wire_type: str, timeout: float,
                      structured: bool) -> Any:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "timeout": timeout}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if structured:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": answer_schema(wire_type)}
        return await self.client.chat.completions.create(**kwargs)

    async def _complete(self, messages: list[dict[str, str]], wire_type: str, deadline: float) -> tuple[Any, bool]:
        """(completion, structured?) for one attempt; falls back to plain JSON once if json_schema is refused."""
        async with self.semaphore:
            timeout = deadline - time.monotonic()
            if timeout < MIN_CALL_SECONDS:
                raise TimeoutError("no time left before the deadline")
            if self.structured is not False:
                try:
                    completion = await self._create(messages, wire_type, timeout, structured=True)
                    self.structured = True
                    return completion, True
                except openai.BadRequestError as exc:
                    if not _refuses_response_format(exc, bool(self.structured)):
                        raise
                    self.structured = False
                timeout = deadline - time.monotonic()
                if timeout < MIN_CALL_SECONDS:
                    raise TimeoutError("no time left before the deadline")
            return await self._create(messages, wire_type, timeout, structured=False), False

    async def complete(self, messages: list[dict[str, str]], wire_type: str, deadline: float) -> tuple[Any, bool]:
        """One call with exactly these messages, as decide makes it (structured output where the endpoint takes it):
        (completion, structured?). Raises the SDK's errors; the evaluation (lib.evalpolicies) retries them itself."""
        return await self._complete(messages, wire_type, deadline)

    async def decide(self, view: PlayerView, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Transcript | None) -> dict[str, Any] | None:
        """A valid wire message from the model before `deadline` (time.monotonic()), or None."""
        if transcript is not None:
            transcript.add_secret(self._api_key)
        messages = build_messages(view, action_required)
        for attempt in range(1, self.max_retries + 2):
            if deadline - time.monotonic() < MIN_CALL_SECONDS:
                break
            started = time.monotonic()
            record: dict[str, Any] = {"model": self.model, "wire_type": wire_type, "round": view.round,
                                      "phase": view.phase, "attempt": attempt, "messages": messages}
            wait = 0.0
            try:
                completion, structured = await self._complete(messages, wire_type, deadline)
            except asyncio.CancelledError:
                _log(transcript, record, started, error="cancelled: the phase moved on")
                raise
            except (openai.OpenAIError, TimeoutError) as exc:
                _log(transcript, record, started, error=f"{type(exc).__name__}: {exc}")
                if isinstance(exc, openai.APIStatusError):
                    if exc.status_code in (400, 401, 403, 404):
                        break  # a request the endpoint will never accept: retrying only burns the deadline
                    wait = _retry_after(exc) or BACKOFF_SECONDS * attempt
                else:
                    wait = BACKOFF_SECONDS * attempt if isinstance(exc, openai.APIConnectionError) else 0.0
                await asyncio.sleep(max(0.0, min(wait, deadline - time.monotonic() - MIN_CALL_SECONDS)))
                continue
            message = completion.choices[0].message if completion.choices else None
            answer = getattr(message, "content", None)
            record.update(structured=structured, answer=answer,
                          usage=completion.usage.model_dump() if completion.usage else None)
            if answer is None and getattr(message, "refusal", None):
                record["refusal"] = message.refusal
            try:
                action = parse_answer(answer, view, wire_type, cap=cap)
            except ActionError as exc:
                _log(transcript, record, started, error=f"invalid answer: {exc}")
                messages = [*messages, {"role": "assistant", "content": answer or ""},
                            {"role": "user", "content": FEEDBACK.format(reason=exc)}]
                continue
            _log(transcript, record, started, action=action)
            return action
        return None


def _log(transcript: Transcript | None, record: dict[str, Any], started: float, **fields: Any) -> None:
    if transcript is not None:
        transcript.write("model-call", **record, latency_s=round(time.monotonic() - started, 3), **fields)
