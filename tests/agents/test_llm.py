"""The model policy through the real openai SDK against the fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
import time

import pytest

from lib.agents import decisions
from lib.agents.llm import LLMPolicy
from lib.agents.transcript import Transcript, read_transcript
from lib.games.voting.actions import (
    CHAT,
    DECISION,
    OFFER,
    REQUEST,
    SPECS,
    ActionError,
    build_action_required,
    validate_action,
)
from lib.games.voting.prompts import build_messages
from lib.games.voting.view import PlayerView
from lib.ibex.params import parameters_from_dict
from tests.helpers.fakeopenai import MALFORMED_ANSWERS, FakeOpenAI
from tests.helpers.frames import phase_start, round_start

T0 = 1795624173543
CAP = parameters_from_dict().amount_cap()
REQUEST_FIELD, OFFER_FIELD = SPECS[REQUEST].field, SPECS[OFFER].field
GOOD_REQUEST = '{"gameId":7,"type":"compensation-request","compensationRequests":[null,335000]}'


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


def owner_view(phase: int = 3) -> PlayerView:
    view = PlayerView(game_id=7, round_count=2, practice_round=False)
    for frame in round_start(1, 3, [468000, 164000], T0):
        view.apply(frame)
    for p in range(2, phase + 1):
        for frame in phase_start(1, p, T0 + p * 1000):
            view.apply(frame)
    return view


def decide(fake: FakeOpenAI, tmp_path, *, wire_type: str = REQUEST, seconds: float = 10.0, policy=None,
           view: PlayerView | None = None, max_retries: int = 2, times: int = 1):
    """Run `times` decisions one after another in one event loop, then close the client.

    Returns (the last action, transcript records, the policy)."""
    view = view or owner_view(3 if wire_type == REQUEST else 6)
    policy = policy or LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="ft:gpt-4.1-mini:test",
                                 max_retries=max_retries)
    required = build_action_required(view, wire_type, cap=CAP)
    path = tmp_path / "t.jsonl"
    transcript = Transcript(path)

    async def go():
        try:
            for _ in range(times):
                action = await policy.decide(view, wire_type, cap=CAP, action_required=required,
                                             deadline=time.monotonic() + seconds, transcript=transcript)
            return action
        finally:
            await policy.close()

    action = asyncio.run(go())
    transcript.close()
    return action, read_transcript(path), policy


def chat_bodies(fake: FakeOpenAI) -> list[dict]:
    return [c["json"] for c in fake.calls_to("POST", "/chat/completions")]


def test_a_good_answer_uses_structured_output_and_the_training_prompt(fake, tmp_path):
    fake.chat_replies.append(GOOD_REQUEST)
    view = owner_view()
    action, records, _ = decide(fake, tmp_path, view=view)

    assert action == {"gameId": 7, "type": REQUEST, "compensationRequests": [None, 335000]}
    [body] = chat_bodies(fake)
    assert body["model"] == "ft:gpt-4.1-mini:test"
    assert body["messages"] == build_messages(view, build_action_required(view, REQUEST, cap=CAP))
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["gameId", "type", "compensationRequests"]
    [call] = [r for r in records if r["kind"] == "model-call"]
    assert call["attempt"] == 1 and call["answer"] == GOOD_REQUEST and call["action"] == action
    assert call["structured"] is True and call["messages"] == body["messages"] and call["latency_s"] >= 0


@pytest.mark.parametrize("bad", [
    "I would like 300000 please",                                                          # not JSON
    '{"gameId":7,"type":"compensation-request","compensationRequests":[null,"300000"]}',   # string amount
    '{"gameId":7,"type":"compensation-request","compensationRequests":[null,99999999]}',   # out of range
    '{"gameId":7,"type":"compensation-offer","compensationOffers":[null,300000]}',         # the developer's action
])
def test_an_invalid_answer_is_retried_with_the_reason_fed_back(fake, tmp_path, bad):
    fake.chat_replies.extend([bad, GOOD_REQUEST])
    action, records, _ = decide(fake, tmp_path)

    assert action["compensationRequests"] == [None, 335000]
    first, second = chat_bodies(fake)
    assert second["messages"][:-2] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": bad}
    feedback = second["messages"][-1]
    assert feedback["role"] == "user" and feedback["content"].startswith("That answer cannot be sent: ")
    calls = [r for r in records if r["kind"] == "model-call"]
    assert [c["attempt"] for c in calls] == [1, 2]
    assert calls[0]["error"].startswith("invalid answer: ") and "action" not in calls[0]


def test_retries_are_bounded_and_then_there_is_no_answer(fake, tmp_path):
    fake.chat_default = lambda body: "[1]"
    action, records, _ = decide(fake, tmp_path, wire_type=DECISION, max_retries=2)

    assert action is None
    assert len(chat_bodies(fake)) == 3
    assert all("error" in r for r in records if r["kind"] == "model-call")


def test_an_endpoint_without_json_schema_gets_plain_json_requests_from_then_on(fake, tmp_path):
    fake.json_schema_supported = False
    fake.chat_default = lambda body: f"```json\n{GOOD_REQUEST}\n```"
    action, _, policy = decide(fake, tmp_path, times=2)

    assert action["compensationRequests"] == [None, 335000]
    assert policy.structured is False
    # Refused once, then plain JSON for this and every later decision.
    assert [("response_format" in b) for b in chat_bodies(fake)] == [True, False, False]


def test_a_rate_limit_is_retried_after_the_servers_retry_after(fake, tmp_path):
    fake.chat_replies.extend([{"status": 429, "error": {"message": "Rate limit reached"}}, GOOD_REQUEST])
    action, records, _ = decide(fake, tmp_path)

    assert action["compensationRequests"] == [None, 335000]
    assert len(chat_bodies(fake)) == 2
    first, second = [r for r in records if r["kind"] == "model-call"]
    assert first["error"].startswith("RateLimitError") and second["action"] == action


def test_an_answer_slower_than_the_deadline_is_abandoned(fake, tmp_path):
    fake.chat_replies.append({"content": GOOD_REQUEST, "delay": 2.0})
    action, records, _ = decide(fake, tmp_path, seconds=0.6)

    assert action is None
    calls = [r for r in records if r["kind"] == "model-call"]
    assert calls and calls[0]["error"].startswith(("APITimeoutError", "TimeoutError"))


def test_the_api_key_never_reaches_the_transcript(fake, tmp_path):
    fake.chat_replies.append(GOOD_REQUEST)
    decide(fake, tmp_path)
    wrong_key = "sk-wrong-key-for-this-test-1234"
    policy = LLMPolicy(api_key=wrong_key, base_url=fake.base_url, model="m")
    action, records, _ = decide(fake, tmp_path, policy=policy)

    assert action is None and "AuthenticationError" in records[-1]["error"]
    text = (tmp_path / "t.jsonl").read_text(encoding="utf-8")
    assert fake.api_key not in text and wrong_key not in text
    assert fake.calls[-1]["headers"]["authorization"] == f"Bearer {wrong_key}"


def test_concurrent_calls_are_bounded_by_one_semaphore_for_all_agents(fake, tmp_path):
    lock = threading.Lock()
    active = {"now": 0, "max": 0}

    def slow_reply(body):
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.15)
        with lock:
            active["now"] -= 1
        return GOOD_REQUEST

    fake.chat_default = slow_reply
    policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="m", max_concurrent_calls=2)
    view = owner_view()
    required = build_action_required(view, REQUEST, cap=CAP)

    async def many():
        deadline = time.monotonic() + 20
        try:
            return await asyncio.gather(*[
                policy.decide(view, REQUEST, cap=CAP, action_required=required, deadline=deadline, transcript=None)
                for _ in range(6)])
        finally:
            await policy.close()

    actions = asyncio.run(many())
    assert all(a["compensationRequests"] == [None, 335000] for a in actions)
    assert active["max"] == 2


# ---------------------------------------------------------------------- the structured-output schema

# OpenAI's strict-mode subset (the strictest endpoint we know): anything else gets a 400 there.
STRICT_KEYWORDS = {"name", "strict", "schema", "type", "properties", "required", "additionalProperties", "items",
                   "anyOf", "enum", "minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength", "pattern"}


def keywords(node) -> set[str]:
    if isinstance(node, list):
        return set().union(*map(keywords, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = set(node) - {"properties"}
    for key, value in node.items():
        if key == "properties":
            found |= {"properties"} | set().union(*(keywords(v) for v in value.values()))
        elif key != "enum":
            found |= keywords(value)
    return found


def conforms(value, schema) -> bool:
    """JSON Schema validation for the keywords above (no jsonschema dependency for a dozen keywords)."""
    if "anyOf" in schema:
        return any(conforms(value, option) for option in schema["anyOf"])
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    checks = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool), "null": lambda v: v is None,
              "string": lambda v: isinstance(v, str), "array": lambda v: isinstance(v, list),
              "object": lambda v: isinstance(v, dict)}
    if not any(checks[k](value) for k in kinds):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, int) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            return False
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return False
        return all(conforms(item, schema["items"]) for item in value)
    if isinstance(value, dict):
        if set(value) - set(schema["properties"]) or set(schema["required"]) - set(value):
            return False
        return all(conforms(value[k], schema["properties"][k]) for k in value)
    return True


def candidates(wire_type: str, field: str | None) -> list[dict]:
    """Answers a model might give: right and wrong game, type, lengths, ranges, types and extra fields."""
    if wire_type == CHAT:
        values = [{"to": to, "text": text} for to in ([1], [1, 2, 4, 5, 6], [3], [1, 1], [], [7], [0], [1, True])
                  for text in ("Hello.", "", "   ", "x" * 500, "x" * 501, 5)]
    elif wire_type == DECISION:
        values = [{field: v} for v in ([0], [1], [2], [True], [0, 1], [], [None], ["1"])]
    else:
        values = [{field: v} for v in ([None, 0], [None, 1000], [None, CAP], [None, CAP + 1], [None, -1], [0, 5],
                                       [5, 5], [None], [None, 1, 2], [None, None], [None, 1.5], [None, "5"],
                                       [True, 5], [None, True], [5, None])]
    out = []
    for game_id in (7, 8, "7"):
        for kind in (wire_type, REQUEST if wire_type != REQUEST else OFFER):
            for value in values:
                out.append({"gameId": game_id, "type": kind, **value})
    out.append({"gameId": 7, "type": wire_type, **values[0], "note": "extra"})
    return out


@pytest.mark.parametrize("wire_type, phase", [(REQUEST, 3), (DECISION, 6), (CHAT, 2)])
def test_an_answer_that_matches_the_schema_sent_can_be_sent(fake, tmp_path, wire_type, phase):
    """The schema the model is held to fixes gameId, type, array lengths and ranges: whatever it allows, the
    checks before sending accept, except the two rules OpenAI's strict mode cannot state (which element of
    the amount array is which; distinct recipients), which are fed back and retried like any invalid answer."""
    view = owner_view(phase)
    fake.chat_replies.append(GOOD_REQUEST if wire_type == REQUEST else
                             '{"gameId":7,"type":"compensation-decision","compensationDecisions":[1]}'
                             if wire_type == DECISION else '{"gameId":7,"type":"chat-with-players","to":[1],'
                                                           '"text":"Hello."}')
    action, _, _ = decide(fake, tmp_path, wire_type=wire_type, view=view)
    assert action is not None
    [body] = chat_bodies(fake)
    schema = body["response_format"]["json_schema"]
    assert keywords(schema) <= STRICT_KEYWORDS, keywords(schema) - STRICT_KEYWORDS
    assert schema["schema"]["properties"]["gameId"] == {"type": "integer", "enum": [7]}

    field = SPECS[wire_type].field
    accepted = [c for c in candidates(wire_type, field) if conforms(c, schema["schema"])]
    assert accepted, "the schema accepts good answers"
    for answer in accepted:
        unstated = (field in (REQUEST_FIELD, OFFER_FIELD) and (answer[field][0] not in (None, 0)
                                                               or answer[field][1] is None)
                    or wire_type == CHAT and len(set(answer["to"])) != len(answer["to"]))
        if unstated:
            with pytest.raises(ActionError):
                validate_action(answer, view, wire_type, cap=CAP)
        else:
            assert validate_action(answer, view, wire_type, cap=CAP)["gameId"] == 7, answer
    rejected = [c for c in candidates(wire_type, field) if not conforms(c, schema["schema"])]
    assert any(c["gameId"] == 8 for c in rejected) and any(c["type"] != wire_type for c in rejected)


# ---------------------------------------------------------------------- preflight


def preflight(fake: FakeOpenAI, **kwargs) -> str | None:
    policy = LLMPolicy(api_key=kwargs.pop("api_key", fake.api_key), base_url=kwargs.pop("base_url", fake.base_url),
                       model=kwargs.pop("model", "ft:gpt-4.1-mini:test"))

    async def go():
        try:
            return await policy.preflight()
        finally:
            await policy.close()

    return asyncio.run(go())


def test_the_preflight_is_one_one_token_call_and_a_rate_limit_only_warns(fake):
    fake.chat_default = lambda body: "OK"
    assert preflight(fake) is None
    [call] = chat_bodies(fake)
    assert call["max_completion_tokens"] == 1 and call["model"] == "ft:gpt-4.1-mini:test"

    fake.fail_next("POST", "/chat/completions", 429)
    warning = preflight(fake)
    assert warning is not None and warning.startswith("warning: ") and "429" in warning


@pytest.mark.parametrize("status, code, expected", [
    (401, "invalid_api_key", "refused the API key (401"),
    (404, "model_not_found", "model ft:gpt-4.1-mini:test does not exist"),
    (429, "insufficient_quota", "no quota left"),
    (500, None, "failed the test call (500"),
])
def test_the_preflight_names_what_is_wrong_in_one_line_without_the_key(fake, status, code, expected):
    from lib.agents.llm import PreflightError

    fake.fail_next("POST", "/chat/completions", status, code=code,
                   message=f"Incorrect API key provided: {fake.api_key}" if status == 401 else None)
    with pytest.raises(PreflightError) as caught:
        preflight(fake)
    text = str(caught.value)
    assert expected in text and "\n" not in text and fake.api_key not in text


# ---------------------------------------------------------------------------------------------------------------
# Malformed answers (issue #20): each is an invalid answer, fed back, retried and recorded, never a crash


@pytest.mark.parametrize("name", sorted(MALFORMED_ANSWERS))
def test_a_malformed_answer_is_an_invalid_answer_retried_fed_back_and_recorded(fake, tmp_path, name):
    fake.chat_replies.extend([MALFORMED_ANSWERS[name], GOOD_REQUEST])
    trace = decisions.Trace(deadline=time.monotonic() + 10)
    ctx = contextvars.copy_context()  # decide() runs its own loop, whose task sees this context's trace
    ctx.run(decisions.begin, trace)
    action, records, _ = ctx.run(decide, fake, tmp_path)

    assert action is not None and action["compensationRequests"] == [None, 335000]
    assert trace.attempts == 2 and trace.invalid == 1 and trace.errors == 0
    first, second = chat_bodies(fake)
    assert second["messages"][:-2] == first["messages"]
    assert second["messages"][-1]["content"].startswith("That answer cannot be sent: ")
    if name == "lone surrogate":  # fed back escaped: the SDK cannot encode a lone surrogate to send it
        assert second["messages"][-2] == {"role": "assistant", "content": "\\ud800"}
    calls = [r for r in records if r["kind"] == "model-call"]
    assert [c["attempt"] for c in calls] == [1, 2]
    assert calls[0]["error"].startswith("invalid answer: ") and "action" not in calls[0]
    assert calls[1]["action"] == action


def test_a_malformed_answer_every_time_ends_as_invalid_answers_not_a_model_error(fake, tmp_path):
    replies = list(MALFORMED_ANSWERS.values())
    fake.chat_default = lambda body: replies[(len(chat_bodies(fake)) - 1) % len(replies)]
    trace = decisions.Trace(deadline=time.monotonic() + 30)
    ctx = contextvars.copy_context()
    ctx.run(decisions.begin, trace)
    action, records, _ = ctx.run(decide, fake, tmp_path, max_retries=len(replies) - 1, seconds=30.0)

    assert action is None
    assert trace.attempts == len(replies) and trace.invalid == len(replies) and trace.errors == 0
    assert trace.why_no_answer() == decisions.INVALID
    calls = [r for r in records if r["kind"] == "model-call"]
    assert len(calls) == len(replies) and all(c["error"].startswith("invalid answer: ") for c in calls)
    by_reply = dict(zip(sorted(MALFORMED_ANSWERS, key=list(MALFORMED_ANSWERS).index), calls, strict=True))
    assert by_reply["lone surrogate"]["answer"] == "\\ud800"  # escaped: the transcript is UTF-8
    assert "502 Bad Gateway" in by_reply["not json"]["response"]  # the unreadable body is kept, as far as it goes
    assert "too deeply" in by_reply["deep nesting"]["error"]
    assert "5000 digits" in by_reply["huge integer"]["error"]


def test_the_preflight_warns_about_an_unreadable_answer_instead_of_crashing(fake):
    fake.chat_replies.append(MALFORMED_ANSWERS["not json"])
    warning = preflight(fake)
    assert warning is not None and warning.startswith("warning: ") and "unreadable" in warning


def test_the_policy_asks_in_its_games_words_and_for_game_shares_the_call_limit():
    from lib.games import game_for

    voting = LLMPolicy(api_key="k", model="m", base_url="http://127.0.0.1:9/v1", max_concurrent_calls=3)
    market = voting.for_game(game_for("futarchy"))
    assert voting.answers is game_for("voting").answers and market.answers is game_for("futarchy").answers
    assert market.semaphore is voting.semaphore and (market.model, market.base_url) == (voting.model, voting.base_url)
    # one client (one connection pool) for every copy; a copy's close leaves it to the policy it was copied from
    again = market.for_game_index(4)
    assert market.client is voting.client and again.client is voting.client and again.game_index == 4
    assert again.answers is market.answers and voting.game_index == market.game_index == 0
    asyncio.run(market.close())
    asyncio.run(again.close())
    assert not voting.client.is_closed()
    asyncio.run(voting.close())
    assert voting.client.is_closed()


def test_a_prompt_variant_is_what_the_endpoint_is_asked_and_the_records_name_it(fake, tmp_path):
    """zero-shot: the default messages with the game's rules after the system message, sent to the endpoint as such
    (the real SDK against the fake server); the model-call record names the variant."""
    from lib.games.voting.variants import RULES

    fake.chat_replies.append(GOOD_REQUEST)
    view = owner_view()
    policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="gpt-4o", prompt="zero-shot")
    action, records, _ = decide(fake, tmp_path, view=view, policy=policy)

    assert action == {"gameId": 7, "type": REQUEST, "compensationRequests": [None, 335000]}
    default = build_messages(view, build_action_required(view, REQUEST, cap=CAP))
    [body] = chat_bodies(fake)
    assert body["messages"] == [{"role": "system", "content": default[0]["content"] + RULES}, default[1]]
    [call] = [r for r in records if r["kind"] == "model-call"]
    assert call["prompt"] == "zero-shot" and call["messages"] == body["messages"]


def test_copies_keep_the_prompt_variant_and_with_prompt_shares_the_call_limit():
    from lib.games import game_for

    policy = LLMPolicy(api_key="k", model="m", base_url="http://127.0.0.1:9/v1", prompt="no-history")
    market = policy.for_game(game_for("harberger"))
    again = policy.for_game_index(4)
    other = policy.with_prompt("zero-shot")
    assert (market.prompt, again.prompt, other.prompt) == ("no-history", "no-history", "zero-shot")
    assert other.semaphore is policy.semaphore and other.game is policy.game
    for p in (policy, market, again, other):
        asyncio.run(p.close())
