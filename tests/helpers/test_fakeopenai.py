"""The fake OpenAI server, checked with the real openai SDK (which sends through httpx2)."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest

from tests.helpers.fakeopenai import MALFORMED_ANSWERS, FakeOpenAI

USER = [{"role": "user", "content": "Which option do you vote for?"}]


def write_chat_jsonl(path: Path, n: int) -> Path:
    lines = [json.dumps({"messages": [
        {"role": "system", "content": "You play a voting game."},
        {"role": "user", "content": f"Round {i}: vote?"},
        {"role": "assistant", "content": "I vote for option A."}]}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_chat_completion_returns_queued_reply_and_records_the_request(fake_openai):
    fake_openai.chat_replies.append("I vote A.")
    reply = fake_openai.client().chat.completions.create(model="gpt-4.1-mini", messages=USER)

    assert reply.choices[0].message.content == "I vote A."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == "gpt-4.1-mini"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    call = fake_openai.calls[-1]
    assert (call["method"], call["path"]) == ("POST", "/v1/chat/completions")
    assert call["json"]["messages"] == USER
    assert call["headers"]["authorization"] == f"Bearer {fake_openai.api_key}"


def test_chat_default_answers_when_the_queue_is_empty(fake_openai):
    fake_openai.chat_default = lambda body: "echo: " + body["messages"][-1]["content"]
    reply = fake_openai.client().chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "echo: Which option do you vote for?"


def test_no_reply_configured_is_a_server_error(fake_openai):
    with pytest.raises(openai.InternalServerError):
        fake_openai.client(max_retries=0).chat.completions.create(model="m", messages=USER)


def test_rate_limit_is_retried_by_the_sdk_then_succeeds(fake_openai):
    fake_openai.chat_replies += [
        {"status": 429, "error": {"code": "rate_limit_exceeded", "message": "Slow down"}},
        "after retry",
    ]
    reply = fake_openai.client(max_retries=2).chat.completions.create(model="m", messages=USER)

    assert reply.choices[0].message.content == "after retry"
    assert len(fake_openai.calls_to("POST", "/chat/completions")) == 2


def test_rate_limit_without_retries_raises_with_openai_error_body(fake_openai):
    fake_openai.chat_replies.append(
        {"status": 429, "error": {"code": "rate_limit_exceeded", "message": "Slow down"}})
    with pytest.raises(openai.RateLimitError) as err:
        fake_openai.client(max_retries=0).chat.completions.create(model="m", messages=USER)
    assert err.value.code == "rate_limit_exceeded"
    assert err.value.body["message"] == "Slow down"


def test_delayed_reply_arrives(fake_openai):
    fake_openai.chat_replies.append({"content": "late", "delay": 0.1})
    reply = fake_openai.client().chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "late"


def test_a_slow_request_does_not_block_another(fake_openai):
    gate = threading.Event()

    def answer(body):
        text = body["messages"][-1]["content"]
        if text == "slow":
            gate.wait(10)
        return "done " + text

    fake_openai.chat_default = answer
    client = fake_openai.client()
    results = {}

    def ask(text):
        msg = [{"role": "user", "content": text}]
        results[text] = client.chat.completions.create(model="m", messages=msg)

    slow = threading.Thread(target=ask, args=("slow",))
    slow.start()
    ask("fast")                      # completes while "slow" is still held by the gate
    assert "slow" not in results
    gate.set()
    slow.join(10)
    assert results["slow"].choices[0].message.content == "done slow"
    assert results["fast"].choices[0].message.content == "done fast"


def test_streaming_chat(fake_openai):
    fake_openai.chat_replies.append("streamed words")
    stream = fake_openai.client().chat.completions.create(model="m", messages=USER, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "streamed words"


def test_json_schema_unsupported_is_a_400(fake_openai):
    fake_openai.json_schema_supported = False
    fmt = {"type": "json_schema", "json_schema": {"name": "vote", "schema": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as err:
        fake_openai.client().chat.completions.create(model="m", messages=USER,
                                                     response_format=fmt)
    assert err.value.code == "unsupported_response_format"


def test_wrong_api_key_is_401_invalid_api_key(fake_openai):
    with pytest.raises(openai.AuthenticationError) as err:
        fake_openai.client(api_key="sk-wrong").models.list()
    assert err.value.code == "invalid_api_key"


def test_files_upload_list_retrieve_content_delete(fake_openai, tmp_path):
    path = write_chat_jsonl(tmp_path / "train.jsonl", 12)
    client = fake_openai.client()

    uploaded = client.files.create(file=path, purpose="fine-tune")
    assert uploaded.bytes == path.stat().st_size
    assert uploaded.filename == "train.jsonl"
    assert uploaded.purpose == "fine-tune"
    assert client.files.content(uploaded.id).content == path.read_bytes()
    assert [f.id for f in client.files.list()] == [uploaded.id]
    assert client.files.retrieve(uploaded.id).id == uploaded.id
    assert fake_openai.calls_to("POST", "/files")[0]["form"] == {
        "file": "train.jsonl", "purpose": "fine-tune"}

    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def test_job_advances_one_status_per_retrieve_to_a_fine_tuned_model(fake_openai, tmp_path):
    client = fake_openai.client()
    train = client.files.create(file=write_chat_jsonl(tmp_path / "t.jsonl", 12),
                                purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4.1-mini-2025-04-14", training_file=train.id)
    assert job.status == "validating_files"

    statuses = [client.fine_tuning.jobs.retrieve(job.id).status for _ in range(3)]
    assert statuses == ["queued", "running", "succeeded"]
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model == f"ft:gpt-4.1-mini-2025-04-14:fake::{job.id}"

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    losses = [e.data["train_loss"] for e in events if e.type == "metrics"]
    assert losses and all(loss > 0 for loss in losses)
    assert events[0].message == "The job has successfully completed"   # newest first
    assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]
    assert done.fine_tuned_model in [m.id for m in client.models.list()]


def test_events_paginate_with_after(fake_openai, tmp_path):
    client = fake_openai.client()
    train = client.files.create(file=write_chat_jsonl(tmp_path / "t.jsonl", 12),
                                purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=train.id)
    for _ in range(3):
        client.fine_tuning.jobs.retrieve(job.id)

    first = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert first.has_more
    every = [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=2)]   # auto-paging
    assert every[:2] == [e.id for e in first.data]
    assert len(every) == len(set(every)) == len(fake_openai.jobs[job.id]["events"])


def test_too_few_examples_fail_with_invalid_n_examples(fake_openai, tmp_path):
    client = fake_openai.client()
    train = client.files.create(file=write_chat_jsonl(tmp_path / "t.jsonl", 3),
                                purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4.1-mini-2025-04-14", training_file=train.id)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed"
    assert job.error.code == "invalid_n_examples"


def test_configured_outcome_failure(fake_openai, tmp_path):
    fake_openai.job_outcome = ("failed", {"code": "server_error", "message": "Boom"})
    client = fake_openai.client()
    train = client.files.create(file=write_chat_jsonl(tmp_path / "t.jsonl", 12),
                                purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4.1-mini-2025-04-14", training_file=train.id)
    for _ in range(3):
        job = client.fine_tuning.jobs.retrieve(job.id)
    assert (job.status, job.error.code, job.error.message) == ("failed", "server_error", "Boom")


def test_cancel_and_cancel_again(fake_openai, tmp_path):
    client = fake_openai.client()
    train = client.files.create(file=write_chat_jsonl(tmp_path / "t.jsonl", 12),
                                purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4.1-mini-2025-04-14", training_file=train.id)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)


def test_training_blocked_is_403_training_not_available(fake_openai, tmp_path):
    fake_openai.training_blocked = True
    client = fake_openai.client()
    train = client.files.create(file=write_chat_jsonl(tmp_path / "t.jsonl", 12),
                                purpose="fine-tune")
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.fine_tuning.jobs.create(model="gpt-4.1-mini-2025-04-14", training_file=train.id)
    assert err.value.code == "training_not_available"


def test_unknown_training_file_and_job_are_errors(fake_openai):
    client = fake_openai.client()
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model="gpt-4.1-mini-2025-04-14", training_file="file-x")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-missing")


def test_fail_next_injects_errors_on_any_endpoint(fake_openai):
    fake_openai.fail_next("GET", "/models", 500, times=1)
    fake_openai.fail_next("GET", "/v1/files", 403, code="forbidden", message="nope")
    client = fake_openai.client(max_retries=1)

    assert client.models.list().data                       # 500 retried once by the SDK
    assert len(fake_openai.calls_to("GET", "/models")) == 2
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.files.list()
    assert (err.value.code, err.value.body["message"]) == ("forbidden", "nope")
    assert list(client.files.list()) == []                 # the injection was used up


def test_a_subprocess_reaches_the_fake_through_openai_base_url(fake_openai):
    fake_openai.chat_replies.append("from a subprocess")
    script = ("import openai; c = openai.OpenAI(); "
              "print(c.chat.completions.create(model='m', messages=[{'role': 'user', "
              "'content': 'hi'}]).choices[0].message.content)")
    env = {**os.environ, **fake_openai.env()}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "from a subprocess", out.stderr


def test_context_manager_stops_the_server():
    with FakeOpenAI() as fake:
        client = fake.client(max_retries=0, timeout=2)
        assert client.models.list().data
    with pytest.raises(openai.APIConnectionError):
        client.models.list()


def test_a_raw_body_is_sent_byte_for_byte_and_the_sdk_gets_it_as_it_is(fake_openai):
    import urllib.request

    fake_openai.chat_replies.append(MALFORMED_ANSWERS["not json"])
    request = urllib.request.Request(f"{fake_openai.base_url}/chat/completions",
                                     json.dumps({"model": "m", "messages": USER}).encode(),
                                     {"authorization": f"Bearer {fake_openai.api_key}",
                                      "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as raw:
        assert raw.status == 200 and raw.headers["content-type"] == "application/json"
        assert raw.read() == MALFORMED_ANSWERS["not json"]["body"].encode()

    fake_openai.chat_replies.append(MALFORMED_ANSWERS["choices of strings"])
    reply = fake_openai.client(max_retries=0).chat.completions.create(model="m", messages=USER)
    assert reply.choices == ["x"]  # the SDK does not validate: what the server sends is what the caller gets
    fake_openai.chat_replies.append(MALFORMED_ANSWERS["lone surrogate"])
    reply = fake_openai.client(max_retries=0).chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "\ud800"
