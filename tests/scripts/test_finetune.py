"""finetune.py and lib/training/jobrecord.py against the fake OpenAI server, with the real openai SDK."""

import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import finetune
from lib.training import jobrecord
from lib.training.jobrecord import DEFAULT_CHAT_MODEL, resolve_model
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.finetune_runs import FAST, write_dataset
from tests.helpers.paths import REPO
from tests.helpers.processes import children_take_sigint, signal_state

ROOT = REPO


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def data_dir(tmp_path):
    """A data directory with a valid training set (20 examples) and validation set (5)."""
    write_dataset(tmp_path / "training_set.jsonl", range(20))
    write_dataset(tmp_path / "validation_set.jsonl", range(100, 105))
    return tmp_path


@pytest.fixture
def env(fake, monkeypatch):
    """The process environment of a researcher whose OPENAI_BASE_URL is the fake."""
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    return fake




def run(capsys, *args) -> tuple[int, str, str]:
    code = finetune.main([*FAST, *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def record_of(data_dir: Path) -> dict:
    return json.loads((data_dir / "finetune_job.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def subprocess_env(**overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update({"PYTHON_DOTENV_DISABLED": "1", **overrides})
    return env


# ----------------------------------------------------------------------------- happy path

def test_happy_path_uploads_trains_follows_and_records_the_model(env, data_dir, capsys):
    code, out, err = run(capsys, "--data-dir", data_dir, "--suffix", "ibex", "--seed", 7,
                         "--epochs", 2)

    assert code == 0, err
    record = record_of(data_dir)
    job = env.jobs[record["job_id"]]["job"]
    assert record["status"] == job["status"] == "succeeded"
    assert record["fine_tuned_model"] == job["fine_tuned_model"]
    assert record["fine_tuned_model"].startswith("ft:gpt-4.1-mini-2025-04-14:fake:ibex:")
    assert record["base_model"] == "gpt-4.1-mini-2025-04-14"
    assert record["training_file"]["sha256"] == sha256(data_dir / "training_set.jsonl")
    assert record["validation_file"]["sha256"] == sha256(data_dir / "validation_set.jsonl")
    assert record["training_file"]["file_id"] == job["training_file"]
    assert record["validation_file"]["file_id"] == job["validation_file"]
    assert env.files[job["training_file"]]["content"] == (data_dir / "training_set.jsonl"
                                                          ).read_bytes()
    assert record["created_at"] and record["finished_at"] and record["error"] is None
    assert [s["status"] for s in record["status_history"]] == [
        "validating_files", "queued", "running", "succeeded"]

    created = env.calls_to("POST", "/fine_tuning/jobs")[0]["json"]
    assert created["suffix"] == "ibex" and created["seed"] == 7
    assert created["method"]["supervised"]["hyperparameters"]["n_epochs"] == 2

    for status in ("status: queued", "status: running", "status: succeeded"):
        assert status in out
    assert "training loss=0.5" in out
    assert "final training loss 0.5 at step 4, validation loss (full set) 0.55" in out.splitlines()
    assert record["final_metrics"]["train_loss"] == 0.5 and record["final_metrics"]["full_valid_loss"] == 0.55
    assert out.count("Fine-tuning job started") == 1          # each event printed once
    assert f"fine-tuned model {record['fine_tuned_model']}" in out


class Terminal(io.StringIO):
    """A stdin that is a terminal, with the user's answer already typed in."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def paid(env, monkeypatch):
    """The fake stands in for a paid endpoint: it is on loopback, which finetune.py (as --evaluate) takes for a
    local server with nothing to pay."""
    monkeypatch.setattr(finetune.evalcli, "is_local_endpoint", lambda url: False)
    return env


def test_the_cost_is_printed_before_anything_is_uploaded_or_created(env, data_dir, capsys):
    code, out, err = run(capsys, "--data-dir", data_dir, "--epochs", 2)

    assert code == 0, err
    [line] = [x for x in out.splitlines() if x.startswith("fine-tuning gpt-4.1-mini-2025-04-14 at ")]
    assert "billed tokens (2 epochs)" in line and "a local endpoint: no per-token price" in line
    assert out.index(line) < out.index("uploading") < out.index("created job")


def test_a_paid_job_without_a_terminal_needs_yes_and_nothing_is_sent(paid, data_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    code, out, err = run(capsys, "--data-dir", data_dir)

    assert code == 2
    assert re.search(r"billed tokens \(\d+ epochs\); about \$[\d.,]+ at list prices", out), out
    assert "pass --yes" in err and "nothing uploaded, no job created" in err and len(err.strip().splitlines()) == 1
    assert paid.calls == [] and not (data_dir / "finetune_job.json").exists()


@pytest.mark.parametrize("answer", ["n", ""])
def test_a_paid_job_the_user_declines_is_not_started(paid, data_dir, capsys, monkeypatch, answer):
    monkeypatch.setattr(sys, "stdin", Terminal(answer + "\n"))

    code, out, err = run(capsys, "--data-dir", data_dir)

    assert code == 2 and "Upload and start this fine-tuning job? [y/N]" in out
    assert "nothing uploaded, no job created" in err
    assert paid.calls == []


@pytest.mark.parametrize("how", ["answer y", "--yes"])
def test_a_paid_job_starts_once_confirmed(paid, data_dir, capsys, monkeypatch, how):
    monkeypatch.setattr(sys, "stdin", Terminal("y\n" if how == "answer y" else ""))

    code, out, err = run(capsys, "--data-dir", data_dir, *(["--yes"] if how == "--yes" else []))

    assert code == 0, err
    assert ("[y/N]" in out) == (how == "answer y")
    assert out.index("at list prices") < out.index("created job")
    assert len(paid.calls_to("POST", "/fine_tuning/jobs")) == 1


def test_handler_model_selection_reads_the_record(env, data_dir, capsys):
    record_path = data_dir / "finetune_job.json"
    assert resolve_model({}, record_path)[0] == DEFAULT_CHAT_MODEL   # no job yet

    assert run(capsys, "--data-dir", data_dir)[0] == 0

    tuned = record_of(data_dir)["fine_tuned_model"]
    model, source = resolve_model({"OPENAI_BASE_URL": env.base_url}, record_path)
    assert (model, str(record_path) in source) == (tuned, True)
    assert resolve_model({"OPENAI_MODEL": "gpt-4o-mini"}, record_path) == (
        "gpt-4o-mini", "OPENAI_MODEL")


def test_dry_run_checks_counts_and_estimates_without_network(fake, data_dir, capsys,
                                                             monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)      # not needed for a dry run

    code, out, _ = run(capsys, "--data-dir", data_dir, "--dry-run")

    assert code == 0
    assert fake.calls == []
    assert not (data_dir / "finetune_job.json").exists()
    assert "20 examples, OK" in out and "5 examples, OK" in out
    assert "billed tokens:" in out and "estimated training cost" in out
    assert "dry run: nothing uploaded" in out


def test_dataset_errors_stop_before_any_upload(env, tmp_path, capsys):
    train = write_dataset(tmp_path / "train.jsonl", range(12))
    with train.open("a") as f:
        f.write('{"messages": [{"role": "user", "content": "no answer"}]}\n')

    code, out, err = run(capsys, "--train", train, "--data-dir", tmp_path)

    assert code == 2
    assert f"{train}:13: no assistant message" in out
    assert err.strip().splitlines() == [
        "error: the dataset has errors (listed above); fix them before fine-tuning"]
    assert env.calls == []


def test_training_and_validation_must_not_share_examples(env, data_dir, capsys):
    write_dataset(data_dir / "validation_set.jsonl", [3, 200])
    code, out, _ = run(capsys, "--data-dir", data_dir)
    assert code == 2
    assert "1 example(s) appear in both" in out
    assert env.calls == []


def test_missing_training_set_says_how_to_build_it(env, tmp_path, capsys):
    code, _, err = run(capsys, "--data-dir", tmp_path)
    assert code == 2
    assert "no training set; build it with python constructDataset.py" in err


def test_the_same_file_is_not_uploaded_twice_unless_deleted_remotely(env, data_dir, capsys):
    assert run(capsys, "--data-dir", data_dir)[0] == 0
    assert run(capsys, "--data-dir", data_dir, "--force")[0] == 0
    assert len(env.calls_to("POST", "/files")) == 2           # training + validation, once

    train_id = record_of(data_dir)["training_file"]["file_id"]
    env.client().files.delete(train_id)
    code, out, _ = run(capsys, "--data-dir", data_dir, "--force")

    assert code == 0
    assert len(env.calls_to("POST", "/files")) == 3           # only the deleted one again
    assert record_of(data_dir)["training_file"]["file_id"] != train_id
    assert "already uploaded" in out                          # the validation file


def test_previous_jobs_move_to_history(env, data_dir, capsys):
    run(capsys, "--data-dir", data_dir)
    first = record_of(data_dir)
    write_dataset(data_dir / "training_set.jsonl", range(30))
    run(capsys, "--data-dir", data_dir)

    second = record_of(data_dir)
    assert second["job_id"] != first["job_id"]
    assert second["history"][-1]["job_id"] == first["job_id"]
    assert second["history"][-1]["training_sha256"] == first["training_file"]["sha256"]
    assert second["history"][-1]["fine_tuned_model"] == first["fine_tuned_model"]


def test_refuses_a_second_paid_job_on_data_that_already_trained_a_model(env, data_dir, capsys):
    assert run(capsys, "--data-dir", data_dir)[0] == 0
    first = record_of(data_dir)
    calls = len(env.calls)

    code, out, err = run(capsys, "--data-dir", data_dir)

    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert first["job_id"] in err and first["fine_tuned_model"] in err and "--force" in err
    assert len(env.calls) == calls, "nothing uploaded, no job started"
    assert record_of(data_dir) == first
    # Another base model on the same data is refused too (the issue: a dataset whose sha256 already trained), and
    # so is the same data once the succeeded job has moved into the record's history; --force is the deliberate way.
    code, _, err = run(capsys, "--data-dir", data_dir, "--model", "gpt-4o-mini-2024-07-18")
    assert code == 2 and first["base_model"] in err and "--force" in err
    assert run(capsys, "--data-dir", data_dir, "--model", "gpt-4o-mini-2024-07-18", "--force")[0] == 0
    assert run(capsys, "--data-dir", data_dir)[0] == 2
    assert run(capsys, "--data-dir", data_dir, "--force")[0] == 0
    assert len(env.calls_to("POST", "/fine_tuning/jobs")) == 3


def test_refuses_a_new_job_while_the_recorded_one_runs(env, data_dir, capsys):
    jobrecord.write_record(data_dir / "finetune_job.json",
                           {"job_id": "ftjob-running", "status": "running"})
    code, _, err = run(capsys, "--data-dir", data_dir)
    assert code == 2
    assert "ftjob-running" in err and "--force" in err
    assert env.calls == []


# ----------------------------------------------------------------------------- follow, cancel, list

def start_held_job(fake, tmp_path) -> str:
    """A job created directly with the SDK (as from another machine)."""
    client = fake.client()
    train = client.files.create(file=write_dataset(tmp_path / "other.jsonl", range(15)),
                                purpose="fine-tune")
    return client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18",
                                          training_file=train.id).id


def wait_for(condition, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_ctrl_c_stops_following_without_cancelling_and_follow_resumes(fake, data_dir):
    fake.jobs_advance = False                                  # the job sits in validating_files
    with children_take_sigint():  # else, with the suite started in the background, finetune.py ignores it
        proc = subprocess.Popen(
            [sys.executable, "finetune.py", "--data-dir", str(data_dir), *FAST],
            cwd=ROOT, env=subprocess_env(**fake.env()), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (data_dir / "finetune_job.json").exists()
                 and record_of(data_dir).get("last_event_id"),
                 "finetune.py to be following the job")
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            # Say what the child made of the signal: a hang guard that only says "timed out" hides the cause.
            raise AssertionError(f"finetune.py did not stop on SIGINT: {signal_state(proc.pid)}") from None
    finally:
        proc.kill()

    job_id = record_of(data_dir)["job_id"]
    assert proc.returncode == 130, err
    assert f"resume with: python finetune.py --follow {job_id}" in out
    assert "Traceback" not in err
    assert fake.calls_to("POST", f"/fine_tuning/jobs/{job_id}/cancel") == []
    assert fake.jobs[job_id]["job"]["status"] == "validating_files"
    assert record_of(data_dir)["status"] == "validating_files"

    fake.jobs_advance = True
    resumed = subprocess.run(
        [sys.executable, "finetune.py", "--data-dir", str(data_dir), *FAST, "--follow"],
        cwd=ROOT, env=subprocess_env(**fake.env()), capture_output=True, text=True, timeout=120)

    assert resumed.returncode == 0, resumed.stderr
    assert record_of(data_dir)["fine_tuned_model"] == fake.jobs[job_id]["job"]["fine_tuned_model"]
    assert resumed.stdout.count("Created fine-tuning job") == 0  # seen before the interruption
    assert "New fine-tuned model created" in resumed.stdout


def test_follow_a_given_job_records_it(env, tmp_path, capsys):
    job_id = start_held_job(env, tmp_path)

    code, out, _ = run(capsys, "--data-dir", tmp_path, "--follow", job_id)

    assert code == 0
    record = record_of(tmp_path)
    assert record["job_id"] == job_id
    assert record["base_model"] == "gpt-4o-mini-2024-07-18"
    assert record["fine_tuned_model"] == env.jobs[job_id]["job"]["fine_tuned_model"]
    assert "status: succeeded" in out


def test_follow_without_a_record_explains(env, tmp_path, capsys):
    code, _, err = run(capsys, "--data-dir", tmp_path, "--follow")
    assert code == 2
    assert "no job recorded" in err


def test_follow_keeps_polling_through_transient_server_errors(env, tmp_path, capsys):
    job_id = start_held_job(env, tmp_path)
    env.fail_next("GET", f"/fine_tuning/jobs/{job_id}", 500, times=2)

    code, out, err = run(capsys, "--data-dir", tmp_path, "--max-retries", 0, "--follow", job_id)

    assert code == 0
    assert err.count("warning:") == 2
    assert "status: succeeded" in out


def test_cancel_cancels_and_updates_the_record(env, tmp_path, capsys):
    job_id = start_held_job(env, tmp_path)
    jobrecord.write_record(tmp_path / "finetune_job.json",
                           {"job_id": job_id, "status": "validating_files"})

    code, out, _ = run(capsys, "--data-dir", tmp_path, "--cancel", job_id)

    assert code == 0
    assert f"job {job_id}: cancelled" in out
    assert env.jobs[job_id]["job"]["status"] == "cancelled"
    assert record_of(tmp_path)["status"] == "cancelled"


def test_cancel_a_finished_job_is_a_clear_error(env, tmp_path, capsys):
    job_id = start_held_job(env, tmp_path)
    env.client().fine_tuning.jobs.cancel(job_id)
    code, _, err = run(capsys, "--data-dir", tmp_path, "--cancel", job_id)
    assert code == 1
    assert err.startswith("error: ") and "400" in err and len(err.strip().splitlines()) == 1


def test_list_shows_jobs_and_marks_the_recorded_one(env, data_dir, capsys):
    other = start_held_job(env, data_dir)
    run(capsys, "--data-dir", data_dir)
    recorded = record_of(data_dir)["job_id"]

    code, out, _ = run(capsys, "--data-dir", data_dir, "--list")

    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith(f"* {recorded}") and "succeeded" in line for line in lines)
    assert any(line.startswith(f"  {other}") and "validating_files" in line for line in lines)


# ----------------------------------------------------------------------------- errors

def test_missing_api_key_is_one_line_with_how_to_set_it(data_dir):
    out = subprocess.run([sys.executable, "finetune.py", "--data-dir", str(data_dir)],
                         cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: OPENAI_API_KEY is not set: put OPENAI_API_KEY=sk-... in a .env file next to "
        "finetune.py (see .env.example) or export it"]


def test_an_empty_openai_base_url_means_openai_itself(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "")       # what "OPENAI_BASE_URL=" in .env gives
    monkeypatch.setenv("OPENAI_API_KEY", "sk-anything")
    client = finetune.make_client(finetune.parse_args([]))
    assert str(client.base_url) == "https://api.openai.com/v1/"


def test_rejected_key_is_reported_without_printing_it(env, data_dir, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-the-right-one")
    code, out, err = run(capsys, "--data-dir", data_dir)
    assert code == 1
    assert "the API key was rejected" in err and "401" in err
    assert "sk-not-the-right-one" not in out + err


def test_training_not_available_points_to_other_trainers(env, data_dir, capsys):
    env.training_blocked = True
    code, _, err = run(capsys, "--data-dir", data_dir)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "stopped self-serve fine-tuning for this organisation" in err
    assert "Azure OpenAI" in err and "OPENAI_BASE_URL" in err and "TRL" in err
    assert env.jobs == {}
    assert record_of(data_dir)["uploads"]                      # uploads remembered for later


def test_rate_limits_are_retried(env, data_dir, capsys):
    env.fail_next("POST", "/fine_tuning/jobs", 429, code="rate_limit_exceeded", times=2)
    code, _, err = run(capsys, "--data-dir", data_dir, "--max-retries", 3)
    assert code == 0, err
    assert len(env.calls_to("POST", "/fine_tuning/jobs")) == 3


def test_rate_limit_that_persists_is_a_clear_error(env, data_dir, capsys):
    env.fail_next("POST", "/files", 429, code="rate_limit_exceeded", times=5)
    code, _, err = run(capsys, "--data-dir", data_dir, "--max-retries", 1)
    assert code == 1
    assert "rate limited" in err and len(err.strip().splitlines()) == 1


def test_network_error_is_a_clear_error(data_dir, capsys, monkeypatch):
    with socket.socket() as sock:                               # a loopback port nobody serves
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-anything")
    code, _, err = run(capsys, "--data-dir", data_dir, "--max-retries", 0)
    assert code == 1
    assert f"cannot reach http://127.0.0.1:{port}/v1" in err
    assert len(err.strip().splitlines()) == 1


def test_failed_job_reports_openai_error_and_records_it(env, data_dir, capsys):
    env.job_outcome = ("failed", {"code": "invalid_n_examples",
                                  "message": "Training file has 3 example(s), but must have "
                                             "at least 10 examples"})
    code, _, err = run(capsys, "--data-dir", data_dir)
    assert code == 1
    assert "failed: invalid_n_examples: Training file has 3 example(s)" in err
    record = record_of(data_dir)
    assert record["status"] == "failed"
    assert record["error"]["code"] == "invalid_n_examples"
    assert resolve_model({}, data_dir / "finetune_job.json")[0] == DEFAULT_CHAT_MODEL


# ----------------------------------------------------------------------------- jobrecord

def test_record_is_replaced_atomically(tmp_path):
    path = tmp_path / "finetune_job.json"
    jobrecord.write_record(path, {"job_id": "ftjob-1", "status": "running"})
    with pytest.raises(TypeError):
        jobrecord.write_record(path, {"job_id": "ftjob-2", "bad": object()})
    assert jobrecord.read_record(path) == {"job_id": "ftjob-1", "status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["finetune_job.json"]   # no temp left


@pytest.mark.parametrize("record, expected", [
    (None, DEFAULT_CHAT_MODEL),
    ({"job_id": "ftjob-1", "status": "running", "fine_tuned_model": None}, DEFAULT_CHAT_MODEL),
    ({"job_id": "ftjob-1", "status": "failed", "fine_tuned_model": None}, DEFAULT_CHAT_MODEL),
    ({"job_id": "ftjob-1", "status": "succeeded", "fine_tuned_model": "ft:gpt-4.1:o::x"},
     "ft:gpt-4.1:o::x"),
])
def test_resolve_model_from_the_record(tmp_path, record, expected):
    path = tmp_path / "finetune_job.json"
    if record is not None:
        jobrecord.write_record(path, record)
    model, source = resolve_model({}, path)
    assert model == expected
    assert str(path) in source


def test_resolve_model_prefers_openai_model(tmp_path):
    path = tmp_path / "finetune_job.json"
    jobrecord.write_record(path, {"job_id": "j", "status": "succeeded",
                                  "fine_tuned_model": "ft:x"})
    assert resolve_model({"OPENAI_MODEL": " gpt-4o "}, path) == ("gpt-4o", "OPENAI_MODEL")
    assert resolve_model({"OPENAI_MODEL": ""}, path)[0] == "ft:x"


def test_resolve_model_refuses_a_corrupt_record(tmp_path):
    path = tmp_path / "finetune_job.json"
    path.write_text("{half a reco")
    with pytest.raises(jobrecord.JobRecordError, match="finetune_job.json: not valid JSON"):
        resolve_model({}, path)


def test_a_recorded_model_from_another_endpoint_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "finetune_job.json"
    jobrecord.write_record(path, {"job_id": "ftjob-9", "status": "succeeded", "fine_tuned_model": "ft:x:lab::9",
                                  "base_url": "https://user:secret@azure.example/openai/v1"})
    here = {"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}
    with pytest.raises(jobrecord.JobRecordError) as caught:
        resolve_model(here, path)
    message = str(caught.value)
    assert "ft:x:lab::9" in message and "azure.example" in message and "127.0.0.1:11434" in message
    assert "secret" not in message and "\n" not in message
    with pytest.raises(jobrecord.JobRecordError, match="api.openai.com"):
        resolve_model({}, path)  # empty OPENAI_BASE_URL means OpenAI itself
    # The same endpoint (a trailing slash aside), or a model named outright, is fine.
    assert resolve_model({"OPENAI_BASE_URL": "https://user:secret@azure.example/openai/v1/"}, path)[0] == "ft:x:lab::9"
    assert resolve_model({**here, "OPENAI_MODEL": "llama3"}, path) == ("llama3", "OPENAI_MODEL")


def test_handler_stops_when_the_recorded_model_lives_on_another_endpoint(tmp_path):
    path = tmp_path / "finetune_job.json"
    jobrecord.write_record(path, {"job_id": "ftjob-9", "status": "succeeded", "fine_tuned_model": "ft:x:lab::9",
                                  "base_url": "https://api.openai.com/v1"})
    env = subprocess_env(OPENAI_API_KEY="sk-test-0000000000", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    result = subprocess.run([sys.executable, str(ROOT / "handler.py"), "--local", "--policy", "llm",
                             "--job-record", str(path), "--logs-dir", str(tmp_path / "logs")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "ft:x:lab::9 was trained at https://api.openai.com/v1" in result.stderr
    assert "http://127.0.0.1:9/v1" in result.stderr and "OPENAI_MODEL" in result.stderr
    assert not (tmp_path / "logs").exists()
