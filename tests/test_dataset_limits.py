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

from lib.dataset import game_examples
from lib.ibexlog import parse_log

REPO = Path(__file__).resolve().parents[1]
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
    for line in result.lines:
        line.encode("utf-8")  # raises on a lone surrogate
