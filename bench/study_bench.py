#!/usr/bin/env python3
"""Benchmark of the study runner (lib.study.runner, issue #23 item 6).

    .venv/bin/python bench/study_bench.py                       # 1,000 and 100 baseline games, 3 pairs; model arm
    .venv/bin/python bench/study_bench.py --games 300 --small 100 --pairs 3
    .venv/bin/python bench/study_bench.py --workers 1 --concurrency 60  # the runner's own process plays the games
    .venv/bin/python bench/study_bench.py --smoke       # smallest: 4 and 2 one-round games, 1 pair, 1 model game

Two measurements, each study run in its own fresh Python process (imports, caches and peak memory do not leak from
one to the next; times exclude the runner's interpreter start-up and imports, not its workers'):

1. Baseline voting games of 5 paid rounds (no practice round) with fresh values, in the local server's fast mode,
   the phase timers the real server's times --timer-scale (default 0.02, handler.py --local's for the baseline),
   at most `--concurrency` games at once, played by `--workers` processes (the study file's `workers`; default 2,
   this machine's cores). A study of `--small` games and one of `--games` games are run as a pair, one right after
   the other, and the pair is repeated (`--pairs`) in alternating order, so that a busy moment of the shared
   machine weighs on both sizes. Printed per size: games per minute (games / the span from the first game's start
   to the last one's end, the report not written), CPU seconds per game (every process: runner and workers,
   server, agents, store), the peak memory (the max RSS of the largest process), missed deadlines (decisions a
   fallback made because the deadline came, or that sent nothing), the most games that ran at once (memory
   follows it) and the load average when each study ended; then how each grows from the small size to the large
   one. Target: at least 200 games per minute with no missed deadline, memory flat in the number of games.
2. A model arm (every seat a model) against the fake OpenAI server (tests/helpers/fakeopenai.py, in its own
   process) answering every call in 200 ms, `--model-concurrency` games at once in the runner's process: model
   calls in the busiest second against the limit `--max-concurrent-calls` sets (that many calls in flight, so at
   most that many / 0.2 s per second). The games' chat phases, in which nobody is asked and which only their
   timer ends, last MODEL_CHAT_SECONDS: the games' calls then come so close together that more are wanted than
   the limit lets through, whatever moments the games started at (the runner spreads their starts), and the
   busiest second shows whether the limit is reached.

Nothing asserts on timings: this prints the truth, and other work on the machine shows in it (the load average is
printed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROUNDS = 5
CALL_DELAY = 0.2  # seconds the fake model takes for every answer
MODEL_CHAT_SECONDS = 0.2  # the model arm's chat phases (2 and 5): see the module docstring

FAKE_OPENAI_SCRIPT = """
import json, re, sys
from tests.helpers.fakeopenai import FAKE_API_KEY, FakeOpenAI

ANSWERS = {
    "compensation-request": {"type": "compensation-request", "compensationRequests": [None, 300000]},
    "compensation-offer": {"type": "compensation-offer", "compensationOffers": [None, 200000]},
    "compensation-decision": {"type": "compensation-decision", "compensationDecisions": [1]},
}

def answer(body):
    name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "")
    game = re.search(r'"gameId\\\\?":(\\d+)', body["messages"][-1]["content"])
    action = ANSWERS.get(name.replace("_", "-"), ANSWERS["compensation-decision"])
    return {"content": json.dumps({"gameId": int(game.group(1)) if game else 0, **action}), "delay": %(delay)r}

fake = FakeOpenAI().start()
fake.chat_default = answer
print(fake.base_url, FAKE_API_KEY, flush=True)
sys.stdin.read()  # until the bench closes our stdin
"""


def study_text(name: str, games: int, concurrency: int, scale: float, model: bool, rounds: int,
               workers: int = 1) -> str:
    from lib.games import game_for

    timers = game_for("voting").rules.local_parameters(rounds, False, scale)
    if model:
        timers.update(timer_phase_2=MODEL_CHAT_SECONDS, timer_phase_5=MODEL_CHAT_SECONDS)
    lines = [f'name = "{name}"', 'game = "voting"', f"games_per_arm = {games}", f"concurrency = {concurrency}",
             f"workers = {workers}", "fast = true", "[parameters]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in timers.items()]
    lines += ["[values]", 'source = "fresh"', "seed = 2026"]
    if model:
        lines += ["[endpoints.fake]", 'base_url_env = "BENCH_BASE_URL"', 'api_key_env = "BENCH_API_KEY"',
                  "[arms.model]", 'developer = { endpoint = "fake", model = "bench-model", temperature = 0.0 }',
                  'owners = { endpoint = "fake", model = "bench-model", temperature = 0.0 }']
    else:
        lines += ["[arms.rules]", 'developer = "baseline"', 'owners = "baseline"']
    return "\n".join(lines) + "\n"


def child(args: argparse.Namespace) -> None:
    """One study in this process; prints one JSON line of figures."""
    import io
    import sqlite3

    from lib.study.runner import run_study

    with tempfile.TemporaryDirectory(prefix="study-bench-") as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(study_text("bench", args.child, args.concurrency, args.timer_scale, args.model, args.rounds,
                                   args.workers))
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = run_study(path, out=io.StringIO(), report=False, env=dict(os.environ),
                           max_concurrent_calls=args.max_concurrent_calls)
        after = resource.getrusage(resource.RUSAGE_SELF)
        workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # they have exited: the runner waits for them
        db = sqlite3.connect(Path(tmp) / "bench" / "study.sqlite")
        start, end = db.execute("SELECT MIN(started_at), MAX(finished_at) FROM games").fetchone()
        missed = db.execute("SELECT COUNT(*) FROM decisions WHERE made_by = 'none' OR fallback"
                            ).fetchone()[0]
        calls = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        decided = db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        at_once = most_at_once(db.execute("SELECT started_at, finished_at FROM games").fetchall())
        db.close()
        peak = busiest_second(Path(tmp) / "bench" / "games")
    print(json.dumps({"games": sum(result.finished.values()), "failed": result.failed, "span_s": end - start,
                      "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
                      + workers.ru_utime + workers.ru_stime,
                      "peak_rss_mb": max(after.ru_maxrss, workers.ru_maxrss) / 1024, "missed": missed,
                      "calls": calls, "decisions": decided, "peak_calls_per_s": peak, "exit_code": result.exit_code,
                      "load": os.getloadavg()[0], "at_once": at_once}), flush=True)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most games that were running at the same moment (the runner starts fewer than `concurrency` while its
    processes' event loops run late, and memory follows the games running, not the games played)."""
    events = sorted([(start, 1) for start, _end in spans] + [(end, -1) for _start, end in spans])
    running = most = 0
    for _at, step in events:
        running += step
        most = max(most, running)
    return most


def busiest_second(games: Path) -> int:
    """The most model calls answered within any one second (from the transcripts' model-call records)."""
    from lib.agents.transcript import read_transcript

    ends = sorted(r["ts_ms"] for path in games.glob("*/*/agent*.jsonl") for r in read_transcript(path)
                  if r.get("kind") == "model-call" and r.get("answer") is not None)
    best, first = 0, 0
    for last, end in enumerate(ends):
        while end - ends[first] >= 1000:
            first += 1
        best = max(best, last - first + 1)
    return best


def measure(games: int, args: argparse.Namespace, model: bool = False, env: dict[str, str] | None = None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(games), "--concurrency",
               str(args.concurrency if not model else args.model_concurrency), "--timer-scale",
               str(args.timer_scale if not model else args.model_timer_scale), "--max-concurrent-calls",
               str(args.max_concurrent_calls), "--rounds", str(args.rounds), "--workers",
               str(args.workers if not model else 1)] + (["--model"] if model else [])
    full_env = {**os.environ, "PYTHON_DOTENV_DISABLED": "1", **(env or {})}
    done = subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"bench: a study of {games} games failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spread(values: list[float], digits: int = 1) -> str:
    return " ".join(f"{v:8.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def baseline_part(args: argparse.Namespace) -> None:
    sizes = (args.small, args.games)
    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    for k in range(args.pairs):
        for n in sizes if k % 2 == 0 else sizes[::-1]:
            runs[n].append(measure(n, args))
    print(f"baseline voting games, {args.rounds} paid rounds, fresh values, fast mode, timers x{args.timer_scale:g}, "
          f"at most {args.concurrency} at once, {args.workers} worker process(es); {args.pairs} pair(s) "
          "(min median max)")
    print(f"{'games':>7} {'games/min':>26} {'CPU s/game':>26} {'peak MB':>26}  missed  failed  at once  load avg")
    per = {}
    for n in sizes:
        rate = [r["games"] / r["span_s"] * 60 for r in runs[n]]
        cpu = [r["cpu_s"] / max(1, r["games"]) for r in runs[n]]
        rss = [r["peak_rss_mb"] for r in runs[n]]
        per[n] = (statistics.median(rate), statistics.median(cpu), statistics.median(rss))
        loads = "/".join(f"{r['load']:.1f}" for r in runs[n])
        at_once = "/".join(str(r["at_once"]) for r in runs[n])
        print(f"{n:>7} {spread(rate):>26} {spread(cpu, 3):>26} {spread(rss):>26}  "
              f"{sum(r['missed'] for r in runs[n]):6d}  {sum(r['failed'] for r in runs[n]):6d}  {at_once:>7}  {loads}")
    small, large = per[args.small], per[args.games]
    print(f"growth from {args.small} to {args.games} games (median/median): games/min x{large[0] / small[0]:.2f}, "
          f"CPU per game x{large[1] / small[1]:.2f}, peak memory x{large[2] / small[2]:.2f}")


def model_part(args: argparse.Namespace) -> None:
    script = FAKE_OPENAI_SCRIPT % {"delay": CALL_DELAY}
    env = {**os.environ, "PYTHON_DOTENV_DISABLED": "1", "PYTHONPATH": str(REPO)}
    fake = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        base_url, api_key = fake.stdout.readline().split()
        r = measure(args.model_games, args, model=True, env={"BENCH_BASE_URL": base_url, "BENCH_API_KEY": api_key})
    finally:
        assert fake.stdin is not None
        fake.stdin.close()
        fake.wait(timeout=30)
    limit = args.max_concurrent_calls / CALL_DELAY
    rate = r["calls"] / r["span_s"]
    print(f"model arm: {r['games']} games, {args.model_concurrency} at once, every seat the fake model answering in "
          f"{CALL_DELAY * 1000:.0f} ms, chat phases {MODEL_CHAT_SECONDS:g} s: {r['calls']} calls in "
          f"{r['span_s']:.1f} s ({rate:.1f} calls/s on average); busiest second {r['peak_calls_per_s']} calls against "
          f"a limit of {limit:.0f} calls/s ({args.max_concurrent_calls} in flight): "
          f"{100 * r['peak_calls_per_s'] / limit:.0f}% of it; {r['missed']} fallbacks or nothing sent; CPU "
          f"{r['cpu_s'] / max(1, r['calls']) * 1000:.1f} ms per call in all; load average {r['load']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=1000, help="the large study's games")
    parser.add_argument("--small", type=int, default=100, help="the small study's games")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=150, help="baseline games at once, at most")
    parser.add_argument("--workers", type=int, default=2, help="processes that play the baseline games")
    parser.add_argument("--timer-scale", type=float, default=0.02, help="factor on the real server's timers")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="paid rounds per game")
    parser.add_argument("--model-games", type=int, default=24)
    parser.add_argument("--model-concurrency", type=int, default=12, help="model games at once")
    parser.add_argument("--model-timer-scale", type=float, default=0.05)
    parser.add_argument("--max-concurrent-calls", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="smallest run (tests/scripts/test_bench.py)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return
    if args.smoke:
        args.games, args.small, args.pairs, args.concurrency, args.model_games = 4, 2, 1, 2, 1  # two workers
        args.model_concurrency, args.rounds, args.timer_scale = 1, 1, 0.01
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    baseline_part(args)
    model_part(args)


if __name__ == "__main__":
    main()
