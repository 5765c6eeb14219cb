"""The market games' answers part (lib.games.market.answers) in lib.agents.llm.LLMPolicy: model answers checked
strictly, fed back and retried, through the real openai SDK against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import json
import time

from lib.agents.llm import LLMPolicy
from lib.agents.transcript import Transcript, read_transcript
from lib.games import game_for
from lib.games.market.actions import (
    TRADE,
    build_market_action_required,
)
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.market_views import market_view

# ----- the model policy, through the real openai SDK against the fake OpenAI server


def test_model_answers_are_checked_fed_back_and_retried(tmp_path):
    view = market_view("futarchy")
    view.current.wallets[1] = {"balance": 20000, "shares": 5}
    required = build_market_action_required(view, TRADE)
    with FakeOpenAI() as fake:
        fake.chat_replies = [
            '{"gameId":5,"type":"post-order","order":{"price":"9000","quantity":1,"condition":0,"type":"bid",'
            '"now":false}}',  # a string price: refused and fed back
            '{"gameId":5,"type":"post-order","order":{"price":29000,"quantity":1,"condition":1,"type":"bid",'
            '"now":false}}',  # beyond the balance
            '{"gameId":5,"type":"post-order","order":{"price":8900,"quantity":1,"condition":1,"type":"bid",'
            '"now":false}}',
        ]
        policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="m", max_retries=2,
                           game=game_for("harberger"))
        transcript = Transcript(tmp_path / "t.jsonl")

        async def go():
            try:
                return await policy.decide(view, TRADE, cap=0, action_required=required,
                                           deadline=time.monotonic() + 10, transcript=transcript)
            finally:
                await policy.close()
        action = asyncio.run(go())
        transcript.close()
        calls = fake.calls_to("POST", "/v1/chat/completions")
    assert action["order"] == {"price": 8900, "quantity": 1, "condition": 1, "type": "bid", "now": False}
    assert len(calls) == 3
    first = calls[0]["json"]
    assert first["response_format"]["json_schema"]["name"] == "TradeInMarket"
    assert first["messages"][1]["content"].endswith(json.dumps(required, ensure_ascii=False))
    last = calls[2]["json"]["messages"]
    assert "not the string" in last[-3]["content"] and "exceeds your uncommitted balance" in last[-1]["content"]
    records = [r for r in read_transcript(tmp_path / "t.jsonl") if r.get("kind") == "model-call"]
    assert [("error" in r) for r in records] == [True, True, False]


def test_malformed_market_answers_are_invalid_answers_fed_back_and_retried(tmp_path):
    """Issue #20: a 60,000-deep answer and a 5,000-digit price went through parse_market_answer's JSON parse as a
    RecursionError and a ValueError, past the retry loop; each is an invalid answer like any other."""
    from tests.helpers.fakeopenai import MALFORMED_ANSWERS

    view = market_view("futarchy")
    view.current.wallets[1] = {"balance": 20000, "shares": 5}
    required = build_market_action_required(view, TRADE)
    with FakeOpenAI() as fake:
        fake.chat_replies = [
            MALFORMED_ANSWERS["deep nesting"],
            '{"gameId":5,"type":"post-order","order":{"price":' + "9" * 5000 + ',"quantity":1,"condition":1,'
            '"type":"bid","now":false}}',
            '{"gameId":5,"type":"post-order","order":{"price":8900,"quantity":1,"condition":1,"type":"bid",'
            '"now":false}}',
        ]
        policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="m", max_retries=2,
                           game=game_for("harberger"))
        transcript = Transcript(tmp_path / "t.jsonl")

        async def go():
            try:
                return await policy.decide(view, TRADE, cap=0, action_required=required,
                                           deadline=time.monotonic() + 10, transcript=transcript)
            finally:
                await policy.close()
        action = asyncio.run(go())
        transcript.close()
        calls = fake.calls_to("POST", "/v1/chat/completions")
    assert action["order"]["price"] == 8900 and len(calls) == 3
    last = calls[2]["json"]["messages"]
    assert "too deeply" in last[-3]["content"] and "5000 digits" in last[-1]["content"]
    records = [r for r in read_transcript(tmp_path / "t.jsonl") if r.get("kind") == "model-call"]
    assert [r["error"].startswith("invalid answer: ") for r in records[:2]] == [True, True] and "action" in records[2]
