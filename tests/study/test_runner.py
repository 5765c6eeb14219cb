"""The study runner (lib.study.runner, handler.py --study) end to end on the in-process local server: two arms on
fresh values with the tables checked against the games' logs and the agents' own decisions, a SIGKILL mid-study
and a resume, a model arm against the fake OpenAI server (cache, spending cap), and replays of a recorded human
game with its values."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from lib.ibex.sessions import load_sessions
from lib.localserver.server import LocalServer
from lib.study.logtables import HUMANS, tables_from_log
from lib.study.runner import EXIT_SPEND_CAP, StudyResult, run_study, run_study_async
from lib.study.spec import load_study
from lib.study.store import FINISHED
from lib.study.values import fresh_table
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.paths import REPO
from tests.helpers.scripted_answers import player
from tests.helpers.studies import RULE_ARMS, SLOW_TIMERS, TIMERS, rows, study_file, wait_for_states

PASSWORD = "study-admin-password"


def log_messages(log: dict, kind: str) -> dict[int, dict]:
    """Seat -> the client message of `kind` the server recorded from it."""
    return {entry["number"]: entry["content"] for entry in log["log"]
            if entry.get("type") == "message" and isinstance(entry.get("content"), dict)
            and entry["content"].get("type") == kind}


def test_two_arms_on_fresh_values_fill_the_tables_as_the_games_logs_say(tmp_path):
    out = io.StringIO()
    result = run_study(study_file(tmp_path, "small", "fast = true\n" + RULE_ARMS), out=out)
    folder = tmp_path / "small"
    assert result.exit_code == 0 and result.finished == {"rules": 2, "again": 2}
    games = rows(folder, "games")
    assert sorted((g["arm"], g["game_index"], g["status"]) for g in games) == [
        ("again", 0, FINISHED), ("again", 1, FINISHED), ("rules", 0, FINISHED), ("rules", 1, FINISHED)]
    # interleaved: game 0 of every arm was started before any game 1
    starts = sorted(games, key=lambda g: g["started_at"])
    assert [g["game_index"] for g in starts] == [0, 0, 1, 1]
    study = load_study(tmp_path / "small.toml")
    for game in games:
        uid, index = game["game_uid"], game["game_index"]
        game_dir = folder / "games" / game["arm"] / f"{index:06d}"
        log = json.loads((game_dir / "game.log.json").read_text())
        seats = {r["seat"]: r for r in rows(folder, "seat_rounds", f"WHERE game_uid = '{uid}'")}
        assert len(seats) == 6 and {r["policy"] for r in seats.values()} == {"baseline"}
        # the values are game k's fresh draw, whichever arm played it
        session = fresh_table("voting", study.parameters, 11, index)[0]["rounds"][1]["values"]
        assert seats[2]["value_0"] == session[0]["developer"] * 1000
        assert seats[2]["value_1"] == session[1]["developer"] * 1000
        assert [seats[s]["value_1"] for s in (1, 3, 4, 5, 6)] == [v * 1000 for v in session[1]["owner"]]
        # each owner's request as the server recorded it, and as the agent's decision row says it sent it
        requested = log_messages(log, "compensation-request")
        decided = {r["seat"]: json.loads(r["answer"]) for r in
                   rows(folder, "decisions", f"WHERE game_uid = '{uid}' AND action = 'compensation-request'")}
        assert sorted(decided) == sorted(requested) == [1, 3, 4, 5, 6]
        for seat, answer in decided.items():
            assert seats[seat]["request_1"] == requested[seat]["compensationRequests"][1]
            assert answer["compensationRequests"] == requested[seat]["compensationRequests"]
        offer = log_messages(log, "compensation-offer")[2]
        assert seats[1]["offer_received_1"] == offer["compensationOffers"][1]
        [round_row] = rows(folder, "rounds", f"WHERE game_uid = '{uid}'")
        assert round_row["round"] == 1 and round_row["offer_1"] == offer["compensationOffers"][1]
        assert (game_dir / "agent1.jsonl").exists() and (game_dir / "decisions.csv").exists()
    assert (folder / "seat_rounds.csv").read_text().count("\n") == 1 + 4 * 6
    assert result.report is not None and result.report.exists()
    assert "rules 2/2, again 2/2" in out.getvalue()
    # run again: everything is kept, nothing is played
    again = run_study(tmp_path / "small.toml", out=io.StringIO())
    assert again.played_now == 0 and again.exit_code == 0 and len(rows(folder, "games")) == 4


def test_a_study_on_a_real_server_creates_each_game_and_fetches_its_log(tmp_path):
    sessions = REPO / "jsonFiles" / "sessions.json"
    body = f"""server = "real"
[values]
source = "sessions"
table = "{sessions}"
sessions = [2]
[arms.rules]
developer = "baseline"
owners = "baseline"
"""
    path = study_file(tmp_path, "real", body, games=2)
    path.write_text(path.read_text().replace("= 0.1\n", "= 1\n").replace("= 0.2\n", "= 1\n")
                    .replace("= 1.5\n", "= 2\n"))

    async def scenario() -> StudyResult:
        # the local server stands in for the real one: only its REST and WebSocket interfaces are used
        async with LocalServer(records_dir=tmp_path / "server", fast=True, admin_password=PASSWORD,
                               sessions=sessions) as server:
            env = {"IBEX_WS_URL": server.ws_url, "IBEX_API_URL": server.api_url, "IBEX_USERNAME": "admin",
                   "IBEX_PASSWORD": PASSWORD}
            return await run_study_async(path, env=env, out=io.StringIO())

    result = asyncio.run(scenario())
    assert result.exit_code == 0 and result.finished == {"rules": 2}
    table = load_sessions(sessions)
    for game in rows(tmp_path / "real", "games"):
        assert game["server"] == "real" and game["game_id"] is not None
        log = tmp_path / "real" / "games" / "rules" / f"{game['game_index']:06d}" / "game.log.json"
        assert log.read_bytes() == (tmp_path / "server" / f"{game['game_id']}.log.json").read_bytes()
        seats = rows(tmp_path / "real", "seat_rounds", f"WHERE game_uid = '{game['game_uid']}'")
        assert [[r["value_0"], r["value_1"]] for r in sorted(seats, key=lambda r: r["seat"])] == [
            table.values(2, 1, seat) for seat in range(1, 7)]


def test_a_changed_study_file_is_refused_unless_accepted(tmp_path):
    path = study_file(tmp_path, "changed", RULE_ARMS, games=1)
    run_study(path, out=io.StringIO())
    path.write_text(path.read_text().replace("seed = 11", "seed = 12"))
    done = subprocess.run([sys.executable, "handler.py", "--study", str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "study file changed" in done.stderr and "Traceback" not in done.stderr
    accepted = run_study(path, accept_changes=True, out=io.StringIO())
    assert accepted.exit_code == 0 and accepted.played_now == 0


def test_a_study_killed_mid_way_resumes_with_no_game_lost_or_counted_twice(tmp_path):
    path = study_file(tmp_path, "killed", RULE_ARMS, games=3, concurrency=1)
    folder = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "handler.py", "--study", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # until the first game is committed and the next one runs
        wait_for_states(folder, lambda states: states[FINISHED] >= 1 and states["running"] >= 1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=120)
    before = {(g["arm"], g["game_index"]) for g in rows(folder, "games") if g["status"] == FINISHED}
    assert 1 <= len(before) < 6
    done = subprocess.run([sys.executable, "handler.py", "--study", str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "left unfinished will be played again" in done.stdout
    games = rows(folder, "games")
    finished = [(g["arm"], g["game_index"]) for g in games if g["status"] == FINISHED]
    assert sorted(finished) == sorted((arm, k) for arm in ("rules", "again") for k in range(3))
    assert "abandoned" in {g["status"] for g in games}
    uids = {g["game_uid"] for g in games if g["status"] == FINISHED}
    seat_rows = rows(folder, "seat_rounds")
    assert {r["game_uid"] for r in seat_rows} == uids and len(seat_rows) == 6 * 6  # no row of an abandoned game
    values = {}
    for r in seat_rows:  # the replayed game has the values of its counterpart in the other arm
        values.setdefault((r["game_index"], r["seat"]), set()).add((r["value_0"], r["value_1"]))
    assert all(len(v) == 1 for v in values.values())


def test_ctrl_c_finishes_the_running_game_starts_no_other_and_prints_the_summary(tmp_path):
    path = study_file(tmp_path, "interrupted", RULE_ARMS, games=3, concurrency=1)
    folder = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "handler.py", "--study", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_states(folder, lambda states: states[FINISHED] >= 1 and states["running"] >= 1)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "stopped (SIGINT)" in output and "exit code 130" in output and "Traceback" not in output
    states = Counter(g["status"] for g in rows(folder, "games"))
    assert states == Counter({FINISHED: states[FINISHED]}) and 2 <= states[FINISHED] < 6  # the running one finished


def valid_answer(body: dict) -> str:
    game, _seat, action = player(body)
    if action == "SubmitCompensationRequest":
        return json.dumps({"gameId": game, "type": "compensation-request", "compensationRequests": [None, 300000]})
    if action == "SubmitCompensationOffer":
        return json.dumps({"gameId": game, "type": "compensation-offer", "compensationOffers": [None, 100000]})
    return json.dumps({"gameId": game, "type": "compensation-decision", "compensationDecisions": [1]})


def model_study(tmp_path: Path, name: str, games: int, cap: str = "", timers: str = TIMERS) -> Path:
    body = f"""
[values]
source = "fresh"
seed = 3
[endpoints.fake]
base_url_env = "FAKE_BASE_URL"
api_key_env = "FAKE_KEY"
{cap}
[arms.model]
developer = {{ endpoint = "fake", model = "gpt-4.1-mini", temperature = 0.5 }}
owners = "baseline"
"""
    return study_file(tmp_path, name, body, games=games, concurrency=1, timers=timers)


def test_a_model_arm_is_cached_and_a_rerun_makes_no_call(tmp_path):
    # A re-run asks the same messages only if it plays the same games: every decision of both runs in time, so the
    # decision phases are long (with 1.5 s ones a loaded machine let an owner fall back once and the rerun differ).
    path = model_study(tmp_path, "model", games=2, timers=SLOW_TIMERS)
    folder = tmp_path / "model"
    with FakeOpenAI() as fake:
        fake.chat_default = valid_answer
        env = {"FAKE_BASE_URL": fake.base_url, "FAKE_KEY": fake.api_key}
        first = run_study(path, env=env, out=io.StringIO())
        asked = len(fake.calls_to("POST", "/chat/completions"))
        assert first.exit_code == 0 and asked == 2  # one offer per game: the developer's seat
        calls = rows(folder, "calls")
        assert len(calls) == 2 and not any(c["cached"] for c in calls) and all(c["cost_usd"] > 0 for c in calls)
        assert first.spend_usd == sum(c["cost_usd"] for c in calls)
        offers = [r for r in rows(folder, "decisions") if r["action"] == "compensation-offer"]
        assert {r["made_by"] for r in offers} == {"model"} and all(r["prompt_tokens"] for r in offers)
        for leftover in folder.glob("study.sqlite*"):
            leftover.unlink()
        again = run_study(path, env=env, out=io.StringIO())
        assert again.played_now == 2 and len(fake.calls_to("POST", "/chat/completions")) == asked
        assert all(c["cached"] for c in rows(folder, "calls")) and again.spend_usd == 0
        for leftover in folder.glob("study.sqlite*"):
            leftover.unlink()
        fresh = run_study(path, env=env, use_cache=False, out=io.StringIO())
        assert fresh.played_now == 2 and len(fake.calls_to("POST", "/chat/completions")) == asked + 2


def test_the_spending_cap_starts_no_new_game_and_says_so(tmp_path):
    path = model_study(tmp_path, "capped", games=3, cap="[limits]\nspend_usd = 0.000001\n")
    with FakeOpenAI() as fake:
        fake.chat_default = valid_answer
        out = io.StringIO()
        result = run_study(path, env={"FAKE_BASE_URL": fake.base_url, "FAKE_KEY": fake.api_key}, out=out)
    assert result.exit_code == EXIT_SPEND_CAP and result.stopped == "spend-cap"
    assert result.finished == {"model": 1}
    assert "spending cap reached" in out.getvalue()
    assert [g["game_index"] for g in rows(tmp_path / "capped", "games")] == [0]


def test_too_many_fallbacks_start_no_new_game_and_exit_3(tmp_path):
    path = model_study(tmp_path, "fallbacks", games=3, cap="[limits]\nmax_fallback_share = 0.5\n")
    with FakeOpenAI() as fake:
        fake.chat_default = lambda _body: "no idea"  # never a valid answer: every model decision falls back
        out = io.StringIO()
        result = run_study(path, env={"FAKE_BASE_URL": fake.base_url, "FAKE_KEY": fake.api_key}, out=out)
    assert result.exit_code == 3 and result.stopped == "fallbacks" and result.finished == {"model": 1}
    assert result.fallback_share == 1.0 and "above limits.max_fallback_share 0.5" in out.getvalue()
    [offer] = [r for r in rows(tmp_path / "fallbacks", "decisions") if r["action"] == "compensation-offer"]
    assert offer["made_by"] == "fallback" and offer["fallback"] == 1 and offer["policy"] == "fake:gpt-4.1-mini@0.5"


def test_a_model_without_its_endpoint_variable_is_one_line_before_any_game(tmp_path):
    path = model_study(tmp_path, "noenv", games=1)
    done = subprocess.run([sys.executable, "handler.py", "--study", str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "FAKE_BASE_URL"})
    assert done.returncode == 2 and "FAKE_BASE_URL is not set" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "noenv" / "games").exists()


def test_a_study_matched_to_a_human_log_replays_its_values_in_every_game(tmp_path):
    log = REPO / "jsonFiles" / "1.log.json"
    sessions = REPO / "jsonFiles" / "sessions.json"
    body = f"""compare_with = ["{log}"]
compare_sessions = "{sessions}"
[values]
source = "logs"
logs = ["{log}"]
[arms.rules]
developer = "baseline"
owners = "baseline"
"""
    result = run_study(study_file(tmp_path, "matched", body, games=2), out=io.StringIO())
    assert result.exit_code == 0 and result.finished == {"rules": 2}
    human = {r["seat"]: (r["value_0"], r["value_1"])
             for r in tables_from_log(log, load_sessions(sessions)).seat_rounds if r["round"] == 1}
    played = rows(tmp_path / "matched", "seat_rounds", "WHERE arm = 'rules'")
    assert len(played) == 12
    # the first run's CSV files already hold the recorded game beside the arm's, column for column
    with (tmp_path / "matched" / "seat_rounds.csv").open(newline="") as fh:
        exported = list(csv.DictReader(fh))
    assert Counter(r["arm"] for r in exported) == {"rules": 12, HUMANS: len(tables_from_log(log).seat_rounds)}
    with (tmp_path / "matched" / "rounds.csv").open(newline="") as fh:
        assert {r["arm"] for r in csv.DictReader(fh)} == {"rules", HUMANS}
    for r in played:
        assert (r["value_0"], r["value_1"]) == human[r["seat"]]
    assert {g["values_source"] for g in rows(tmp_path / "matched", "games")} == {str(log)}


def test_a_strict_study_fails_a_game_in_which_the_local_server_refused_a_frame(tmp_path, monkeypatch):
    """strict = true asks the local server for --strict; an agent that sends what it refuses (here every request one
    above the cap, past the agent's own last check) fails its game, which says why; a strict game without a refused
    frame finishes."""
    from lib.games.voting.seat import VotingSeat
    from lib.study.store import FAILED

    arms = '[values]\nsource = "fresh"\nseed = 3\n[arms.rules]\ndeveloper = "baseline"\nowners = "baseline"\n'
    clean = run_study(study_file(tmp_path, "clean", "strict = true\nfast = true\n" + arms, games=1,
                                 concurrency=1), out=io.StringIO())
    assert clean.exit_code == 0 and clean.finished == {"rules": 1}

    checked = VotingSeat.validate

    def over_the_cap(self, message, view, snapshot, wire_type, cap):
        message = checked(self, message, view, snapshot, wire_type, cap)
        return {**message, "compensationRequests": [None, cap + 1]} if wire_type == "compensation-request" else message

    monkeypatch.setattr(VotingSeat, "validate", over_the_cap)
    result = run_study(study_file(tmp_path, "refused", "strict = true\nfast = true\n" + arms, games=1,
                                  concurrency=1), out=io.StringIO())
    assert result.exit_code == 1 and result.finished == {"rules": 0} and result.failed == 1
    [game] = rows(tmp_path / "refused", "games")
    assert game["status"] == FAILED and "the strict local server refused 5 frame(s)" in game["note"]


def test_model_arms_with_prompt_variants_ask_with_them_and_the_tables_and_report_say_which(tmp_path):
    """Issue #23: a seat's model with prompt = "zero-shot" (or "no-history") is asked with that variant's messages,
    through the real SDK against the fake server, and every table and the report name the variant; the default
    arm's names are those of before variants existed."""
    from lib.games.voting.variants import RULES

    model = '{{ endpoint = "fake", model = "gpt-4.1-mini", temperature = 0.5{prompt} }}'
    body = "\n".join([
        "fast = true", "[values]", 'source = "fresh"', "seed = 3", "[endpoints.fake]", 'base_url_env = "FAKE_BASE_URL"',
        'api_key_env = "FAKE_KEY"',
        *(f'[arms.{arm}]\ndeveloper = {model.format(prompt=prompt)}\nowners = "baseline"' for arm, prompt in
          (("plain", ""), ("zero", ', prompt = "zero-shot"'), ("recent", ', prompt = "no-history"'))),
    ])
    path = study_file(tmp_path, "variants", body, games=1, concurrency=1)
    folder = tmp_path / "variants"
    with FakeOpenAI() as fake:
        fake.chat_default = valid_answer
        result = run_study(path, env={"FAKE_BASE_URL": fake.base_url, "FAKE_KEY": fake.api_key}, out=io.StringIO())
        asked = [c["json"]["messages"] for c in fake.calls_to("POST", "/chat/completions")]
    assert result.exit_code == 0 and result.finished == {"plain": 1, "zero": 1, "recent": 1}
    assert len(asked) == 3  # one offer per arm: no arm replayed another's answer
    zero_shot = [m for m in asked if m[0]["content"].endswith(RULES)]
    assert len(zero_shot) == 1 and all(RULES not in m[0]["content"] for m in asked if m not in zero_shot)
    names = {"plain": "fake:gpt-4.1-mini@0.5", "zero": "fake:gpt-4.1-mini@0.5 prompt=zero-shot",
             "recent": "fake:gpt-4.1-mini@0.5 prompt=no-history"}
    prompts = {"plain": "default", "zero": "zero-shot", "recent": "no-history"}
    for arm, name in names.items():
        seats = {r["seat"]: r["policy"] for r in rows(folder, "seat_rounds", f"WHERE arm = '{arm}'")}
        assert seats == {1: "baseline", 2: name, 3: "baseline", 4: "baseline", 5: "baseline", 6: "baseline"}
        [offer] = rows(folder, "decisions", f"WHERE arm = '{arm}' AND action = 'compensation-offer'")
        assert offer["policy"] == name and offer["made_by"] == "model"
        [call] = rows(folder, "calls", f"WHERE arm = '{arm}'")
        assert call["prompt"] == prompts[arm] and call["model"] == "gpt-4.1-mini"
    cached = [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]
    assert sorted(c["prompt"] for c in cached) == ["default", "no-history", "zero-shot"]
    assert "prompt" in (folder / "calls.csv").read_text().splitlines()[0].split(",")
    report = result.report.read_text(encoding="utf-8")
    assert ("Seats: baseline: seats 1, 3, 4, 5, 6 (owner); fake:gpt-4.1-mini@0.5 prompt=zero-shot: seat 2 "
            "(developer).") in report


def test_a_store_made_before_prompt_variants_gets_the_calls_prompt_column(tmp_path):
    """A study resumed on a store whose calls table has no prompt column (made before variants) gains it."""
    from lib.study.store import ResultsStore, column_names

    path = tmp_path / "study.sqlite"
    old = sqlite3.connect(path)
    names = [n for n in column_names("calls") if n != "prompt"]
    old.execute(f"CREATE TABLE calls ({', '.join(names)})")
    old.commit()
    old.close()
    with ResultsStore(path, "old") as store:
        assert [r[1] for r in store.db.execute("PRAGMA table_info(calls)")] == column_names("calls")


def test_a_process_whose_event_loop_runs_late_takes_no_new_game(tmp_path):
    from lib.study.runner import _Player

    study = load_study(study_file(tmp_path, "lag", RULE_ARMS))

    async def scenario() -> list[bool]:
        player = _Player(study, None, None, tmp_path, [], asyncio.Event(), max_lag=0.1)  # type: ignore[arg-type]
        player.monitor.samples.append((time.monotonic(), 0.5))  # half a second late, a moment ago
        seen = [player.has_room]  # no game running: one starts whatever the lateness (else none ever would)
        player.running = 1
        seen.append(player.has_room)
        drain = asyncio.Event()
        drain.set()
        seen.append(await player.room(drain))  # a stop does not wait for the loop to catch up
        player.monitor.samples.clear()
        seen += [player.has_room, await player.room(asyncio.Event())]
        return seen

    assert asyncio.run(scenario()) == [True, False, False, True, True]
