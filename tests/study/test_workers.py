"""Studies played by worker processes (`workers = N`, lib.study.workers): the same games as one process plays them,
Ctrl-C reaching every process, a killed runner leaving no worker behind, a worker that dies, and the spending cap
over the workers' model calls."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lib.study.cache import SpendTracker
from lib.study.runner import EXIT_SPEND_CAP, GameJob, GamePlayed, run_study
from lib.study.spec import load_study
from lib.study.store import FAILED, FINISHED
from lib.study.workers import WorkerPool, _frame, _RelayedSpend, _Worker, calls_share
from tests.helpers.fakeopenai import FakeOpenAI
from tests.helpers.paths import REPO
from tests.helpers.scripted_answers import player
from tests.helpers.studies import RULE_ARMS, rows, study_file, wait_for_states


def processes_with_argument(argument: str) -> list[int]:
    """The ids of the processes whose command line has `argument` as one of its arguments (a study's workers have
    its folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in args:
            found.append(int(entry.name))
    return found


def gone(folder: Path, timeout: float = 30) -> bool:
    give_up = time.monotonic() + timeout
    while processes_with_argument(str(folder)):
        if time.monotonic() > give_up:
            return False
        time.sleep(0.1)
    return True


def played(folder: Path) -> tuple[list, list]:
    """What a study's games did, without what differs from run to run (uids, times, game ids, latencies)."""
    seats = sorted((r["arm"], r["game_index"], r["round"], r["seat"], r["value_0"], r["value_1"], r["request_1"],
                    r["offer_received_1"]) for r in rows(folder, "seat_rounds"))
    answers = sorted((r["arm"], r["game_index"], r["round"], r["seat"], r["action"], r["made_by"],
                      json.dumps({k: v for k, v in json.loads(r["answer"]).items() if k != "gameId"}))
                     for r in rows(folder, "decisions"))
    return seats, answers


def test_two_workers_play_the_games_one_process_plays(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    alone = run_study(study_file(tmp_path / "one", "same", "fast = true\n" + RULE_ARMS), out=io.StringIO())
    out = io.StringIO()
    result = run_study(study_file(tmp_path / "two", "same", "fast = true\nworkers = 2\n" + RULE_ARMS), out=out)
    folder = tmp_path / "two" / "same"
    assert alone.exit_code == result.exit_code == 0 and result.finished == {"rules": 2, "again": 2}
    assert "in 2 worker processes" in out.getvalue() and "rules 2/2, again 2/2" in out.getvalue()
    games = rows(folder, "games")
    assert {g["status"] for g in games} == {FINISHED}
    assert [g["game_index"] for g in sorted(games, key=lambda g: g["started_at"])] == [0, 0, 1, 1]
    # each worker has its own local server, numbering its games from 1: both played
    assert [str(g["game_id"]) for g in games].count("1") == 2
    assert played(folder) == played(tmp_path / "one" / "same")
    for game in games:
        game_dir = folder / "games" / game["arm"] / f"{game['game_index']:06d}"
        assert json.loads((game_dir / "game.log.json").read_text())["log"]
        assert (game_dir / "agent6.jsonl").exists() and (game_dir / "decisions.csv").exists()
    assert result.report is not None and result.report.exists()
    assert not processes_with_argument(str(folder))


def test_ctrl_c_reaching_every_process_finishes_the_running_games_and_leaves_no_worker(tmp_path):
    path = study_file(tmp_path, "interrupted", "workers = 2\n" + RULE_ARMS, games=3, concurrency=2)
    folder = tmp_path / "interrupted"
    # a terminal's Ctrl-C goes to the whole process group: the runner and its workers
    proc = subprocess.Popen([sys.executable, "handler.py", "--study", str(path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_states(folder, lambda states: states[FINISHED] >= 1 and states["running"] >= 1)
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    assert "stopped (SIGINT)" in output and "exit code 130" in output and "Traceback" not in output
    states = {g["status"] for g in rows(folder, "games")}
    assert states == {FINISHED} and 2 <= len(rows(folder, "games")) < 6  # the running ones finished
    assert gone(folder)


def test_a_killed_study_leaves_no_worker_behind_and_resumes(tmp_path):
    path = study_file(tmp_path, "killed", "workers = 2\n" + RULE_ARMS, games=3, concurrency=2)
    folder = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "handler.py", "--study", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_states(folder, lambda states: states[FINISHED] >= 1 and states["running"] >= 1)
        assert len(processes_with_argument(str(folder))) == 2
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert gone(folder)  # their pipe closed: they abandoned their games and exited
    done = subprocess.run([sys.executable, "handler.py", "--study", str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "left unfinished will be played again" in done.stdout
    finished = [(g["arm"], g["game_index"]) for g in rows(folder, "games") if g["status"] == FINISHED]
    assert sorted(finished) == sorted((arm, k) for arm in ("rules", "again") for k in range(3))
    assert len(rows(folder, "seat_rounds")) == 6 * 6


def test_a_worker_that_dies_fails_its_games_and_the_other_plays_on(tmp_path):
    path = study_file(tmp_path, "lost", "workers = 2\n" + RULE_ARMS, games=3, concurrency=2)
    folder = tmp_path / "lost"
    proc = subprocess.Popen([sys.executable, "handler.py", "--study", str(path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_states(folder, lambda states: states["running"] >= 2)
        [first] = [pid for pid in processes_with_argument(str(folder))
                   if (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[-2] == b"1"]
        os.kill(first, signal.SIGKILL)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output
    assert "worker process 1 exited" in output and "Traceback" not in output
    games = rows(folder, "games")
    failed = [g for g in games if g["status"] == FAILED]
    assert failed and all("worker process 1 exited" in g["note"] for g in failed)
    assert {(g["arm"], g["game_index"]) for g in games if g["status"] == FINISHED} | {
        (g["arm"], g["game_index"]) for g in failed} == {(arm, k) for arm in ("rules", "again") for k in range(3)}
    again = run_study(path, out=io.StringIO())
    assert again.exit_code == 0 and again.played_now == len(failed)


def valid_answer(body: dict) -> str:
    game, _seat, action = player(body)
    if action == "SubmitCompensationOffer":
        return json.dumps({"gameId": game, "type": "compensation-offer", "compensationOffers": [None, 100000]})
    return json.dumps({"gameId": game, "type": "compensation-decision", "compensationDecisions": [1]})


def test_the_spending_cap_counts_a_workers_model_calls(tmp_path):
    body = """workers = 2
[values]
source = "fresh"
seed = 3
[endpoints.fake]
base_url_env = "FAKE_BASE_URL"
api_key_env = "FAKE_KEY"
[limits]
spend_usd = 0.000001
[arms.model]
developer = { endpoint = "fake", model = "gpt-4.1-mini", temperature = 0.5 }
owners = "baseline"
"""
    path = study_file(tmp_path, "capped", body, games=3, concurrency=1)
    with FakeOpenAI() as fake:
        fake.chat_default = valid_answer
        out = io.StringIO()
        result = run_study(path, env={"FAKE_BASE_URL": fake.base_url, "FAKE_KEY": fake.api_key}, out=out)
        assert len(fake.calls_to("POST", "/chat/completions")) == 1
    assert result.exit_code == EXIT_SPEND_CAP and result.stopped == "spend-cap" and result.finished == {"model": 1}
    assert "spending cap reached" in out.getvalue() and result.spend_usd > 0
    [call] = rows(tmp_path / "capped", "calls")
    assert call["cost_usd"] == result.spend_usd and not call["cached"]
    assert (tmp_path / "capped" / "calls.jsonl").read_text().count("\n") == 1  # the worker wrote the shared cache


class _Pipe:
    """What the pool writes to a worker's stdin."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


class _Process:
    def __init__(self, frames: list[object]) -> None:
        self.stdin = _Pipe()
        self.stdout = asyncio.StreamReader()
        for message in frames:
            self.stdout.feed_data(_frame(message))
        self.stdout.feed_eof()
        self.returncode = 0

    async def wait(self) -> int:
        return 0


def test_a_workers_model_spend_reaches_the_runner_and_the_other_workers(tmp_path):
    study = load_study(study_file(tmp_path, "spend", RULE_ARMS))

    async def scenario() -> tuple[WorkerPool, list[_Worker]]:
        pool = WorkerPool(study, 2, tmp_path, env={}, use_cache=False, data_dir=tmp_path, max_concurrent_calls=8,
                          spend=SpendTracker(1.0), abandon=asyncio.Event(), say=print)
        workers = [_Worker(1, _Process([("spend", 0.75), ("spend", None)])), _Worker(2, _Process([]))]  # type: ignore[arg-type]
        pool.workers = workers
        await pool._read(workers[0])
        return pool, workers

    pool, workers = asyncio.run(scenario())
    assert pool.spend.spent == 0.75 and pool.spend.calls == 2 and pool.spend.unpriced == 1
    assert workers[1].process.stdin.data == _frame(("spent", 0.75)) + _frame(("spent", None))
    assert workers[0].process.stdin.data == b"" and not workers[0].alive
    told: list[float | None] = []
    tracker = _RelayedSpend(1.0, 0.5, told.append)  # what the runner said was spent before this worker started
    tracker.add(0.25)
    assert told == [0.25] and tracker.cap_reason() is None
    tracker.others(0.5)  # another worker's call
    assert tracker.spent == 1.25 and tracker.cap_reason() is not None


def test_the_limit_on_concurrent_calls_is_split_between_the_workers():
    assert [calls_share(8, 3, n) for n in range(3)] == [3, 3, 2]
    assert [calls_share(8, 2, n) for n in range(2)] == [4, 4]
    assert [calls_share(1, 2, n) for n in range(2)] == [1, 1]


def test_a_game_goes_to_a_worker_whose_event_loop_keeps_up(tmp_path):
    study = load_study(study_file(tmp_path, "lag", RULE_ARMS))
    job = GameJob("rules", 0, "lag/rules/0", None, 1, 5, tmp_path / "game")

    async def scenario() -> tuple[bool, bytes, bytes, bool]:
        pool = WorkerPool(study, 2, tmp_path, env={}, use_cache=False, data_dir=tmp_path, max_concurrent_calls=8,
                          spend=SpendTracker(), abandon=asyncio.Event(), say=print, max_lag=0.1)
        late, keeping_up = _Worker(1, _Process([])), _Worker(2, _Process([]))  # type: ignore[arg-type]
        pool.workers = [late, keeping_up]
        for worker, lag in ((late, 0.5), (keeping_up, 0.01)):
            worker.pending[-1] = asyncio.get_running_loop().create_future()  # a game each
            worker.lag = lag
        had_room = await pool.room(asyncio.Event())
        playing = asyncio.ensure_future(pool.play(job))
        await asyncio.sleep(0)
        keeping_up.pending.pop(0).set_result(GamePlayed(1, FINISHED))
        assert (await playing).status == FINISHED
        keeping_up.lag = 0.5
        drain = asyncio.Event()
        drain.set()
        return had_room, late.process.stdin.data, keeping_up.process.stdin.data, await pool.room(drain)

    had_room, to_late, to_keeping_up, room_when_all_late = asyncio.run(scenario())
    assert had_room and to_late == b"" and to_keeping_up == _frame(("play", 0, job))
    assert not room_when_all_late
