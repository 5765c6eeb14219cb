"""finetune.py --trainer trl and lib/training/localmodel.py on a tiny model made here: random weights, a tokenizer
trained on
the examples, a ChatML template. CPU, offline, nothing downloaded. Skipped without requirements-train.txt.

torch, transformers and the modules built on them (ten seconds of CPU to import) are imported when a test first uses
them, not when pytest collects this file: under -n every worker collects every file, and only the workers that run
these tests (two: the groups below) need them."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # before huggingface_hub is imported: nothing may be downloaded

from lib.training import requirements as trainreqs  # noqa: E402


# Whether the packages are there is looked up (no import): importing them to see that they work takes ten seconds,
# which every -n worker would pay to collect this file. CI checks that they import (.ci/run); a broken install fails
# the tests that use them, saying why.
def absent(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or one without a spec
        return True


ABSENT = [name for name in trainreqs.PACKAGES if absent(name)]
if ABSENT:
    pytest.skip(f"training requirements not installed ({', '.join(ABSENT)}): {trainreqs.INSTALL}",
                allow_module_level=True)

import finetune  # noqa: E402
from lib.training import jobrecord  # noqa: E402
from tests.helpers.paths import REPO  # noqa: E402

localmodel: Any = None  # lib.training.localmodel and lib.training.lora, once the first test here runs
trltrain: Any = None


@pytest.fixture(scope="session", autouse=True)
def _training_modules() -> None:
    """Imports the modules built on torch for the tests here, when the first of them runs."""
    global localmodel, trltrain
    from lib.training import localmodel
    from lib.training import lora as trltrain


def make_model(*args, **kwargs) -> Path:
    from tests.helpers.tinymodel import make_model

    return make_model(*args, **kwargs)


def callbacks():
    """tests/helpers/trainer_callbacks.py: its classes subclass transformers' TrainerCallback."""
    from tests.helpers import trainer_callbacks

    return trainer_callbacks


# Under -n the tests here run in two workers (xdist groups), which alone import torch: the tests marked TRAINED
# (those that read the one training of the `trained` fixture, which each worker would train again, and the longest
# test) in one, all the others in the other. The timeout is a hang guard, not a speed limit: the longest test here
# is a minute of CPU alone and shares two cores with three other workers; a machine three times slower still passes.
pytestmark = [pytest.mark.timeout(600), pytest.mark.xdist_group("lora")]
TRAINED = pytest.mark.xdist_group("lora-trained")  # with the module's group: the group "lora_lora-trained"

ROOT = REPO
ANSWERS = ['{"gameId":7,"type":"compensation-decision","decision":[1]}',
           '{"gameId":7,"type":"compensation-decision","decision":[0]}',
           '{"gameId":7,"type":"compensation-request","compensationRequests":[null,250000]}']
FAST = ["--batch-size", "4", "--grad-accum", "1", "--lr", "1e-2", "--lora-r", "8", "--logging-steps", "5"]


def example(i: int, filler: str = "") -> dict:
    k = i % 3
    return {"messages": [
        {"role": "system", "content": f"You are Owner {k + 1} in the IBEX voting game."},
        {"role": "user", "content": f"Round {k}: the developer offers {k * 1000}. {filler}What do you do?"},
        {"role": "assistant", "content": ANSWERS[k]}]}


def write_jsonl(path: Path, examples: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """The base model: its weights start with a larger spread than a real model's, so that a LoRA of rank 8
    visibly learns the three answers in a few dozen steps."""
    return make_model(tmp_path_factory.mktemp("tiny") / "tiny-chat", [json.dumps(example(i)) for i in range(3)],
                      init_range=0.2)


def make_data(folder: Path, n_train: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "training_set.jsonl", [example(i) for i in range(n_train)])
    write_jsonl(folder / "validation_set.jsonl", [example(i) for i in range(3)])
    return folder


def trl(capsys, data: Path, model: Path, *args) -> tuple[int, str, str]:
    code = finetune.main(["--trainer", "trl", "--model", str(model), "--data-dir", str(data), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def the_folder(data: Path) -> Path:
    (folder,) = [p for p in (data / "models").iterdir() if p.is_dir()]
    return folder


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """One full training with --merge, after an OpenAI job already in the record; several tests read it."""
    data = make_data(tmp_path_factory.mktemp("trained"))
    jobrecord.write_record(data / "finetune_job.json", {
        "job_id": "ftjob-openai1", "base_model": "gpt-4.1-mini-2025-04-14", "status": "succeeded",
        "fine_tuned_model": "ft:gpt-4.1-mini:org::abc", "uploads": {"aa": {"file_id": "file-1"}}, "history": []})
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = finetune.main(["--trainer", "trl", "--model", str(tiny), "--data-dir", str(data), "--epochs", "20",
                              "--save-steps", "20", "--merge", *FAST])
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "data": data,
            "folder": the_folder(data), "record": json.loads((data / "finetune_job.json").read_text())}


# ----------------------------------------------------------------------------- training

@TRAINED
def test_training_lowers_the_loss_and_writes_the_adapter_and_the_record(trained, tiny):
    assert trained["code"] == 0, trained["err"]
    record, folder, data = trained["record"], trained["folder"], trained["data"]
    train_sha = jobrecord.sha256_file(data / "training_set.jsonl")
    assert folder.name == f"tiny-chat-{train_sha[:12]}"
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny)
    assert record["kind"] == "trl" and record["status"] == "succeeded"
    assert record["base_model"] == str(tiny) and record["served_model"] == folder.name
    assert record["adapter_path"] == str(folder)
    assert record["training_file"] == {**record["training_file"], "sha256": train_sha, "n_examples": 12}
    assert record["validation_file"]["sha256"] == jobrecord.sha256_file(data / "validation_set.jsonl")
    assert record["hyperparameters"] == {**record["hyperparameters"], "epochs": 20, "learning_rate": 0.01,
                                         "batch_size": 4, "grad_accum": 1, "lora_r": 8, "seed": 0}
    assert record["precision"] == "fp32" and record["device"] == "cpu"
    assert record["versions"]["trl"] and record["versions"]["torch"]
    train_losses = [x["loss"] for x in record["losses"]["train"]]
    assert len(train_losses) >= 5 and train_losses[-1] < train_losses[0] / 2
    eval_losses = [x["loss"] for x in record["losses"]["eval"]]
    assert [x["step"] for x in record["losses"]["eval"]] == [20, 40, 60]
    assert eval_losses[-1] < eval_losses[0] and record["losses"]["final_eval_loss"] == eval_losses[-1]
    # the OpenAI job before it is kept in the history, and so is OpenAI's upload cache
    assert record["history"][-1]["job_id"] == "ftjob-openai1"
    assert record["uploads"] == {"aa": {"file_id": "file-1"}}
    assert json.loads((folder / "training.json").read_text())["job_id"] == record["job_id"]


@TRAINED
def test_progress_shows_steps_losses_and_time_left(trained):
    lines = trained["out"].splitlines()
    steps = [line for line in lines if line.strip().startswith("step ")]
    assert any("loss " in line and "left ~" in line for line in steps)
    assert any("eval loss " in line for line in steps)
    assert steps[-1].strip().startswith("step 60/60")
    assert "{'loss'" not in trained["out"]   # the trainer's own dict dumps are replaced by these lines


@TRAINED
def test_the_trained_adapter_answers_like_the_humans(trained, tiny):
    tuned, base = localmodel.load(trained["folder"]), localmodel.load(tiny)
    assert tuned.adapter == str(trained["folder"]) and tuned.base == str(tiny)
    for i in range(3):
        prompt, answer = localmodel.split_example(example(i)["messages"])
        assert localmodel.decide(tuned, prompt, max_new_tokens=40) == answer
        assert localmodel.answer_nll(tuned, prompt, answer).nll < localmodel.answer_nll(base, prompt, answer).nll / 3


@TRAINED
def test_merge_writes_full_weights_that_score_like_the_adapter(trained):
    merged_dir = trained["folder"] / "merged"
    assert trained["record"]["merged_path"] == str(merged_dir)
    assert (merged_dir / "config.json").is_file() and (merged_dir / "tokenizer_config.json").is_file()
    assert not (merged_dir / "adapter_config.json").exists()
    merged, adapter = localmodel.load(merged_dir), localmodel.load(trained["folder"])
    assert merged.adapter is None
    prompt, answer = localmodel.split_example(example(2)["messages"])
    assert localmodel.answer_nll(merged, prompt, answer).nll == pytest.approx(
        localmodel.answer_nll(adapter, prompt, answer).nll, rel=1e-4)
    assert localmodel.decide(merged, prompt, max_new_tokens=40) == answer


@TRAINED
def test_a_second_run_on_the_same_data_is_refused_without_resume(trained, tiny, capsys):
    code, _, err = trl(capsys, trained["data"], tiny, "--epochs", 20, "--save-steps", 20, *FAST)
    assert code == 2
    assert err.count("\n") == 1 and "already holds a training" in err and "--resume" in err and "--suffix" in err


def job(tiny: Path, data: Path, **changes) -> trltrain.Job:
    hyper = trltrain.Hyper(**{"epochs": 1, "learning_rate": 1e-2, "batch_size": 4, "grad_accum": 1, "lora_r": 8,
                              **changes.pop("hyper", {})})
    return trltrain.Job(**{"model": str(tiny), "train": data / "training_set.jsonl", "validation": None,
                           "models_dir": data / "models", "record": data / "finetune_job.json", "hyper": hyper,
                           "logging_steps": 1, **changes})


def test_the_loss_covers_the_answer_only(tiny, tmp_path, capsys):
    data = make_data(tmp_path, n_train=4)
    grab = callbacks().Grab()
    assert trltrain.run(job(tiny, data), callbacks=(grab,)) == 0
    tokenizer = localmodel.load_tokenizer(str(tiny))
    seen = set()
    for ids, labels in zip(grab.batch["input_ids"].tolist(), grab.batch["labels"].tolist(), strict=True):
        # rows are shuffled and padded: find each row's example by its tokens
        (k,) = [k for k in range(3) if ids[:len(encoded(tokenizer, k).input_ids)] == encoded(tokenizer, k).input_ids]
        enc, seen = encoded(tokenizer, k), seen | {k}
        n_prompt = len(tokenizer(tokenizer.apply_chat_template(example(k)["messages"][:-1], tokenize=False,
                                                               add_generation_prompt=True),
                                 add_special_tokens=False)["input_ids"])
        assert labels[:n_prompt] == [-100] * n_prompt
        assert labels[n_prompt:len(enc.input_ids)] == ids[n_prompt:len(enc.input_ids)]
        assert set(labels[len(enc.input_ids):]) <= {-100}                     # padding
        assert tokenizer.decode(labels[n_prompt:len(enc.input_ids)]) == ANSWERS[k] + "<|im_end|>\n"
    assert len(seen) >= 2


def encoded(tokenizer, k: int) -> localmodel.Encoded:
    return localmodel.encode(tokenizer, *localmodel.split_example(example(k)["messages"]))


def test_ctrl_c_keeps_a_checkpoint_and_resume_continues_from_it(tiny, tmp_path, capsys):
    data = make_data(tmp_path, n_train=12)
    stopped = job(tiny, data, hyper={"epochs": 3}, save_steps=100)
    assert trltrain.run(stopped, callbacks=(callbacks().Interrupt(at_step=4),)) == trltrain.EXIT_INTERRUPTED
    out = capsys.readouterr().out
    assert "stopped at step 4 of 9" in out and "--resume" in out
    folder = the_folder(data)
    assert (folder / "checkpoints" / "checkpoint-4").is_dir()
    assert not (folder / "adapter_config.json").exists()
    record = json.loads((data / "finetune_job.json").read_text())
    assert record["status"] == "interrupted" and record["checkpoint"].endswith("checkpoint-4")
    assert [x["step"] for x in record["losses"]["train"]] == [1, 2, 3, 4]

    changed = job(tiny, data, hyper={"epochs": 3, "learning_rate": 5e-3}, save_steps=100, resume=True)
    with pytest.raises(trltrain.TrainError, match=r"--learning-rate 0.01 \(now 0.005\)"):
        trltrain.run(changed)

    assert trltrain.run(job(tiny, data, hyper={"epochs": 3}, save_steps=100, resume=True)) == 0
    out = capsys.readouterr().out
    assert "resumed at step 4 of 9" in out and "step 5/9" in out and "step 1/9" not in out
    record = json.loads((data / "finetune_job.json").read_text())
    assert record["status"] == "succeeded" and record["job_id"] == json.loads(
        (folder / "training.json").read_text())["job_id"]
    assert [x["step"] for x in record["losses"]["train"]] == list(range(1, 10))
    assert [h["status"] for h in record["status_history"]] == ["running", "interrupted", "running", "succeeded"]
    assert (folder / "adapter_config.json").is_file()

    # a finished training, resumed with --merge: nothing more is trained, the merged weights are written
    assert trltrain.run(job(tiny, data, hyper={"epochs": 3}, save_steps=100, resume=True, merge=True)) == 0
    out = capsys.readouterr().out
    assert "resumed at step 9 of 9" in out and "step 10" not in out
    record = json.loads((data / "finetune_job.json").read_text())
    assert record["status"] == "succeeded" and record["merged_path"] == str(folder / "merged")
    assert (folder / "merged" / "config.json").is_file()


def test_ctrl_c_on_the_command_line_stops_cleanly(tiny, tmp_path):
    """The real script in its own process: Ctrl-C during training exits 130 with the checkpoint on disk."""
    data = make_data(tmp_path, n_train=12)
    env = {**os.environ, "PYTHON_DOTENV_DISABLED": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "finetune.py"), "--trainer", "trl", "--model", str(tiny), "--data-dir",
         str(data), "--epochs", "1000", "--save-steps", "100000", *FAST, "--logging-steps", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.strip().startswith("step 3/"):
                proc.send_signal(signal.SIGINT)
                break
        rest, err = proc.communicate(timeout=300)  # a hang guard: saving the checkpoint takes seconds
    finally:
        if proc.poll() is None:     # never leave a training running behind a failed test
            proc.kill()
            proc.communicate()
    out = "".join(lines) + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "stopped at step" in out and "continue with the same command and --resume" in out
    (checkpoint,) = (the_folder(data) / "checkpoints").glob("checkpoint-*")
    assert (checkpoint / "adapter_model.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert json.loads((data / "finetune_job.json").read_text())["status"] == "interrupted"


def test_several_processes_train_one_model_and_one_process_reports(tiny, tmp_path):
    """What accelerate launch --multi_gpu does on GPUs, torchrun does here on the CPU: two processes, one
    data-parallel training; only the first prints and writes."""
    data = make_data(tmp_path, n_train=12)
    env = {**os.environ, "PYTHON_DOTENV_DISABLED": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(ROOT / "finetune.py"), "--trainer",
         "trl", "--model", str(tiny), "--data-dir", str(data), "--epochs", "2", "--save-steps", "3", "--batch-size",
         "2", "--grad-accum", "1", "--lr", "1e-2", "--lora-r", "8", "--logging-steps", "1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=500)  # a hang guard
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("step ")]
    assert [s.split()[1] for s in steps if "eval" not in s] == [f"{i}/6" for i in range(1, 7)]   # 12 / (2 x 2)
    assert result.stdout.count("adapter: ") == 1 and "x2 processes" in result.stdout
    record = json.loads((data / "finetune_job.json").read_text())
    assert record["status"] == "succeeded" and record["processes"] == 2
    assert record["hyperparameters"]["effective_batch_size"] == 4
    assert (the_folder(data) / "adapter_model.safetensors").is_file()


def test_dry_run_checks_the_data_and_trains_nothing(tiny, tmp_path, capsys):
    data = make_data(tmp_path)
    code, out, _ = trl(capsys, data, tiny, "--dry-run")
    assert code == 0
    assert "12 examples" in out and "3 examples for the evaluation loss" in out and "dry run" in out
    assert not (data / "models").exists() and not (data / "finetune_job.json").exists()


# ----------------------------------------------------------------------------- errors: one line each

def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_a_model_that_cannot_be_loaded(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    code, _, err = trl(capsys, data, tmp_path / "no-such-model")
    assert code == 2
    assert "no such folder" in one_line(err) and "no-such-model" in err
    code, _, err = trl(capsys, data, "nobody/no-such-model")    # a hub id, with the hub offline
    assert code == 2 and "nobody/no-such-model" in one_line(err)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """huggingface_hub's settings for one test: an empty cache of its own, online, the hub where nothing listens
    (so nothing can be downloaded however the test goes). Returns the cache folder."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    return cache


def cache_model(cache: Path, repo: str) -> None:
    """A model in the Hugging Face cache's layout, as a download leaves it (its config is all check_source reads)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "config.json").write_text("{}")


@pytest.mark.parametrize("model", ["/nonexistent/folder", "./not-here", "data/models/gone"])
def test_a_model_path_that_is_no_folder_says_so(tmp_path, capsys, model, hub):
    code, out, err = trl(capsys, make_data(tmp_path / "data"), model, "--dry-run")
    assert code == 2 and out == ""
    assert f"error: {model}: no such folder" in one_line(err) and "Repo id" not in err


def test_a_hub_model_without_network_is_one_line_at_once(tmp_path, capsys, hub):
    code, out, err = trl(capsys, make_data(tmp_path / "data"), finetune.TRL_DEFAULT_MODEL, "--dry-run")
    from huggingface_hub import constants

    assert code == 2 and out == ""
    assert f"the hub {constants.ENDPOINT} cannot be reached" in one_line(err)
    assert "Retrying" not in err and "not in the Hugging Face cache" in err


def test_a_hub_model_with_hf_hub_offline_and_no_cache_is_one_line(tmp_path, capsys, hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, out, err = trl(capsys, make_data(tmp_path / "data"), finetune.TRL_DEFAULT_MODEL, "--dry-run")
    assert code == 2 and out == ""
    assert "not in the Hugging Face cache while HF_HUB_OFFLINE is set" in one_line(err)


@pytest.mark.parametrize("offline", [False, True], ids=["no-network", "HF_HUB_OFFLINE"])
def test_a_cached_hub_model_loads_from_the_cache_only_when_the_hub_is_out_of_reach(hub, monkeypatch, offline):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    cache_model(hub, "someone/cached-chat")
    assert localmodel.check_source("someone/cached-chat") is True   # local files only: no download, no retries
    with pytest.raises(localmodel.LocalModelError, match="someone/other: no such folder"):
        localmodel.check_source("someone/other")


def test_a_local_folder_is_checked_before_the_hub(tiny, hub):
    assert localmodel.check_source(str(tiny)) is False


def test_a_suffix_too_long_for_a_folder_name_is_one_line(tiny, tmp_path, capsys):
    data = make_data(tmp_path / "data")
    code, out, err = trl(capsys, data, tiny, "--dry-run", "--suffix", "x" * 300)
    assert code == 2 and out == ""
    assert "--suffix is 300 characters long: at most 64" in one_line(err)
    code, _, err = trl(capsys, data, tiny, "--dry-run", "--suffix", "///")
    assert code == 2 and "has no letter or digit" in one_line(err)
    code, out, _ = trl(capsys, data, tiny, "--dry-run", "--suffix", "s" * 64)
    assert code == 0 and "s" * 64 in out


@pytest.mark.parametrize("where", ["a file", "/dev/null", "under a file"])
def test_a_models_dir_that_is_not_a_folder_is_one_line(tiny, tmp_path, capsys, where):
    data = make_data(tmp_path / "data")
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    models_dir = {"a file": afile, "/dev/null": Path("/dev/null"), "under a file": afile / "models"}[where]
    code, out, err = trl(capsys, data, tiny, "--dry-run", "--models-dir", models_dir)
    assert code == 2 and "Traceback" not in err
    assert "not a folder" in one_line(err) and f"--models-dir {models_dir}" in err


def test_a_long_local_folder_name_still_makes_a_folder_name_that_fits(tmp_path):
    name = trltrain.model_name(str(tmp_path / ("m" * 250)), "ab" * 32, "s" * 64)
    assert len(name.encode()) <= 255


def test_a_model_without_a_chat_template(tmp_path, capsys):
    plain = make_model(tmp_path / "plain", [json.dumps(example(0))], chat_template=None)
    capsys.readouterr()
    code, _, err = trl(capsys, make_data(tmp_path / "data"), plain)
    assert code == 2 and "has no chat template" in one_line(err) and "instruction-tuned" in err


def test_examples_over_the_maximum_length_are_counted_not_truncated(tiny, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "training_set.jsonl", [example(i, filler="word " * (40 if i in (3, 5) else 0))
                                              for i in range(10)])
    code, _, err = trl(capsys, data, tiny, "--max-seq-length", 80)
    assert code == 2
    assert "2 of 10 examples" in one_line(err) and "the first: example 4" in err and "raise it to at least" in err
    assert not (data / "models").exists()


def test_examples_over_the_models_context(tmp_path, capsys):
    short = make_model(tmp_path / "short", [json.dumps(example(i)) for i in range(3)], context=64)
    capsys.readouterr()
    data = make_data(tmp_path / "data")
    code, _, err = trl(capsys, data, short, "--max-seq-length", 4096)
    assert code == 2
    assert "4 of 12 examples" in one_line(err) and "the first: example 3" in err   # the long answers
    assert "context of 64 tokens" in err and "--include-chat" in err


def test_out_of_memory_says_what_to_lower(tiny, tmp_path):
    data = make_data(tmp_path, n_train=12)
    with pytest.raises(trltrain.TrainError) as caught:
        trltrain.run(job(tiny, data), callbacks=(callbacks().RunOutOfMemory(),))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("out of memory on cpu")
    assert "--batch-size" in message and "--grad-accum" in message and "--resume" in message
    record = json.loads((data / "finetune_job.json").read_text())
    assert record["status"] == "failed" and record["error"] == message


def test_a_bad_line_is_named(tiny, tmp_path, capsys):
    data = make_data(tmp_path)
    with open(data / "training_set.jsonl", "a") as f:
        f.write('{"messages": [{"role": "user", "content": "hi"}]}\n')
    code, _, err = trl(capsys, data, tiny)
    assert code == 2 and "training_set.jsonl:13:" in one_line(err)


# ----------------------------------------------------------------------------- finetune.py --evaluate: local

@TRAINED
def test_evaluate_scores_the_trained_model_beside_its_base(tmp_path, capsys, monkeypatch):
    """The whole path: a set as constructDataset.py writes it, a training on it, then --evaluate with the
    recorded adapter (local) and its base model (local-base): decisions scored, NLL of the humans' answers."""
    from tests.helpers.evalsets import write_set
    from tests.helpers.fakeopenai import FakeOpenAI

    data = tmp_path / "data"
    write_set(data / "training_set.jsonl")
    write_set(data / "validation_set.jsonl")
    texts = (data / "training_set.jsonl").read_text().splitlines()
    base = make_model(tmp_path / "ibex-chat", texts, context=1024, init_range=0.2, vocab_size=1000)
    capsys.readouterr()
    code, _, err = trl(capsys, data, base, "--epochs", 10, "--max-seq-length", 1024, *FAST)
    assert code == 0, err
    code, out, err = (finetune.main(["--evaluate", "--data-dir", str(data), "--output-dir", str(data), "--policies",
                                     "baseline,local,local-base"]), *capsys.readouterr())
    assert code == 0, err
    report = json.loads((data / "evaluation_report.json").read_text())
    local, local_base = report["policies"]["local"], report["policies"]["local-base"]
    for action in ("compensation-request", "compensation-offer", "compensation-decision"):
        assert local[action]["n"] == local_base[action]["n"] > 0
        assert 0 < local[action]["nll"] < local_base[action]["nll"] / 2
        assert 0 < local[action]["nll_per_token"] < local[action]["nll"] / 10   # answers of 20-odd tokens
    info = report["policy_info"]
    assert info["local"]["adapter"] == str(the_folder(data)) and info["local"]["base"] == str(base)
    assert info["local-base"]["model"] == str(base) and info["local-base"]["adapter"] is None
    assert info["local"]["model_source"] == str(data / "finetune_job.json")
    assert "nll" in out and "local-base" in out

    # The same adapter served (a fake vLLM computing prompt log-probabilities with it) and asked by the llm policy
    # with --nll: the NLL it reports is the one the local policy computed in this process above (the same adapter
    # on the same examples: asking the local policy again would only generate its answers again).
    lm = localmodel.load(the_folder(data))
    with FakeOpenAI() as fake:
        fake.chat_default = FakeVLLM(lm)
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        code = finetune.main(["--evaluate", "--data-dir", str(data), "--output-dir", str(data),
                              "--policies", "llm", "--model",
                              str(the_folder(data)), "--nll"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((data / "evaluation_report.json").read_text())
    for action in ("compensation-request", "compensation-offer", "compensation-decision"):
        assert report["policies"]["llm"][action]["nll"] == pytest.approx(local[action]["nll"], rel=1e-4)


def test_evaluate_local_needs_a_model(tmp_path, capsys):
    from tests.helpers.evalsets import write_set

    data = tmp_path / "data"
    write_set(data / "validation_set.jsonl")
    code = finetune.main(["--evaluate", "--data-dir", str(data), "--output-dir", str(data), "--policies", "local"])
    err = capsys.readouterr().err
    assert code == 2 and "--model PATH" in one_line(err)
    code = finetune.main(["--evaluate", "--data-dir", str(data), "--output-dir", str(data),
                          "--policies", "local-base", "--model",
                          str(data)])
    err = capsys.readouterr().err
    assert code == 2 and "not a LoRA adapter folder" in one_line(err)
    assert not (data / "evaluation_report.json").exists()


# ----------------------------------------------------------------------------- lib/training/localmodel.py

def test_the_nll_of_a_known_answer(tmp_path):
    """A model whose output layer is zero finds every token equally likely: an answer of n tokens (with the
    end of turn) has NLL n * log(vocabulary size)."""
    flat = localmodel.load(make_model(tmp_path / "flat", [json.dumps(example(i)) for i in range(3)],
                                      zero_head=True))
    prompt, answer = localmodel.split_example(example(2)["messages"])
    n = len(flat.tokenizer(answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"])
    score = localmodel.answer_nll(flat, prompt, answer)
    assert score.tokens == n
    assert score.nll == pytest.approx(n * math.log(len(flat.tokenizer)), rel=1e-5)
    assert score.per_token == pytest.approx(math.log(len(flat.tokenizer)), rel=1e-5)


class FakeVLLM:
    """What vLLM's chat completions answer with prompt_logprobs=0, computed by a model in this process: the
    conversation rendered by the model's chat template (with or without the generation prompt, as asked), and each
    prompt token's log-probability given the tokens before it."""

    def __init__(self, lm: localmodel.LocalModel, token_ids: bool = True):
        self.lm, self.token_ids, self.requests = lm, token_ids, []

    def __call__(self, body: dict) -> dict:
        import torch

        self.requests.append(body)
        text = self.lm.tokenizer.apply_chat_template(body["messages"], tokenize=False,
                                                     add_generation_prompt=body.get("add_generation_prompt", True))
        ids = self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = self.lm.model(input_ids=torch.tensor([ids])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        prompt_logprobs = [None] + [{str(t): {"logprob": float(logprobs[i - 1, t]), "rank": 1, "decoded_token": "?"}}
                                    for i, t in enumerate(ids) if i > 0]
        extra = {"prompt_logprobs": prompt_logprobs,
                 "usage": {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}}
        if self.token_ids:
            extra["prompt_token_ids"] = ids
        return {"content": "x", "response_extra": extra}


@TRAINED
@pytest.mark.parametrize("token_ids", [True, False], ids=["with prompt_token_ids", "with token counts only"])
def test_a_served_model_gives_the_same_nll_as_in_process(trained, token_ids):
    """The NLL through an OpenAI-compatible endpoint that returns prompt log-probabilities, as vLLM does, with the
    real openai SDK: the same number the model gives in this process."""
    import asyncio

    import openai

    from lib.training import nll
    from tests.helpers.fakeopenai import FakeOpenAI

    lm = localmodel.load(trained["folder"])
    prompt, answer = localmodel.split_example(example(2)["messages"])
    with FakeOpenAI() as fake:
        fake.chat_default = vllm = FakeVLLM(lm, token_ids)

        async def ask():
            client = openai.AsyncOpenAI(api_key=fake.api_key, base_url=fake.base_url)
            try:
                return await nll.served_answer_nll(client, "tiny-chat", prompt, answer)
            finally:
                await client.close()

        served = asyncio.run(ask())
    local = localmodel.answer_nll(lm, prompt, answer)
    assert served.tokens == local.tokens and served.nll == pytest.approx(local.nll, rel=1e-5)
    assert [r["add_generation_prompt"] for r in vllm.requests] == [False, True]
    assert all(r["prompt_logprobs"] == 0 and r["max_tokens"] == 1 for r in vllm.requests)


def test_an_endpoint_without_prompt_logprobs_says_so():
    import asyncio

    import openai

    from lib.training import nll
    from tests.helpers.fakeopenai import FakeOpenAI

    with FakeOpenAI() as fake:
        fake.chat_default = lambda body: "{}"

        async def ask():
            client = openai.AsyncOpenAI(api_key=fake.api_key, base_url=fake.base_url)
            try:
                return await nll.served_answer_nll(client, "gpt-4.1-mini", [{"role": "user", "content": "hi"}], "x")
            finally:
                await client.close()

        with pytest.raises(nll.NoPromptLogprobs, match="no prompt log-probabilities"):
            asyncio.run(ask())


def test_encode_splits_prompt_and_answer_as_the_template_renders_them(tiny):
    tokenizer = localmodel.load_tokenizer(str(tiny))
    prompt, answer = localmodel.split_example(example(1)["messages"])
    enc = localmodel.encode(tokenizer, prompt, answer)
    assert tokenizer.decode(enc.input_ids[:enc.n_prompt]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(enc.input_ids[enc.n_prompt:]) == answer + "<|im_end|>\n"
    assert localmodel.encode(tokenizer, prompt).input_ids == enc.input_ids[:enc.n_prompt]


def test_an_example_without_an_answer_is_refused():
    with pytest.raises(localmodel.LocalModelError, match="assistant"):
        localmodel.split_example([{"role": "user", "content": "hi"}])


def test_the_default_model_is_the_documented_one():
    assert finetune.TRL_DEFAULT_MODEL == trltrain.DEFAULT_MODEL == "Qwen/Qwen2.5-0.5B-Instruct"
    assert vars(finetune.TRL_HYPER) == vars(trltrain.Hyper())
    assert "Qwen/Qwen2.5-0.5B-Instruct" in (ROOT / "README.md").read_text()
