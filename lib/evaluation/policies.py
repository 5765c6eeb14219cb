"""The policies `finetune.py --evaluate` scores, behind one small interface.

An evaluation policy gets the examples of a set (lib.dataset.sidecar.Example: the exact system and user messages a model
is
asked with, the player's state, the human's answer, which it must not look at) and returns one
lib.evaluation.scores.Decision
per example: the validated wire message, or None with the reason. Nothing here knows how a decision is scored.

    class EvalPolicy(Protocol):
        name: str
        async def decide_all(self, examples) -> list[Decision]
        def info(self) -> dict          # what the report says about the policy (model, parameters, ...)

Every example is its game's (lib.games.game_for(example.game_type)): its ScoreRules (lib.games.protocols) say how each
action type is scored, and a policy asks them for what it needs of the game.

- `RulesPolicy`: each game's rules on the state (ScoreRules.rule_decisions): `baseline` (the rules' own parameters,
  as the agents play them), `fitted` and `empirical` (fitted on the training set's games);
- `LLMEvalPolicy`: a chat model at any OpenAI-compatible endpoint, through the game's chat client
  (ScoreRules.chat_client: lib.agents.llm.LLMPolicy, or the game's own, for the same structured output as at play
  time), asked with the example's messages and checked strictly against the player's state as at play time
  (ScoreRules.parse_answer). Each example is asked once: an invalid answer is counted as invalid,
  not re-asked with feedback as at play time, so the score is the model's own first answer. With `prompt`, a prompt
  variant of the example's game (lib.games.protocols.PromptRules), it is asked with that variant's messages instead,
  rebuilt from the example's messages and the view its sidecar line holds, exactly as an agent asks at play time;
  its NLL is then the human answer's given those messages. Calls run
  concurrently, at most `max_concurrent` at once, and each answer is appended to a JSONL cache, keyed by the
  endpoint, model, temperature and messages (and a variant other than the default), as it arrives: an interrupted
  evaluation resumes where it stopped.
  Lines are ASCII JSON (an answer's lone surrogate as its escape); a damaged line (invalid UTF-8, cut mid-write)
  is skipped with a warning and its example asked again, and a cut last line is ended before the next record.
  A 200 response that is no readable completion (lib.agents.llm.read_completion) counts as invalid and is not cached.

Examples whose action type is counted, not scored (a game's kinds say so: lib.evaluation.scores.TEXT) are asked of
no policy.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TextIO

import openai

from lib.agents.llm import MalformedResponse, _retry_after, read_completion, writable
from lib.dataset.sidecar import Example
from lib.evaluation.scores import TEXT, Decision
from lib.games import GAMES, game_for
from lib.games.protocols import DEFAULT_PROMPT, RuleDecisions, ScoreRules, prompt_variants, variant_messages

CALL_TIMEOUT = 120.0  # seconds for one answer; a long prompt on a slow local server takes a while
BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
PROGRESS_EVERY = 5.0  # seconds between progress lines
STDERR = object()  # LLMEvalPolicy's default progress stream: sys.stderr when the policy is made


class EvalPolicy(Protocol):
    name: str

    async def decide_all(self, examples: Sequence[Example]) -> list[Decision]: ...

    def info(self) -> dict[str, Any]: ...


def scores_of(example: Example) -> ScoreRules:
    """How the example's game scores it (lib.games.protocols.ScoreRules)."""
    scores = getattr(game_for(example.game_type), "scores", None)
    if scores is None:
        raise ValueError(f"game_type {example.game_type!r}: this game has no scores for finetune.py --evaluate")
    return scores


def scored(example: Example) -> bool:
    return scores_of(example).kinds[example.action].how != TEXT


def not_asked(example: Example) -> Decision:
    return Decision(None, f"not asked: {scores_of(example).kinds[example.action].unasked}")


class RulesPolicy:
    """A rule policy: on each game's examples the rules that game gives (lib.games.protocols.RuleDecisions, one per
    ScoreRules, keyed by its id); its info is `info` (what it was fitted on) and theirs, merged in order."""

    def __init__(self, name: str, parts: dict[int, RuleDecisions], info: dict[str, Any] | None = None) -> None:
        self.name, self.parts, self._info = name, parts, info or {}

    def decide(self, example: Example) -> Decision:
        if not scored(example):
            return not_asked(example)
        part = self.parts.get(id(scores_of(example)))
        if part is None:
            return Decision(None, f"no {self.name} rules for game_type {example.game_type}")
        return part.decide(example)

    async def decide_all(self, examples: Sequence[Example]) -> list[Decision]:
        return [self.decide(example) for example in examples]

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self._info)
        for part in self.parts.values():
            out.update(part.info())
        return out


# ---------------------------------------------------------------------------------------------------------------
# A chat model


class ModelUnavailable(Exception):
    """The endpoint cannot answer at all (unreachable, key rejected, unknown model, rate limit that persists): the
    evaluation stops; what was answered stays in the cache. `cause` is the SDK's error."""

    def __init__(self, cause: openai.APIError, answered: int, cache: Path) -> None:
        super().__init__(str(cause))
        self.cause, self.answered, self.cache = cause, answered, cache


FATAL_ERRORS = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError,
                openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
RETRIED_ERRORS = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)


def cache_key(*, base_url: str, model: str, temperature: float | None, messages: list[dict[str, str]],
              prompt: str = DEFAULT_PROMPT) -> str:
    """The key of one example's answer. A prompt variant other than the default is part of it, so two variants
    never share an answer even where their messages agree (no-history on a first round); the default's keys are
    those of the caches written before variants existed."""
    form: dict[str, Any] = {"base_url": base_url, "model": model, "temperature": temperature, "messages": messages}
    if prompt != DEFAULT_PROMPT:
        form["prompt"] = prompt
    text = json.dumps(form, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CacheError(Exception):
    """The cache file cannot be read or written at all (a folder, no permission): one line, fit to print."""


def _cache_os_error(path: Path, doing: str, exc: OSError) -> CacheError:
    return CacheError(f"{path}: cannot {doing} the evaluation cache ({exc.strerror or exc}); it must be a file "
                      "this user can read and append to (move what is there away, or pass another --data-dir)")


def read_cache(path: Path, warn: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """key -> cached answer. A line that is not a whole record (a run killed mid-write, a damaged file: invalid
    UTF-8, not JSON, not a record) is skipped, and `warn` is told which line and why; the other lines still count.
    CacheError when the file cannot be read at all."""
    out: dict[str, dict[str, Any]] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise _cache_os_error(path, "read", exc) from None
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problem = f"invalid UTF-8 at byte {exc.start}"
        except (ValueError, RecursionError):
            problem = "not a whole JSON record (a run cut mid-write?)"
        else:
            if isinstance(record, dict) and isinstance(record.get("key"), str) and "answer" in record:
                out[record["key"]] = record
                continue
            problem = "not a cache record (no key and answer)"
        if warn is not None:
            warn(f"warning: {path}:{number}: {problem}; line skipped, its example is asked again")
    return out


def cache_line(record: dict[str, Any]) -> bytes:
    """One cache line, in ASCII: a lone surrogate in an answer is written as its JSON escape (UTF-8 cannot hold
    it) and reads back as it came. The record holds text, numbers and read_completion's token counts only, so a
    later run reads back exactly what was written."""
    return (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")


class LLMEvalPolicy:
    """See the module docstring."""

    name = "llm"

    def __init__(self, *, api_key: str, model: str, base_url: str | None, cache: Path, model_source: str = "",
                 max_concurrent: int = 8, temperature: float | None = 0.0, max_retries: int = 5, nll: bool = False,
                 progress: TextIO | None | object = STDERR, prompt: str = DEFAULT_PROMPT) -> None:
        self.model, self.model_source, self.temperature = model, model_source, temperature
        # The prompt variant the model is asked with (the caller checked that every game of the set has it).
        self.prompt = prompt
        self._variant_messages: dict[int, list[dict[str, str]]] = {}  # id(example) -> its variant's messages
        self.max_retries = max(0, max_retries)
        # Also the NLL of each human answer (lib.training.nll), where the endpoint gives prompt log-probabilities.
        self.nll = nll
        self.nll_unavailable: str | None = None  # the endpoint gives no prompt log-probabilities: no NLL at all
        self.nll_missing: Counter[str] = Counter()  # why examples have no NLL (the others have theirs)
        self.nll_asked = 0  # examples whose NLL was asked
        self.max_concurrent = max(1, max_concurrent)
        self.cache_path = cache
        # sys.stderr as it is now, not as it was at import (a caller, or a test, may have replaced it since)
        self.progress: TextIO | None = sys.stderr if progress is STDERR else progress  # type: ignore[assignment]
        self._api_key, self._base_url = api_key, base_url
        self.base_url = (base_url or "https://api.openai.com/v1").rstrip("/")
        self.stats: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self._warned: set[str] = set()

    def messages(self, example: Example) -> list[dict[str, str]]:
        """What the model is asked on `example`: its messages (the training prompt), or the prompt variant's,
        rebuilt from them and the view of its sidecar line (made once per example)."""
        if self.prompt == DEFAULT_PROMPT:
            return example.messages
        made = self._variant_messages.get(id(example))
        if made is None:
            made = self._variant_messages[id(example)] = variant_messages(
                game_for(example.game_type), self.prompt, example.view(), example.messages)
        return made

    def key(self, example: Example) -> str:
        return cache_key(base_url=self.base_url, model=self.model, temperature=self.temperature,
                         messages=self.messages(example), prompt=self.prompt)

    def read_cache(self) -> dict[str, dict[str, Any]]:
        """The cache, each damaged line warned about once per run (the estimate reads it before the run does)."""
        return read_cache(self.cache_path, self._warn_once)

    def _warn_once(self, line: str) -> None:
        if line not in self._warned and self.progress is not None:
            print(line, file=self.progress, flush=True)
        self._warned.add(line)

    def uncached(self, examples: Sequence[Example]) -> list[Example]:
        """The scored examples whose answer is not in the cache yet: what a run would ask (and pay for)."""
        cached = self.read_cache()
        return [e for e in examples if scored(e) and self.key(e) not in cached]

    def info(self) -> dict[str, Any]:
        missing: dict[str, Any] = {}
        if not self.nll:
            nll_note = "not asked (--nll)"
        elif self.nll_unavailable:
            nll_note = f"not available: {self.nll_unavailable}"
        elif self.nll_missing and not self.stats["nll_scored"]:
            nll_note = f"not available: {self.missing_line()}"
        else:
            nll_note = "nats per answer, from the endpoint's prompt log-probabilities"
            if self.nll_missing:  # the means per action type are over the examples that have one
                nll_note += f"; {self.missing_line()}"
        if self.nll_missing:
            missing["nll_missing_reasons"] = dict(self.nll_missing.most_common(10))
        return {"nll": nll_note, "model": self.model, "model_source": self.model_source, "endpoint": self.base_url,
                "temperature": self.temperature, "prompt": self.prompt, "prompt_description": self.prompt_description(),
                "cache": str(self.cache_path), **dict(self.stats), **missing,
                "invalid_reasons": dict(self.reasons.most_common(10))}

    def prompt_description(self) -> str:
        """What the prompt variant is, in words (the first registered game's that has it)."""
        for name in GAMES:
            described = prompt_variants(GAMES[name]).get(self.prompt)
            if described:
                return described
        return self.prompt

    def _judge(self, example: Example, answer: Any) -> Decision:
        try:
            return Decision(scores_of(example).parse_answer(answer, example))
        except ValueError as exc:  # the game's ActionError: the answer is invalid, and the reason says why
            return self._invalid(exc)

    def _invalid(self, exc: Exception) -> Decision:
        reason = writable(str(exc))  # a reason may quote the answer, and the report is UTF-8
        self.reasons[reason[:120]] += 1
        return Decision(None, f"invalid answer: {reason}")

    async def decide_all(self, examples: Sequence[Example]) -> list[Decision]:
        cached = self.read_cache()
        decisions: list[Decision | None] = [None] * len(examples)
        todo: list[tuple[int, Example, str]] = []
        for i, example in enumerate(examples):
            if not scored(example):
                decisions[i] = not_asked(example)
                continue
            key = self.key(example)
            if key in cached:
                self.stats["answers_from_cache"] += 1
                decisions[i] = self._judge(example, cached[key]["answer"])
            else:
                todo.append((i, example, key))
        if todo:
            await self._ask_all(todo, decisions, answered_before=self.stats["answers_from_cache"])
        out = [d if d is not None else Decision(None, "no answer") for d in decisions]
        if self.nll:
            await self._add_nll(examples, out)
        return out

    async def _add_nll(self, examples: Sequence[Example], decisions: list[Decision]) -> None:
        """Each scored example's Decision.extra gets the NLL of the human's exact answer (nll, nll_per_token). Not
        cached: it is asked of servers on this machine or nearby, where it costs nothing.

        Per example: an answer the endpoint spoils (unreadable, log-probabilities of the wrong shape) leaves that
        example without an NLL, its reason counted (nll_missing) and said once, and the others keep theirs. An
        endpoint without prompt log-probabilities at all (OpenAI: lib.training.nll.LogprobsRefused) is told by the
        examples asked one at a time until one has an NLL, and the evaluation then goes on without any."""
        from lib.training import nll

        # a game whose scores have no NLL column is not asked: its calls would be paid for and never shown
        todo = [(i, e) for i, e in enumerate(examples) if scored(e) and e.answer and scores_of(e).answer_nll]
        gate = asyncio.Semaphore(self.max_concurrent)
        client = openai.AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=self.max_retries)
        self.nll_missing.clear()

        async def one(i: int, example: Example, probing: bool) -> bool:
            """Whether the example got its NLL; LogprobsRefused goes up only while `probing`: once an example has
            had one, the endpoint does give them, and a refusal is about that example's request."""
            async with gate:
                try:
                    score = await nll.served_answer_nll(client, self.model, self.messages(example), example.answer)
                except nll.NoPromptLogprobs as exc:
                    if probing and isinstance(exc, nll.LogprobsRefused):
                        raise
                    self.nll_missing[writable(str(exc))[:200]] += 1
                    return False
            decisions[i].extra.update(nll=score.nll, nll_per_token=score.per_token)
            return True

        try:
            rest = list(todo)
            while rest:  # one at a time until the endpoint shows it gives prompt log-probabilities at all
                i, example = rest.pop(0)
                if await one(i, example, probing=True):
                    break
            await asyncio.gather(*(one(i, e, probing=False) for i, e in rest))
            self.stats["nll_scored"] = len(todo) - sum(self.nll_missing.values())
            if self.nll_missing:
                self.stats["nll_missing"] = sum(self.nll_missing.values())
                self.nll_asked = len(todo)
                if self.progress is not None:
                    lead = "no NLL: " if not self.stats["nll_scored"] else ""
                    print(f"note: llm: {lead}{self.missing_line()}", file=self.progress, flush=True)
        except nll.LogprobsRefused as exc:
            self.nll_unavailable = str(exc)
            self.nll_missing.clear()
            for d in decisions:
                d.extra.pop("nll", None)
                d.extra.pop("nll_per_token", None)
            if self.progress is not None:
                print(f"note: llm: no NLL: {exc}", file=self.progress, flush=True)
        except FATAL_ERRORS as exc:
            raise ModelUnavailable(exc, self.stats["answers_from_model"] + self.stats["answers_from_cache"],
                                   self.cache_path) from None
        finally:
            await client.close()

    def missing_line(self) -> str:
        """"n of N examples without NLL: reason (count); ..." (the three commonest reasons, and how many others)."""
        missing = sum(self.nll_missing.values())
        common = self.nll_missing.most_common(3)
        reasons = "; ".join(f"{reason} ({count})" for reason, count in common)
        others = len(self.nll_missing) - len(common)
        more = f"; and {others} other reason{'s' if others != 1 else ''}" if others > 0 else ""
        return f"{missing} of {self.nll_asked} examples without NLL: {reasons}{more}"

    async def _ask_all(self, todo: list[tuple[int, Example, str]], decisions: list[Decision | None],
                       answered_before: int) -> None:
        # the game's chat client brings play time's structured output and its fallback; the bound is kept here, so
        # that each call's timeout starts when it is sent, not when it is queued.
        options = {"api_key": self._api_key, "model": self.model, "base_url": self._base_url,
                   "max_concurrent_calls": self.max_concurrent, "temperature": self.temperature}
        clients: dict[int, Any] = {}  # one chat client per game's scores, made when its first example is asked
        for _, example, _ in todo:
            scores = scores_of(example)
            if id(scores) not in clients:
                clients[id(scores)] = scores.chat_client(**options)
        gate = asyncio.Semaphore(self.max_concurrent)
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache = self.cache_path.open("a+b")
        except OSError as exc:
            for client in clients.values():
                await client.close()
            raise _cache_os_error(self.cache_path, "append to", exc) from None
        done, last_report = 0, time.monotonic()
        with cache:
            # A run cut mid-line left a partial last line: end it, so the next record starts a line of its own
            # (the partial one is skipped with a warning) instead of being glued onto it and lost.
            if cache.seek(0, 2) > 0:
                cache.seek(-1, 2)
                if cache.read(1) != b"\n":
                    cache.write(b"\n")

            async def one(i: int, example: Example, key: str) -> None:
                nonlocal done, last_report
                async with gate:
                    decisions[i] = await self._ask(clients[id(scores_of(example))], example, key, cache)
                done += 1
                if self.progress is not None and (time.monotonic() - last_report >= PROGRESS_EVERY
                                                  or done == len(todo)):
                    last_report = time.monotonic()
                    print(f"llm: {done}/{len(todo)} asked", file=self.progress, flush=True)

            tasks = [asyncio.create_task(one(i, example, key)) for i, example, key in todo]
            try:
                await asyncio.gather(*tasks)
            except FATAL_ERRORS as exc:
                answered = answered_before + self.stats["answers_from_model"]
                raise ModelUnavailable(exc, answered, self.cache_path) from None
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                for client in clients.values():
                    await client.close()

    async def _ask(self, llm: Any, example: Example, key: str, cache: BinaryIO) -> Decision:
        for attempt in range(self.max_retries + 1):
            try:
                wire_type, cap = scores_of(example).answer_schema(example)  # its structured output, as at play time
                # a decision without a cap is asked as an agent asks its policy then (lib.agents.agent: cap or 0)
                completion, structured = await llm.complete(self.messages(example), wire_type,
                                                            time.monotonic() + CALL_TIMEOUT, example.view(), cap or 0)
                break
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                # This prompt, not the endpoint (too long for the model, say): invalid, and not cached, so a later
                # run asks again.
                self.stats["refused_prompts"] += 1
                self.reasons[f"refused by the endpoint: {exc.status_code}"] += 1
                return Decision(None, f"the endpoint refused the prompt ({exc.status_code}: {exc.message[:200]})")
            except MalformedResponse as exc:
                return self._malformed(exc)
            except RETRIED_ERRORS as exc:
                if attempt == self.max_retries:
                    raise
                wait = _retry_after(exc) if isinstance(exc, openai.APIStatusError) else None
                await asyncio.sleep(min(MAX_BACKOFF_SECONDS, wait if wait is not None
                                        else BACKOFF_SECONDS * 2 ** attempt))
        try:
            answer, _, usage = read_completion(completion)
        except MalformedResponse as exc:
            return self._malformed(exc)
        cache.write(cache_line({"key": key, "model": self.model, "endpoint": self.base_url,
                                "temperature": self.temperature, "prompt": self.prompt, "structured": structured,
                                "answer": answer,
                                "usage": usage, "game": example.game, "line": example.line,
                                "at": datetime.now(UTC).isoformat(timespec="seconds")}))
        cache.flush()  # answered is answered: an interrupted run resumes from here
        self.stats["answers_from_model"] += 1
        if usage:
            self.stats["prompt_tokens"] += usage.get("prompt_tokens") or 0
            self.stats["completion_tokens"] += usage.get("completion_tokens") or 0
        return self._judge(example, answer)

    def _malformed(self, exc: MalformedResponse) -> Decision:
        """A 200 response that is no readable completion: the model's answer is invalid. Not cached (there is no
        answer text to keep), so a later run asks again, as for a refused prompt."""
        self.stats["malformed_answers"] += 1
        return self._invalid(exc)
