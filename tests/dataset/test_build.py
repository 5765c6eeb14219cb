"""lib/dataset and constructDataset.py: IBEX logs -> chat fine-tuning examples, the split, the report, the checks
(the voting game's own examples: tests/games/voting/test_examples.py).

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

import pytest

from lib.dataset import ftcheck
from lib.dataset.build import (
    FILES_PER_WORKER,
    BuildOptions,
    build_dataset,
    split_games,
)
from lib.ibex.sessions import load_sessions
from tests.helpers.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "dataset"
LOGS, BROKEN, SESSIONS = FIXTURES / "logs", FIXTURES / "broken", FIXTURES / "sessions.json"
SCRIPT = REPO / "constructDataset.py"
ENV = {**os.environ, "PYTHON_DOTENV_DISABLED": "1"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_cli(*args: str, cwd: Path = REPO, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=120)


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
