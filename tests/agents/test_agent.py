"""Complete games of six agents on the local IBEX server, asserting on what the server received and recorded.

Timers are sub-second but for the decision phases 3, 4 and 6 (tests/helpers/agent_games.py FAST), which end as soon
as everyone has acted. Model agents talk to the fake OpenAI
server through the real openai SDK; a scripted "brain" answers per seat and action, so each seat can exercise one
failure: malformed JSON, an out-of-range or wrong-role answer, an answer slower than the deadline, a 429.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any

import pytest

from lib.agents.agent import Agent, AgentError, AgentSettings
from lib.agents.llm import LLMPolicy
from lib.agents.transcript import Transcript, read_transcript
from lib.games.voting.policy import BaselinePolicy
from lib.games.voting.rules import SEATS
from lib.localserver.server import LocalServer
from tests.helpers.agent_games import ACTIONS, LATE, SETTINGS, assert_clean_game, play, sent_by

# ---------------------------------------------------------------------- baseline agents


def test_baseline_agents_play_a_game_without_practice_round(tmp_path):
    played = play(tmp_path, BaselinePolicy(), {"round_count": 2})

    assert_clean_game(played, rounds=[1, 2])
    # The server holds exactly what the agents sent, in their own words.
    for seat in range(1, SEATS + 1):
        actions = [m for m in sent_by(played, seat) if m["type"] in ACTIONS]
        assert actions == [e["content"] for e in played.received() if e["number"] == seat]
    assert [e for e in played.recorded["log"] if e["type"] == "phase-timeout" and e["phase"] in (3, 4, 6)] == []


def test_baseline_agents_play_a_practice_round_and_resend_ready_when_the_server_drops_it(tmp_path):
    # The server drops every frame for 0.3 s after a round's phase-0 transition, as the real one does while it
    # saves the round; the agents' first ready (sent without a pause here) falls into that window.
    played = play(tmp_path, BaselinePolicy(), {"practice_round": True, "round_count": 1},
                  settings=AgentSettings(safety_margin=0.4, ready_delay=0.0, ready_resend=0.3),
                  server_kwargs={"ready_race_window": 0.3})

    assert_clean_game(played, rounds=[0, 1])
    for seat in range(1, SEATS + 1):
        readies = [r for r in played.transcripts[seat] if r["kind"] == "send"
                   and r["msg"]["type"] == "player-is-ready"]
        assert len(readies) >= 3, f"seat {seat}: join, round 0 and at least two for round 1"
    summaries = [a.view.rounds[1].profit for a in played.agents]
    assert all(isinstance(p, int) for p in summaries)


def test_chat_agents_talk_in_phases_two_and_five(tmp_path):
    played = play(tmp_path, BaselinePolicy(seed=1), settings=AgentSettings(
        chat=True, safety_margin=0.1, ready_delay=0.05, ready_resend=0.3))

    assert_clean_game(played, rounds=[1])
    chats = played.received("chat-with-players")
    assert sorted((e["phase"], e["number"]) for e in chats) == sorted(
        (phase, seat) for phase in (2, 5) for seat in range(1, SEATS + 1))
    for entry in chats:
        assert entry["content"]["to"] == [n for n in range(1, SEATS + 1) if n != entry["number"]]
        assert isinstance(entry["content"]["text"], str) and "'" not in entry["content"]["text"]


def test_server_sent_action_required_is_obeyed_top_level_and_nested(tmp_path):
    async def inject(server: LocalServer, game_id: int) -> None:
        game = server.game(game_id)
        await wait_for_phase(game, 1)
        # Sent in phase 1 for the chat of phase 2: the agent keeps it until phase 2 begins.
        game.sockets[5].send({"type": "event", "eventType": "action-required", "data": {
            "actionType": "SendChatMessage", "instructions": "Greet the others."}})
        await wait_for_phase(game, 2)
        game.sockets[3].send({"type": "event", "eventType": "action-required", "data": {
            "actionType": "SendChatMessage", "instructions": "Tell the others what you think.",
            "deadline": "before the timer ends", "format": "{'type':'chat-with-players','to':[...],'text':'...'}"}})
        # An action of another role is never sent, whoever asks for it.
        game.sockets[4].send({"type": "event", "eventType": "action-required", "data": {
            "actionType": "SubmitCompensationOffer", "instructions": "Make an offer."}})
        await wait_for_phase(game, 5)
        game.sockets[2].send({"type": "event", "eventType": "instruction", "data": {
            "eventType": "action-required", "data": {
                "actionType": "SendChatMessage", "instructions": "Explain your offer.",
                "format": "{'gameId':1,'type':'chat-with-players','to':[1,3,4,5,6],'text':'...'}"}}})

    played = play(tmp_path, BaselinePolicy(), {"timer_phase_1": 0.5, "timer_phase_2": 1.0, "timer_phase_5": 1.0},
                  during=inject)

    assert_clean_game(played, rounds=[1])
    chats = [(e["phase"], e["number"]) for e in played.received("chat-with-players")]
    assert sorted(chats) == [(2, 3), (2, 5), (5, 2)]
    assert [r["event"] for r in played.transcripts[5] if "server action-required" in r.get("event", "")] == [
        "server action-required deferred to the next phase"]
    assert played.received("compensation-offer") == [e for e in played.received() if e["number"] == 2
                                                     and e["content"]["type"] == "compensation-offer"]
    ignored = [r for r in played.transcripts[4] if r.get("event") == "server action-required ignored"]
    assert ignored and "not an action of role 3" in ignored[0]["reason"]
    decided = [r for r in played.transcripts[2] if r["kind"] == "decide" and r["source"] == "server"]
    assert [(d["wire_type"], d["phase"]) for d in decided] == [("chat-with-players", 5)]


async def wait_for_phase(game: Any, phase: int) -> None:
    while game.phase != phase:
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------- model agents (fake OpenAI)


GOOD = {
    "SubmitCompensationRequest": lambda seat: {"type": "compensation-request",
                                               "compensationRequests": [None, 300000 + seat * 1000]},
    "SubmitCompensationOffer": lambda seat: {"type": "compensation-offer", "compensationOffers": [None, 150000]},
    "SubmitCompensationDecision": lambda seat: {"type": "compensation-decision", "compensationDecisions": [1]},
    "SendChatMessage": lambda seat: {"type": "chat-with-players", "to": [2], "text": f"Player {seat} here."},
}


class Brain:
    """The fake model: reads seat and action from the prompt, plays scripted replies first, then good answers."""

    def __init__(self, script: dict[tuple[int, str], list[Any]] | None = None) -> None:
        self.script = {key: list(replies) for key, replies in (script or {}).items()}
        self.lock = threading.Lock()
        self.asked: list[tuple[int, str]] = []

    def __call__(self, body: dict[str, Any]) -> str | dict[str, Any]:
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        seat = int(re.search(r"You are [^.(]*\(player (\d)\), the", system).group(1))
        action = json.loads(user.split("Action required:\n", 1)[1])["data"]["actionType"]
        with self.lock:
            self.asked.append((seat, action))
            queue = self.script.get((seat, action))
            reply = queue.pop(0) if queue else None
        if reply is None:
            return json.dumps({"gameId": 1, **GOOD[action](seat)})
        return reply


@pytest.mark.parametrize("structured", [True, False], ids=["json-schema", "plain-json"])
def test_model_agents_recover_from_bad_answers_and_fall_back_when_too_slow(tmp_path, structured):
    from tests.helpers.fakeopenai import FakeOpenAI

    brain = Brain({
        (1, "SubmitCompensationRequest"): ['{"gameId":1,"type":"compensation-request","compensationRequests":'],
        (3, "SubmitCompensationRequest"): ['{"gameId":1,"type":"compensation-request",'
                                           '"compensationRequests":[null,"lots"]}'],
        (4, "SubmitCompensationRequest"): ['{"gameId":1,"type":"compensation-offer","compensationOffers":[null,1]}'],
        (5, "SubmitCompensationRequest"): [{"content": json.dumps(GOOD["SubmitCompensationRequest"](5)),
                                            "delay": LATE}],
        (6, "SubmitCompensationRequest"): [{"status": 429, "error": {"message": "Rate limit reached"}}],
        (2, "SubmitCompensationOffer"): ['{"gameId":1,"type":"compensation-offer","compensationOffers":'
                                         '[null,99999999]}'],
        (3, "SubmitCompensationDecision"): ["I vote yes"],
    })
    with FakeOpenAI() as fake:
        fake.chat_default = brain
        fake.json_schema_supported = structured
        policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="ft:test-model", max_retries=2)
        played = play(tmp_path, policy)

    assert_clean_game(played, rounds=[1])
    requests = {e["number"]: e["content"]["compensationRequests"] for e in played.received("compensation-request")}
    fallback = [r for r in played.transcripts[5] if r["kind"] == "fallback"]
    assert len(fallback) == 1 and fallback[0]["reason"] == "deadline minus safety margin reached"
    assert requests == {1: [None, 301000], 3: [None, 303000], 4: [None, 304000],
                        5: fallback[0]["action"]["compensationRequests"], 6: [None, 306000]}
    assert [e["content"]["compensationOffers"] for e in played.received("compensation-offer")] == [[None, 150000]]
    assert [e["content"]["compensationDecisions"] for e in played.received("compensation-decision")] == [[1]] * 5
    for seat, phase in ((1, 3), (3, 3), (4, 3), (2, 4), (3, 6)):
        errors = [r["error"] for r in played.transcripts[seat]
                  if r["kind"] == "model-call" and r["phase"] == phase and "error" in r]
        assert len(errors) == 1 and errors[0].startswith("invalid answer: "), (seat, errors)
    assert any(r.get("error", "").startswith("RateLimitError") for r in played.transcripts[6])
    assert sum(a.fallbacks for a in played.agents) == 1
    with_schema = [("response_format" in c["json"]) for c in fake.calls_to("POST", "/chat/completions")]
    if structured:
        assert all(with_schema)
    else:
        # Only the owners' first, simultaneous calls ask for json_schema; once refused, never again.
        assert policy.structured is False and 1 <= sum(with_schema) <= 5
        assert not any(with_schema[-6:])  # the offer and the votes, long after the refusal
    for seat, records in played.transcripts.items():
        text = json.dumps(records)
        assert fake.api_key not in text and f"recovery-code-{seat:02d}" not in text


def test_every_decision_says_who_made_it_in_the_decisions_table(tmp_path):
    """One seat per way a decision can come about, with the real SDK against the fake OpenAI server: the table
    holds a row per decision, and a model that failed never passes for one that played."""
    from tests.helpers.fakeopenai import FakeOpenAI

    invalid = '{"gameId":1,"type":"compensation-request","compensationRequests":[null,"lots"]}'
    brain = Brain({
        (1, "SubmitCompensationRequest"): [invalid],  # then a good answer: model after one retry
        (3, "SubmitCompensationRequest"): [invalid] * 3,  # every answer invalid: fallback
        (4, "SubmitCompensationRequest"): [{"status": 404, "error": {"message": "no such model"}}],
        (5, "SubmitCompensationRequest"): [{"content": json.dumps(GOOD["SubmitCompensationRequest"](5)),
                                            "delay": LATE}],  # slower than the deadline
    })
    with FakeOpenAI() as fake:
        fake.chat_default = brain
        policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="ft:test-model", max_retries=2)
        played = play(tmp_path, policy)

    assert_clean_game(played, rounds=[1])
    rows = {(int(r["seat"]), r["action_type"]): r for r in played.decisions}
    assert len(played.decisions) == 11 and len(rows) == 11
    who = {(seat, kind[13:]): (r["made_by"], r["fallback_reason"], r["attempts"], r["retries"])
           for (seat, kind), r in rows.items()}
    assert who[(1, "request")] == ("model-after-retries", "", "2", "1")
    assert who[(3, "request")] == ("fallback", "invalid-answers", "3", "2")
    assert who[(4, "request")] == ("fallback", "model-error", "1", "0")
    assert who[(5, "request")] == ("fallback", "timeout", "1", "0")
    assert who[(6, "request")] == ("model", "", "1", "0")
    assert who[(2, "offer")] == ("model", "", "1", "0")
    # Each row holds what the server received from that seat, the seat's private values and its role.
    for entry in played.received():
        row = rows[(entry["number"], entry["content"]["type"])]
        assert json.loads(row["action"]) == entry["content"] and row["sent"] == "yes"
        assert (row["game"], row["round"], row["phase"]) == ("1", "1", str(entry["phase"]))
        agent = next(a for a in played.agents if a.view.number == entry["number"])
        assert json.loads(row["private_values"]) == agent.view.rounds[1].values
        assert row["role"] == ("developer" if entry["number"] == 2 else "owner")
        assert row["model"] == "ft:test-model" and float(row["latency_s"]) >= 0
    assert "no such model" in rows[(4, "compensation-request")]["detail"]


def test_a_model_call_cut_at_the_deadline_says_so_not_that_the_phase_moved_on(tmp_path):
    """Issue 12, item 6: the call is cut by the deadline while phase 3 still runs (seat 1 has not even asked yet
    when seat 5's fallback goes out), and its record must say the deadline cut it."""
    from tests.helpers.fakeopenai import FakeOpenAI

    brain = Brain({(5, "SubmitCompensationRequest"): [{"content": json.dumps(GOOD["SubmitCompensationRequest"](5)),
                                                      "delay": LATE}]})
    with FakeOpenAI() as fake:
        fake.chat_default = brain
        policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="ft:test-model")
        played = play(tmp_path, policy)

    seat5 = played.transcripts[5]
    [cut] = [r for r in seat5 if r["kind"] == "model-call" and r.get("error", "").startswith("cancelled")]
    assert "deadline" in cut["error"] and "phase moved on" not in cut["error"]
    [fallback] = [r for r in seat5 if r["kind"] == "fallback"]
    assert fallback["fallback_reason"] == "timeout" and fallback["round"] == cut["round"] == 1
    # The phase had not moved: the fallback went out in phase 3 and the server took it there.
    [request] = [e for e in played.received("compensation-request") if e["number"] == 5]
    assert request["phase"] == 3 and request["content"] == fallback["action"]


def test_an_answer_still_pending_when_its_phase_ends_is_dropped(tmp_path):
    """Seat 3's model answers after the request phase has ended; the answer must never reach the server.

    The agent is told nothing of the timers (no parameters) and believes the server's clock 5 s behind its own,
    so it expects the deadline later than it is and no fallback goes out in time: the timer ends phase 3 first.
    """
    from tests.helpers.fakeopenai import FakeOpenAI

    brain = Brain({(3, "SubmitCompensationRequest"): [{"content": json.dumps(GOOD["SubmitCompensationRequest"](3)),
                                                      "delay": LATE}]})
    settings = AgentSettings(safety_margin=0.2, ready_delay=0.05, ready_resend=0.3, clock_offset_ms=-5000)
    with FakeOpenAI() as fake:
        fake.chat_default = brain
        policy = LLMPolicy(api_key=fake.api_key, base_url=fake.base_url, model="ft:test-model")
        played = play(tmp_path, policy, {"timer_phase_3": 0.8}, settings=settings, agent_params=False)

    assert (3, "SubmitCompensationRequest") in brain.asked
    assert sorted(e["number"] for e in played.received("compensation-request")) == [1, 4, 5, 6]
    assert [e for e in played.received() if e["number"] == 3 and e["phase"] != 6] == []
    timeouts = [e["phase"] for e in played.recorded["log"] if e["type"] == "phase-timeout"]
    assert 3 in timeouts
    dropped = [r for r in played.transcripts[3] if r["kind"] == "dropped"]
    assert len(dropped) == 1 and dropped[0]["wire_type"] == "compensation-request" and dropped[0]["phase"] == 3
    cancelled = [r for r in played.transcripts[3] if r["kind"] == "model-call" and "cancelled" in r.get("error", "")]
    assert len(cancelled) == 1 and "the phase moved on to round 1 phase 4" in cancelled[0]["error"]
    [row] = [r for r in played.decisions if r["seat"] == "3" and r["phase"] == "3"]
    assert row["made_by"] == "none" and row["sent"] == "no" and "phase moved on" in row["detail"]
    assert [m for m in sent_by(played, 3) if m["type"] == "compensation-request"] == []


# ---------------------------------------------------------------------- games that cannot be played


def test_a_refused_join_or_an_unreachable_server_is_an_agent_error_with_a_complete_transcript(tmp_path):
    async def attempt(url_of) -> str:
        async with LocalServer(records_dir=None) as server:
            path = tmp_path / f"agent-{len(list(tmp_path.iterdir()))}.jsonl"
            with Transcript(path) as transcript:
                agent = Agent(url_of(server), 99, "r" * 64, BaselinePolicy(), transcript, settings=SETTINGS)
                with pytest.raises(AgentError) as caught:
                    await asyncio.wait_for(agent.run(), 10)
            records = read_transcript(path)
            assert records[-1]["kind"] == "shutdown" and records[-1]["reason"].startswith("error: ")
            return str(caught.value)

    assert asyncio.run(attempt(lambda s: s.ws_url)) == "game 99 refused the join: Game 99 not found"
    refused = asyncio.run(attempt(lambda s: "ws://127.0.0.1:9/"))
    assert refused.startswith("cannot connect to ws://127.0.0.1:9/")
