"""finetune.py --evaluate --policies llm: the real openai SDK against the fake OpenAI server on 127.0.0.1 (answers,
validation, the on-disk cache and resuming, bounded concurrency, an unreachable endpoint, the estimate)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

import finetune
from lib.games.voting.actions import DECISION, OFFER, REQUEST
from tests.helpers.evalsets import HAND_SET, write_set
from tests.helpers.fakeopenai import MALFORMED_ANSWERS, FakeOpenAI
from tests.helpers.scripted_answers import scripted

SCORED = sum(1 for row in HAND_SET if row[2] != "chat-with-players")  # 12: chat is never asked


@pytest.fixture
def fake(monkeypatch):
    with FakeOpenAI() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("OPENAI_MODEL", raising=False)
        yield server


@pytest.fixture
def data(tmp_path):
    write_set(tmp_path / "validation_set.jsonl")
    write_set(tmp_path / "training_set.jsonl", [r for r in HAND_SET if r[0] == 1])
    return tmp_path






def evaluate(capsys, data: Path, *args: str) -> tuple[int, str, str]:
    code = finetune.main(["--evaluate", "--data-dir", str(data), "--output-dir", str(data),
                          "--policies", "llm", "--model", "test-model",
                          "--max-retries", "0", *args])
    out, err = capsys.readouterr()
    return code, out, err


def chat_calls(fake: FakeOpenAI) -> list[dict]:
    return fake.calls_to("POST", "/chat/completions")


def test_answers_are_validated_scored_and_cached(fake, data, capsys):
    fake.chat_default = scripted
    code, out, err = evaluate(capsys, data)
    assert code == 0, err
    calls = chat_calls(fake)
    assert len(calls) == SCORED
    # asked with exactly the example's system and user messages, and the play-time structured output
    examples = [json.loads(line)["messages"] for line in (data / "validation_set.jsonl").read_text().splitlines()]
    prompts = [m[:2] for m in examples if '"chat-with-players"' not in m[2]["content"]]
    assert sorted(json.dumps(c["json"]["messages"]) for c in calls) == sorted(json.dumps(p) for p in prompts)
    assert all(c["json"]["model"] == "test-model" and c["json"]["temperature"] == 0 for c in calls)
    assert all(c["json"]["response_format"]["type"] == "json_schema" for c in calls)

    report = json.loads((data / "evaluation_report.json").read_text())
    llm = report["policies"]["llm"]
    # requests: 300k against 250k, 100k, 500k (40k's answer is invalid): errors +50k, +200k, -200k
    assert llm[REQUEST] == {"n": 4, "invalid": 1, "mae": 150000, "median_ae": 200000, "bias": 16666.666667,
                            "spearman": None}
    assert llm[OFFER] == {"n": 2, "invalid": 0, "mae": 30000, "median_ae": 30000, "bias": -20000, "spearman": None}
    # votes: [2] is invalid and disagrees; 1 agrees with 3 of the other 5 (humans 1, 0, 0, 1, 1):
    # p_o = 3/6, p_e = (3 humans' 1s x 5 policy 1s) / 36, kappa = (1/2 - 15/36) / (1 - 15/36) = 1/7
    assert llm[DECISION]["invalid"] == 1 and llm[DECISION]["agreement"] == 0.5
    assert llm[DECISION]["kappa"] == pytest.approx(1 / 7, abs=1e-6)
    info = report["policy_info"]["llm"]
    assert info["answers_from_model"] == SCORED and info["model"] == "test-model"
    assert info["endpoint"] == fake.base_url

    # run again: every answer comes from the cache, the numbers are the same
    code, out2, err = evaluate(capsys, data)
    assert code == 0, err
    assert len(chat_calls(fake)) == SCORED
    again = json.loads((data / "evaluation_report.json").read_text())
    assert again["policies"]["llm"] == llm and again["policy_info"]["llm"]["answers_from_cache"] == SCORED
    assert "0 call(s) to test-model" in out2 and f"{SCORED} answer(s) already cached" in out2

    # another model is another cache entry
    code, _, err = evaluate(capsys, data, "--model", "other-model")
    assert code == 0, err
    assert len(chat_calls(fake)) == 2 * SCORED


def test_an_interrupted_evaluation_resumes_from_the_cache(fake, data, capsys):
    answered = []

    def four_then_broken(body: dict):
        if len(answered) >= 4:
            return {"status": 401, "error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
        answered.append(body)
        return scripted(body)

    fake.chat_default = four_then_broken
    code, _, err = evaluate(capsys, data, "--max-concurrent-calls", "1")
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "API key was rejected" in err and "4 answer(s) are cached" in err and "run again to resume" in err
    assert not (data / "evaluation_report.json").exists() and not (data / "evaluation.png").exists()
    assert len((data / "evaluation_cache.jsonl").read_text().splitlines()) == 4

    fake.chat_default = scripted
    before = len(chat_calls(fake))
    code, _, err = evaluate(capsys, data)
    assert code == 0, err
    assert len(chat_calls(fake)) - before == SCORED - 4  # only what was not answered yet
    report = json.loads((data / "evaluation_report.json").read_text())
    assert report["policy_info"]["llm"]["answers_from_cache"] == 4
    assert report["policies"]["llm"][OFFER]["mae"] == 30000


def test_calls_run_concurrently_within_the_bound(fake, data, capsys):
    lock = threading.Lock()
    in_flight, peak = [0], [0]

    def slow(body: dict) -> str:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.3)
        with lock:
            in_flight[0] -= 1
        return scripted(body)

    fake.chat_default = slow
    code, _, err = evaluate(capsys, data, "--max-concurrent-calls", "3")
    assert code == 0, err
    assert len(chat_calls(fake)) == SCORED
    assert 2 <= peak[0] <= 3


def test_an_unreachable_endpoint_is_one_line_and_writes_nothing(data, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")
    code, _, err = evaluate(capsys, data)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and f"cannot reach http://127.0.0.1:{port}/v1" in err
    assert "0 answer(s) are cached" in err
    assert not (data / "evaluation_report.json").exists() and not (data / "evaluation.png").exists()


def test_dry_run_prints_the_estimate_and_calls_nothing(fake, data, capsys):
    fake.chat_default = scripted
    code, out, err = evaluate(capsys, data, "--dry-run")
    assert code == 0, err
    assert f"llm: {SCORED} call(s) to test-model at {fake.base_url} (0 answer(s) already cached)" in out
    assert "prompt tokens" in out and "a local endpoint: no per-token price" in out
    assert chat_calls(fake) == []
    assert not (data / "evaluation_report.json").exists() and not (data / "evaluation_cache.jsonl").exists()


def test_temperature_none_leaves_it_to_the_endpoint(fake, data, capsys):
    fake.chat_default = scripted
    code, _, err = evaluate(capsys, data, "--temperature", "none")
    assert code == 0, err
    assert all("temperature" not in c["json"] for c in chat_calls(fake))
    assert json.loads((data / "evaluation_report.json").read_text())["policy_info"]["llm"]["temperature"] is None


def test_a_configured_model_joins_the_default_policies(fake, data, capsys, monkeypatch):
    fake.chat_default = scripted
    monkeypatch.setenv("OPENAI_MODEL", "ft:gpt-4.1-mini-2025-04-14:lab::abc")
    code = finetune.main(["--evaluate", "--data-dir", str(data), "--output-dir", str(data)])
    _, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((data / "evaluation_report.json").read_text())
    assert list(report["policies"]) == ["baseline", "fitted", "llm"]
    assert report["policy_info"]["llm"]["model"] == "ft:gpt-4.1-mini-2025-04-14:lab::abc"
    assert report["policy_info"]["llm"]["model_source"] == "OPENAI_MODEL"


# ---------------------------------------------------------------------------------------------------------------
# Malformed answers and a damaged cache (issue #20)


@pytest.mark.parametrize("name", sorted(MALFORMED_ANSWERS))
def test_a_malformed_answer_is_counted_invalid_with_a_reason_and_the_run_resumes(fake, data, capsys, name):
    fake.chat_default = lambda body: MALFORMED_ANSWERS[name]
    code, _, err = evaluate(capsys, data)
    assert code == 0, err
    assert "Traceback" not in err
    report = json.loads((data / "evaluation_report.json").read_text())
    llm = report["policies"]["llm"]
    assert [llm[kind]["invalid"] for kind in (REQUEST, OFFER, DECISION)] == [4, 2, 6]
    reasons = report["policy_info"]["llm"]["invalid_reasons"]
    assert sum(reasons.values()) == SCORED and all(reason.strip() for reason in reasons)

    # the next run reads whatever the cache kept and counts the same; an answer it could not keep is asked again
    asked = len(chat_calls(fake))
    code, _, err = evaluate(capsys, data)
    assert code == 0, err
    again = json.loads((data / "evaluation_report.json").read_text())
    assert again["policies"]["llm"] == llm
    cached = again["policy_info"]["llm"].get("answers_from_cache", 0)
    assert cached + (len(chat_calls(fake)) - asked) == SCORED
    if name in ("deep nesting", "huge integer", "lone surrogate"):  # an answer text: cached, and read back
        assert cached == SCORED
        (data / "evaluation_cache.jsonl").read_bytes().decode("ascii")


def test_a_damaged_cache_line_is_skipped_with_a_warning_and_a_cut_line_is_not_glued_to_the_next(fake, data, capsys):
    fake.chat_default = scripted
    code, _, err = evaluate(capsys, data)
    assert code == 0, err
    cache = data / "evaluation_cache.jsonl"
    lines = cache.read_bytes().splitlines(keepends=True)
    assert len(lines) == SCORED
    # line 2 gets an invalid UTF-8 byte; the last line is cut mid-record, as a killed run leaves it
    lines[1] = lines[1][:20] + b"\xff" + lines[1][21:]
    lines[-1] = lines[-1][:len(lines[-1]) // 2]
    cache.write_bytes(b"".join(lines))

    before = len(chat_calls(fake))
    code, _, err = evaluate(capsys, data)
    assert code == 0, err
    assert "Traceback" not in err
    assert f"{cache}:2: invalid UTF-8" in err and f"{cache}:{SCORED}: not a whole JSON record" in err
    assert len(chat_calls(fake)) - before == 2  # only the two damaged answers are asked again

    # the two new answers are records of their own: a third run asks nothing and still warns about the old lines
    code, _, err = evaluate(capsys, data)
    assert code == 0, err
    assert len(chat_calls(fake)) - before == 2
    report = json.loads((data / "evaluation_report.json").read_text())
    assert report["policy_info"]["llm"]["answers_from_cache"] == SCORED
    assert err.count("line skipped") == 2


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_cache_path_that_is_a_folder_is_one_line_and_exit_2(fake, data, capsys, dry_run):
    fake.chat_default = scripted
    (data / "evaluation_cache.jsonl").mkdir()
    code, _, err = evaluate(capsys, data, *(["--dry-run"] if dry_run else []))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{data / 'evaluation_cache.jsonl'}: cannot read the evaluation cache" in err
    assert chat_calls(fake) == [] and not (data / "evaluation_report.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# Prompt variants (issue #23)


def test_a_prompt_variant_is_what_the_model_is_asked_and_the_report_and_csv_say_so(fake, data, capsys):
    """--prompt-variant zero-shot: each example's variant, rebuilt from its messages and sidecar state, is what the
    endpoint gets; the report, the notes, stdout and decisions.csv say which prompt the model rows were asked with."""
    import csv

    from lib.games.voting.variants import RULES

    fake.chat_default = scripted
    code, out, err = evaluate(capsys, data, "--prompt-variant", "zero-shot", "--policies", "baseline,llm")
    assert code == 0, err
    examples = [json.loads(line)["messages"] for line in (data / "validation_set.jsonl").read_text().splitlines()]
    variants = [[{"role": "system", "content": m[0]["content"] + RULES}, m[1]] for m in examples
                if '"chat-with-players"' not in m[2]["content"]]
    asked = [c["json"]["messages"] for c in chat_calls(fake)]
    assert sorted(map(json.dumps, asked)) == sorted(map(json.dumps, variants))
    report = json.loads((data / "evaluation_report.json").read_text())
    info = report["policy_info"]["llm"]
    assert info["prompt"] == "zero-shot" and "full rules" in info["prompt_description"]
    assert any(note.startswith("llm was asked with the prompt variant zero-shot") for note in report["notes"])
    assert "llm: asked with the prompt variant zero-shot" in out
    with (data / "decisions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["prompt"] for r in rows if r["policy"] == "llm"} == {"zero-shot"}
    assert {r["prompt"] for r in rows if r["policy"] != "llm"} == {""}  # the rules and references take no prompt


def test_each_prompt_variant_has_its_own_cached_answers(fake, data, capsys):
    """no-history on examples without earlier rounds asks the default's very messages, yet is asked anew: an answer
    to one prompt variant never stands for another's."""
    fake.chat_default = scripted
    for variant, asked in (("default", SCORED), ("no-history", 2 * SCORED), ("zero-shot", 3 * SCORED),
                           ("no-history", 3 * SCORED)):
        code, _, err = evaluate(capsys, data, "--prompt-variant", variant)
        assert code == 0 and len(chat_calls(fake)) == asked, (variant, err)
    asked = [json.dumps(c["json"]["messages"]) for c in chat_calls(fake)]  # concurrent calls: any order
    assert sorted(asked[SCORED:2 * SCORED]) == sorted(asked[:SCORED])


@pytest.mark.parametrize(("args", "said"), [
    (["--prompt-variant", "zeroshot"],
     "--prompt-variant: 'zeroshot' is not a prompt variant of the voting game (it has default, zero-shot, "
     "no-history)"),
    (["--prompt-variant", "zero-shot", "--policies", "baseline"], "it is the llm policy's prompt"),
])
def test_a_prompt_variant_that_cannot_be_asked_is_one_line_and_nothing_is_written(fake, data, capsys, args, said):
    fake.chat_default = scripted
    code, out, err = evaluate(capsys, data, *args)
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert chat_calls(fake) == [] and not (data / "evaluation_report.json").exists()
