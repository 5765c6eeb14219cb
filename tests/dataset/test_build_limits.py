"""constructDataset.py against hostile and careless input: text that is not valid UTF-8, huge chats, absurd round
counts, games our own agents played, runs whose private values are mostly unknown (issues #12 and #13)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lib.dataset.build import BuildOptions, build_dataset
from lib.games.voting.examples import game_examples
from lib.ibex.log import parse_log
from tests.helpers.paths import REPO

LOGS = REPO / "tests" / "fixtures" / "dataset" / "logs"
SCRIPT = REPO / "constructDataset.py"
ENV = {**os.environ, "PYTHON_DOTENV_DISABLED": "1"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=ENV, capture_output=True, timeout=300)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def log_text(name: str = "901.log.json") -> str:
    return (LOGS / name).read_text(encoding="utf-8")


# -- text that cannot be written as UTF-8 ------------------------------------------------------------------------

def with_lone_surrogates(text: str) -> str:
    """901 with lone surrogates (valid JSON escapes) in a tag, a tally, a value range and two chat messages."""
    text = re.sub(r'"tag": ?"Owner 2"', r'"tag": "Owner \\udfff"', text)
    text = re.sub(r'"tally": ?3,', r'"tally": "\\udc01",', text, count=1)
    text = re.sub(r'"low": ?150000', r'"low": "\\udc02"', text)
    text = text.replace('"Hello owners, I will pay fairly."', '"Hello \\udc00 owners"')
    return text.replace('"How much will you pay?"', '"How much \\ud800?"')


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse names that are not UTF-8")
def test_lone_surrogates_in_a_log_and_a_file_name_that_is_not_utf8_do_not_stop_the_run(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "901.log.json").write_text(with_lone_surrogates(log_text()), encoding="utf-8")
    odd_folder = os.fsencode(logs) + b"/caf\xe9"
    os.mkdir(odd_folder)
    with open(odd_folder + b"/902\xff.log.json", "wb") as f:
        f.write((LOGS / "902.log.json").read_bytes())
    with open(odd_folder + b"/broken\xff.log.json", "wb") as f:
        f.write(b"not json")
    out = tmp_path / "out\udcff".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    proc = run_cli("--input", str(logs), "--output-dir", os.fsencode(out), "--include-chat")
    stderr = proc.stderr.decode("utf-8")
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    error = f"{logs}/caf\\xe9/broken\\xff.log.json:1: not valid JSON: Expecting value (column 1)"
    assert stderr.splitlines()[0] == error
    report = json.loads(Path(os.fsdecode(os.fsencode(out) + b"/dataset_report.json")).read_bytes())
    assert report["files"]["errors"] == [error]
    assert f"{logs}/caf\\xe9/902\\xff.log.json" in [item["file"] for item in report["per_file"]]
    assert report["options"]["output_dir"] == f"{tmp_path}/out\\xff"
    assert "out\\xff" in proc.stdout.decode("utf-8")  # the summary names the output with an escape
    examples = []
    for name in ("training_set.jsonl", "validation_set.jsonl"):
        examples += read_jsonl(Path(os.fsdecode(os.fsencode(out) + b"/" + name.encode())))
    assert len(examples) == report["examples"]["total"] > 30
    text = json.dumps(examples, ensure_ascii=False)
    assert "Owner \ufffd" in text and "Hello \ufffd owners" in text and "won with \ufffd votes" in text
    assert "\\udc" not in text and "\\ud8" not in text
    # A human's own chat message with a lone surrogate is not a valid action: skipped, and said so.
    samples = report["skipped"]["malformed"]["samples"]
    assert any("lone surrogate" in sample for sample in samples)


def test_prompts_never_carry_a_lone_surrogate():
    result = game_examples(parse_log(json.loads(with_lone_surrogates(log_text())), "901"), include_chat=True)
    assert len(result.lines) > 10  # the log's decisions, its odd chat included: lines to check, not none
    assert any("\ufffd" in line for line in result.lines)  # where the surrogates were
    for line in result.lines:
        line.encode("utf-8")  # raises on a lone surrogate


# -- bounded prompts: chat and earlier rounds --------------------------------------------------------------------

def long_game(rounds: int, game_id: int = 7001, chats: tuple[tuple[int, int, str], ...] = (),
              round_count: str | None = None) -> dict:
    """A game in the 2023 format (client messages only; lib.dataset.build rebuilds the rest): every owner requests,
    the developer offers, every owner votes, in each of `rounds` paid rounds; `chats` are (round, sender, text)."""
    from tests.fixtures.dataset.make_fixtures import parameters

    def message(seat: int, r: int, phase: int, content: dict) -> dict:
        return {"content": {"gameId": game_id, **content}, "number": seat, "phase": phase, "round": r,
                "type": "message"}

    log = []
    for r in range(1, rounds + 1):
        for chat_round, sender, text in chats:
            if chat_round == r:
                to = [s for s in range(1, 7) if s != sender]
                log.append(message(sender, r, 2, {"type": "chat-with-players", "to": to, "text": text}))
        for seat in (1, 3, 4, 5, 6):
            log.append(message(seat, r, 3, {"type": "compensation-request",
                                            "compensationRequests": [None, 100000 + 1000 * (r % 50)]}))
        log.append(message(2, r, 4, {"type": "compensation-offer", "compensationOffers": [None, 90000]}))
        for seat in (1, 3, 4, 5, 6):
            log.append(message(seat, r, 6, {"type": "compensation-decision", "compensationDecisions": [r % 2]}))
    params = parameters(practice_round="false", round_count=round_count or str(rounds), session_number="1")
    return {"parameters": params, "log": log}


def prompts_of(data: dict, **options) -> list[str]:
    result = game_examples(parse_log(data, "long"), **options)
    return [json.loads(line)["messages"][1]["content"] for line in result.lines]


def test_a_huge_chat_message_is_cut_in_training_and_at_play_time_saying_so():
    from lib.games.voting.actions import CHAT, build_action_required
    from lib.games.voting.prompts import MAX_CHAT_MESSAGE_CHARS, build_messages
    from lib.games.voting.view import PlayerView

    huge = "word " * 40_000 + "END"  # 200 KB
    result = game_examples(parse_log(long_game(2, chats=((1, 2, huge),)), "long"), include_chat=True)
    prompts = [json.loads(line)["messages"][1]["content"] for line in result.lines]
    shown = huge[:MAX_CHAT_MESSAGE_CHARS]
    cut_line = f'- phase 2, Developer to everyone: "{shown}" [cut here: 199,003 more characters not shown]'
    with_chat = [p for p in prompts if "Chat this round" in p]
    assert len(with_chat) == 11  # round 1's requests, offer and votes
    own_line = cut_line.replace("Developer to", "You to")  # the developer's own prompt (the offer)
    assert all((cut_line in p.splitlines() or own_line in p.splitlines()) and "END" not in p for p in with_chat)
    assert max(map(len, prompts)) < 6_000
    # The message itself is no example: no agent may send more than 500 characters.
    assert result.samples["malformed"] == ['long log[0]: chat-with-players from seat 2 (Developer), round 1 phase 2: '
                                           '"text" must be at most 500 characters, got 200003']
    # At play time the agent's view gives the same line (same code: lib.games.voting.prompts).
    view = PlayerView(game_id=7001, number=1, role=3, tag="Owner 1", round=1, phase=2)
    view.apply({"type": "event", "eventType": "message-received",
                "data": {"sender": 2, "to": [1, 3, 4, 5, 6], "text": huge}})
    user = build_messages(view, build_action_required(view, CHAT, cap=2_750_000))[1]["content"]
    assert cut_line in user.splitlines() and len(user) < 4_000


def test_the_chat_section_keeps_the_newest_messages_and_says_how_many_were_left_out():
    from lib.games.voting.prompts import MAX_CHAT_CHARS

    chats = tuple((1, 1 + i % 6, f"message {i:03d} " + "b" * 480) for i in range(100))
    prompts = prompts_of(long_game(1, chats=chats))
    request = prompts[0]  # the first owner's request in round 1: all 100 messages were sent before it
    lines = request.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("Chat this round"))
    kept = lines[header + 1:lines.index("Action required:")]
    assert lines[header] == (f"Chat this round (the {100 - len(kept)} oldest of 100 messages are left out: a prompt "
                             f"holds at most {MAX_CHAT_CHARS:,} characters of chat):")
    assert 10 <= len(kept) < 100 and sum(len(line) + 1 for line in kept) <= MAX_CHAT_CHARS
    assert kept[-1].endswith(f'"message 099 {"b" * 480}"') and f"message {100 - len(kept):03d}" in kept[0]


def test_a_prompt_lists_the_last_rounds_only_and_says_which_were_left_out():
    from lib.games.voting.prompts import MAX_EARLIER_ROUNDS

    prompts = prompts_of(long_game(300))
    assert len(prompts) == 300 * 11
    last = prompts[-1].splitlines()
    assert f"Earlier rounds (the last {MAX_EARLIER_ROUNDS}; 279 earlier round(s), 1 to 279, are left out):" in last
    assert [line.split(":")[0] for line in last if line.startswith("Round ")] == \
        [f"Round {r}" for r in range(280, 300)]
    # What a prompt carries no longer grows with the game: round 300's prompts are as long as round 30's.
    assert max(map(len, prompts[-11:])) < 1.1 * max(map(len, prompts[29 * 11:30 * 11]))
    assert "Earlier rounds:" in prompts[11 * 5] and "left out" not in prompts[11 * 20]


def test_a_game_streams_its_examples_instead_of_holding_them(tmp_path):
    batches: list[tuple[int, int]] = []
    result = game_examples(parse_log(long_game(100), "long"),
                           sink=lambda lines, states: batches.append((len(lines), len(states))))
    assert all(n_lines == n_states for n_lines, n_states in batches)  # each example's state goes with its line
    sizes = [n for n, _ in batches]
    assert sum(sizes) + len(result.lines) == 1_100 and max(sizes) <= 256 and len(result.lines) < 256
    assert len(result.states) == len(result.lines)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "7001.log.json").write_text(json.dumps(long_game(100)), encoding="utf-8")
    (logs / "7002.log.json").write_text(json.dumps(long_game(3, game_id=7002)), encoding="utf-8")
    built = build_dataset(BuildOptions(inputs=[logs], output_dir=tmp_path / "out", validation_fraction=0.4))
    lines = []
    for name in ("training_set.jsonl", "validation_set.jsonl"):
        lines += (tmp_path / "out" / name).read_text(encoding="utf-8").splitlines()
    assert built.n_examples == len(lines) == 1_133
    states = []
    for name in ("training_set.state.jsonl", "validation_set.state.jsonl"):
        states += (tmp_path / "out" / name).read_text(encoding="utf-8").splitlines()[1:]  # after the header
    assert len(states) == 1_133
    assert sorted(lines) == sorted(game_examples(parse_log(long_game(100), "a")).lines
                                   + game_examples(parse_log(long_game(3, game_id=7002), "b")).lines)


@pytest.mark.parametrize("value", ["1180591620717411303424", "1001", "0", "1e400"])
def test_absurd_round_counts_are_refused_with_one_line_naming_the_file_and_field(tmp_path, value):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "absurd.log.json").write_text(json.dumps(long_game(2, round_count=value)), encoding="utf-8")
    (logs / "901.log.json").write_text(log_text(), encoding="utf-8")
    proc = run_cli("--input", str(logs), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0
    errors = proc.stderr.decode().splitlines()
    assert len(errors) == 2 and errors[1].startswith("check warning")  # a tiny training set
    assert errors[0].startswith(f"{logs / 'absurd.log.json'}: parameters: parameter 'round_count' must be ") or \
        errors[0] == f"{logs / 'absurd.log.json'}: parameters[18]: parameter 'round_count' must be finite, got '1e400'"
    if value != "1e400":
        assert errors[0].endswith(f"must be from 1 to 1,000, got {value}")
    assert "1 used, 1 unusable" in proc.stdout.decode()


def test_absurd_timers_and_value_ranges_are_refused_too():
    from lib.games.voting.rules import ParamError, parameters_from_dict

    with pytest.raises(ParamError, match=r"'timer_phase_3' must be at most 86,400 seconds, got 10+52504760"):
        parameters_from_dict({"timer_phase_3": 1e300})
    with pytest.raises(ParamError, match=r"'owner_project_a_high' must be at most 1,000,000,000,000 in size, "
                                         r"got \d{37}\.\.\.$"):
        parameters_from_dict({"owner_project_a_high": 10**60})
    assert parameters_from_dict({"round_count": 1000}).round_count == 1000


# -- games played by agents, unknown private values (issue #13) --------------------------------------------------

def warnings_of(proc: subprocess.CompletedProcess) -> list[str]:
    return [line.strip()[len("warning: "):] for line in proc.stdout.decode().splitlines()
            if line.strip().startswith("warning: ")]


def test_a_demo_game_of_our_agents_is_recognised_and_warned_about(tmp_path):
    records = tmp_path / "records"
    demo = subprocess.run([sys.executable, str(REPO / "handler.py"), "--local", "--policy", "baseline", "--rounds", "1",
                           "--no-practice", "--records", str(records), "--logs-dir", str(tmp_path / "logs")],
                          env=ENV, capture_output=True, timeout=120)
    assert demo.returncode == 0, demo.stderr.decode()
    (recorded,) = records.glob("*.log.json")
    logs = tmp_path / "logs-in"
    logs.mkdir()
    (logs / recorded.name).write_bytes(recorded.read_bytes())
    (logs / "901.log.json").write_text(log_text(), encoding="utf-8")
    proc = run_cli("--input", str(logs), "--output-dir", str(tmp_path / "out"), "--sessions",
                   str(LOGS.parent / "sessions.json"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert warnings_of(proc) == [
        f"1 log(s) hold games played by this project's agents or scripts, not by humans (1 recorded by this "
        f"project's local server): {logs / recorded.name}. Their decisions are in the dataset as if humans made "
        "them: remove these files unless that is what you want"]
    report = json.loads((tmp_path / "out" / "dataset_report.json").read_text(encoding="utf-8"))
    assert report["warnings"] == warnings_of(proc)
    assert {item["file"]: item["played_by_agents"] for item in report["per_file"]} == {
        str(logs / recorded.name): "recorded by this project's local server", str(logs / "901.log.json"): None}


def test_an_agents_only_game_is_warned_about(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    text = re.sub(r'("key": ?"agents_only", ?"type": ?"boolean", ?"value": ?)"false"', r'\1"true"', log_text())
    assert text != log_text()
    (logs / "901.log.json").write_text(text, encoding="utf-8")
    result = build_dataset(BuildOptions(inputs=[logs], output_dir=tmp_path / "out"))
    assert result.report["warnings"][0].startswith(
        "1 log(s) hold games played by this project's agents or scripts, not by humans (1 agents-only (parameter "
        f"agents_only is true)): {logs / '901.log.json'}.")


def test_mostly_unknown_private_values_are_warned_about_naming_the_logs_and_the_fix(tmp_path):
    sessions = LOGS.parent / "sessions.json"
    proc = run_cli("--input", str(LOGS), "--output-dir", str(tmp_path / "out"))
    assert warnings_of(proc) == [
        f"29 of 57 examples (51%) have unknown private values (their prompts say so), from 2 log(s): "
        f"{LOGS / '902.log.json'} (21), {LOGS / '903.log.json'} (8); --sessions FILE (the server's sessions.json "
        "for these sessions) fills them in where the logs cannot be trusted"]
    report = json.loads((tmp_path / "out" / "dataset_report.json").read_text(encoding="utf-8"))
    assert report["warnings"] == warnings_of(proc)
    assert report["per_file"][1]["private_values"] == {"unknown": 21}
    # With the sessions table every value is known: no warning.
    assert warnings_of(run_cli("--input", str(LOGS), "--output-dir", str(tmp_path / "out"), "--sessions",
                               str(sessions))) == []
    # A table without the session these games were played in: the warning says the table does not cover them.
    table = [s for s in json.loads(sessions.read_text(encoding="utf-8")) if s["id"] != 3]
    (tmp_path / "other.json").write_text(json.dumps(table), encoding="utf-8")
    (warning,) = warnings_of(run_cli("--input", str(LOGS / "902.log.json"), str(LOGS / "901.log.json"),
                                     "--output-dir", str(tmp_path / "out"), "--sessions", str(tmp_path / "other.json")))
    assert warning.startswith(f"21 of 39 examples (54%) have unknown private values (their prompts say so), from 1 "
                              f"log(s): {LOGS / '902.log.json'} (21); the sessions table {tmp_path / 'other.json'} "
                              "does not cover them")


def test_a_few_unknown_values_are_no_warning(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for k in range(11):  # 11 games with known values, one with all 21 unknown: 21 of 219 examples, 9.6 %
        (logs / f"copy{k}.log.json").write_text(log_text().replace('"gameId":901', f'"gameId":{9000 + k}'),
                                                 encoding="utf-8")
    (logs / "902.log.json").write_text(log_text("902.log.json"), encoding="utf-8")
    result = build_dataset(BuildOptions(inputs=[logs], output_dir=tmp_path / "out"))
    assert result.report["private_values"] == {"server-log": 198, "unknown": 21} and result.report["warnings"] == []
