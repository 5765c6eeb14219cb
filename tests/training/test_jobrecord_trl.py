"""A TRL training in data/finetune_job.json beside OpenAI jobs: which model handler.py plays, and what the OpenAI
side of finetune.py does with such a record. Needs no training requirements."""

import json
import sys

import pytest

import finetune
from lib.training import jobrecord
from lib.training.jobrecord import DEFAULT_CHAT_MODEL, JobRecordError, resolve_model
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.finetune_runs import write_dataset

TRL_JOB = {"kind": "trl", "trainer": "trl", "job_id": "trl-20261130T040000Z", "status": "succeeded",
           "base_model": "Qwen/Qwen2.5-0.5B-Instruct", "served_model": "qwen2.5-0.5b-instruct-0123456789ab",
           "adapter_path": "data/models/qwen2.5-0.5b-instruct-0123456789ab", "fine_tuned_model": None,
           "training_file": {"path": "data/training_set.jsonl", "sha256": "0123456789ab" + "0" * 52},
           "uploads": {}, "history": []}


def record_at(tmp_path, **changes):
    path = tmp_path / "finetune_job.json"
    jobrecord.write_record(path, {**TRL_JOB, **changes})
    return path


def test_handler_plays_the_served_name_of_a_trained_model(tmp_path):
    path = record_at(tmp_path)
    model, source = resolve_model({"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}, path)
    assert model == "qwen2.5-0.5b-instruct-0123456789ab"
    assert "TRL job trl-20261130T040000Z" in source and str(path) in source
    assert resolve_model({"OPENAI_BASE_URL": "http://x/v1", "OPENAI_MODEL": "other"}, path) == (
        "other", "OPENAI_MODEL")


def test_a_trained_model_without_a_server_is_an_error_not_a_quiet_fallback(tmp_path):
    path = record_at(tmp_path)
    with pytest.raises(JobRecordError) as caught:
        resolve_model({}, path)
    message = str(caught.value)
    assert "qwen2.5-0.5b-instruct-0123456789ab" in message and "OPENAI_BASE_URL" in message
    assert "OPENAI_MODEL" in message and "\n" not in message


@pytest.mark.parametrize("status", ["running", "interrupted", "failed"])
def test_an_unfinished_training_leaves_the_default_model(tmp_path, status):
    model, source = resolve_model({"OPENAI_BASE_URL": "http://x/v1"}, record_at(tmp_path, status=status))
    assert model == DEFAULT_CHAT_MODEL and status in source


@pytest.fixture
def openai_env(monkeypatch):
    with FakeOpenAI() as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield fake


def test_an_openai_job_after_a_training_keeps_it_in_the_history(openai_env, tmp_path, capsys):
    # A training that never finished (killed) is not an OpenAI job still running: it does not block one.
    record_at(tmp_path, status="running")
    write_dataset(tmp_path / "training_set.jsonl", range(20))
    code = finetune.main(["--poll-interval", "0.01", "--data-dir", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "finetune_job.json").read_text())
    assert record["job_id"].startswith("ftjob") and "kind" not in record
    assert record["history"][-1] == {**record["history"][-1], "job_id": "trl-20261130T040000Z", "kind": "trl",
                                     "served_model": "qwen2.5-0.5b-instruct-0123456789ab"}


def test_follow_explains_that_the_recorded_job_is_not_openais(openai_env, tmp_path, capsys):
    record_at(tmp_path)
    code = finetune.main(["--follow", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "trl training made here" in err
    assert openai_env.calls == []


def test_training_options_need_the_trl_trainer(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        finetune.main(["--data-dir", str(tmp_path), "--lr", "1e-4"])
    assert caught.value.code == 2 and "--learning-rate needs --trainer trl" in capsys.readouterr().err


def _without_torch(monkeypatch) -> None:
    """What an environment without torch looks like to import, whether or not an earlier test imported the packages
    built on it: a first import of transformers without torch prints its own "PyTorch was not found" line."""
    monkeypatch.setitem(sys.modules, "torch", None)
    for name in list(sys.modules):
        if name.split(".")[0] in ("transformers", "peft", "trl", "accelerate", "datasets"):
            monkeypatch.delitem(sys.modules, name)


def test_missing_training_requirements_say_how_to_install_them(tmp_path, capsys, monkeypatch):
    _without_torch(monkeypatch)
    write_dataset(tmp_path / "training_set.jsonl", range(20))
    code = finetune.main(["--trainer", "trl", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "torch" in err and "pip install -r requirements-train.txt" in err
    assert not (tmp_path / "models").exists()


def test_without_torch_the_packages_built_on_it_are_looked_for_not_imported(monkeypatch):
    from lib.training import requirements

    _without_torch(monkeypatch)
    gone = requirements.missing()
    assert gone[0] == "torch" and all(name in requirements.PACKAGES for name in gone)  # absent, not broken
    assert "transformers" not in sys.modules and "trl" not in sys.modules
    assert requirements.missing(("torch", "no_such_package_here")) == ["torch", "no_such_package_here"]


def test_the_local_policy_without_training_requirements_says_how_to_install_them(tmp_path, capsys, monkeypatch):
    from tests.helpers.evalsets import write_set

    _without_torch(monkeypatch)
    write_set(tmp_path / "validation_set.jsonl")
    code = finetune.main(["--evaluate", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path),
                          "--policies", "baseline,local", "--model",
                          str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "local policy" in err and "pip install -r requirements-train.txt" in err
    assert not (tmp_path / "evaluation_report.json").exists()
