"""`python handler.py --local` as a user runs it: a subprocess, tmp directories for the log and the transcripts."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.agents.decisions import COLUMNS
from lib.agents.transcript import read_transcript
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.paths import REPO

FAST = ["--rounds", "1", "--no-practice", "--timer-scale", "0.005"]


# handler.py with the decision phases (3, 4, 6) at two minutes and the others as --timer-scale makes them. Those
# phases end as soon as every seat has acted, so the long timers cost no time; they only keep the deadline out of
# the way. Under FAST alone phase 6 gives a decision about 0.2 s, and on a loaded machine the 404 of a dead model
# can come later than that: the decision then falls back, rightly, for `timeout` instead of `model-error` (#21).
LONG_DECISIONS = """
import sys
sys.path.insert(0, sys.argv.pop(1))
import handler
from lib.games import game_for
game = game_for("voting")
scaled = game.rules.local_parameters
def long_decisions(rounds, practice, scale):
    return {**scaled(rounds, practice, scale), **{f"timer_phase_{p}": 120.0 for p in game.play.action_phases}}
game.rules.local_parameters = long_decisions
sys.exit(handler.main(sys.argv[1:]))
"""


def handler_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IBEX_"))}
    env["PYTHON_DOTENV_DISABLED"] = "1"
    env.update(extra)
    return env


def run_handler(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
                long_decisions: bool = False) -> subprocess.CompletedProcess[str]:
    """handler.py --local ARGS; long_decisions: with LONG_DECISIONS' two-minute decision phases."""
    script = ["-c", LONG_DECISIONS, str(REPO)] if long_decisions else [str(REPO / "handler.py")]
    return subprocess.run(
        [sys.executable, *script, "--local", *args,
         "--records", str(tmp_path / "records"), "--logs-dir", str(tmp_path / "logs")],
        cwd=tmp_path, env=env or handler_env(), capture_output=True, text=True, timeout=240,  # a hang guard
    )


def transcripts(tmp_path: Path) -> dict[str, list[dict]]:
    [run_dir] = (tmp_path / "logs").iterdir()
    return {p.stem: read_transcript(p) for p in sorted(run_dir.glob("agent*.jsonl"))}


def test_demo_without_api_key_plays_the_baseline_and_prints_a_summary(tmp_path):
    result = run_handler(tmp_path, *FAST)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "policy: baseline (no OPENAI_API_KEY set)"
    [log_file] = (tmp_path / "records").glob("*.log.json")
    recorded = json.loads(log_file.read_text(encoding="utf-8"))
    assert f"game log: {log_file}" in lines
    # The summary says what the server recorded.
    received = [e["content"] for e in recorded["log"] if e["type"] == "message"]
    offer = next(c["compensationOffers"][1] for c in received if c["type"] == "compensation-offer")
    requests = [c["compensationRequests"][1] for c in received if c["type"] == "compensation-request"]
    votes = [c["compensationDecisions"][0] for c in received if c["type"] == "compensation-decision"]
    summary = "\n".join(lines[lines.index("round 1"):])
    assert f"  offer:    {offer}\n" in summary
    assert all(f" {r}" in summary.split("\n")[1] for r in requests)
    assert summary.count(" Project") - summary.count("No Project") >= votes.count(1)
    assert re.search(r"  outcome:  (Project|No Project) \(\d votes\)", summary)
    assert re.search(r"  profit:   Owner 1 \d+, Developer -?\d+, Owner 2 \d+", summary)
    assert "game-over" in json.dumps(recorded["server-log"])
    assert lines[-1] == "decisions: 11: baseline 11 (100.0%)", "the last line gives who decided"
    records = transcripts(tmp_path)
    assert sorted(records) == [f"agent{k}" for k in range(1, 7)]
    for agent, lines_ in records.items():
        assert lines_[0]["kind"] == "start" and lines_[-1]["kind"] == "shutdown", agent
        assert lines_[-1]["reason"] == "game-over"


def test_a_log_already_in_the_records_folder_is_never_overwritten(tmp_path):
    (tmp_path / "records").mkdir()
    real = tmp_path / "records" / "1.log.json"
    real.write_text('{"a real game": true}', encoding="utf-8")

    result = run_handler(tmp_path, *FAST)

    assert result.returncode == 0, result.stderr
    assert real.read_text(encoding="utf-8") == '{"a real game": true}'
    kept = tmp_path / "records" / "2.log.json"
    assert f"game log: {kept}" in result.stdout and "game-over" in kept.read_text(encoding="utf-8")


def test_model_agents_run_through_an_openai_compatible_endpoint(tmp_path):
    answers = {
        "SubmitCompensationRequest": {"type": "compensation-request", "compensationRequests": [None, 250000]},
        "SubmitCompensationOffer": {"type": "compensation-offer", "compensationOffers": [None, 260000]},
        "SubmitCompensationDecision": {"type": "compensation-decision", "compensationDecisions": [1]},
    }

    def brain(body):
        if "Action required:" not in body["messages"][-1]["content"]:
            return "OK"  # the preflight call
        action = json.loads(body["messages"][-1]["content"].split("Action required:\n", 1)[1])
        return json.dumps({"gameId": 1, **answers[action["data"]["actionType"]]})

    with FakeOpenAI() as fake:
        fake.chat_default = brain
        env = handler_env(**fake.env(), OPENAI_MODEL="ft:gpt-4.1-mini:lab:voting:abc")
        result = run_handler(tmp_path, "--rounds", "1", "--no-practice", "--timer-scale", "0.01", env=env,
                             long_decisions=True)  # every decision the model's, however slow the machine
        calls = fake.calls_to("POST", "/chat/completions")
        base_url = fake.base_url

    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first == (f"policy: llm, model ft:gpt-4.1-mini:lab:voting:abc (from OPENAI_MODEL), "
                     f"endpoint {base_url}/")
    assert len(calls) == 1 + 11 and {c["json"]["model"] for c in calls} == {"ft:gpt-4.1-mini:lab:voting:abc"}
    assert calls[0]["json"]["max_completion_tokens"] == 1, "the preflight comes first and is cheap"
    assert "  offer:    260000" in result.stdout and "fallback actions: 0" in result.stdout
    assert "decisions: 11: model 11 (100.0%), fallback 0 (0.0%)" in result.stdout.splitlines()
    out = result.stdout.splitlines()
    for phase in ("phase 3 (compensation request)", "phase 4 (compensation offer)", "phase 6 (vote)"):
        # One short line as each phase's model decisions begin, before the round's summary.
        assert out.index(f"  round 1, {phase}: the model is deciding ...") < out.index("round 1")
    for path in [*(tmp_path / "logs").rglob("*.jsonl"), *(tmp_path / "logs").rglob("*.csv")]:
        assert fake.api_key not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_game_closes_sockets_and_leaves_complete_transcripts(tmp_path, signum):
    process = subprocess.Popen(
        [sys.executable, str(REPO / "handler.py"), "--local", "--rounds", "3", "--timer-scale", "0.05",
         "--records", str(tmp_path / "records"), "--logs-dir", str(tmp_path / "logs")],
        cwd=tmp_path, env=handler_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Wait until the game is under way: the owners' first requests are in the decisions table.
        give_up = time.monotonic() + 120  # a hang guard: on a busy machine the start alone took over 20 s
        while time.monotonic() < give_up:
            found = [p for p in (tmp_path / "logs").rglob("decisions.csv")
                     if p.read_text(encoding="utf-8").count("\n") > 3]
            if found:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no decision was ever taken")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 128 + signum, stderr  # 143 for SIGTERM, 130 for SIGINT (docs/running-agents.md)
    assert f"stopped by {signal.Signals(signum).name}" in stdout and "Traceback" not in stderr
    # The rounds played so far, the round under way and the decision shares are printed.
    assert re.search(r"^round \d( \(practice\))? \(unfinished\)$", stdout, re.MULTILINE), stdout
    assert re.search(r"^decisions: \d+: baseline \d+ \(100.0%\)", stdout, re.MULTILINE), stdout
    [table] = (tmp_path / "logs").rglob("decisions.csv")
    rows = list(csv.DictReader(table.open(encoding="utf-8", newline="")))
    assert rows and all(r["sent"] in ("yes", "no") and r["made_by"] for r in rows), "complete rows only"
    records = transcripts(tmp_path)
    assert len(records) == 6
    for agent, lines in records.items():
        assert lines[-1]["kind"] == "shutdown" and lines[-1]["reason"] == "cancelled", agent
        assert {"kind": "meta", "event": "socket closed", "code": 1001}.items() <= lines[-2].items(), agent
    assert not list((tmp_path / "records").glob("*.log.json")), "an unfinished game has no log"


def test_asking_for_a_model_without_an_api_key_is_a_one_line_error(tmp_path):
    result = run_handler(tmp_path, "--policy", "llm", *FAST)

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_more_rounds_than_the_private_values_table_holds_is_a_one_line_error(tmp_path):
    result = run_handler(tmp_path, "--rounds", "40")

    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0
    assert "sessions.json" in result.stderr and "round" in result.stderr
    assert not list((tmp_path / "records").iterdir())


def test_without_a_mode_the_handler_says_what_to_do(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "handler.py")], cwd=tmp_path, env=handler_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--local" in result.stderr


def test_help_names_every_game_the_handler_plays(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "handler.py"), "--help"], cwd=tmp_path, env=handler_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "voting, Harberger and futarchy games" in " ".join(result.stdout.split())


@pytest.mark.parametrize("game_type", ["harberger", "futarchy"])
def test_fitted_in_a_market_game_is_refused_before_anything_is_printed(tmp_path, game_type):
    fitted = tmp_path / "fitted_policy.json"  # exists or not, the refusal comes first
    result = run_handler(tmp_path, "--game-type", game_type, "--policy", "fitted", "--fitted-params", str(fitted),
                         *FAST)
    assert result.returncode == 2 and result.stdout == ""
    assert f"--policy fitted plays voting games only; {game_type} has no fitted version" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "records").exists()


# ---------------------------------------------------------------------- honest runs: preflight and fallback shares


@pytest.mark.parametrize("fault", ["unreachable", "key refused", "unknown model"])
def test_the_preflight_stops_a_model_that_cannot_play_before_any_agent_joins(tmp_path, fault):
    with FakeOpenAI() as fake:
        fake.chat_default = lambda body: "OK"
        env = handler_env(**fake.env(), OPENAI_MODEL="ft:gpt-4.1-mini:lab:voting:abc")
        if fault == "unreachable":
            env["OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
        elif fault == "key refused":
            env["OPENAI_API_KEY"] = "sk-wrong-key-0123456789"
        else:
            fake.chat_models = {"gpt-4.1-mini-2025-04-14"}
        result = run_handler(tmp_path, "--policy", "llm", *FAST, env=env)
        calls = fake.calls_to("POST", "/chat/completions")

    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith("error: preflight: ") and result.stderr.strip().count("\n") == 0
    assert {"unreachable": "cannot reach the model endpoint http://127.0.0.1:9/v1",
            "key refused": "refused the API key (401",
            "unknown model": "model ft:gpt-4.1-mini:lab:voting:abc does not exist"}[fault] in result.stderr
    assert "sk-wrong-key" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert len(calls) == (0 if fault == "unreachable" else 1), "one cheap call, then nothing"
    assert not (tmp_path / "logs").exists() and not (tmp_path / "records").exists(), "no agent joined a game"




def test_without_preflight_a_dead_model_plays_fallbacks_says_so_and_fails_the_run(tmp_path):
    """--no-preflight lets the game start; every decision falls back for a model error, each round marks them,
    the shares say so, the decisions table holds the reason, and the run exits 3 after a complete game. The
    decisions have minutes, so however slow the machine the model's error, not the deadline, makes the fallback."""
    with FakeOpenAI() as fake:
        fake.chat_models = {"gpt-4.1-mini-2025-04-14"}
        env = handler_env(**fake.env(), OPENAI_MODEL="ft:gone")
        result = run_handler(tmp_path, "--policy", "llm", "--no-preflight", *FAST, env=env, long_decisions=True)

    assert result.returncode == 3, result.stderr
    assert "more than --max-fallback-share 0.2" in result.stderr and result.stderr.count("\n") == 1
    out = result.stdout.splitlines()
    assert not any(line.startswith("preflight") for line in out)
    assert "decisions: 11: model 0 (0.0%), fallback 11 (100.0%: model-error 11)" in out or \
        "decisions: 11: fallback 11 (100.0%: model-error 11)" in out, result.stdout
    assert "  offer:    " in result.stdout and "[fallback: model-error]" in result.stdout
    assert [line for line in out if line.startswith("game log: ")], "the game was finished properly"
    [table] = (tmp_path / "logs").rglob("decisions.csv")
    rows = list(csv.DictReader(table.open(encoding="utf-8", newline="")))
    assert len(rows) == 11 and {(r["made_by"], r["fallback_reason"], r["sent"]) for r in rows} == {
        ("fallback", "model-error", "yes")}
    assert all("404" in r["detail"] or "NotFound" in r["detail"] for r in rows)


@pytest.mark.parametrize("limit", [None, "1"], ids=["default-limit", "limit-1"])
def test_a_model_whose_every_answer_is_invalid_is_not_reported_as_the_models_play(tmp_path, limit):
    with FakeOpenAI() as fake:
        fake.chat_default = lambda body: "I would rather not say."
        env = handler_env(**fake.env(), OPENAI_MODEL="ft:stubborn")
        extra = ["--max-fallback-share", limit] if limit else []
        # Two model calls per decision: the deadline must be out of their way, however busy the machine (with
        # --timer-scale 0.01 alone the votes have 0.45 s, and on a loaded machine they fell back for `timeout`).
        result = run_handler(tmp_path, "--policy", "llm", "--max-retries", "1", *extra, "--rounds", "1",
                             "--no-practice", "--timer-scale", "0.01", env=env, long_decisions=True)

    assert result.returncode == (3 if limit is None else 0), result.stderr
    assert "decisions: 11: fallback 11 (100.0%: invalid-answers 11)" in result.stdout.splitlines(), result.stdout
    assert result.stdout.count("[fallback: invalid-answers]") == 11
    [table] = (tmp_path / "logs").rglob("decisions.csv")
    rows = list(csv.DictReader(table.open(encoding="utf-8", newline="")))
    assert {(r["made_by"], r["fallback_reason"], r["attempts"], r["retries"]) for r in rows} == {
        ("fallback", "invalid-answers", "2", "1")}


def test_each_round_is_printed_when_it_ends_not_at_the_end_of_the_game(tmp_path):
    # Timers x0.02: round 2 waits about 7 s in phases nobody can end early, so the game cannot be over by the time
    # this process has read round 1's block, however long a busy machine keeps it from reading (x0.005: 1.7 s).
    process = subprocess.Popen(
        [sys.executable, str(REPO / "handler.py"), "--local", "--rounds", "2", "--no-practice", "--timer-scale",
         "0.02", "--records", str(tmp_path / "records"), "--logs-dir", str(tmp_path / "logs")],
        cwd=tmp_path, env=handler_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line.rstrip("\n"))
            if line.startswith("  decisions: "):  # the last line of round 1's block
                break
        # Round 1 is out while round 2 is still to be played: the game has no log yet.
        assert "round 1" in seen and "round 2" not in seen
        assert not list((tmp_path / "records").glob("*.log.json"))
        rest, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "round 2" in rest.splitlines() and "game log: " in rest


def test_local_games_are_recorded_outside_the_training_logs_by_default():
    import handler

    records = handler.parse_args(["--local"]).records
    assert records == REPO / "logs" / "local-games"
    assert REPO / "jsonFiles" not in records.parents and records != REPO / "jsonFiles"


def test_a_killed_run_leaves_a_decisions_table_of_complete_rows(tmp_path):
    process = subprocess.Popen(
        [sys.executable, str(REPO / "handler.py"), "--local", "--rounds", "3", "--timer-scale", "0.01",
         "--records", str(tmp_path / "records"), "--logs-dir", str(tmp_path / "logs")],
        cwd=tmp_path, env=handler_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        give_up = time.monotonic() + 120  # a hang guard
        while time.monotonic() < give_up:
            tables = list((tmp_path / "logs").rglob("decisions.csv"))
            if tables and tables[0].read_text(encoding="utf-8").count("\n") > 12:  # into round 1
                break
            time.sleep(0.02)
        else:
            pytest.fail("no decisions were taken")
        process.kill()  # SIGKILL: no handler runs, nothing is flushed at exit
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    [table] = (tmp_path / "logs").rglob("decisions.csv")
    text = table.read_text(encoding="utf-8")
    assert text.endswith("\n")
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) > 11 and all(len(r) == len(COLUMNS) and None not in r.values() for r in rows)
    assert {r["made_by"] for r in rows} == {"baseline"}


# handler.py with every owner's request one above the cap as it goes out: past the agent's own checks (its last check
# is replaced), so only the server can refuse it; the strict local server does, the lenient one (the real server's
# behaviour) takes it.
OVER_THE_CAP = """
import sys
sys.path.insert(0, sys.argv.pop(1))
import handler
from lib.games.voting.seat import VotingSeat
checked = VotingSeat.validate
def over_the_cap(self, message, view, snapshot, wire_type, cap):
    message = checked(self, message, view, snapshot, wire_type, cap)
    if wire_type == "compensation-request":
        return {**message, "compensationRequests": [None, cap + 1]}
    return message
VotingSeat.validate = over_the_cap
sys.exit(handler.main(sys.argv[1:]))
"""


def test_strict_local_runs_count_refused_frames_and_fail_on_any(tmp_path):
    (tmp_path / "clean").mkdir()
    clean = run_handler(tmp_path / "clean", "--strict", *FAST)
    assert clean.returncode == 0, clean.stderr
    out = clean.stdout.splitlines()
    assert "(--strict)" in out[1] and out[1].startswith("local server ")
    assert "server errors: the strict local server refused 0 frames the agents sent" in out
    assert out[-1].startswith("decisions: 11: baseline 11")

    def over_the_cap(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", OVER_THE_CAP, str(REPO), "--local", *args, *FAST,
             "--records", str(where / "records"), "--logs-dir", str(where / "logs")],
            cwd=tmp_path, env=handler_env(), capture_output=True, text=True, timeout=60)

    refused = over_the_cap(tmp_path / "refused", "--strict")
    assert refused.returncode == 6, refused.stderr
    assert "server errors: the strict local server refused 5 frames the agents sent" in refused.stdout
    assert refused.stdout.splitlines()[-1].startswith("decisions: 11: ")  # the shares stay the last line
    [line] = refused.stderr.splitlines()
    assert line.startswith("error: --strict: the local server refused 5 frames the agents sent")
    assert "exit code 6" in line
    errors = [r for records in transcripts(tmp_path / "refused").values() for r in records
              if r["kind"] == "server-error"]
    assert len(errors) == 5 and all("compensationRequests must be" in r["message"] and "race" not in r
                                    for r in errors)
    lenient = over_the_cap(tmp_path / "lenient")  # the real server's behaviour: taken, nothing to report
    assert lenient.returncode == 0, lenient.stderr
    assert "server errors" not in lenient.stdout


def test_strict_is_the_local_server_s(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "handler.py"), "--game", "3", "--strict"], cwd=tmp_path,
                            env=handler_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--strict is the local server's: it works with --local only" in result.stderr


# ---------------------------------------------------------------------- prompt variants


@pytest.mark.parametrize("who", [["--policy", "llm"], ["--policy", "baseline", "--seat-policy", "developer=llm"]],
                         ids=["every seat", "a seat"])
def test_a_prompt_variant_is_what_the_model_seats_are_asked_with(tmp_path, who):
    from lib.games.voting.variants import RULES

    def brain(body):
        if "Action required:" not in body["messages"][-1]["content"]:
            return "OK"  # the preflight call
        action = json.loads(body["messages"][-1]["content"].split("Action required:\n", 1)[1])["data"]["actionType"]
        return json.dumps({"gameId": 1, **{
            "SubmitCompensationRequest": {"type": "compensation-request", "compensationRequests": [None, 250000]},
            "SubmitCompensationOffer": {"type": "compensation-offer", "compensationOffers": [None, 260000]},
            "SubmitCompensationDecision": {"type": "compensation-decision", "compensationDecisions": [1]}}[action]})

    with FakeOpenAI() as fake:
        fake.chat_default = brain
        env = handler_env(**fake.env(), OPENAI_MODEL="gpt-4o-2024-08-06")
        result = run_handler(tmp_path, *who, "--prompt-variant", "zero-shot", "--rounds", "1", "--no-practice",
                             "--timer-scale", "0.01", env=env)
        asked = [c["json"]["messages"] for c in fake.calls_to("POST", "/chat/completions")
                 if "max_completion_tokens" not in c["json"]]
    assert result.returncode == 0, result.stderr
    assert asked and all(m[0]["content"].endswith(RULES) for m in asked)
    model_calls = [r for records in transcripts(tmp_path).values() for r in records if r["kind"] == "model-call"]
    assert len(model_calls) == len(asked) and {r["prompt"] for r in model_calls} == {"zero-shot"}
    if who[1] == "llm":
        assert result.stdout.splitlines()[0].endswith(", prompt zero-shot (not the training prompt)")
        assert len(asked) == 11
    else:
        assert len(asked) == 1 and "seat 2 llm (prompt zero-shot)" in result.stdout


@pytest.mark.parametrize(("args", "said"), [
    (["--policy", "llm", "--prompt-variant", "zeroshot"],
     "--prompt-variant: 'zeroshot' is not a prompt variant of the voting game (it has default, zero-shot, "
     "no-history)"),
    (["--game-type", "harberger", "--policy", "llm", "--prompt-variant", "few-shot"],
     "'few-shot' is not a prompt variant of the Harberger game"),
    (["--policy", "baseline", "--prompt-variant", "zero-shot"],
     "--prompt-variant is a model's prompt: it needs --policy llm or a --seat-policy WHO=llm"),
    (["--prompt-variant", "zero-shot"], "--prompt-variant is a model's prompt, but the rules play"),
])
def test_a_prompt_variant_that_cannot_be_played_is_one_line_before_anything_runs(tmp_path, args, said):
    result = run_handler(tmp_path, *args, *FAST, env=handler_env(**({"OPENAI_API_KEY": "sk-x"} if "llm" in args
                                                                      else {})))
    assert result.returncode == 2 and said in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert result.stdout == "" and not (tmp_path / "records").exists()
