#!/usr/bin/env python3
"""Fine-tune a chat model on the IBEX dataset: check, upload, start the job, follow it.

    python finetune.py                    # data/training_set.jsonl (+ data/validation_set.jsonl)
    python finetune.py --dry-run          # checks, token counts and cost estimate; no network
    python finetune.py --yes              # no question before a paid job (without a terminal, --yes is needed)
    python finetune.py --follow [JOB_ID]  # resume following the recorded (or a given) job
    python finetune.py --list             # recent jobs
    python finetune.py --cancel JOB_ID
    python finetune.py --evaluate         # how human-like are baseline, fitted (and llm)? (lib/evaluation/cli.py)
    python finetune.py --trainer trl      # a LoRA on an open model, here (lib/training/lora.py; requirements-train.txt)

The job is recorded in data/finetune_job.json (job id, base model, file ids, sha256 of each
dataset, status, fine_tuned_model, error); handler.py plays with that fine_tuned_model.
Before anything is uploaded it prints the job's estimated cost and, at a paid endpoint, asks (as --evaluate does).
Ctrl-C stops following, never the job. Settings: OPENAI_API_KEY and OPENAI_BASE_URL, from the
environment or .env (OPENAI_BASE_URL lets OpenAI-compatible services such as Azure OpenAI work
unchanged).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import openai
from dotenv import load_dotenv

from lib.dataset import ftcheck
from lib.evaluation import cli as evalcli
from lib.training import jobrecord
from lib.util import redact

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = ftcheck.DEFAULT_MODEL
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_FOLLOW_FAILURES = 5     # consecutive failed polls (after the SDK's own retries) before giving up
FIRST_LOOK_EVENTS = 20      # following a job for the first time shows only its recent events
# What a metrics event's data holds (OpenAI: step, train_loss, valid_loss, full_valid_loss, token accuracies).
METRIC_KEYS = ("step", "total_steps", "train_loss", "valid_loss", "full_valid_loss", "train_mean_token_accuracy",
               "valid_mean_token_accuracy", "full_valid_mean_token_accuracy")


class Fatal(Exception):
    """A user-facing failure: printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Check, upload and fine-tune on the IBEX chat dataset; follow the job.")
    p.add_argument("--train", type=Path, help="training JSONL (default: DATA_DIR/training_set.jsonl)")
    p.add_argument("--validation", type=Path,
                   help="validation JSONL (default: DATA_DIR/validation_set.jsonl when present)")
    p.add_argument("--data-dir", type=Path, default=HERE / "data",
                   help="where the datasets and the job record live (default: ./data)")
    p.add_argument("--record", type=Path,
                   help="job record file (default: DATA_DIR/finetune_job.json)")
    p.add_argument("--trainer", choices=("openai", "trl"), default="openai",
                   help="openai: OpenAI's fine-tuning API (until 2027-01-06); trl: a LoRA on an open model, "
                        "trained here with Hugging Face TRL (needs requirements-train.txt)")
    p.add_argument("--model",
                   help=f"base model to fine-tune (default: {DEFAULT_MODEL}; fine-tunable: "
                        f"{', '.join(ftcheck.MODELS)}); with --trainer trl a Hugging Face model id or a local "
                        f"model folder (default: {TRL_DEFAULT_MODEL}); with --evaluate, the llm policy's model "
                        "(default: as handler.py picks it)")
    p.add_argument("--suffix", help="text OpenAI puts in the fine-tuned model's name")
    p.add_argument("--epochs", type=_positive_int,
                   help=f"training epochs (default: OpenAI's auto; trl: {TRL_HYPER.epochs})")
    p.add_argument("--seed", type=int, help=f"training seed, for reproducible jobs (trl default: {TRL_HYPER.seed})")
    add_trl_options(p)
    p.add_argument("--poll-interval", type=float, default=15.0, metavar="SECONDS",
                   help="seconds between status checks while following (default: 15)")
    p.add_argument("--max-retries", type=int, default=5,
                   help="retries of rate-limited or failed requests (default: 5)")
    p.add_argument("--force", action="store_true",
                   help="start a new job even though the recorded one is still running, or a job on the "
                        "same training data and base model already succeeded")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="only the checks, token counts and cost estimate; no network")
    mode.add_argument("--follow", nargs="?", const="", metavar="JOB_ID",
                      help="follow the recorded job (or JOB_ID) until it ends")
    mode.add_argument("--cancel", metavar="JOB_ID", help="cancel a job")
    mode.add_argument("--list", action="store_true", help="list recent fine-tuning jobs")
    evalcli.add_arguments(p)
    args = p.parse_args(argv)
    args.record = args.record or args.data_dir / "finetune_job.json"
    if args.evaluate and (args.follow is not None or args.cancel or args.list):
        p.error("--evaluate does not go with --follow, --cancel or --list")
    check_trl_options(p, args)
    return args


# ----------------------------------------------------------------------------- --trainer trl
# The bulk lives in lib/training/lora.py, imported only when asked for: torch is not a core requirement.

TRL_DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"   # lib.training.lora.DEFAULT_MODEL (tested equal)
TRL_HYPER = argparse.Namespace(epochs=3, learning_rate=2e-4, batch_size=4, grad_accum=4, max_seq_length=2048,
                               lora_r=16, lora_alpha=32, lora_dropout=0.05, seed=0)   # lib.training.lora.Hyper
TRL_ONLY = ("revision", "models_dir", "learning_rate", "batch_size", "grad_accum", "max_seq_length", "lora_r",
            "lora_alpha", "lora_dropout", "save_steps", "logging_steps", "resume", "merge")


def add_trl_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--trainer trl (a LoRA on an open model, trained here)")
    g.add_argument("--revision", help="the base model's revision on the Hugging Face hub (branch, tag or commit)")
    g.add_argument("--models-dir", type=Path, help="where trained models go (default: DATA_DIR/models)")
    g.add_argument("--learning-rate", "--lr", type=float, help=f"learning rate (default: {TRL_HYPER.learning_rate})")
    g.add_argument("--batch-size", type=_positive_int, help=f"examples per step and device (default: "
                   f"{TRL_HYPER.batch_size})")
    g.add_argument("--grad-accum", type=_positive_int, help=f"steps of gradient accumulation per optimiser update "
                   f"(default: {TRL_HYPER.grad_accum})")
    g.add_argument("--max-seq-length", type=_positive_int, help=f"longest example in tokens; longer ones stop the "
                   f"run, never truncated (default: {TRL_HYPER.max_seq_length})")
    g.add_argument("--lora-r", type=_positive_int, help=f"LoRA rank (default: {TRL_HYPER.lora_r})")
    g.add_argument("--lora-alpha", type=_positive_int, help=f"LoRA alpha (default: {TRL_HYPER.lora_alpha})")
    g.add_argument("--lora-dropout", type=float, help=f"LoRA dropout (default: {TRL_HYPER.lora_dropout})")
    g.add_argument("--save-steps", type=_positive_int, help="optimiser steps between checkpoints and evaluation "
                   "losses (default: 50)")
    g.add_argument("--logging-steps", type=_positive_int, help="optimiser steps between progress lines (default: 10)")
    g.add_argument("--resume", action="store_true", help="continue the interrupted training from its last checkpoint")
    g.add_argument("--merge", action="store_true", help="also write full weights with the adapter merged in "
                   "(MODELS_DIR/NAME/merged), for Ollama and llama.cpp")


def check_trl_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.trainer == "trl":
        if args.follow is not None or args.cancel or args.list or args.evaluate:
            p.error("--follow, --cancel, --list and --evaluate do not go with --trainer trl, which trains here")
        if args.force:
            p.error("--force is for OpenAI jobs; a TRL training is continued with --resume or made anew with --suffix")
        args.model = args.model or TRL_DEFAULT_MODEL
        for key, value in vars(TRL_HYPER).items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        args.models_dir = args.models_dir or args.data_dir / "models"
        args.save_steps = args.save_steps or 50
        args.logging_steps = args.logging_steps or 10
        return
    if not args.evaluate:
        args.model = args.model or DEFAULT_MODEL
    given = [k for k in TRL_ONLY if getattr(args, k) not in (None, False)]
    if given:
        p.error(f"--{given[0].replace('_', '-')} needs --trainer trl")


def trl_command(args: argparse.Namespace) -> int:
    from lib.training import requirements as trainreqs

    problem = trainreqs.problem("finetune.py --trainer trl")
    if problem:
        raise Fatal(problem, EXIT_USAGE)
    from lib.training import localmodel
    from lib.training import lora as trltrain

    train, validation = dataset_paths(args)
    hyper = trltrain.Hyper(**{k: getattr(args, k) for k in vars(TRL_HYPER)})
    job = trltrain.Job(model=args.model, revision=args.revision, train=train, validation=validation,
                       models_dir=args.models_dir, record=args.record, hyper=hyper, suffix=args.suffix,
                       save_steps=args.save_steps, logging_steps=args.logging_steps, resume=args.resume,
                       merge=args.merge, dry_run=args.dry_run)
    try:
        return trltrain.run(job)
    except trltrain.TrainError as exc:
        raise Fatal(str(exc), exc.exit_code) from None
    except localmodel.LocalModelError as exc:
        raise Fatal(str(exc), EXIT_USAGE) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


# ----------------------------------------------------------------------------- errors

def base_url() -> str:
    return os.environ.get("OPENAI_BASE_URL", "").strip() or "https://api.openai.com/v1"


def endpoint() -> str:
    """The base URL as it is printed and recorded: without a user:password part (lib.util.redact)."""
    return redact.public_url(base_url())


def _api_message(exc: openai.APIError) -> str:
    """OpenAI's own message from the error body, without the SDK's "Error code: ..." dump."""
    body = exc.body
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return exc.message


def describe(exc: openai.APIError) -> str:
    """One line saying what went wrong and what to do about it."""
    where = endpoint()
    code = getattr(exc, "code", None)
    if isinstance(exc, openai.AuthenticationError):
        return (f"the API key was rejected by {where} (401 {code or 'unauthorized'}): "
                "check OPENAI_API_KEY in .env or the environment")
    if isinstance(exc, openai.PermissionDeniedError) and code == "training_not_available":
        return ("OpenAI has stopped self-serve fine-tuning for this organisation "
                "(403 training_not_available). The dataset is standard chat JSONL: Azure OpenAI's "
                "fine-tuning API (same SDK; set OPENAI_BASE_URL and OPENAI_API_KEY) and open "
                "trainers (Hugging Face TRL, axolotl, Unsloth, LLaMA-Factory) accept it as is")
    if isinstance(exc, openai.RateLimitError):
        if code == "insufficient_quota":
            return (f"no quota left at {where} (429 insufficient_quota): check the "
                    "organisation's billing and limits")
        return (f"rate limited by {where} (429) even after retries: wait a minute and run "
                "again (--max-retries raises the retry budget)")
    if isinstance(exc, openai.APITimeoutError):
        return f"timed out talking to {where}: check the network and OPENAI_BASE_URL"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.message
        return f"cannot reach {where} ({cause}): check the network and OPENAI_BASE_URL"
    if isinstance(exc, openai.APIStatusError):
        detail = f"{exc.status_code} {code}" if code else str(exc.status_code)
        return f"{where} answered {detail}: {_api_message(exc)}"
    return str(exc)


# ----------------------------------------------------------------------------- datasets

def dataset_paths(args: argparse.Namespace) -> tuple[Path, Path | None]:
    train = args.train or args.data_dir / "training_set.jsonl"
    if not train.is_file():
        raise Fatal(f"{train}: no training set; build it with python constructDataset.py "
                    "or pass --train PATH", EXIT_USAGE)
    validation = args.validation
    if validation is None:
        default = args.data_dir / "validation_set.jsonl"
        validation = default if default.is_file() else None
    elif not validation.is_file():
        raise Fatal(f"{validation}: no such validation file", EXIT_USAGE)
    return train, validation


def check_datasets(train: Path, validation: Path | None, args: argparse.Namespace
                   ) -> tuple[ftcheck.CheckReport, ftcheck.CheckReport | None]:
    """Run constructDataset.py --check's checks; stop before any upload when they fail."""
    report = ftcheck.check_file(train, model=args.model, epochs=args.epochs)
    print(report.format_text())
    ok = report.ok
    vreport = None
    if validation is not None:
        vreport = ftcheck.check_file(validation, model=args.model, min_examples=1)
        print(vreport.format_text(billing=False))
        shared = ftcheck.shared_examples(report, vreport)
        if shared:
            print(f"  error: {shared} example(s) appear in both {train} and {validation}; "
                  "OpenAI wants them disjoint")
        ok = ok and vreport.ok and not shared
    if ftcheck.base_model(args.model) not in ftcheck.MODELS:
        print(f"warning: {args.model} is not one of OpenAI's fine-tunable models "
              f"({', '.join(ftcheck.MODELS)}); passing it on as is", file=sys.stderr)
    if not ok:
        raise Fatal("the dataset has errors (listed above); fix them before fine-tuning",
                    EXIT_USAGE)
    return report, vreport


# ----------------------------------------------------------------------------- OpenAI

def make_client(args: argparse.Namespace) -> openai.OpenAI:
    if not os.environ.get("OPENAI_API_KEY", "").strip():
        raise Fatal("OPENAI_API_KEY is not set: put OPENAI_API_KEY=sk-... in a .env file next to "
                    "finetune.py (see .env.example) or export it", EXIT_USAGE)
    # Passed explicitly: the SDK would take an empty OPENAI_BASE_URL= line from .env literally.
    # It retries 429, 5xx and network errors itself, max_retries times with backoff.
    return openai.OpenAI(api_key=os.environ["OPENAI_API_KEY"].strip(), base_url=base_url(),
                         max_retries=args.max_retries)


def upload_once(client: openai.OpenAI, path: Path, sha256: str, uploads: dict) -> str:
    """The file id for this exact content, uploading only when the same bytes (by sha256) are
    not already stored at this service."""
    known = uploads.get(sha256)
    if known and known.get("base_url") == endpoint():
        try:
            remote = client.files.retrieve(known["file_id"])
            if remote.bytes == path.stat().st_size:
                print(f"{path}: already uploaded as {remote.id} (same sha256)")
                return remote.id
        except openai.NotFoundError:
            pass   # deleted remotely: upload again
    print(f"{path}: uploading ...")
    uploaded = client.files.create(file=path, purpose="fine-tune")
    uploads[sha256] = {"file_id": uploaded.id, "base_url": endpoint(), "filename": path.name,
                       "bytes": uploaded.bytes, "uploaded_at": jobrecord.now_iso()}
    print(f"{path}: uploaded as {uploaded.id}")
    return uploaded.id


def _iso(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(timestamp))


def _job_summary(record: dict) -> dict:
    """What history keeps of a previous job: enough to tell which data made which model."""
    keys = ("job_id", "base_model", "base_url", "status", "fine_tuned_model", "created_at", "finished_at",
            "final_metrics")
    summary = {k: record.get(k) for k in keys}
    summary["training_sha256"] = (record.get("training_file") or {}).get("sha256")
    summary.update({k: record[k] for k in ("kind", "served_model", "adapter_path") if k in record})
    return summary


def _file_entry(path: Path | None, sha256: str | None, file_id: str | None,
                report: ftcheck.CheckReport | None = None) -> dict | None:
    if file_id is None:
        return None
    entry: dict[str, Any] = {"path": str(path) if path else None, "sha256": sha256,
                             "file_id": file_id}
    if report is not None:
        entry["n_examples"] = report.n_examples
    return entry


def new_record(old: dict, job: Any, files: dict[str, dict | None], **extra: Any) -> dict:
    """A record for a job, keeping the upload cache and moving the previous job to history."""
    history = list(old.get("history", []))
    if old.get("job_id") and old.get("job_id") != job.id:
        history.append(_job_summary(old))
    now = jobrecord.now_iso()
    return {
        "job_id": job.id, "base_model": job.model, "base_url": endpoint(),
        "training_file": files.get("training"), "validation_file": files.get("validation"),
        "status": job.status, "fine_tuned_model": job.fine_tuned_model,
        "error": job.error.model_dump() if job.error else None,
        "created_at": _iso(job.created_at), "finished_at": _iso(job.finished_at),
        "updated_at": now, "status_history": [{"status": job.status, "at": now}],
        "last_event_id": None, "uploads": old.get("uploads", {}), "history": history,
        **extra,
    }


def succeeded_on(record: dict, train_sha: str) -> dict | None:
    """A succeeded job in the record (current or history) that trained on exactly this training data at this
    endpoint, whatever its base model, as its history summary; None when there is none. Another base model on the
    same data is a deliberate experiment, which --force says."""
    jobs = [_job_summary(record)] if record.get("job_id") else []
    jobs += [job for job in record.get("history", []) if isinstance(job, dict)]
    for job in reversed(jobs):
        if (job.get("status") == "succeeded" and job.get("kind", "openai") == "openai"
                and job.get("training_sha256") == train_sha and job.get("base_url") in (None, endpoint())):
            return job
    return None


def cost_line(report: ftcheck.CheckReport, model: str) -> str:
    """What the job will cost, in one line, as --evaluate says what its calls will (evaluation.cli.estimate_line)."""
    if evalcli.is_local_endpoint(base_url()):
        cost = "a local endpoint: no per-token price"
    elif report.estimated_cost_usd is None:
        cost = f"price unknown for {model} (check openai.com/api/pricing)"
    else:
        cost = f"about ${report.estimated_cost_usd:,.2f} at list prices (check openai.com/api/pricing)"
    return (f"fine-tuning {model} at {endpoint()}: {report.billed_tokens:,} billed tokens ({report.epochs} "
            f"epochs); {cost}")


def confirm_cost(args: argparse.Namespace) -> None:
    """Ask before a paid job, as --evaluate asks before paid calls: --yes skips the question, and without a
    terminal to ask on, nothing is started."""
    if args.yes or evalcli.is_local_endpoint(base_url()):
        return
    try:
        go = evalcli.confirm("Upload and start this fine-tuning job? [y/N]")
    except evalcli.EvalError as exc:
        raise Fatal(f"{exc}; nothing uploaded, no job created", EXIT_USAGE) from None
    if not go:
        raise Fatal("nothing uploaded, no job created (pass --yes to skip the question)", EXIT_USAGE)


def start(args: argparse.Namespace) -> int:
    train, validation = dataset_paths(args)
    report, vreport = check_datasets(train, validation, args)
    if args.dry_run:
        print(cost_line(report, args.model))
        print("dry run: nothing uploaded, no job created")
        return EXIT_OK
    old = jobrecord.read_record(args.record) or {}
    if (old.get("job_id") and old.get("kind", "openai") == "openai"
            and old.get("status") not in jobrecord.FINAL_STATUSES and not args.force):
        raise Fatal(f"job {old['job_id']} recorded in {args.record} is still {old.get('status')}: "
                    f"follow it with python finetune.py --follow, cancel it with --cancel "
                    f"{old['job_id']}, or pass --force to start another", EXIT_USAGE)
    train_sha = jobrecord.sha256_file(train)
    done = succeeded_on(old, train_sha)
    if done is not None and not args.force:
        raise Fatal(f"{train} (sha256 {train_sha[:12]}...) already trained {done.get('base_model')} in job "
                    f"{done.get('job_id')}, recorded in {args.record}: its model is {done.get('fine_tuned_model')}; "
                    "pass --force to pay for another job on the same data (with this or another base model)",
                    EXIT_USAGE)
    client = make_client(args)
    # The cost comes last before anything is sent, so that the question is the one thing between it and the bill.
    print(cost_line(report, args.model), flush=True)
    confirm_cost(args)
    uploads = old.setdefault("uploads", {})
    train_id = upload_once(client, train, train_sha, uploads)
    val_sha = val_id = None
    if validation is not None:
        val_sha = jobrecord.sha256_file(validation)
        val_id = upload_once(client, validation, val_sha, uploads)
    jobrecord.write_record(args.record, old)   # remember uploads even if job creation fails

    options: dict[str, Any] = {"model": args.model, "training_file": train_id}
    if val_id:
        options["validation_file"] = val_id
    if args.suffix:
        options["suffix"] = args.suffix
    if args.seed is not None:
        options["seed"] = args.seed
    if args.epochs:
        options["method"] = {"type": "supervised",
                             "supervised": {"hyperparameters": {"n_epochs": args.epochs}}}
    job = client.fine_tuning.jobs.create(**options)
    files = {"training": _file_entry(train, train_sha, train_id, report),
             "validation": _file_entry(validation, val_sha, val_id, vreport)}
    record = new_record(old, job, files, suffix=args.suffix, seed=args.seed,
                        requested_epochs=args.epochs,
                        estimate={"billed_tokens": report.billed_tokens, "epochs": report.epochs,
                                  "usd": report.estimated_cost_usd})
    jobrecord.write_record(args.record, record)
    print(f"created job {job.id} on {job.model}; recorded in {args.record}")
    print("following it (Ctrl-C stops following; the job keeps running)")
    return follow(client, job.id, args)


def resume_hint(job_id: str, args: argparse.Namespace) -> str:
    hint = f"resume with: python finetune.py --follow {job_id}"
    if args.record != args.data_dir / "finetune_job.json":
        hint += f" --record {args.record}"
    elif args.data_dir != HERE / "data":
        hint += f" --data-dir {args.data_dir}"
    return hint


def new_events(client: openai.OpenAI, job_id: str, last_seen: str | None) -> list:
    """Events after last_seen, oldest first. OpenAI lists newest first, so page back until the
    last event already shown."""
    fresh = []
    for event in client.fine_tuning.jobs.list_events(job_id, limit=50):
        if event.id == last_seen:
            break
        fresh.append(event)
        if last_seen is None and len(fresh) >= FIRST_LOOK_EVENTS:
            break
    return fresh[::-1]


def show_event(event: Any) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(event.created_at))
    level = "" if event.level == "info" else f"{event.level}: "
    text = event.message
    data = event.data if isinstance(event.data, dict) else {}
    if "train_loss" in data and "loss" not in text:
        text += f" (train_loss={data['train_loss']})"
    print(f"  {stamp} {level}{text}", flush=True)


def _adopt(record: dict, job: Any) -> dict:
    """Record a job started elsewhere (followed by id): dataset hashes come from the upload
    cache when we uploaded those files."""
    by_id = {v["file_id"]: (sha, v) for sha, v in record.get("uploads", {}).items()}

    def entry(file_id: str | None) -> dict | None:
        sha, info = by_id.get(file_id, (None, {}))
        path = Path(info["filename"]) if info.get("filename") else None
        return _file_entry(path, sha, file_id)

    return new_record(record, job, {"training": entry(job.training_file),
                                    "validation": entry(job.validation_file)})


def follow(client: openai.OpenAI, job_id: str, args: argparse.Namespace) -> int:
    """Poll the job, print status changes and new events, keep the record current, until the
    job ends. Ctrl-C stops following and never cancels the job."""
    record = jobrecord.read_record(args.record) or {}
    ours = record.get("job_id") == job_id
    status = record.get("status") if ours else None
    last_event = record.get("last_event_id") if ours else None
    metrics: dict[str, Any] = dict(record.get("final_metrics") or {}) if ours else {}
    failures = 0
    try:
        while True:
            try:
                job = client.fine_tuning.jobs.retrieve(job_id)
                events = new_events(client, job_id, last_event)
                failures = 0
            except (openai.RateLimitError, openai.APIConnectionError,
                    openai.InternalServerError) as exc:
                failures += 1
                if failures > MAX_FOLLOW_FAILURES:
                    print(f"error: {describe(exc)}", file=sys.stderr)
                    print(resume_hint(job_id, args), file=sys.stderr)
                    return EXIT_FAILED
                print(f"warning: {describe(exc)}; trying again in {args.poll_interval:g}s",
                      file=sys.stderr)
                time.sleep(args.poll_interval)
                continue
            if not ours:
                record, ours = _adopt(record, job), True
            changed = job.status != status
            if changed:
                print(f"status: {job.status}", flush=True)
                record.setdefault("status_history", []).append(
                    {"status": job.status, "at": jobrecord.now_iso()})
                status = job.status
            for event in events:
                show_event(event)
                data = event.data if isinstance(event.data, dict) else {}
                if "train_loss" in data:
                    metrics = {k: v for k, v in data.items() if k in METRIC_KEYS}
            if events:
                last_event = events[-1].id
            if changed or events:
                record.update(status=job.status, fine_tuned_model=job.fine_tuned_model, final_metrics=metrics or None,
                              error=job.error.model_dump() if job.error else None,
                              finished_at=_iso(job.finished_at),
                              trained_tokens=job.trained_tokens, last_event_id=last_event,
                              updated_at=jobrecord.now_iso())
                jobrecord.write_record(args.record, record)
            if job.status in jobrecord.FINAL_STATUSES:
                break
            time.sleep(args.poll_interval)
    except KeyboardInterrupt:
        if ours and record.get("last_event_id") != last_event:
            record["last_event_id"] = last_event     # so a resumed follow does not repeat them
            jobrecord.write_record(args.record, record)
        print(f"\nstopped following job {job_id}; it keeps running. "
              + resume_hint(job_id, args), flush=True)
        return EXIT_INTERRUPTED
    return report_outcome(job, args.record, metrics)


def loss_line(metrics: dict[str, Any]) -> str:
    """The last training (and validation) loss the job reported, from its metrics events."""
    if "train_loss" not in metrics:
        return "final loss: the job reported no training metrics"
    step = f" at step {metrics['step']}" if "step" in metrics else ""
    line = f"final training loss {metrics['train_loss']:.4g}{step}"
    for key, name in (("full_valid_loss", "validation loss (full set)"), ("valid_loss", "validation loss")):
        if metrics.get(key) is not None:
            return f"{line}, {name} {metrics[key]:.4g}"
    return line


def report_outcome(job: Any, record_path: Path, metrics: dict[str, Any] | None = None) -> int:
    if job.status == "succeeded" or metrics:
        print(loss_line(metrics or {}))
    if job.status == "succeeded":
        print(f"job {job.id} succeeded: fine-tuned model {job.fine_tuned_model}")
        print(f"recorded in {record_path}; handler.py uses it unless OPENAI_MODEL is set")
        return EXIT_OK
    if job.status == "failed":
        error = job.error
        reason = f"{error.code}: {error.message}" if error else "no reason given"
        print(f"error: job {job.id} failed: {reason}", file=sys.stderr)
        return EXIT_FAILED
    print(f"job {job.id} was cancelled", file=sys.stderr)
    return EXIT_FAILED


def follow_command(args: argparse.Namespace) -> int:
    job_id = args.follow
    if not job_id:
        record = jobrecord.read_record(args.record) or {}
        job_id = record.get("job_id")
        if record.get("kind", "openai") != "openai":
            raise Fatal(f"the job recorded in {args.record} is a {record['kind']} training made here, not an "
                        "OpenAI job: pass an OpenAI job id (--follow JOB_ID)", EXIT_USAGE)
        if not job_id:
            raise Fatal(f"no job recorded in {args.record}: pass a job id (--follow JOB_ID) or "
                        "start one with python finetune.py", EXIT_USAGE)
    print(f"following job {job_id} (Ctrl-C stops following; the job keeps running)")
    return follow(make_client(args), job_id, args)


def cancel_command(args: argparse.Namespace) -> int:
    job = make_client(args).fine_tuning.jobs.cancel(args.cancel)
    print(f"job {job.id}: {job.status}")
    record = jobrecord.read_record(args.record) or {}
    if record.get("job_id") == job.id:
        record.setdefault("status_history", []).append(
            {"status": job.status, "at": jobrecord.now_iso()})
        record.update(status=job.status, finished_at=_iso(job.finished_at),
                      updated_at=jobrecord.now_iso())
        jobrecord.write_record(args.record, record)
    return EXIT_OK


def list_command(args: argparse.Namespace) -> int:
    page = make_client(args).fine_tuning.jobs.list(limit=20)
    recorded = (jobrecord.read_record(args.record) or {}).get("job_id")
    if not page.data:
        print(f"no fine-tuning jobs at {endpoint()}")
    for job in page.data:
        mark = "*" if job.id == recorded else " "
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
        print(f"{mark} {job.id}  {job.status:<16} {created}  {job.model}  "
              f"{job.fine_tuned_model or '-'}")
    if page.has_more:
        print("(more jobs exist; only the 20 most recent are shown)")
    if recorded:
        print(f"* recorded in {args.record}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_dotenv()
    # Every line printed from here on goes through lib.util.redact: an error body may echo the key, a base URL may
    # hold a password, whatever prints them.
    redact.install(redact.secrets_from_env(os.environ))
    try:
        return _run(args)
    except Exception:  # a bug: its traceback goes through the redacting stderr too
        traceback.print_exc()
        return EXIT_FAILED
    finally:
        redact.uninstall()


def _run(args: argparse.Namespace) -> int:
    try:
        if args.trainer == "trl":
            return trl_command(args)
        if args.evaluate:
            return evalcli.run(args, describe)
        if args.list:
            return list_command(args)
        if args.cancel:
            return cancel_command(args)
        if args.follow is not None:
            return follow_command(args)
        return start(args)
    except Fatal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except jobrecord.JobRecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except openai.APIError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
