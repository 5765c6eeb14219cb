#!/usr/bin/env python3
"""Benchmark of constructDataset's builder on synthetic IBEX logs.

    .venv/bin/python bench/dataset_bench.py                 # 1,000 logs; also 500 for the memory comparison
    .venv/bin/python bench/dataset_bench.py --files 2000 --workers 3
    .venv/bin/python bench/dataset_bench.py --smoke     # smallest run: 4 logs, 1 worker, 1 pair (tests/scripts)

Generates realistic games (a practice round and five paid rounds, chat in both chat phases, human-like
odd submissions, a by-value server-log; about 100 KB each) in a temporary folder, then prints, from one run,
with one worker process and with the default number (constructDataset.py's --workers default):

- the builder's time divided by the time to merely json.load the same files (target: at most 1.5), at the full
  corpus size and at half of it. The two are measured as a pair, one right after the other, and the pair is
  repeated (--pairs, at least 3) in alternating order (load then build, build then load, ...), so that a busy
  moment of the machine weighs on both sides of a ratio; the min, median and max of the paired ratios are printed
  (one-off measurements taken minutes apart gave ratios from 3.0 to 13.1 for identical runs);
- the builder's peak memory at both sizes (target: no growth with the corpus): the max RSS of the largest process,
  the builder or any one of its workers;
- where one worker's time goes, per stage, on the first STAGE_FILES logs (timed in-process, so a little slower).

Each measurement runs in its own fresh Python process, so imports, caches and peak memory do not leak from one
to the next; times exclude interpreter start-up, imports and loading the tokenizer. The files are read once
before every timed run, so json.load and the builder both read them from a warm page cache. Nothing asserts on
timings: this prints the truth, and other work on the machine shows in it (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.dataset.make_fixtures import OWNERS, SESSIONS, TAGS, Recorder, parameters  # noqa: E402

WORDS = ("I", "we", "you", "the", "project", "offer", "vote", "no", "yes", "compensation", "value", "lot", "need",
         "at", "least", "more", "less", "fair", "developer", "owners", "please", "think", "round", "money", "ok",
         "deal", "trust", "higher", "lower", "accept", "reject", "profit", "loss", "together", "agree", "?", "!")
ROUNDS, CHATS_PER_PHASE = 5, 3


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 16)))


def _chat_phase(game: Recorder, rng: random.Random) -> None:
    for _ in range(rng.randint(CHATS_PER_PHASE - 2, CHATS_PER_PHASE + 2)):
        seat = rng.choice(list(TAGS))
        others = [s for s in TAGS if s != seat]
        to = others if rng.random() < 0.6 else sorted(rng.sample(others, rng.randint(1, 4)))
        game.chat(seat, to, _text(rng))


def synthetic_game(game_id: int, seed: int) -> dict:
    """One complete game with a by-value server-log, as the local server records it."""
    rng = random.Random(seed)
    session = 1 + game_id % len(SESSIONS)
    game = Recorder(game_id, session, {1: 15, 2: 180, 3: 120, 4: 120, 5: 120, 6: 60, 7: 15}, with_server_log=True)
    for r in range(ROUNDS + 1):
        game.start_round(r)
        if r == 0:
            for _ in TAGS:
                game.join()
        for seat in rng.sample(list(TAGS), len(TAGS)):
            game.ready(seat)
        game.next_phase(timed_out=False)
        game.next_phase(timed_out=True)
        _chat_phase(game, rng)
        game.next_phase(timed_out=True)
        silent = rng.random() < 0.2
        for seat in rng.sample(list(OWNERS), len(OWNERS) - silent):
            if rng.random() < 0.1:
                game.request(seat, [None, rng.randrange(100, 700) * 1000])  # changed their mind
            game.request(seat, [None, rng.randrange(100, 700) * 1000])
        game.next_phase(timed_out=silent)
        game.make_offer(2, [None, rng.randrange(50, 400) * 1000])
        game.next_phase(timed_out=False)
        _chat_phase(game, rng)
        game.next_phase(timed_out=True)
        for seat in rng.sample(list(OWNERS), len(OWNERS)):
            game.vote(seat, [rng.randint(0, 1)])
        game.next_phase(timed_out=False)
        game.end_round(last=r == ROUNDS)
    return game.dump(parameters(practice_round="true", round_count=str(ROUNDS), session_number=str(session)))


def _patch_values() -> None:
    """The fixtures' sessions table has three rounds at most; give every session ROUNDS + 1 rounds."""
    for session, rounds in SESSIONS.items():
        while len(rounds) < ROUNDS + 1:
            rounds.append(rounds[len(rounds) % len(rounds)])
        SESSIONS[session] = rounds


def generate(folder: Path, n: int, seed: int) -> int:
    _patch_values()
    total = 0
    for i in range(n):
        data = synthetic_game(10_000 + i, seed * 1_000_003 + i)
        text = json.dumps(data, separators=(",", ":"))
        (folder / f"{10_000 + i}.log.json").write_text(text, encoding="utf-8")
        total += len(text)
    return total


MEASURE = r"""
import collections, json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
mode, folder, out, n, workers = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
files = sorted(folder.glob("*.log.json"))[:n]
result = {}
if mode == "load":
    for f in files:  # warm the page cache, as for the builder
        f.read_bytes()
    start = time.perf_counter()
    for f in files:
        with f.open("rb") as fh:
            json.load(fh)
    seconds = time.perf_counter() - start
else:
    import lib.dataset.build as D
    from lib.dataset import ftcheck
    ftcheck.load_tokenizer()  # the tokenizer's one-off load (about 0.5 s) is start-up, like the imports
    stages = collections.Counter()
    if mode == "stages":
        def timed(owner, name, stage):
            inner = getattr(owner, name)
            def wrapper(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return inner(*args, **kwargs)
                finally:
                    stages[stage] += time.perf_counter() - started
            setattr(owner, name, wrapper)
        import lib.dataset.examples as E
        import lib.games.voting.examples as V
        timed(E, "example_line", "JSON lines")
        timed(D, "read_log", "read")
        timed(V, "system_prompt", "prompts")
        timed(V, "user_prompt_lines", "prompts")
        timed(V, "build_action_required", "prompts")
        timed(ftcheck, "chat_example_tokens", "tokens")
        timed(ftcheck.LinesCheck, "add_chat", "checks")
        timed(D, "_process", "per file")
    for f in files:
        f.read_bytes()
    start = time.perf_counter()
    built = D.build_dataset(D.BuildOptions(inputs=files, output_dir=out, workers=workers))
    seconds = time.perf_counter() - start
    assert built.n_examples > 0 and not built.errors, built.errors[:3]
    result = {"examples": built.n_examples, "stages": stages, "report_seconds": built.report["seconds"]}
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_kb": max(peak_kb, children_kb), **result}))
"""
STAGE_FILES = 200
STAGES = (("read", "reading logs (orjson, else json, and lib.ibex.log's checks)"),
          ("replay", "replay: events folded into six PlayerViews, submissions matched and validated"),
          ("prompts", "prompts (lib.games.voting.prompts, lib.games.voting.actions' action-required)"),
          ("JSON lines", "JSON encoding of the examples"),
          ("tokens", "token counts (lib.dataset.ftcheck, cached)"),
          ("checks", "checks of each example (lib.dataset.ftcheck)"),
          ("parent", "spool, split, copy to the output files, report"))


def measure(mode: str, folder: Path, out: Path, n: int, workers: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(REPO), mode, str(folder), str(out), str(n),
                           str(workers)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} measurement failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def paired(folder: Path, out: Path, n: int, workers: int, pairs: int) -> dict:
    """json.load and the builder measured `pairs` times, each load next to a build, alternating which goes first;
    the builder's time over json.load's for every pair."""
    loads, builds, ratios, peaks = [], [], [], []
    examples = 0
    for i in range(pairs):
        got = {}
        for mode in ("load", "build") if i % 2 == 0 else ("build", "load"):
            got[mode] = measure(mode, folder, out, n, workers if mode == "build" else 1)
        loads.append(got["load"]["seconds"])
        builds.append(got["build"]["seconds"])
        ratios.append(got["build"]["seconds"] / got["load"]["seconds"])
        peaks.append(got["build"]["peak_kb"])
        examples = got["build"]["examples"]
    return {"loads": loads, "builds": builds, "ratios": ratios, "peak_kb": max(peaks), "examples": examples}


def spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def print_stages(folder: Path, out: Path, n: int) -> None:
    """One worker's time per stage, in ms per log and as a share, next to json.load's time per log (measured just
    before: the stage timing itself slows the builder, so no ratio is drawn from it; see the paired ratios)."""
    load = measure("load", folder, out, n, 1)
    run = measure("stages", folder, out, n, 1)
    stages = dict(run["stages"])
    per_file = stages.pop("per file")
    stages["replay"] = per_file - sum(stages.values())
    stages["parent"] = run["seconds"] - per_file
    print(f"Where one worker's time goes ({n} logs, {run['examples']} examples; json.load alone: "
          f"{load['seconds'] / n * 1000:.1f} ms per log):")
    for key, label in STAGES:
        seconds = stages.get(key, 0.0)
        print(f"  {seconds / n * 1000:6.1f} ms per log {seconds / run['seconds']:4.0%}  {label}")
    print(f"  {run['seconds'] / n * 1000:6.1f} ms per log in all, with the stage timing")


# The smallest corpus (4 logs, halved to 2), one worker and one pair: every measurement path runs once.
SMOKE_ARGS = ("--files", "4", "--workers", "1", "--pairs", "1")


def main(argv: list[str] | None = None) -> int:
    from lib.dataset.build import default_workers

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=1000, help="corpus size (default: 1000; at least 4)")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help=f"builder processes to compare with one (default: {default_workers()}, as constructDataset.py)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pairs", type=int, default=3, help="paired json.load/builder measurements per row (at least 3)")
    p.add_argument("--smoke", action="store_true",
                   help=f"the smallest run, to see that the bench works (its figures mean little; one pair is "
                        f"allowed): {' '.join(SMOKE_ARGS)}; flags given as well still win")
    args = p.parse_args(argv)
    if args.smoke:
        args = p.parse_args([*SMOKE_ARGS, *(argv if argv is not None else sys.argv[1:])])
    elif args.pairs < 3:
        p.error("--pairs must be at least 3")
    n = max(4, args.files)
    sizes = (n // 2, n)
    worker_counts = sorted({1, max(1, args.workers)})
    with tempfile.TemporaryDirectory(prefix="ibex-bench-") as tmp:
        folder = Path(tmp) / "logs"
        folder.mkdir()
        started = time.perf_counter()
        size = generate(folder, n, args.seed)
        print(f"generated {n} logs, {size / n / 1024:.0f} KB each on average ({size / 2**20:.0f} MB), "
              f"in {time.perf_counter() - started:.0f} s; {os.cpu_count()} CPU(s), load average "
              f"{os.getloadavg()[0]:.2f}")
        print("page cache warm for json.load and the builder alike; times without start-up and imports")
        pairs = f"{args.pairs} pair{'' if args.pairs == 1 else 's'}"
        print(f"each row: {pairs} of json.load and builder runs, alternating which goes first; "
              "ratio = builder / json.load of the same pair, min / median / max")
        print(f"{'logs':>6} {'workers':>8} {'json.load':>10} {'builder':>9} {'ratio min/med/max':>18} {'peak MB':>8} "
              f"{'examples':>9}")
        ratios = {}
        for workers in worker_counts:
            peaks = []
            for size_ in sizes:
                out = Path(tmp) / f"out-{workers}-{size_}"
                row = paired(folder, out, size_, workers, args.pairs)
                ratios[(workers, size_)] = row["ratios"]
                peaks.append(row["peak_kb"])
                print(f"{size_:>6} {workers:>8} {statistics.median(row['loads']):>9.2f}s "
                      f"{statistics.median(row['builds']):>8.2f}s {spread(row['ratios']):>18} "
                      f"{row['peak_kb'] / 1024:>8.0f} {row['examples']:>9}")
            print(f"{'':>6} peak memory x{peaks[1] / peaks[0]:.2f} from {sizes[0]} to {sizes[1]} logs with {workers} "
                  "worker(s) (target: no growth)")
        best = min(statistics.median(ratios[(w, n)]) for w in worker_counts)
        print(f"median ratio builder / json.load at {n} logs: " + ", ".join(
            f"{statistics.median(ratios[(w, n)]):.1f} with {w} worker(s) (min {min(ratios[(w, n)]):.1f}, "
            f"max {max(ratios[(w, n)]):.1f})" for w in worker_counts)
            + f" (target <= 1.5: {'met' if best <= 1.5 else 'NOT met'})")
        print(f"output: {os.path.getsize(Path(tmp) / f'out-1-{n}' / 'training_set.jsonl') / 2**20:.0f} MB "
              "training set")
        print_stages(folder, Path(tmp) / "out-stages", min(n, STAGE_FILES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
