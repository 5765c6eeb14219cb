"""lib/agents/decisions.py: the decisions table and the shares line, on real files in tmp_path."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter

import pytest

from lib.agents import decisions
from lib.agents.decisions import COLUMNS, Decision, DecisionLog, shares_line


def row(made_by: str, **fields) -> Decision:
    base = {"game": 7, "round": 1, "phase": 3, "seat": 4, "role": "owner", "agent": "agent4",
            "action_type": "compensation-request"}
    return Decision(**{**base, **fields}, made_by=made_by)


def read(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_rows_are_on_disk_as_soon_as_they_are_added_and_a_reopened_table_gets_no_second_header(tmp_path):
    path = tmp_path / "run" / "decisions.csv"
    log = DecisionLog(path)
    log.add(row(decisions.MODEL, action={"gameId": 7, "type": "compensation-request",
                                         "compensationRequests": [None, 250000]},
                private_values=[468000, 164000], model="ft:m", attempts=1, latency_s=0.8123, sent=True))
    # Not closed: what a crash would leave.
    [first] = read(path)
    assert list(first) == list(COLUMNS)
    assert first["action"] == '{"gameId":7,"type":"compensation-request","compensationRequests":[null,250000]}'
    assert (first["private_values"], first["made_by"], first["retries"], first["latency_s"], first["sent"]) == (
        "[468000,164000]", "model", "0", "0.812", "yes")
    log.close()

    with DecisionLog(path) as again:  # a resumed run appends to the same table
        again.add(row(decisions.FALLBACK, fallback_reason=decisions.TIMEOUT, detail="bad \ud800 text",
                      attempts=3))
    rows = read(path)
    assert len(rows) == 2 and path.read_text(encoding="utf-8").count("time_utc") == 1
    assert (rows[1]["made_by"], rows[1]["fallback_reason"], rows[1]["retries"], rows[1]["sent"]) == (
        "fallback", "timeout", "2", "no")
    assert rows[1]["detail"] == "bad ? text", "a text that cannot be encoded does not cost the row"


def test_the_shares_line_says_who_decided_and_why_the_fallbacks_came():
    made_by = Counter({"model": 30, "model-after-retries": 2, "fallback": 1})
    assert shares_line(made_by, Counter({"timeout": 1})) == (
        "decisions: 33: model 30 (90.9%), model-after-retries 2 (6.1%), fallback 1 (3.0%: timeout 1)")
    # A model run shows its fallbacks even when there are none; a rules run does not mention them.
    assert shares_line(Counter({"model": 11}), Counter()) == "decisions: 11: model 11 (100.0%), fallback 0 (0.0%)"
    assert shares_line(Counter({"baseline": 11}), Counter()) == "decisions: 11: baseline 11 (100.0%)"
    assert shares_line(Counter({"fallback": 3, "none": 1}), Counter({"model-error": 2, "invalid-answers": 1})) == (
        "decisions: 4: fallback 3 (75.0%: invalid-answers 1, model-error 2), none 1 (25.0%)")
    assert shares_line(Counter(), Counter()) == "decisions: none taken"


def test_a_trace_says_why_the_model_gave_no_answer():
    trace = decisions.Trace(deadline=0.0)
    assert trace.why_no_answer() == decisions.TIMEOUT  # never got to ask
    trace.attempts = 2
    trace.failed(decisions.INVALID, "invalid answer: not JSON")
    trace.failed(decisions.MODEL_ERROR, "InternalServerError: 500")
    assert trace.why_no_answer() == decisions.MODEL_ERROR
    assert trace.summary() == "2 model calls, 1 invalid answer, 1 failed call; last: InternalServerError: 500"
    trace.stopped = decisions.TIMEOUT  # then no time was left for another call
    assert trace.why_no_answer() == decisions.TIMEOUT


def test_no_secret_reaches_the_table(tmp_path):
    path = tmp_path / "decisions.csv"
    with DecisionLog(path, secrets=["sk-registered-key-1234", "ibex-admin-pw", ""]) as log:
        log.add(row(decisions.FALLBACK, fallback_reason=decisions.MODEL_ERROR,
                    detail="AuthenticationError: Incorrect API key provided: sk-registered-key-1234; "
                           "login ibex-admin-pw; another sk-unregistered0000000"))
    text = path.read_text(encoding="utf-8")
    assert "sk-registered" not in text and "ibex-admin-pw" not in text and "sk-unregistered" not in text
    assert read(path)[0]["detail"] == ("AuthenticationError: Incorrect API key provided: [redacted]; "
                                       "login [redacted]; another [redacted]")


def test_a_model_decisions_tokens_and_cost_come_from_the_trace_of_the_decision_being_taken(tmp_path):
    path = tmp_path / "decisions.csv"

    async def decide(log: DecisionLog) -> None:
        trace = decisions.Trace(deadline=0.0)
        decisions.begin(trace)  # this task's decision, as the agent opens it
        trace.attempts = 2
        trace.used(120, 9, 0.0012, cached=False)
        trace.used(130, 8, 0.0, cached=True)
        log.add(row(decisions.MODEL_RETRIED, attempts=2))
        log.add(row("baseline"))  # a rule policy's row in another decision: no calls, no tokens

    with DecisionLog(path) as log:
        asyncio.run(decide(log))
        log.add(row(decisions.MODEL, attempts=1, prompt_tokens=5, completion_tokens=1, cost_usd=None,
                    cached_calls=0))  # told by the caller: kept
    model, rule, told = read(path)
    assert (model["prompt_tokens"], model["completion_tokens"], model["cost_usd"], model["cached_calls"]) == (
        "250", "17", "0.001200", "1")
    assert (rule["prompt_tokens"], rule["completion_tokens"], rule["cost_usd"], rule["cached_calls"]) == ("",) * 4
    assert (told["prompt_tokens"], told["completion_tokens"], told["cost_usd"], told["cached_calls"]) == (
        "5", "1", "", "0")
    assert decisions.SPEND_CAP in decisions.FALLBACK_REASONS


def test_a_table_begun_by_an_older_version_keeps_its_columns_and_a_foreign_file_is_refused(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text(",".join(COLUMNS[:18]) + "\n", encoding="utf-8")
    with DecisionLog(old) as log:
        log.add(row(decisions.MODEL, attempts=1, prompt_tokens=5))
    [added] = read(old)
    assert list(added) == list(COLUMNS[:18]) and None not in added.values() and added["sent"] == "no"
    foreign = tmp_path / "notes.csv"
    foreign.write_text("name,score\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"notes.csv: not a decisions table"):
        DecisionLog(foreign)
