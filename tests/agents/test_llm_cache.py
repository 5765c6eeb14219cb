"""The model policy's study cache and spend tracker (lib.study.cache) in whole games on the local server, through
the real openai SDK against the fake OpenAI server: a re-run replays every answer for free, another game index draws
again, tokens and cost reach the transcripts and the decisions table, and at the cap no call is made."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lib.agents import decisions
from lib.agents.llm import LLMPolicy
from lib.evaluation.cli import prices
from lib.study.cache import CallCache, SpendTracker
from tests.helpers.agent_games import Played, play
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.scripted_answers import scripted

MODEL = "gpt-4.1-mini"  # a model with a list price


def answer(body: dict) -> str:
    """scripted's answers, but seat 1's invalid vote is corrected once the reason is fed back: every decision is
    the model's (a replay whose first run cut an attempt short would ask that attempt again)."""
    if len(body["messages"]) > 2:  # the reason fed back: only seat 1's vote is ever invalid
        return '{"gameId":1,"type":"compensation-decision","compensationDecisions":[0]}'
    return scripted(body)


def chat_calls(fake: FakeOpenAI) -> int:
    return len(fake.calls_to("POST", "/chat/completions"))


def model_calls(played: Played) -> list[dict]:
    return [r for records in played.transcripts.values() for r in records if r["kind"] == "model-call"]


def run(fake: FakeOpenAI, folder: Path, cache: CallCache, spend: SpendTracker, game_index: int = 0) -> Played:
    policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model=MODEL, temperature=0.7, cache=cache,
                       spend=spend, endpoint="fake")
    return play(folder, policy if game_index == 0 else policy.for_game_index(game_index))


def outcome(played: Played) -> list[tuple]:
    return sorted((r["round"], r["phase"], r["seat"], r["made_by"], r["fallback_reason"], r["action"])
                  for r in played.decisions)


def test_a_rerun_replays_every_answer_for_free_and_another_game_index_draws_again(tmp_path):
    path = tmp_path / "calls.jsonl"
    with FakeOpenAI() as fake:
        fake.chat_default = answer
        first_spend = SpendTracker()
        first = run(fake, tmp_path / "first", CallCache(path), first_spend)
        asked = chat_calls(fake)
        assert asked == 12  # five requests, the offer, five votes, seat 1's invalid vote asked again

        again_spend = SpendTracker()
        again = run(fake, tmp_path / "again", CallCache(path), again_spend)
        assert chat_calls(fake) == asked  # no call: every answer replayed
        other = run(fake, tmp_path / "other", CallCache(path), SpendTracker(), game_index=1)
        assert chat_calls(fake) == 2 * asked  # game 1 is another draw of the same questions

    assert outcome(again) == outcome(first) == outcome(other)
    retried = [r for r in first.decisions if r["made_by"] == decisions.MODEL_RETRIED]
    assert [(r["seat"], r["action"]) for r in retried] == [("1", '{"gameId":1,"type":"compensation-decision",'
                                                                 '"compensationDecisions":[0]}')]
    price = prices(MODEL)
    assert price is not None
    fresh = model_calls(first)
    assert len(fresh) == asked and not any(r["cached"] for r in fresh)
    for record in fresh:
        usage = record["usage"]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        listed = usage["prompt_tokens"] / 1e6 * price[0] + usage["completion_tokens"] / 1e6 * price[1]
        assert record["cost_usd"] == listed
    assert first_spend.calls == asked and first_spend.spent == sum(r["cost_usd"] for r in fresh) > 0

    replayed = model_calls(again)
    assert len(replayed) == asked and all(r["cached"] and r["cost_usd"] == 0.0 for r in replayed)
    assert sorted(r["usage"]["prompt_tokens"] for r in replayed) == sorted(r["usage"]["prompt_tokens"]
                                                                          for r in fresh)
    assert again_spend.calls == 0 and again_spend.spent == 0.0

    for played, cached in ((first, False), (again, True)):
        for row in played.decisions:
            if not int(row["attempts"]):
                assert row["prompt_tokens"] == row["cost_usd"] == row["cached_calls"] == "", row
                continue
            assert int(row["prompt_tokens"]) > 0 and int(row["completion_tokens"]) > 0, row
            assert int(row["cached_calls"]) == (int(row["attempts"]) if cached else 0), row
            assert (float(row["cost_usd"]) == 0.0) == cached, row
    table = sum(float(r["cost_usd"] or 0) for r in first.decisions)  # six decimals a row
    assert table == pytest.approx(first_spend.spent, abs=1e-6 * len(first.decisions))


def test_at_the_spending_cap_the_policy_stops_calling_and_the_decision_falls_back_naming_the_cap(tmp_path):
    spend = SpendTracker(cap_usd=1e-9)  # the first answers pass it
    with FakeOpenAI() as fake:
        fake.chat_default = answer
        played = run(fake, tmp_path, CallCache(tmp_path / "calls.jsonl"), spend)
        asked = chat_calls(fake)

    assert spend.reached() and spend.calls == asked >= 1
    reason = spend.cap_reason()
    assert reason is not None and "spending cap of $0.00" in reason
    by_model = [r for r in played.decisions if r["made_by"] in (decisions.MODEL, decisions.MODEL_RETRIED)]
    capped = [r for r in played.decisions if r["fallback_reason"] == decisions.SPEND_CAP]
    assert len(by_model) == asked  # only the owners' first, simultaneous requests were asked
    assert {(r["phase"], r["seat"]) for r in capped} >= {("4", "2")} | {("6", str(s)) for s in (1, 3, 4, 5, 6)}
    assert all(r["made_by"] == decisions.FALLBACK and r["sent"] == "yes" and r["attempts"] == "0" for r in capped)
    notes = [r for records in played.transcripts.values() for r in records if r["kind"] == "spend-cap"]
    assert len(notes) == len(capped) and all(n["reason"] == reason for n in notes)


def test_the_policy_says_whether_the_tracker_can_count_its_model():
    async def priced(model: str, **study: object) -> bool | None:
        policy = LLMPolicy(api_key="sk-local", model=model, base_url="http://127.0.0.1:9/v1", **study)
        try:
            return policy.priced
        finally:
            await policy.close()

    assert asyncio.run(priced(MODEL, spend=SpendTracker())) is True
    assert asyncio.run(priced("my-local-model", spend=SpendTracker())) is False  # the cap cannot stop it
    assert asyncio.run(priced(MODEL)) is None  # no study
