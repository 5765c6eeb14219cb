"""The fine-tuning job record, data/finetune_job.json, and the chat model choice that reads it.

finetune.py writes the record (job id, base model, uploaded files with their sha256, status,
fine_tuned_model, error); handler.py asks resolve_model() which model to play with. The record
is always replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.util import redact

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECORD_PATH = PROJECT_ROOT / "data" / "finetune_job.json"

# Used when neither OPENAI_MODEL nor a succeeded fine-tuning job names a model: the base of
# the default fine-tune, so untuned and tuned agents are comparable.
DEFAULT_CHAT_MODEL = "gpt-4.1-mini-2025-04-14"

FINAL_STATUSES = ("succeeded", "failed", "cancelled")
OPENAI_URL = "https://api.openai.com/v1"  # where the SDK goes when OPENAI_BASE_URL is empty


class JobRecordError(ValueError):
    """The record exists but cannot be used; the message names the file and what to do."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record as a dict, or None when there is none yet."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JobRecordError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise JobRecordError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); "
                             "delete it or set OPENAI_MODEL") from None
    if not isinstance(record, dict):
        raise JobRecordError(f"{path}: expected a JSON object; delete it or set OPENAI_MODEL")
    return record


def write_record(path: str | Path, record: Mapping[str, Any]) -> None:
    """Write the record atomically: a temp file in the same directory, then os.replace. Secrets are scrubbed
    (lib.util.redact): an endpoint's error, recorded as it came, may echo the key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(redact.scrub(json.dumps(record, indent=2, sort_keys=True)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def endpoint(env: Mapping[str, str]) -> str:
    """The endpoint the openai SDK talks to under these settings."""
    return env.get("OPENAI_BASE_URL", "").strip() or OPENAI_URL


def _comparable(url: str) -> str:
    # The record keeps the endpoint without its user:password part (lib.util.redact.public_url): compare it so.
    return redact.public_url(url.strip()).rstrip("/").lower()


def resolve_model(env: Mapping[str, str],
                  record_path: str | Path = DEFAULT_RECORD_PATH) -> tuple[str, str]:
    """(model, where it came from): OPENAI_MODEL if set, else the fine_tuned_model of a
    succeeded job in the record (for a model trained here with TRL, the name it is served
    under at OPENAI_BASE_URL), else DEFAULT_CHAT_MODEL. Raises JobRecordError when the
    record exists but is unreadable, rather than silently playing with another model, and when
    the recorded job ran on another endpoint than OPENAI_BASE_URL's: a fine-tuned model lives
    where it was trained, and another endpoint would not have it."""
    if env.get("OPENAI_MODEL", "").strip():
        return env["OPENAI_MODEL"].strip(), "OPENAI_MODEL"
    record = read_record(record_path)
    if record is None or not record.get("job_id"):
        return DEFAULT_CHAT_MODEL, f"default (no fine-tuning job recorded in {record_path})"
    job_id = record.get("job_id", "?")
    model = record.get("fine_tuned_model")
    if record.get("kind") == "trl" and record.get("status") == "succeeded":
        return _served_model(env, record, record_path)
    if record.get("status") == "succeeded" and isinstance(model, str) and model:
        trained_at = record.get("base_url")
        here = endpoint(env)
        if isinstance(trained_at, str) and trained_at.strip() and _comparable(trained_at) != _comparable(here):
            raise JobRecordError(
                f"{record_path}: job {job_id}'s model {model} was trained at {redact.public_url(trained_at)}, but "
                f"OPENAI_BASE_URL points at {redact.public_url(here)}, which does not have it: set OPENAI_BASE_URL "
                "back, or set OPENAI_MODEL to a model this endpoint serves")
        return model, f"{record_path} (job {job_id})"
    status = record.get("status", "unknown")
    return DEFAULT_CHAT_MODEL, (f"default ({record_path}: job {job_id} is {status}, "
                                "no fine-tuned model)")


def _served_model(env: Mapping[str, str], record: Mapping[str, Any], record_path: str | Path) -> tuple[str, str]:
    """A model trained here (finetune.py --trainer trl) plays where it is served: docs/fine-tuning.md's vLLM, Ollama and
    llama.cpp commands all serve it under the record's served_model name. Without OPENAI_BASE_URL the agents
    would ask OpenAI for a model it never had, so that is an error, not a quiet fallback."""
    name = record.get("served_model")
    job_id = record.get("job_id", "?")
    if not isinstance(name, str) or not name:
        raise JobRecordError(f"{record_path}: TRL job {job_id} names no served_model; set OPENAI_MODEL")
    if not env.get("OPENAI_BASE_URL", "").strip():
        raise JobRecordError(f"{record_path}: TRL job {job_id} trained the local model {name}: serve it "
                             "(README: vLLM, Ollama or llama.cpp), set OPENAI_BASE_URL to the server's /v1 URL, "
                             "or set OPENAI_MODEL to play another model")
    return name, f"{record_path} (TRL job {job_id}, served as {name})"
