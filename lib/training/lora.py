"""finetune.py --trainer trl: a LoRA on an open chat model with Hugging Face TRL's SFTTrainer and PEFT.

The recipe is Centaur's (Binz et al., Nature 2025): a LoRA on an instruction-tuned open model, the loss on the
human's response only. Each chat example becomes a prompt (system and user messages, rendered by the model's chat
template with the assistant's turn opened) and a completion (the assistant message and the template's end of turn);
the prompt's labels are -100, so only the human's action is learnt. lib/localmodel.encode() does the split, the same
one the NLL of lib/localmodel.answer_nll() scores.

Outputs, under MODELS_DIR/<name>/ (name: base model, dataset sha256, suffix):
    adapter_config.json, adapter_model.safetensors, tokenizer files   the LoRA adapter (vLLM --lora-modules)
    training.json      what made it: base model and revision, datasets and sha256, hyperparameters, losses
    checkpoints/       checkpoint-STEP folders (the last two), for --resume after Ctrl-C or a crash
    merged/            with --merge: full weights with the adapter merged in (vLLM, Ollama, llama.cpp's converter)
and the job in data/finetune_job.json, kind "trl", beside (and in the history of) OpenAI jobs.

Runs under `accelerate launch` on several GPUs: only the main process prints and writes records.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from lib.training import jobrecord, localmodel
from lib.training.localmodel import Encoded

# Small, instruction-tuned, with a chat template, Apache-2.0 and ungated: anyone can reproduce a study with it.
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
ROLES = ("system", "user", "assistant")
INFO_FILE = "training.json"
RESUME_HINT = "continue with the same command and --resume"


class TrainError(Exception):
    """A user-facing failure: one line, no traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Hyper:
    """Everything that shapes the adapter; a --resume must use the same."""
    epochs: int = 3
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 4
    max_seq_length: int = 2048
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    seed: int = 0


@dataclass
class Job:
    model: str
    train: Path
    validation: Path | None
    models_dir: Path
    record: Path
    hyper: Hyper
    revision: str | None = None
    suffix: str | None = None
    save_steps: int = 50
    logging_steps: int = 10
    resume: bool = False
    merge: bool = False
    dry_run: bool = False


# ----------------------------------------------------------------------------- datasets

def read_examples(path: Path) -> list[list[dict]]:
    """The chat examples of a JSONL file; a bad line stops with its file and line number."""
    examples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainError(f"{path}: cannot read: {exc}", EXIT_USAGE) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            example = json.loads(line)
        except ValueError as exc:
            raise TrainError(f"{where}: not valid JSON ({exc})", EXIT_USAGE) from None
        messages = example.get("messages") if isinstance(example, dict) else None
        if not isinstance(messages, list) or len(messages) < 2:
            raise TrainError(f"{where}: expected {{\"messages\": [...]}} with a prompt and an answer", EXIT_USAGE)
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise TrainError(f"{where}: messages[{i}] needs a role ({', '.join(ROLES)}) and text content",
                                 EXIT_USAGE)
        if messages[-1]["role"] != "assistant":
            raise TrainError(f"{where}: the last message must be the assistant's (the human's action)", EXIT_USAGE)
        examples.append([{"role": m["role"], "content": m["content"]} for m in messages])
    if not examples:
        raise TrainError(f"{path}: no examples", EXIT_USAGE)
    return examples


def encode_all(tokenizer: Any, examples: list[list[dict]]) -> list[Encoded]:
    return [localmodel.encode(tokenizer, *localmodel.split_example(m)) for m in examples]


def check_lengths(path: Path, encoded: list[Encoded], max_seq_length: int, context: int | None,
                  model: str) -> None:
    """Refuse examples longer than the limit rather than truncate them: the answer is at the end, so truncation
    would cut exactly what is to be learnt."""
    limit = min(max_seq_length, context) if context else max_seq_length
    over = [(i, len(e.input_ids)) for i, e in enumerate(encoded) if len(e.input_ids) > limit]
    if not over:
        return
    longest = max(n for _, n in over)
    first = over[0][0] + 1
    where = f"{len(over)} of {len(encoded)} examples in {path} (the first: example {first}; the longest: " \
            f"{longest} tokens)"
    if context and longest > context:
        raise TrainError(f"{where} are longer than {model}'s context of {context} tokens: shorten the prompts "
                         "(e.g. build the dataset without --include-chat), remove those examples, or use a model "
                         "with a longer context", EXIT_USAGE)
    raise TrainError(f"{where} are longer than --max-seq-length {max_seq_length}: raise it to at least {longest}"
                     + (f" (the model takes up to {context})" if context else ""), EXIT_USAGE)


def rows(encoded: list[Encoded]) -> list[dict]:
    """Pre-tokenised rows for SFTTrainer: labels are -100 on the prompt, so the loss covers the answer only."""
    return [{"input_ids": e.input_ids, "labels": [-100] * e.n_prompt + e.input_ids[e.n_prompt:]} for e in encoded]


def _token_stats(encoded: list[Encoded]) -> dict:
    lengths = [len(e.input_ids) for e in encoded]
    answers = [e.n_answer for e in encoded]
    return {"max": max(lengths), "mean": round(sum(lengths) / len(lengths), 1),
            "answer_tokens": sum(answers), "tokens": sum(lengths)}


# ----------------------------------------------------------------------------- names and records

MAX_SUFFIX = 64     # OpenAI's limit on its suffix too; with the base's slug the folder name stays far below 255
MAX_SLUG = 96       # a hub repo name's longest; a longer local folder name is cut


def check_suffix(suffix: str | None) -> None:
    """--suffix becomes part of a folder and a served model's name: a few letters or digits, not a path's worth."""
    if suffix is None:
        return
    if len(suffix) > MAX_SUFFIX:
        raise TrainError(f"--suffix is {len(suffix)} characters long: at most {MAX_SUFFIX} (it becomes part of the "
                         "model's folder name)", EXIT_USAGE)
    if not re.sub(r"[^a-z0-9._-]+", "-", suffix.lower()).strip("-."):
        raise TrainError(f"--suffix {suffix!r} has no letter or digit to put in the model's name", EXIT_USAGE)


def model_name(base: str, sha256: str, suffix: str | None) -> str:
    """<base>-<first 12 hex of the training set's sha256>[-<suffix>], safe as a folder and a served model name."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", Path(base.rstrip("/")).name.lower())[:MAX_SLUG].strip("-.") or "model"
    name = f"{slug}-{sha256[:12]}"
    if suffix:
        name += "-" + re.sub(r"[^a-z0-9._-]+", "-", suffix.lower()).strip("-.")
    return name


def check_models_dir(models_dir: Path, folder: Path) -> None:
    """--models-dir must be a folder, or a path one can be made at: its first existing part a writable folder.
    Checked before anything is loaded, and without creating anything (a dry run leaves no trace)."""
    where = f"--models-dir {models_dir}"
    existing = models_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TrainError(f"{where}: {existing} is not a folder" if existing != models_dir else
                         f"{where}: not a folder", EXIT_USAGE)
    if existing != models_dir and not os.access(existing, os.W_OK | os.X_OK):
        raise TrainError(f"{where}: cannot be made, {existing} is not writable", EXIT_USAGE)
    if folder.exists() and not folder.is_dir():
        raise TrainError(f"{folder}: not a folder, where the model's folder would go: move it away", EXIT_USAGE)
    if models_dir.is_dir() and not os.access(models_dir, os.W_OK | os.X_OK):
        raise TrainError(f"{where}: not writable", EXIT_USAGE)


def _summary(record: dict) -> dict:
    keys = ("job_id", "kind", "base_model", "status", "fine_tuned_model", "served_model", "adapter_path",
            "created_at", "finished_at")
    summary = {k: record.get(k) for k in keys if k in record}
    summary["training_sha256"] = (record.get("training_file") or {}).get("sha256")
    return summary


def save_record(path: Path, entry: dict) -> None:
    """Make entry the current job of the record, keeping OpenAI's upload cache and moving another current job
    into the history."""
    old = jobrecord.read_record(path) or {}
    history = list(old.get("history", []))
    if old.get("job_id") and old.get("job_id") != entry["job_id"]:
        history.append(_summary(old))
    jobrecord.write_record(path, {**entry, "uploads": old.get("uploads", {}), "history": history})


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _versions() -> dict:
    import accelerate
    import peft
    import transformers
    import trl
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "trl": trl.__version__, "accelerate": accelerate.__version__}


# ----------------------------------------------------------------------------- progress and Ctrl-C

def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Progress(TrainerCallback):
    """One line per log: step, epoch, loss, evaluation loss, elapsed and time left; keeps the losses for the
    record and rewrites the record at every checkpoint (so a crash leaves it naming the last one)."""

    def __init__(self, on_checkpoint, say):
        self.train: list[dict] = []
        self.eval: list[dict] = []
        self.on_checkpoint = on_checkpoint
        self.say = say
        self.started = time.monotonic()
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()
        self.first_step = state.global_step
        if state.global_step:
            self.say(f"resumed at step {state.global_step} of {state.max_steps}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        step, epoch = state.global_step, round(state.epoch or 0.0, 4)
        if "loss" in logs:
            self.train.append({"step": step, "epoch": epoch, "loss": logs["loss"]})
        if "eval_loss" in logs:
            self.eval.append({"step": step, "epoch": epoch, "loss": logs["eval_loss"]})
        if "loss" not in logs and "eval_loss" not in logs:
            return
        done = step - self.first_step
        elapsed = time.monotonic() - self.started
        left = elapsed / done * (state.max_steps - step) if done else math.nan
        parts = [f"step {step}/{state.max_steps}", f"epoch {epoch:.2f}"]
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if "eval_loss" in logs:
            parts.append(f"eval loss {logs['eval_loss']:.4f}")
        parts.append(f"elapsed {_clock(elapsed)}")
        if not math.isnan(left):
            parts.append(f"left ~{_clock(left)}")
        self.say("  " + "  ".join(parts))

    def on_save(self, args, state, control, **kwargs):
        self.on_checkpoint(Path(args.output_dir) / f"checkpoint-{state.global_step}", state)


class StopOnSignal(TrainerCallback):
    """Ctrl-C (or SIGTERM) ends training after the current step with a checkpoint saved; a second Ctrl-C stops at
    once. Under accelerate launch every process gets the signal; they agree on the step to stop at, since all must
    take the same steps."""

    def __init__(self, say):
        self.requested = False
        self.stopped = False
        self.say = say
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            self.uninstall()
            raise KeyboardInterrupt
        self.requested = True
        self.say("\nstopping after this step and saving a checkpoint (Ctrl-C again stops at once, without one)")

    def _agreed(self, args) -> bool:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=args.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed(args) and state.global_step < state.max_steps:
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control


# ----------------------------------------------------------------------------- errors

def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def out_of_memory_message(device: str, hyper: Hyper, longest: int) -> str:
    effective = hyper.batch_size * hyper.grad_accum
    return (f"out of memory on {device} (batch size {hyper.batch_size}, longest example {longest} tokens, "
            f"LoRA rank {hyper.lora_r}): lower --batch-size (and raise --grad-accum to keep the effective batch of "
            f"{effective}), lower --lora-r, or use a smaller --model; continue from the last checkpoint with --resume")


# ----------------------------------------------------------------------------- training

def _same_hyper(prior: dict, hyper: Hyper, folder: Path) -> None:
    before = prior.get("hyperparameters") or {}
    now = asdict(hyper)
    differ = [f"--{k.replace('_', '-')} {before.get(k)} (now {now[k]})" for k in now if before.get(k) != now[k]]
    if differ:
        raise TrainError(f"{folder} was trained with {', '.join(differ)}: resume with the same options, or start "
                         "another training with a different --suffix", EXIT_USAGE)


def _publish(tmp: Path, folder: Path) -> None:
    """Move a freshly saved adapter into place file by file, adapter_config.json last: a folder whose
    adapter_config.json is there has the matching weights."""
    names = sorted(p.name for p in tmp.iterdir())
    names.sort(key=lambda n: n == localmodel.ADAPTER_CONFIG)
    for name in names:
        target = folder / name
        if (tmp / name).is_dir():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp / name, target)
    tmp.rmdir()


def merge(adapter: Path, dest: Path, say=print) -> Path:
    """Full weights with the adapter merged in, in the base model's own dtype, written to dest as a whole."""
    say(f"merging {adapter} into its base model ...")
    lm = localmodel.load(adapter, dtype="auto")
    merged = lm.model.merge_and_unload()
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    lm.tokenizer.save_pretrained(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    say(f"merged weights: {dest}")
    return dest


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run(job: Job, callbacks: tuple = ()) -> int:
    """Train (or resume, or with dry_run only check) and record. Raises TrainError for a user-facing failure.
    callbacks: extra transformers TrainerCallbacks."""
    # torchrun and accelerate launch say which process this is; the process group itself comes up with the trainer.
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    main = rank == 0

    def say(text: str) -> None:
        if main:
            print(text, flush=True)

    hyper = job.hyper
    check_suffix(job.suffix)
    base = localmodel.resolve(job.model)
    # Before the datasets are read or anything loaded: a model that is neither a folder nor reachable is one line,
    # at once (and, without network, loading then reads the cache only: no minute of download retries).
    local_only = localmodel.check_source(base, job.revision)
    train_examples = read_examples(job.train)
    val_examples = read_examples(job.validation) if job.validation else None
    train_sha = jobrecord.sha256_file(job.train)
    val_sha = jobrecord.sha256_file(job.validation) if job.validation else None
    name = model_name(job.model, train_sha, job.suffix)
    folder = job.models_dir / name
    check_models_dir(job.models_dir, folder)
    checkpoints = folder / "checkpoints"
    info_path = folder / INFO_FILE
    prior = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None

    if job.resume:
        if prior is None and last is None:
            raise TrainError(f"nothing to resume in {folder} (no training of {job.model} on this dataset"
                             f"{' with --suffix ' + job.suffix if job.suffix else ''}): start it without --resume",
                             EXIT_USAGE)
        if prior is not None:
            _same_hyper(prior, hyper, folder)
    elif prior is not None or last is not None:
        status = (prior or {}).get("status", "interrupted")
        raise TrainError(f"{folder} already holds a training of {job.model} on this dataset ({status}): continue or "
                         "finish it with --resume, train another with --suffix, or delete the folder", EXIT_USAGE)

    tokenizer = localmodel.load_tokenizer(base, job.revision, local_only)
    context = localmodel.context_length(localmodel.load_config(base, job.revision, local_only))
    train_enc = encode_all(tokenizer, train_examples)
    check_lengths(job.train, train_enc, hyper.max_seq_length, context, job.model)
    val_enc = None
    if val_examples is not None:
        val_enc = encode_all(tokenizer, val_examples)
        check_lengths(job.validation, val_enc, hyper.max_seq_length, context, job.model)
    stats = _token_stats(train_enc)
    say(f"{job.train}: {len(train_enc)} examples, {stats['tokens']} tokens ({stats['answer_tokens']} of them "
        f"answers, the only ones trained on), longest {stats['max']}")
    if val_enc is not None:
        say(f"{job.validation}: {len(val_enc)} examples for the evaluation loss")

    device = localmodel.default_device()
    bf16 = localmodel.default_dtype(device) == torch.bfloat16
    per_step = hyper.batch_size * hyper.grad_accum * world
    steps = math.ceil(len(train_enc) / (hyper.batch_size * world) / hyper.grad_accum) * hyper.epochs
    say(f"model {job.model} on {device}{f' x{world} processes' if world > 1 else ''} "
        f"({'bf16' if bf16 else 'fp32'}); about {steps} steps of {per_step} examples; output {_display(folder)}")
    if job.dry_run:
        say("dry run: nothing trained")
        return EXIT_OK

    if job.resume and prior is not None and prior.get("status") == "succeeded" and last is None:
        # finished, and its checkpoints deleted: nothing to train, maybe something to merge
        return _finish_without_training(job, folder, prior, say)

    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model = localmodel.load_model(base, revision=job.revision, dtype=torch.bfloat16 if bf16 else torch.float32,
                                  device=device, local_only=local_only)
    revision = job.revision or getattr(model.config, "_commit_hash", None)
    now = jobrecord.now_iso()
    job_id = (prior or {}).get("job_id") or time.strftime("trl-%Y%m%dT%H%M%SZ", time.gmtime())
    entry: dict[str, Any] = {
        "kind": "trl", "trainer": "trl", "job_id": job_id,
        "status": "running", "base_model": job.model, "base_model_path": base, "base_model_revision": revision,
        "served_model": name, "model_dir": str(folder), "adapter_path": None, "merged_path": None,
        "checkpoint": last,
        "training_file": {"path": str(job.train), "sha256": train_sha, "n_examples": len(train_enc),
                          "tokens": stats},
        "validation_file": ({"path": str(job.validation), "sha256": val_sha, "n_examples": len(val_enc),
                             "tokens": _token_stats(val_enc)} if val_enc is not None else None),
        "hyperparameters": {**asdict(hyper), "lora_target_modules": "all-linear", "save_steps": job.save_steps,
                            "effective_batch_size": per_step},
        "precision": "bf16" if bf16 else "fp32", "device": device, "processes": world,
        "versions": _versions(), "fine_tuned_model": None,
        "losses": (prior or {}).get("losses") or {"train": [], "eval": []},
        "created_at": (prior or {}).get("created_at") or now, "finished_at": None, "updated_at": now,
        "status_history": [*(prior or {}).get("status_history", []), {"status": "running", "at": now}],
        "error": None,
    }

    def record(**changes: Any) -> None:
        if not main:
            return
        entry.update(changes, updated_at=jobrecord.now_iso())
        if "status" in changes and changes["status"] != entry["status_history"][-1]["status"]:
            entry["status_history"].append({"status": changes["status"], "at": entry["updated_at"]})
        _write_json(info_path, entry)
        save_record(job.record, entry)

    resumed_losses = entry["losses"]

    def on_checkpoint(path: Path, st) -> None:
        record(checkpoint=str(path), losses=_merge_losses(resumed_losses, progress),
               steps=[st.global_step, st.max_steps])

    progress = Progress(on_checkpoint, say)
    stopper = StopOnSignal(say)
    folder.mkdir(parents=True, exist_ok=True)
    config = SFTConfig(
        output_dir=str(checkpoints), num_train_epochs=hyper.epochs, learning_rate=hyper.learning_rate,
        per_device_train_batch_size=hyper.batch_size, per_device_eval_batch_size=hyper.batch_size,
        gradient_accumulation_steps=hyper.grad_accum, seed=hyper.seed, data_seed=hyper.seed,
        max_length=None, packing=False, bf16=bf16, fp16=False, use_cpu=device == "cpu",
        activation_checkpointing=device != "cpu", logging_steps=job.logging_steps, logging_first_step=True,
        eval_strategy="steps" if val_enc is not None else "no", eval_steps=job.save_steps,
        save_strategy="steps", save_steps=job.save_steps, save_total_limit=2, report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, dataset_num_proc=None,
    )
    peft_config = LoraConfig(r=hyper.lora_r, lora_alpha=hyper.lora_alpha, lora_dropout=hyper.lora_dropout,
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model, args=config, processing_class=tokenizer, peft_config=peft_config,
        train_dataset=Dataset.from_list(rows(train_enc)),
        eval_dataset=Dataset.from_list(rows(val_enc)) if val_enc is not None else None,
        callbacks=[progress, stopper, *callbacks])
    trainer.remove_callback(PrinterCallback)   # Progress prints the same, one readable line per log
    record(status="running")
    say("training (Ctrl-C stops after the current step and keeps a checkpoint; resume with --resume)")
    stopper.install()
    try:
        result = trainer.train(resume_from_checkpoint=last)
    except KeyboardInterrupt:
        record(status="interrupted", losses=_merge_losses(resumed_losses, progress),
               error="stopped at once by a second Ctrl-C, without a checkpoint of the last steps")
        raise TrainError(f"stopped at once; the last checkpoint is kept: {RESUME_HINT}", EXIT_INTERRUPTED) \
            from None
    except Exception as exc:
        oom = is_out_of_memory(exc)
        message = out_of_memory_message(device, hyper, stats["max"]) if oom else \
            f"{type(exc).__name__}: {localmodel.first_line(exc)}"
        record(status="failed", error=message, losses=_merge_losses(resumed_losses, progress))
        if not oom:
            raise       # not the user's to fix: the traceback is for whoever debugs it; the record says failed
        raise TrainError(message) from None
    finally:
        stopper.uninstall()

    losses_now = _merge_losses(resumed_losses, progress)
    steps_done = [trainer.state.global_step, trainer.state.max_steps]
    if stopper.stopped:
        record(status="interrupted", losses=losses_now, steps=steps_done)
        say(f"stopped at step {trainer.state.global_step} of {trainer.state.max_steps}; checkpoint "
            f"{_display(Path(entry['checkpoint'] or checkpoints))}. {RESUME_HINT}")
        return EXIT_INTERRUPTED

    tmp = folder / ".adapter.tmp"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))            # writes from the main process only
    trainer.accelerator.wait_for_everyone()
    finals = {"final_train_loss": result.metrics.get("train_loss"),
              "final_eval_loss": losses_now["eval"][-1]["loss"] if losses_now["eval"] else None}
    if main:
        _publish(tmp, folder)
        record(status="succeeded", adapter_path=str(folder), losses={**losses_now, **finals}, steps=steps_done,
               finished_at=jobrecord.now_iso())
    say(f"adapter: {_display(folder)} (train loss {_fmt(finals['final_train_loss'])}, eval loss "
        f"{_fmt(finals['final_eval_loss'])}); recorded in {_display(job.record)}")
    if job.merge and main:
        del trainer, model
        record(merged_path=str(merge(folder, folder / "merged", say)))
    say(f"serve it as {name}: see the README (vLLM with the adapter; Ollama or llama.cpp with --merge)")
    return EXIT_OK


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _merge_losses(before: dict, progress: Progress) -> dict:
    """The losses of earlier runs up to where this one took over, then this run's."""
    start = progress.first_step
    return {"train": [x for x in before.get("train", []) if x["step"] <= start] + progress.train,
            "eval": [x for x in before.get("eval", []) if x["step"] <= start] + progress.eval}


def _finish_without_training(job: Job, folder: Path, prior: dict, say) -> int:
    say(f"{folder}: the training has finished already")
    if job.merge:
        prior = {**prior, "merged_path": str(merge(folder, folder / "merged", say)), "updated_at": jobrecord.now_iso()}
        _write_json(folder / INFO_FILE, prior)
        save_record(job.record, prior)
    return EXIT_OK
