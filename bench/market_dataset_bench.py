#!/usr/bin/env python3
"""Benchmark of the market dataset builder on a log where one seat leaves many orders resting (issue #20).

    .venv/bin/python bench/market_dataset_bench.py                 # 1,000 and 10,000 resting orders
    .venv/bin/python bench/market_dataset_bench.py --orders 2000
    .venv/bin/python bench/market_dataset_bench.py --smoke         # 0 and 50 orders: seconds, for a quick check

The log is the Harberger game recorded on the real server (tests/fixtures/market_logs.json.gz), with ORDERS more
`post-order` bids of the developer (seat 2) added to round 1's market, at prices 1 to 20 (far below every ask, so
each one rests, and within the developer's balance). Every such bid is an example whose prompt and sidecar line
once held the whole book: the build grew with the square of the orders.

Each size is built by constructDataset's builder (lib.dataset.build.build_dataset, one process, the sessions table of
the fixtures) in a fresh Python process; printed: the log's size, the builder's wall time (imports and the
tokenizer's loading excluded), the process's peak RSS (ru_maxrss, which includes the interpreter and the
imports), the examples made and the sizes of the training set and its sidecar. Nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURES = REPO / "tests" / "fixtures"
SEAT, ROUND, PHASE, CONDITION = 2, 1, 6, 0  # the developer; round 1's market runs under No Project


def resting_orders_log(orders: int) -> dict:
    """The recorded Harberger log with `orders` resting bids of one seat added at the end of round 1's market."""
    with gzip.open(FIXTURES / "market_logs.json.gz", "rt") as f:
        log = copy.deepcopy(json.load(f)["logs"]["harberger-12"])
    entries = log["log"]
    last = max(i for i, e in enumerate(entries) if e.get("type") == "message" and e.get("round") == ROUND
               and e.get("phase") == PHASE)
    template = entries[last]
    added = [{**template, "number": SEAT, "tag": "Developer",
              "content": {"gameId": template["content"]["gameId"], "type": "post-order",
                          "order": {"price": 1 + i % 20, "quantity": 1, "condition": CONDITION, "type": "bid",
                                    "now": False}}}
             for i in range(orders)]
    log["log"] = entries[:last + 1] + added + entries[last + 1:]
    return log


def run_one(log_dir: Path, out: Path) -> dict:
    """Build the folder's logs in this process; what was measured, as a dict."""
    import resource
    import time

    from lib.dataset import ftcheck
    from lib.dataset.build import BuildOptions, build_dataset
    from lib.ibex.sessions import load_sessions

    ftcheck.load_tokenizer()
    sessions = load_sessions(FIXTURES / "market_sessions.json")
    started = time.monotonic()
    result = build_dataset(BuildOptions(inputs=[log_dir], output_dir=out, sessions=sessions, validation_fraction=0,
                                        workers=1))
    seconds = time.monotonic() - started
    if result.errors:
        raise SystemExit(f"the build failed: {result.errors}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                                    / 1024, 1),
            "examples": result.n_examples, "set_bytes": result.outputs["training"].stat().st_size,
            "sidecar_bytes": result.outputs["training_state"].stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[1000, 10000], help="resting orders per log")
    parser.add_argument("--smoke", action="store_true", help="one small log (50 orders) only")
    parser.add_argument("--run", nargs=2, metavar=("LOG_DIR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(Path(args.run[0]), Path(args.run[1]))))
        return
    # The recorded log as it is (0 added orders) is the baseline measured in the same run: each size's time and
    # memory are also printed as ratios to it, which a loaded or slow machine changes much less than the seconds.
    sizes = [0, 50] if args.smoke else [0, *[n for n in args.orders if n != 0]]
    print(f"{'orders':>7} {'log KB':>8} {'seconds':>8} {'peak RSS MB':>12} {'examples':>9} {'set KB':>8} "
          f"{'sidecar KB':>11} {'x time':>7} {'x RSS':>6}   (load average {os.getloadavg()[0]:.1f})")
    base: dict[str, float] = {}
    for orders in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            log_dir, out = Path(tmp) / "logs", Path(tmp) / "out"
            log_dir.mkdir()
            path = log_dir / "resting.log.json"
            path.write_text(json.dumps(resting_orders_log(orders)))
            done = subprocess.run([sys.executable, __file__, "--run", str(log_dir), str(out)], capture_output=True,
                                  text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{orders} orders: the build failed: {done.stderr.strip().splitlines()[-1:]}")
            m = json.loads(done.stdout.strip().splitlines()[-1])
            base = base or m
            print(f"{orders:>7} {path.stat().st_size / 1024:>8.0f} {m['seconds']:>8.2f} {m['peak_rss_mb']:>12.1f} "
                  f"{m['examples']:>9} {m['set_bytes'] / 1024:>8.0f} {m['sidecar_bytes'] / 1024:>11.0f} "
                  f"{m['seconds'] / base['seconds']:>7.2f} {m['peak_rss_mb'] / base['peak_rss_mb']:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
