"""One redaction path (lib/util/redact.py) for every line finetune.py and handler.py print or record (issue #12.3)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import finetune
from lib.agents.transcript import Transcript
from lib.util import redact
from lib.util.redact import REDACTED, RedactingStream, Redactor, public_url, secrets_from_env
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.finetune_runs import FAST, write_dataset

KEY = "sk-proj-Zq81hidden0secret0key"
PASSWORD = "hunter2-in-the-url"


def test_a_redactor_hides_secrets_keys_tokens_and_url_credentials():
    scrub = Redactor(["my\"pass word", "tiny", None])
    line = json.dumps({"a": 'my"pass word', "b": "my\"pass word said Bearer abc.def-123456789 and "
                       f"{KEY}; see https://alice:{PASSWORD}@example.org/v1 and ws://bob@host:3088/"})
    hidden = scrub(line)
    assert "pass word" not in hidden and "abc.def" not in hidden and KEY not in hidden and PASSWORD not in hidden
    assert "alice" not in hidden and "bob@" not in hidden
    assert f"Bearer {REDACTED}" in hidden and f"https://{REDACTED}@example.org/v1" in hidden
    assert scrub("tiny secrets under six characters are left alone: tiny") == \
        "tiny secrets under six characters are left alone: tiny"
    assert scrub("a basic answer, http://example.org/@user and mail@example.org") == \
        "a basic answer, http://example.org/@user and mail@example.org"


def test_public_url_and_the_secrets_of_the_settings():
    assert public_url(f"http://user:{PASSWORD}@127.0.0.1:8000/v1") == f"http://{REDACTED}@127.0.0.1:8000/v1"
    assert public_url("https://api.openai.com/v1") == "https://api.openai.com/v1"
    env = {"OPENAI_API_KEY": KEY, "IBEX_PASSWORD": "pw", "OPENAI_BASE_URL": f"http://u:{PASSWORD}@h/v1"}
    assert secrets_from_env(env) == [KEY, PASSWORD]  # "pw" is too short to scrub


def test_a_redacting_stream_finds_a_secret_split_over_writes():
    out = io.StringIO()
    stream = RedactingStream(out, Redactor([KEY]))
    stream.write("key: " + KEY[:9])
    stream.write(KEY[9:] + "\nprogress 1/2\r")
    stream.write("tail " + KEY)
    assert out.getvalue() == f"key: {REDACTED}\nprogress 1/2\r"
    stream.flush()
    assert out.getvalue().endswith(f"tail {REDACTED}")


def test_transcripts_use_the_same_redaction(tmp_path):
    with Transcript(tmp_path / "t.jsonl", secrets=[PASSWORD]) as transcript:
        transcript.write("error", error=f"401 from http://u:{PASSWORD}@h/v1: Bearer abcdefgh12345678")
    text = (tmp_path / "t.jsonl").read_text(encoding="utf-8")
    assert PASSWORD not in text and "abcdefgh12345678" not in text and "u:" not in text


def test_finetune_prints_and_records_no_key_and_no_url_password(tmp_path, monkeypatch, capsys):
    write_dataset(tmp_path / "training_set.jsonl", range(20))
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(api_key=KEY) as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        # An endpoint whose error body echoes the request's Authorization header, as some proxies do.
        fake.fail_next("POST", "/fine_tuning/jobs", 400, message=f"bad job (Authorization: Bearer {KEY})")
        code = finetune.main([*FAST, "--data-dir", str(tmp_path)])
        out, err = capsys.readouterr()
        assert code == 1 and f"answered 400: bad job (Authorization: Bearer {REDACTED})" in err
        # A password in the base URL: the SDK then sends it as Basic auth, the key is refused, and the message
        # names the endpoint without the password.
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url.replace("http://", f"http://researcher:{PASSWORD}@"))
        code = finetune.main([*FAST, "--data-dir", str(tmp_path)])
        out2, err2 = capsys.readouterr()
        assert code == 1
        assert f"the API key was rejected by http://{REDACTED}@127.0.0.1:{fake.port}/v1" in err2
        record = (tmp_path / "finetune_job.json").read_text(encoding="utf-8")
    assert "uploads" in json.loads(record)
    for text in (out, err, out2, err2, record):
        assert KEY not in text and PASSWORD not in text and "researcher" not in text
    assert not isinstance(sys.stdout, RedactingStream)  # main() put the streams back


def test_finetune_subprocess_traceback_free_and_redacted(tmp_path):
    write_dataset(tmp_path / "training_set.jsonl", range(20))
    env = {"PATH": "/usr/bin:/bin", "PYTHON_DOTENV_DISABLED": "1", "OPENAI_API_KEY": KEY,
           "OPENAI_BASE_URL": f"http://researcher:{PASSWORD}@127.0.0.1:9/v1"}
    proc = subprocess.run([sys.executable, str(Path(finetune.__file__)), "--data-dir", str(tmp_path),
                           "--max-retries", "0", "--poll-interval", "0.01"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert "cannot reach http://[redacted]@127.0.0.1:9/v1" in proc.stderr
    assert KEY not in proc.stdout + proc.stderr and PASSWORD not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_handler_uses_the_shared_path():
    import handler
    from lib.ibex import api as ibexapi

    assert handler._public_url is redact.public_url and ibexapi._public_url is redact.public_url


def test_handler_prints_and_records_no_key_and_no_url_password(tmp_path):
    with FakeOpenAI(api_key=KEY) as fake:
        env = {"PATH": "/usr/bin:/bin", "PYTHON_DOTENV_DISABLED": "1", "OPENAI_API_KEY": KEY, "OPENAI_MODEL": "m",
               "OPENAI_BASE_URL": fake.base_url.replace("http://", f"http://researcher:{PASSWORD}@")}
        proc = subprocess.run([sys.executable, str(Path(finetune.__file__).with_name("handler.py")), "--local",
                               "--policy", "llm", "--rounds", "1", "--no-practice", "--timer-scale", "0.02",
                               "--records", str(tmp_path / "records"), "--logs-dir", str(tmp_path / "logs")],
                              env=env, capture_output=True, text=True, timeout=120)
        port = fake.port
    # The SDK sends the URL's password as Basic auth, so the key is refused: whatever the handler does about it
    # (fallbacks, or stopping), nothing it prints or records holds the key or the password.
    policy_line = next(line for line in proc.stdout.splitlines() if line.startswith("policy: llm"))
    assert f"endpoint http://{REDACTED}@127.0.0.1:{port}/v1" in policy_line
    written = [path.read_text(encoding="utf-8") for path in tmp_path.rglob("*") if path.is_file()]
    for text in (proc.stdout, proc.stderr, *written):
        assert KEY not in text and PASSWORD not in text and "researcher" not in text
