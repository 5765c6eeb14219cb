"""A fake OpenAI HTTP server for tests, standard library only.

openai 3.x sends through httpx2, which respx and pytest-httpx do not intercept, so the tests
run the real SDK against this server on 127.0.0.1 instead: the SDK's retries, error classes
and response parsing are exercised exactly as they are against api.openai.com.

    with FakeOpenAI() as fake:
        client = fake.client()                  # or OPENAI_BASE_URL=fake.base_url in a subprocess
        fake.chat_replies.append("hello")
        client.chat.completions.create(model="gpt-4.1-mini", messages=[...])
        fake.calls[-1]["json"]["messages"]

Covered: chat completions (queued replies or a default callable, delays, injected errors,
raw bodies however malformed (MALFORMED_ANSWERS), streaming, unknown models when `chat_models`
is set), files (multipart upload, list, retrieve, content, delete), fine-tuning jobs (create, list,
retrieve advancing one status per call, events, cancel), models.
Errors use OpenAI's body shape {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

FAKE_API_KEY = "sk-fake-test-key-0000"

# The models OpenAI's docs list as fine-tunable (checked November 2026).
FINETUNABLE_MODELS = {
    "gpt-4.1-2025-04-14",
    "gpt-4.1-mini-2025-04-14",
    "gpt-4o-mini-2024-07-18",
    "gpt-4o-2024-08-06",
}

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    429: "requests",
}

_FINAL_STATUSES = {"succeeded", "failed", "cancelled"}


def _completion_body(content: Any = "{}", **fields: Any) -> str:
    """A chat completion's JSON text, with `fields` replacing its top-level fields as they are."""
    body = {"id": "chatcmpl-malformed", "object": "chat.completion", "created": 1700000000, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}
    body.update(fields)
    return json.dumps(body)


# Answers an endpoint has sent that no well-behaved one would (issue #20), as chat replies for `chat_replies` or
# `chat_default`: each is a raw 200 body, sent byte for byte.
MALFORMED_ANSWERS: dict[str, dict[str, Any]] = {
    "deep nesting": {"body": _completion_body("[" * 60_000)},
    "huge integer": {"body": _completion_body("9" * 5_000)},
    "lone surrogate": {"body": _completion_body("\ud800")},  # the JSON escape: the SDK decodes it to U+D800
    "not json": {"body": "<html><body>502 Bad Gateway</body></html>"},
    "choices of strings": {"body": _completion_body(choices=["x"])},
    "usage a string": {"body": _completion_body(usage="lots")},
}


def error_body(status: int, message: str, code: str | None = None,
               param: str | None = None, type_: str | None = None) -> dict:
    """OpenAI's error envelope."""
    return {"error": {
        "message": message,
        "type": type_ or _ERROR_TYPES.get(status, "server_error"),
        "param": param,
        "code": code,
    }}


class _HTTPError(Exception):
    """Raised by a route to answer with an OpenAI-shaped error."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.body = error_body(status, message, code, param)
        self.headers = headers or {}


class FakeOpenAI:
    """An OpenAI-compatible HTTP server on 127.0.0.1 with a random port, in a daemon thread."""

    def __init__(self, api_key: str = FAKE_API_KEY) -> None:
        self.api_key = api_key
        self.calls: list[dict] = []
        self.chat_replies: list[str | dict] = []
        self.chat_default: Callable[[dict], str | dict] | None = None
        self.json_schema_supported = True
        self.training_blocked = False
        # "succeeded" or ("failed", {"code": ..., "message": ...}), applied when a job leaves running.
        self.job_outcome: str | tuple[str, dict] = "succeeded"
        self.jobs_advance = True    # False holds every job at its status (to interrupt a follow)
        self.finetunable_models = set(FINETUNABLE_MODELS)
        # None: chat answers for any model name; a set: other names get OpenAI's 404 model_not_found.
        self.chat_models: set[str] | None = None
        self.files: dict[str, dict] = {}        # id -> {"object": FileObject dict, "content": bytes}
        self.jobs: dict[str, dict] = {}         # id -> {"job": FineTuningJob dict, "events": [...]}
        self._failures: list[dict] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._connections: set = set()          # open keep-alive sockets, closed by stop()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FakeOpenAI:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        # Handler threads keep serving keep-alive connections after the listener closes;
        # cut them so a stopped fake really looks like a dead server to clients.
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeOpenAI is not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        """Variables that point a subprocess's openai SDK at this server (merge into os.environ)."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": self.api_key,
                "PYTHON_DOTENV_DISABLED": "1"}

    def client(self, **kwargs: Any):
        """A real openai.OpenAI client aimed at this server; kwargs override (e.g. max_retries)."""
        import openai

        kwargs.setdefault("api_key", self.api_key)
        kwargs.setdefault("base_url", self.base_url)
        kwargs.setdefault("max_retries", 2)
        kwargs.setdefault("timeout", 10)
        return openai.OpenAI(**kwargs)

    # ----------------------------------------------------------------- test controls

    def fail_next(self, method: str, path_prefix: str, status: int, code: str | None = None,
                  message: str | None = None, times: int = 1,
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next `times` requests matching method ("*" for any) and path prefix with an
        error. Paths may be given with or without "/v1". 429 and 5xx carry a tiny retry-after-ms
        so the SDK's own retries stay fast."""
        prefix = path_prefix if path_prefix.startswith("/v1") else "/v1" + path_prefix
        hdrs = dict(headers or {})
        if status == 429 or status >= 500:
            hdrs.setdefault("retry-after-ms", "10")
        with self._lock:
            self._failures.append({
                "method": method.upper(), "prefix": prefix, "status": status, "code": code,
                "message": message or f"Injected error {status}", "times": times, "headers": hdrs,
            })

    def calls_to(self, method: str, path_prefix: str) -> list[dict]:
        """Recorded calls matching a method and path prefix (with or without "/v1")."""
        prefix = path_prefix if path_prefix.startswith("/v1") else "/v1" + path_prefix
        with self._lock:
            return [c for c in self.calls
                    if c["method"] == method.upper() and c["path"].startswith(prefix)]

    def _take_failure(self, method: str, path: str) -> _HTTPError | None:
        with self._lock:
            for failure in self._failures:
                if failure["method"] in ("*", method) and path.startswith(failure["prefix"]):
                    failure["times"] -= 1
                    if failure["times"] <= 0:
                        self._failures.remove(failure)
                    return _HTTPError(failure["status"], failure["message"], failure["code"],
                                      headers=failure["headers"])
        return None

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):04d}"

    # ----------------------------------------------------------------- chat

    def _chat(self, body: dict) -> tuple[int, dict, dict]:
        model = body.get("model")
        if self.chat_models is not None and model not in self.chat_models:
            raise _HTTPError(404, f"The model `{model}` does not exist or you do not have access to it.",
                             "model_not_found")
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and not self.json_schema_supported:
            raise _HTTPError(400, "response_format of type json_schema is not supported "
                                  "with this model", "unsupported_response_format",
                             "response_format")
        with self._lock:
            reply = self.chat_replies.pop(0) if self.chat_replies else None
        if reply is None:
            if self.chat_default is None:
                raise _HTTPError(500, "FakeOpenAI: no chat reply queued and no chat_default")
            reply = self.chat_default(body)
        if isinstance(reply, str):
            reply = {"content": reply}
        if reply.get("delay"):
            time.sleep(reply["delay"])   # only this request's thread waits
        headers = dict(reply.get("headers") or {})
        status = reply.get("status", 200)
        if status >= 400:
            if status == 429 or status >= 500:
                headers.setdefault("retry-after-ms", "10")
            err = reply.get("error") or {}
            raise _HTTPError(status, err.get("message", f"Injected error {status}"),
                             err.get("code"), err.get("param"), headers)
        if "body" in reply:  # a raw body as sent, however malformed (see MALFORMED_ANSWERS)
            raw = reply["body"]
            headers.setdefault("content-type", reply.get("content_type", "application/json"))
            return status, raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw, headers
        content = reply.get("content", "")
        prompt_tokens = sum(len(str(m.get("content", "")).split()) + 3
                            for m in body.get("messages", []))
        completion_tokens = len(content.split())
        completion = {
            "id": self._new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "system_fingerprint": "fp_fake",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": reply.get("finish_reason", "stop"),
            }],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        # Fields a server adds beyond OpenAI's (vLLM's prompt_logprobs, prompt_token_ids) or a usage it counts itself.
        completion.update(reply.get("response_extra") or {})
        return 200, completion, headers

    # ----------------------------------------------------------------- files

    def _file_upload(self, form: dict[str, tuple[str | None, bytes]]) -> dict:
        if "file" not in form:
            raise _HTTPError(400, "Missing required parameter: 'file'.", param="file")
        purpose = form.get("purpose", (None, b""))[1].decode()
        if not purpose:
            raise _HTTPError(400, "Missing required parameter: 'purpose'.", param="purpose")
        filename, content = form["file"]
        file_id = self._new_id("file-")
        obj = {"id": file_id, "object": "file", "bytes": len(content),
               "created_at": int(time.time()), "filename": filename or "upload",
               "purpose": purpose, "status": "processed", "expires_at": None,
               "status_details": None}
        with self._lock:
            self.files[file_id] = {"object": obj, "content": content}
        return obj

    def _get_file(self, file_id: str) -> dict:
        with self._lock:
            if file_id not in self.files:
                raise _HTTPError(404, f"No such File object: {file_id}", param="id")
            return self.files[file_id]

    # ----------------------------------------------------------------- fine-tuning

    def _create_job(self, body: dict) -> dict:
        if self.training_blocked:
            raise _HTTPError(403, "Fine-tuning is no longer available for your organization. "
                                  "Self-serve fine-tuning is being retired; existing fine-tuned "
                                  "models remain available for inference.",
                             "training_not_available")
        model = body.get("model")
        if model not in self.finetunable_models:
            raise _HTTPError(400, f"Model {model} is not available for fine-tuning or does "
                                  "not exist.", "model_not_available", "model")
        for key in ("training_file", "validation_file"):
            file_id = body.get(key)
            if key == "training_file" or file_id is not None:
                with self._lock:
                    known = file_id in self.files
                if not known:
                    raise _HTTPError(400, f"invalid {key}: {file_id}", param=key)
        method = body.get("method") or {"type": "supervised", "supervised": {}}
        hyper = dict(body.get("hyperparameters") or {})
        hyper.update(((method.get(method["type"]) or {}).get("hyperparameters")) or {})
        hyper = {"n_epochs": hyper.get("n_epochs", "auto"),
                 "batch_size": hyper.get("batch_size", "auto"),
                 "learning_rate_multiplier": hyper.get("learning_rate_multiplier", "auto")}
        job_id = self._new_id("ftjob-")
        now = int(time.time())
        job = {
            "id": job_id, "object": "fine_tuning.job", "created_at": now, "error": None,
            "fine_tuned_model": None, "finished_at": None, "hyperparameters": hyper,
            "model": model, "organization_id": "org-fake", "result_files": [],
            "seed": body.get("seed") if body.get("seed") is not None else 42,
            "status": "validating_files", "trained_tokens": None,
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"), "estimated_finish": None,
            "integrations": [], "metadata": body.get("metadata"),
            "method": {"type": method["type"], method["type"]: {"hyperparameters": hyper}},
            "user_provided_suffix": body.get("suffix"),
        }
        with self._lock:
            self.jobs[job_id] = {"job": job, "events": []}
            self._event(job_id, f"Created fine-tuning job: {job_id}")
            self._event(job_id, f"Validating training file: {job['training_file']}")
        return job

    def _event(self, job_id: str, message: str, level: str = "info",
               data: dict | None = None) -> None:
        self.jobs[job_id]["events"].append({
            "id": self._new_id("ftevent-"), "object": "fine_tuning.job.event",
            "created_at": int(time.time()), "level": level, "message": message,
            "data": data or {}, "type": "metrics" if data else "message",
        })

    def _n_examples(self, file_id: str) -> int:
        content = self.files.get(file_id, {}).get("content", b"")
        return sum(1 for line in content.splitlines() if line.strip())

    def _fail(self, job_id: str, error: dict) -> None:
        job = self.jobs[job_id]["job"]
        job.update(status="failed", finished_at=int(time.time()),
                   error={"code": error.get("code", "server_error"),
                          "message": error.get("message", "Job failed."),
                          "param": error.get("param")})
        self._event(job_id, f"Job failed: {job['error']['message']}", level="error")

    def _advance(self, job_id: str) -> None:
        """One status step per retrieve, like a job seen through slow polling."""
        job = self.jobs[job_id]["job"]
        status = job["status"]
        if status == "validating_files":
            n = self._n_examples(job["training_file"])
            if n < 10:
                self._fail(job_id, {
                    "code": "invalid_n_examples", "param": "training_file",
                    "message": f"Training file has {n} example(s), but must have at least "
                               "10 examples"})
                return
            job["status"] = "queued"
            self._event(job_id, "Files validated, moving job to queued state")
        elif status == "queued":
            job["status"] = "running"
            job["estimated_finish"] = int(time.time()) + 600
            self._event(job_id, "Fine-tuning job started")
            self._steps(job_id, 1, 2)
        elif status == "running":
            outcome = self.job_outcome
            if isinstance(outcome, tuple) and outcome[0] == "failed":
                self._fail(job_id, outcome[1])
                return
            self._steps(job_id, 3, 4)
            n = self._n_examples(job["training_file"])
            if job["hyperparameters"]["n_epochs"] == "auto":
                job["hyperparameters"]["n_epochs"] = 3
            suffix = job.get("user_provided_suffix")
            name = f"ft:{job['model']}:fake:{suffix or ''}:{job_id}"
            job.update(status="succeeded", fine_tuned_model=name,
                       finished_at=int(time.time()), trained_tokens=n * 100,
                       result_files=[self._new_id("file-")], estimated_finish=None)
            self._event(job_id, f"New fine-tuned model created: {name}")
            self._event(job_id, "The job has successfully completed")

    def _steps(self, job_id: str, first: int, last: int, total: int = 4) -> None:
        validated = self.jobs[job_id]["job"].get("validation_file") is not None
        for step in range(first, last + 1):
            loss = round(2.0 / step, 4)
            data = {"step": step, "train_loss": loss, "total_steps": total,
                    "train_mean_token_accuracy": round(0.5 + step / 10, 3)}
            if validated:  # as OpenAI: a validation loss per step, the full set's at the last step
                data["valid_loss"] = round(loss + 0.1, 4)
                if step == total:
                    data["full_valid_loss"] = round(loss + 0.05, 4)
            self._event(job_id, f"Step {step}/{total}: training loss={loss}", data=data)

    def _get_job(self, job_id: str) -> dict:
        if job_id not in self.jobs:
            raise _HTTPError(404, f"Could not find fine-tune: {job_id}", "fine_tune_not_found",
                             "fine_tune_id")
        return self.jobs[job_id]

    def _cancel(self, job_id: str) -> dict:
        entry = self._get_job(job_id)
        job = entry["job"]
        if job["status"] in _FINAL_STATUSES:
            raise _HTTPError(400, f"Job {job_id} has already {job['status']} and cannot be "
                                  "cancelled.")
        job.update(status="cancelled", finished_at=int(time.time()), estimated_finish=None)
        self._event(job_id, "Fine-tuning job cancelled")
        return job

    # ----------------------------------------------------------------- routing

    def route(self, method: str, path: str, query: dict[str, str], body: Any,
              form: dict | None) -> tuple[int, Any, dict]:
        """Answer one authenticated request: (status, JSON body or bytes, extra headers)."""
        parts = path.rstrip("/").split("/")[2:]     # drop "" and "v1"
        if parts == ["chat", "completions"] and method == "POST":
            return self._chat(body or {})
        if parts == ["models"] and method == "GET":
            with self._lock:
                tuned = [e["job"]["fine_tuned_model"] for e in self.jobs.values()
                         if e["job"]["fine_tuned_model"]]
            ids = sorted(self.finetunable_models) + tuned
            return 200, {"object": "list", "data": [_model(m) for m in ids]}, {}
        if len(parts) == 2 and parts[0] == "models" and method == "GET":
            return 200, _model(parts[1]), {}
        if parts[:1] == ["files"]:
            return self._route_files(method, parts[1:], form)
        if parts[:2] == ["fine_tuning", "jobs"]:
            with self._lock:
                return self._route_jobs(method, parts[2:], query, body or {})
        raise _HTTPError(404, f"Invalid URL ({method} {path})")

    def _route_files(self, method: str, rest: list[str], form: dict | None):
        if not rest and method == "POST":
            return 200, self._file_upload(form or {}), {}
        if not rest and method == "GET":
            with self._lock:
                data = [f["object"] for f in self.files.values()]
            return 200, _page(data), {}
        if len(rest) == 1 and method == "GET":
            return 200, self._get_file(rest[0])["object"], {}
        if len(rest) == 1 and method == "DELETE":
            self._get_file(rest[0])
            with self._lock:
                del self.files[rest[0]]
            return 200, {"id": rest[0], "object": "file", "deleted": True}, {}
        if len(rest) == 2 and rest[1] == "content" and method == "GET":
            return 200, self._get_file(rest[0])["content"], {}
        raise _HTTPError(404, f"Invalid URL ({method} /v1/files/{'/'.join(rest)})")

    def _route_jobs(self, method: str, rest: list[str], query: dict, body: dict):
        if not rest and method == "POST":
            return 200, self._create_job(body), {}
        if not rest and method == "GET":
            jobs = [e["job"] for e in reversed(self.jobs.values())]
            return 200, _cursor(jobs, query), {}
        if len(rest) == 1 and method == "GET":
            self._get_job(rest[0])
            if self.jobs_advance:
                self._advance(rest[0])
            return 200, self.jobs[rest[0]]["job"], {}
        if len(rest) == 2 and rest[1] == "events" and method == "GET":
            events = list(reversed(self._get_job(rest[0])["events"]))   # newest first, like OpenAI
            return 200, _cursor(events, query), {}
        if len(rest) == 2 and rest[1] == "cancel" and method == "POST":
            return 200, self._cancel(rest[0]), {}
        if len(rest) == 2 and rest[1] == "checkpoints" and method == "GET":
            self._get_job(rest[0])
            return 200, _page([]), {}
        raise _HTTPError(404, f"Invalid URL ({method} /v1/fine_tuning/jobs/{'/'.join(rest)})")


def _model(model_id: str) -> dict:
    owner = "user-fake" if model_id.startswith("ft:") else "system"
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": owner}


def _page(data: list[dict]) -> dict:
    return {"object": "list", "data": data, "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def _cursor(items: list[dict], query: dict[str, str]) -> dict:
    """OpenAI's cursor pagination: items after the `after` id, at most `limit`."""
    after = query.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    limit = int(query.get("limit", 20))
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def _parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """{field name: (filename or None, raw bytes)} from a multipart/form-data body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise _HTTPError(400, "Malformed multipart body: no boundary")
    delimiter = b"--" + match.group(1).encode()
    fields: dict[str, tuple[str | None, bytes]] = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        header_text = head.decode("utf-8", "replace")
        name = re.search(r'[;\s]name="([^"]*)"', header_text)
        filename = re.search(r'filename="([^"]*)"', header_text)
        if name:
            fields[name.group(1)] = (filename.group(1) if filename else None, data)
    return fields


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-request (a killed subprocess, a stopped fake) is normal
        # in tests; anything else is a bug in the fake and should be seen.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"   # keep-alive, as the SDK's connection pool expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass   # keep test output clean

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        raw = self._read_body()
        ctype = self.headers.get("content-type", "")
        body = form = None
        if raw and ctype.startswith("application/json"):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        elif raw and ctype.startswith("multipart/form-data"):
            form = _parse_multipart(raw, ctype)
        with fake._lock:
            fake.calls.append({
                "method": self.command, "path": url.path, "query": query, "json": body,
                "form": {k: v[0] if v[0] is not None else v[1].decode("utf-8", "replace")
                         for k, v in form.items()} if form else None,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            })
        try:
            if self.headers.get("authorization") != f"Bearer {fake.api_key}":
                raise _HTTPError(401, "Incorrect API key provided. You can find your API key at "
                                      "https://platform.openai.com/account/api-keys.",
                                 "invalid_api_key")
            failure = fake._take_failure(self.command, url.path)
            if failure is not None:
                raise failure
            if form is None and ctype.startswith("application/json") and raw and body is None:
                raise _HTTPError(400, "We could not parse the JSON body of your request.")
            status, payload, headers = fake.route(self.command, url.path, query, body, form)
            if isinstance(body, dict) and body.get("stream") and url.path.endswith(
                    "/chat/completions"):
                self._send_stream(payload, headers)
                return
        except _HTTPError as err:
            status, payload, headers = err.status, err.body, err.headers
        except Exception as exc:    # a bug in the fake must show up as a 500, not a hang
            status, payload, headers = 500, error_body(500, f"FakeOpenAI crashed: {exc!r}"), {}
        self._send(status, payload, headers)

    def _send(self, status: int, payload: Any, headers: dict) -> None:
        if isinstance(payload, bytes):
            data, ctype = payload, "application/octet-stream"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        headers = dict(headers)
        ctype = headers.pop("content-type", ctype)
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", f"req_fake{time.monotonic_ns()}")
        for key, value in headers.items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, completion: dict, headers: dict) -> None:
        """Server-sent events for stream=True: one content chunk, then the stop chunk."""
        base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk"
        choice = completion["choices"][0]
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                        "content": choice["message"]["content"]},
                                  "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {},
                                  "finish_reason": choice["finish_reason"]}]},
        ]
        data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
        data += b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """pytest fixture. Either register this module once in tests/conftest.py with
    `pytest_plugins = ["tests.helpers.fakeopenai"]`, or write the same three lines in a test module."""
    with FakeOpenAI() as fake:
        yield fake
