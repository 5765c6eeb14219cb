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
from tests.helpers.paths import REPO
from tests.helpers.votinglogs import long_game

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
    from lib.ibex.params import ParamError, parameters_from_dict

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
