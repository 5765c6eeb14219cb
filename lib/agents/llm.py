"""Model calls for the agents, through the openai SDK (AsyncOpenAI), against OpenAI or any OpenAI-compatible server.

- The game's `answers` part (lib.games.protocols.AnswerRules) says what is asked and how the answer is read: the
  prompt is exactly what the training set holds for that game, or with `prompt` another of the game's prompt
  variants (lib.games.protocols.PromptRules: e.g. zero-shot, the rules in full for a model not fine-tuned on the
  game), which the model-call records and the cache keys name.
- Structured output first: response_format json_schema (AnswerRules.schema). An endpoint that answers 400 to it
  (Ollama, llama.cpp and vLLM builds without it) is remembered, and later calls ask for plain JSON, which
  AnswerRules.parse reads (a code fence around it is tolerated).
- Every answer is checked strictly (AnswerRules.parse). A 200 response that is not a readable chat completion (a
  body that is not JSON or nests too deeply, choices or usage of the wrong shape: read_completion) is an invalid
  answer too.
  An invalid one is retried with the reason fed back to the model as one
  more user message. API errors (429, 5xx, timeouts, connection) are retried too, after the server's Retry-After or
  a short backoff. Attempts are bounded by `max_retries` and by the deadline: each call's timeout is the time left
  before `deadline` (the agent subtracts its safety margin before passing it). The SDK's own retries are off,
  because they know nothing of the deadline and would hide attempts from the transcript.
- One asyncio.Semaphore per policy bounds the concurrent calls of all the agents sharing it.
- Each attempt is one "model-call" transcript record: model, attempt, the messages sent, the raw answer, the parsed
  action or the error, latency, and whether structured output was used. The API key never appears in it. A call
  cut short says why: the deadline, the phase moving on, or the agent shutting down (lib.agents.decisions.Trace).
- The decision's lib.agents.decisions.Trace (when an agent asks) counts the attempts, invalid answers and failed calls,
  and says why no answer came: that is how the decisions table tells the model from its fallback.
- A study (lib.study) gives the policy its call cache and spend tracker (lib.study.cache): every answer is stored
  under the endpoint, model, temperature, messages and the game index, seat and attempt, so a re-run of a game
  replays its answers exactly and for free, while repeated games are separate draws. Token usage and list-price
  cost of every call go into its model-call record (`cached` says whether it was replayed) and into the decision's
  Trace. The tracker is shared by all agents of a study: once its cap is reached no call is made (a cached answer
  is still replayed), and the decision falls back with the reason `spend-cap`.
- `preflight()`: one cheap call (a one-token completion) before any agent joins a game, so that an unreachable
  endpoint, a rejected key or an unknown model stops the run with one line instead of a game of fallbacks.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice

from lib.agents import decisions
from lib.agents.transcript import Transcript
from lib.games import DEFAULT_GAME, game_for
from lib.games.protocols import DEFAULT_PROMPT, ActionError, Game, check_prompt_variant, variant_messages
from lib.study.cache import CachedCall, CallCache, SpendTracker, call_key, cost_usd
from lib.util.redact import public_url

DEFAULT_MAX_RETRIES = 2  # extra attempts after an invalid answer or an API error
DEFAULT_MAX_CONCURRENT_CALLS = 8
MIN_CALL_SECONDS = 0.2  # below this much time left, a call cannot finish: stop trying
BACKOFF_SECONDS = 0.5
FEEDBACK = "That answer cannot be sent: {reason}. Answer again with exactly one JSON object in the format given."
PREFLIGHT_TIMEOUT = 60.0  # a local server may load the model on its first call
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")


class MalformedResponse(ActionError):
    """The endpoint's 200 response is not a chat completion that can be read: an invalid answer like any other
    (fed back and retried at play time, counted invalid in --evaluate). `raw` is the start of the body, when the
    SDK could not even parse it."""

    def __init__(self, reason: str, raw: str | None = None) -> None:
        super().__init__(reason)
        self.raw = raw


RAW_EXCERPT = 2000  # characters of an unreadable body kept in the transcript


def writable(text: str) -> str:
    """`text` as UTF-8 can hold it: a lone surrogate (JSON "\\ud800" in an answer) becomes its escape, so that it
    can be written to a transcript or cache and sent back to the endpoint (the SDK cannot encode it)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _token_count(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def read_completion(completion: Any) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """(answer text, refusal, usage's token counts) of what chat.completions.create returned, or
    MalformedResponse. The SDK builds its objects without validation: any shape a server sends comes through (a
    str for a non-JSON content type, a list, choices of strings, usage "lots"), so each part is checked here."""
    if not isinstance(completion, ChatCompletion):
        raise MalformedResponse(f"the endpoint's response is not a chat completion object but "
                                f"{type(completion).__name__} {writable(repr(completion)[:80])}")
    choices = completion.choices
    if not isinstance(choices, list):
        raise MalformedResponse("the endpoint's response has no list of choices")
    if not choices:
        return None, None, _usage(completion.usage)
    choice = choices[0]
    if not isinstance(choice, Choice) or not isinstance(choice.message, ChatCompletionMessage | None):
        raise MalformedResponse(f"the endpoint's first choice is not a message: {writable(repr(choice)[:80])}")
    message = choice.message
    answer = getattr(message, "content", None)
    if answer is not None and not isinstance(answer, str):
        raise MalformedResponse(f"the endpoint's message content is not text but {type(answer).__name__}")
    refusal = getattr(message, "refusal", None)
    return answer, refusal if isinstance(refusal, str) else None, _usage(completion.usage)


def _usage(usage: Any) -> dict[str, Any] | None:
    if usage is None:
        return None
    if not isinstance(usage, CompletionUsage) or not all(
            _token_count(getattr(usage, name, None)) for name in ("prompt_tokens", "completion_tokens",
                                                                  "total_tokens")):
        raise MalformedResponse(f"the endpoint's usage is not token counts: {writable(repr(usage)[:80])}")
    # the counts only: whatever else a server puts there is not needed, and need not be writable
    return {name: getattr(usage, name, None) for name in ("prompt_tokens", "completion_tokens", "total_tokens")}


def _unreadable(exc: Exception) -> MalformedResponse:
    """What the SDK raised parsing a 200 body (not JSON, an integer past Python's 4300 digits, nesting past the
    decoder's depth), as an invalid answer."""
    raw = exc.doc[:RAW_EXCERPT] if isinstance(exc, json.JSONDecodeError) and isinstance(exc.doc, str) else None
    what = {RecursionError: "nests too deeply"}.get(type(exc), "is not valid JSON")
    return MalformedResponse(f"the endpoint's response body {what} ({type(exc).__name__}: "
                             f"{writable(str(exc)[:120])})", writable(raw) if raw is not None else None)


class PreflightError(Exception):
    """The endpoint or model cannot play: the message is one line, fit to print (no secret in it)."""


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
    """A Policy that asks a chat model about `game` (None: voting; see the module docstring)."""

    name = "llm"

    def __init__(self, *, api_key: str, model: str, base_url: str | None = None,
                 max_retries: int = DEFAULT_MAX_RETRIES, max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS,
                 temperature: float | None = None, game: Game | None = None, cache: CallCache | None = None,
                 spend: SpendTracker | None = None, endpoint: str | None = None, game_index: int = 0,
                 prompt: str = DEFAULT_PROMPT) -> None:
        """`cache`, `spend`, `endpoint` (the name the cache keys calls by; the public base URL without one) and
        `game_index` (the study's index of the game these agents play) are a study's: see the module docstring.
        `prompt`: the game's prompt variant the model is asked with (UnknownPromptVariant, a ValueError, for one
        the game does not have)."""
        if not api_key:
            raise ValueError("an API key is needed (any non-empty value for a local server that ignores it)")
        self.game = game if game is not None else game_for(DEFAULT_GAME)  # the call sites from before games were parts
        self.prompt = check_prompt_variant(self.game, prompt)
        self.answers = self.game.answers
        self.model = model
        self.max_retries = max(0, max_retries)
        self.temperature = temperature
        self._api_key = api_key
        self.client = AsyncOpenAI(api_key=api_key, base_url=base_url or None, max_retries=0, timeout=60.0)
        self._owns_client = True  # False in a copy (for_game, for_game_index), which shares this one's client
        self.base_url = str(self.client.base_url)
        self.semaphore = asyncio.Semaphore(max(1, max_concurrent_calls))
        self.structured: bool | None = None  # None: untried; True: works; False: this endpoint refuses it
        self.cache, self.spend, self.game_index = cache, spend, game_index
        self.endpoint = endpoint or public_url(self.base_url)
        # Whether the spend tracker can count this model's calls (no list price: the cap cannot stop it). Asked
        # here also so that the price table is loaded before the game, not inside a decision's deadline.
        self.priced = cost_usd(model, 0, 0) is not None if cache is not None or spend is not None else None

    async def close(self) -> None:
        """Close the client; a copy's close leaves the client it shares to the policy it was copied from."""
        if self._owns_client:
            await self.client.close()

    async def preflight(self, where: str | None = None) -> str | None:
        """One cheap call to the endpoint and model. Raises PreflightError (one line) when it cannot play:
        unreachable, key refused, model unknown, endpoint broken. Returns a warning line when it answered but
        could not prove the model (rate limited), else None."""
        where = where or self.base_url
        messages = [{"role": "user", "content": "Reply with the single word OK."}]
        try:
            try:
                await self.client.chat.completions.create(model=self.model, messages=messages,
                                                          max_completion_tokens=1, timeout=PREFLIGHT_TIMEOUT)
            except openai.BadRequestError as exc:
                if "max_completion_tokens" not in str(exc):
                    raise
                # An older server that does not know the parameter: ask again without it (a short answer anyway).
                await self.client.chat.completions.create(model=self.model, messages=messages,
                                                          timeout=PREFLIGHT_TIMEOUT)
        except (ValueError, RecursionError) as exc:
            # the SDK could not read the 200 body: the endpoint is there and took the key, but may answer badly
            return (f"warning: the model endpoint {where} answered the test call with an unreadable body "
                    f"({_unreadable(exc)}); the agents' calls may fall back")
        except openai.APITimeoutError:
            raise PreflightError(f"the model endpoint {where} did not answer within {PREFLIGHT_TIMEOUT:g} s "
                                 "(check OPENAI_BASE_URL and the network)") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise PreflightError(f"cannot reach the model endpoint {where} ({self._clean(cause)}): check "
                                 "OPENAI_BASE_URL and the network") from None
        except openai.AuthenticationError as exc:
            raise PreflightError(f"the model endpoint {where} refused the API key (401: {self._said(exc)}): check "
                                 "OPENAI_API_KEY") from None
        except openai.PermissionDeniedError as exc:
            raise PreflightError(f"the model endpoint {where} refused access to model {self.model} "
                                 f"(403: {self._said(exc)})") from None
        except openai.NotFoundError as exc:
            raise PreflightError(f"model {self.model} does not exist at {where} (404: {self._said(exc)}); check "
                                 "OPENAI_MODEL (or data/finetune_job.json) and OPENAI_BASE_URL") from None
        except openai.RateLimitError as exc:
            if getattr(exc, "code", None) == "insufficient_quota":
                raise PreflightError(f"no quota left at {where} (429 insufficient_quota: {self._said(exc)})") from None
            return f"warning: the model endpoint {where} is rate limiting (429); the agents' calls may fall back"
        except openai.APIStatusError as exc:
            about_model = "model" in f"{getattr(exc, 'param', '')} {getattr(exc, 'code', '')} {exc}".lower()
            what = f"model {self.model} is not usable at {where}" if about_model else f"{where} failed the test call"
            raise PreflightError(f"{what} ({exc.status_code}: {self._said(exc)})") from None
        return None

    def _said(self, exc: openai.APIStatusError) -> str:
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        return self._clean(message or exc.message)

    def _clean(self, text: Any) -> str:
        """One line, without the key (an error body may echo it)."""
        line = " ".join(str(text).split())
        if self._api_key and len(self._api_key) >= 6:
            line = line.replace(self._api_key, "[redacted]")
        return _KEY_PATTERN.sub("[redacted]", line)[:300]

    async def _create(self, messages: list[dict[str, str]], wire_type: str, timeout: float,
                      structured: bool, view: Any, cap: int) -> Any:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "timeout": timeout}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if structured:
            schema = self.schema(view, wire_type, cap)
            kwargs["response_format"] = {"type": "json_schema", "json_schema": schema}
        try:
            return await self.client.chat.completions.create(**kwargs)
        except (ValueError, RecursionError) as exc:
            # The SDK raises these (not an openai error) only while reading a 200 body: the request is built from
            # writable() text. The endpoint answered, badly: an invalid answer, not a failed call.
            raise _unreadable(exc) from None

    async def _complete(self, messages: list[dict[str, str]], wire_type: str, deadline: float,
                        view: Any, cap: int) -> tuple[Any, bool]:
        """(completion, structured?) for one attempt; falls back to plain JSON once if json_schema is refused."""
        async with self.semaphore:
            timeout = deadline - time.monotonic()
            if timeout < MIN_CALL_SECONDS:
                raise TimeoutError("no time left before the deadline")
            if self.structured is not False:
                try:
                    completion = await self._create(messages, wire_type, timeout, True, view, cap)
                    self.structured = True
                    return completion, True
                except openai.BadRequestError as exc:
                    if not _refuses_response_format(exc, bool(self.structured)):
                        raise
                    self.structured = False
                timeout = deadline - time.monotonic()
                if timeout < MIN_CALL_SECONDS:
                    raise TimeoutError("no time left before the deadline")
            return await self._create(messages, wire_type, timeout, False, view, cap), False

    async def complete(self, messages: list[dict[str, str]], wire_type: str, deadline: float, view: Any,
                       cap: int) -> tuple[Any, bool]:
        """One call with exactly these messages, as decide makes it (structured output, with the schema of this
        player's game, seat and cap, where the endpoint takes it): (completion, structured?). Raises the SDK's
        errors, which the evaluation (lib.evaluation.policies) retries itself, and MalformedResponse for a body the SDK
        cannot parse; the completion itself is read with read_completion."""
        return await self._complete(messages, wire_type, deadline, view, cap)

    def for_game(self, game: Game) -> LLMPolicy:
        """The same model at the same endpoint with the same prompt variant, asked about `game`, sharing this
        policy's limit on concurrent calls (UnknownPromptVariant when `game` has no such variant)."""
        return self._copy(game, self.game_index, self.prompt)

    def for_game_index(self, game_index: int) -> LLMPolicy:
        """The same policy for the agents of a study's game `game_index`: its answers are cached under that index,
        and it shares this policy's cache, spend tracker and limit on concurrent calls."""
        return self._copy(self.game, game_index, self.prompt)

    def with_prompt(self, prompt: str) -> LLMPolicy:
        """The same model asked with prompt variant `prompt`, sharing this policy's cache, spend tracker and limit
        on concurrent calls (the variants of one model share one bound on its endpoint)."""
        return self._copy(self.game, self.game_index, prompt)

    def _copy(self, game: Game, game_index: int, prompt: str) -> LLMPolicy:
        # The client too is shared: a new one per copy (a study copies the policy for every model seat of every
        # game) cost a certificate load (~60 ms of CPU) and a connection pool that nobody closed. The semaphore,
        # cache and spend tracker are shared the same way.
        other = copy.copy(self)
        other.game, other.answers, other.game_index = game, game.answers, game_index
        other.prompt = check_prompt_variant(game, prompt)
        other.structured = None  # each copy learns for itself whether the endpoint takes json_schema, as before
        other._owns_client = False
        return other

    # The game's prompts (in this policy's variant), schema and strict answer checks (its AnswerRules).
    def messages(self, view: Any, action_required: dict[str, Any]) -> list[dict[str, str]]:
        return variant_messages(self.game, self.prompt, view, self.answers.messages(view, action_required))

    def schema(self, view: Any, wire_type: str, cap: int) -> dict[str, Any]:
        return self.answers.schema(view, wire_type, cap)

    def parse(self, answer: Any, view: Any, wire_type: str, cap: int) -> dict[str, Any]:
        return self.answers.parse(answer, view, wire_type, cap)

    async def decide(self, view: Any, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Transcript | None) -> dict[str, Any] | None:
        """A valid wire message from the model before `deadline` (time.monotonic()), or None."""
        if transcript is not None:
            transcript.add_secret(self._api_key)
        messages = self.messages(view, action_required)
        trace = decisions.current()
        for attempt in range(1, self.max_retries + 2):
            if deadline - time.monotonic() < MIN_CALL_SECONDS:
                if trace is not None:
                    trace.stopped = decisions.TIMEOUT
                break
            started = time.monotonic()
            record: dict[str, Any] = {"model": self.model, "wire_type": wire_type, "round": view.round,
                                      "phase": view.phase, "attempt": attempt, "messages": messages}
            if self.prompt != DEFAULT_PROMPT:  # the default's records stay as they were before variants
                record["prompt"] = self.prompt
            key = self._key(messages, view, attempt)
            hit = self.cache.get(key) if self.cache is not None and key is not None else None
            if hit is None and self._capped(trace, transcript, record):
                break
            if trace is not None:
                trace.attempts = attempt
            wait = 0.0
            unreadable: MalformedResponse | None = None
            try:
                if hit is not None:
                    completion, structured = None, None
                else:
                    completion, structured = await self._complete(messages, wire_type, deadline, view, cap)
            except asyncio.CancelledError:
                _log(transcript, record, started, error=f"cancelled: {_cancel_reason(trace, deadline)}")
                raise
            except MalformedResponse as exc:
                completion, structured, unreadable = None, bool(self.structured), exc
            except (openai.OpenAIError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                _log(transcript, record, started, error=error)
                timed_out = isinstance(exc, TimeoutError | openai.APITimeoutError)
                if trace is not None:
                    trace.failed(decisions.TIMEOUT if timed_out else decisions.MODEL_ERROR, error)
                if isinstance(exc, openai.APIStatusError):
                    if exc.status_code in (400, 401, 403, 404):
                        if trace is not None:
                            trace.stopped = decisions.MODEL_ERROR
                        break  # a request the endpoint will never accept: retrying only burns the deadline
                    wait = _retry_after(exc) or BACKOFF_SECONDS * attempt
                else:
                    wait = BACKOFF_SECONDS * attempt if isinstance(exc, openai.APIConnectionError) else 0.0
                await asyncio.sleep(max(0.0, min(wait, deadline - time.monotonic() - MIN_CALL_SECONDS)))
                continue
            record["structured"] = structured
            answer = None
            try:
                if unreadable is not None:
                    record["response"] = unreadable.raw
                    raise unreadable
                if hit is not None:
                    answer, refusal, usage = hit.answer, None, hit.usage()
                else:
                    answer, refusal, usage = read_completion(completion)
                # the answer as the transcript can hold it; the parse below sees it as sent
                record.update(answer=None if answer is None else writable(answer), usage=usage)
                self._account(record, trace, key, hit, answer, usage, view, attempt)
                if answer is None and refusal:
                    record["refusal"] = writable(refusal)
                action = self.parse(answer, view, wire_type, cap)
            except ActionError as exc:
                reason = writable(str(exc))  # a reason may quote the answer
                _log(transcript, record, started, error=f"invalid answer: {reason}")
                if trace is not None:
                    trace.failed(decisions.INVALID, f"invalid answer: {reason}")
                messages = [*messages, {"role": "assistant", "content": writable(answer or "")},
                            {"role": "user", "content": FEEDBACK.format(reason=reason)}]
                continue
            _log(transcript, record, started, action=action)
            return action
        return None

    def _key(self, messages: list[dict[str, str]], view: Any, attempt: int) -> str | None:
        """The cache key of this attempt (None without a cache)."""
        if self.cache is None:
            return None
        return call_key(self.endpoint, self.model, self.temperature, messages, self.game_index, view.number, attempt,
                        prompt=self.prompt)

    def _capped(self, trace: decisions.Trace | None, transcript: Transcript | None, record: dict[str, Any]) -> bool:
        """True when the study's spending cap is reached: no call is made, and the decision says why."""
        reason = self.spend.cap_reason() if self.spend is not None else None
        if reason is None:
            return False
        if trace is not None:
            trace.stopped, trace.last_error = decisions.SPEND_CAP, reason
        if transcript is not None:
            transcript.write("spend-cap", **{k: record[k] for k in ("model", "wire_type", "round", "phase",
                                                                   "attempt")}, reason=reason)
        return True

    def _account(self, record: dict[str, Any], trace: decisions.Trace | None, key: str | None,
                 hit: CachedCall | None, answer: str | None, usage: dict[str, Any] | None, view: Any,
                 attempt: int) -> None:
        """Tokens and cost of one answer into its model-call record, the decision's trace and the spend tracker;
        a fresh answer into the cache. A replayed answer costs nothing now."""
        prompt = int((usage or {}).get("prompt_tokens") or 0)
        completion = int((usage or {}).get("completion_tokens") or 0)
        cost = 0.0 if hit is not None else cost_usd(self.model, prompt, completion) if usage is not None else None
        record.update(cost_usd=cost, cached=hit is not None)
        if trace is not None:
            trace.used(prompt, completion, cost, cached=hit is not None)
        if hit is not None:
            return
        if self.spend is not None:
            self.spend.add(cost)
        if self.cache is not None and key is not None and isinstance(answer, str):
            self.cache.put(CachedCall(key=key, answer=writable(answer), prompt_tokens=prompt,
                                      completion_tokens=completion, cost_usd=cost, endpoint=self.endpoint,
                                      model=self.model, game_index=self.game_index, seat=view.number,
                                      attempt=attempt, prompt=self.prompt))


def _cancel_reason(trace: decisions.Trace | None, deadline: float) -> str:
    """Why a call was cut short: what the canceller wrote into the trace, else the deadline if it has come."""
    if trace is not None and trace.cancel_reason:
        return trace.cancel_reason
    if time.monotonic() >= deadline - 0.05:  # the agent's timer for this decision fires at `deadline`
        return "the deadline (minus the safety margin) came before the model answered"
    return "the decision was cancelled"


def _log(transcript: Transcript | None, record: dict[str, Any], started: float, **fields: Any) -> None:
    if transcript is not None:
        transcript.write("model-call", **record, latency_s=round(time.monotonic() - started, 3), **fields)
