#!/usr/bin/env python3
"""Benchmark of constructDataset's builder on synthetic IBEX logs.

    .venv/bin/python bench/dataset_bench.py                 # 1,000 logs, memory at 500 and 1,000 logs
    .venv/bin/python bench/dataset_bench.py --files 2000 --workers 2

Generates realistic games (a practice round and five paid rounds, chat in both chat phases, human-like
odd submissions, a by-value server-log; about 100 KB each) in a temporary folder, then prints, from one run:

- the builder's time divided by the time to merely json.load the same files (target: at most 1.5);
- the builder's peak memory (max RSS of a fresh process) at two corpus sizes (target: no growth with the corpus).

Each measurement runs in its own fresh Python process, so imports, caches and peak memory do not leak from one
to the next; times exclude interpreter start-up and imports. Nothing asserts on timings: this prints the truth.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
mode, folder, out, n, workers = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
files = sorted(folder.glob("*.log.json"))[:n]
if mode == "load":
    for f in files:  # warm the page cache so both measurements read from memory
        f.read_bytes()
    start = time.perf_counter()
    for f in files:
        with f.open("rb") as fh:
            json.load(fh)
    seconds = time.perf_counter() - start
else:
    from lib.dataset import BuildOptions, build_dataset
    from lib.ftcheck import load_tokenizer
    load_tokenizer()  # the tokenizer's one-off load (about 0.5 s) is start-up, like the imports
    for f in files:
        f.read_bytes()
    start = time.perf_counter()
    result = build_dataset(BuildOptions(inputs=files, output_dir=out, workers=workers))
    seconds = time.perf_counter() - start
    assert result.n_examples > 0 and not result.errors, result.errors[:3]
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_kb": max(peak_kb, children_kb)}))
"""


def measure(mode: str, folder: Path, out: Path, n: int, workers: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(REPO), mode, str(folder), str(out), str(n),
                           str(workers)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} measurement failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=1000, help="corpus size (default: 1000; at least 2)")
    p.add_argument("--workers", type=int, default=1, help="builder processes (default: 1)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    n = max(2, args.files)
    with tempfile.TemporaryDirectory(prefix="ibex-bench-") as tmp:
        folder, out = Path(tmp) / "logs", Path(tmp) / "out"
        folder.mkdir()
        started = time.perf_counter()
        size = generate(folder, n, args.seed)
        print(f"generated {n} logs, {size / n / 1024:.0f} KB each on average ({size / 2**20:.0f} MB), "
              f"in {time.perf_counter() - started:.0f} s")
        load = measure("load", folder, out, n, 1)
        build = measure("build", folder, out, n, args.workers)
        report = json.loads((out / "dataset_report.json").read_text(encoding="utf-8"))
        examples = report["examples"]["total"]
        ratio = build["seconds"] / load["seconds"]
        print(f"json.load of {n} files: {load['seconds']:.2f} s; builder ({args.workers} worker(s)): "
              f"{build['seconds']:.2f} s for {examples} examples")
        print(f"ratio builder / json.load: {ratio:.1f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")
        parts = report["seconds"]
        print(f"  builder time: {parts['read_build_and_check_examples']:.2f} s reading logs, building and checking "
              f"examples, {parts['split_and_write']:.2f} s splitting and writing, {parts['check_reports']:.2f} s "
              "putting the check reports together")
        half = max(1, n // 2)
        small = measure("build", folder, Path(tmp) / "out-small", half, args.workers)
        growth = build["peak_kb"] / small["peak_kb"]
        print(f"peak memory: {small['peak_kb'] / 1024:.0f} MB for {half} logs, {build['peak_kb'] / 1024:.0f} MB "
              f"for {n} logs (x{growth:.2f}; target: no growth with the number of files)")
        print(f"output: {os.path.getsize(out / 'training_set.jsonl') / 2**20:.0f} MB training set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
