#!/usr/bin/env python3
"""Is the dataset builder's output byte for byte what it was? (issue #21: a refactoring must not change it.)

    .venv/bin/python bench/dataset_identity.py --rev integ      # build with revision `integ` and with the working
                                                                # tree, compare every output file byte for byte
    .venv/bin/python bench/dataset_identity.py --check          # the working tree against the checked-in digests
    .venv/bin/python bench/dataset_identity.py --write-digests  # record the working tree's digests (after a change
                                                                # of the output that is meant)
    .venv/bin/python bench/dataset_identity.py --smoke          # as --check (what tests/scripts/test_bench.py runs)

Each case runs constructDataset.py (one worker, quiet) in its own folder, with relative paths, so that the report
names the same inputs whichever tree builds; the inputs are always the working tree's: `jsonFiles/` (three logs
with server-log, one 2023 log rebuilt without it) and the real-server Harberger and futarchy games recorded in
tests/fixtures/market_logs.json.gz (written out one file per game, as tests/games/market/test_build.py does). The
cases cover the voting replay and reconstruction with and without a sessions table, chat examples, the market
examples, and one mixed build whose sidecars name several games. Compared: the training and validation sets, their
state sidecars, and the report without its "seconds" (timings). A revision is checked out with `git worktree add`
into a temporary folder, which is removed afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
DIGESTS = FIXTURES / "dataset" / "identity_digests.json"
OUTPUTS = ("training_set.jsonl", "validation_set.jsonl", "training_set.state.jsonl", "validation_set.state.jsonl",
           "dataset_report.json")
# case -> constructDataset.py arguments (paths relative to the case's folder, which holds jsonFiles/ and market/).
CASES: dict[str, list[str]] = {
    "voting": ["--input", "jsonFiles", "--sessions", "jsonFiles/sessions.json"],
    "voting-chat-no-sessions": ["--input", "jsonFiles", "--include-chat"],
    "market": ["--input", "market", "--sessions", "market_sessions.json"],
    "mixed": ["--input", "jsonFiles", "market", "--sessions", "market_sessions.json", "--include-chat",
              "--validation-fraction", "0.5", "--seed", "3"],
}


def _inputs(folder: Path) -> None:
    """The working tree's inputs, laid out the same for every tree that builds them."""
    shutil.copytree(REPO / "jsonFiles", folder / "jsonFiles")
    shutil.copy(FIXTURES / "market_sessions.json", folder / "market_sessions.json")
    market = folder / "market"
    market.mkdir()
    with gzip.open(FIXTURES / "market_logs.json.gz", "rt") as f:
        logs = json.load(f)["logs"]
    for name, log in logs.items():
        (market / f"{name}.log.json").write_text(json.dumps(log))


def _comparable(name: str, data: bytes) -> bytes:
    """The bytes compared: a report without its timings (they differ from run to run), every other file as is."""
    if name != "dataset_report.json" or not data:
        return data
    report = json.loads(data)
    report.pop("seconds", None)
    return (json.dumps(report, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def build(tree: Path, work: Path) -> dict[str, bytes]:
    """Every case built by `tree`'s constructDataset.py: "case/file" -> its comparable bytes (b"" when absent)."""
    _inputs(work)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IBEX_"))},
           "PYTHON_DOTENV_DISABLED": "1"}
    out: dict[str, bytes] = {}
    for case, arguments in CASES.items():
        target = work / "out" / case
        done = subprocess.run([sys.executable, str(tree / "constructDataset.py"), *arguments, "--output-dir",
                               str(target.relative_to(work)), "--workers", "1", "-q"],
                              cwd=work, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{tree}: case {case} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        for name in OUTPUTS:
            path = target / name
            out[f"{case}/{name}"] = _comparable(name, path.read_bytes() if path.exists() else b"")
    return out


def digests(outputs: dict[str, bytes]) -> dict[str, str]:
    return {key: hashlib.sha256(data).hexdigest() for key, data in sorted(outputs.items())}


def _first_difference(a: bytes, b: bytes) -> str:
    for number, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), 1):
        if x != y:
            return f"line {number} differs: {x[:120]!r} vs {y[:120]!r}"
    return f"lengths differ ({len(a)} vs {len(b)} bytes)"


def compare_revision(rev: str) -> int:
    with tempfile.TemporaryDirectory(prefix="dataset-identity-") as tmp:
        checkout = Path(tmp) / "rev"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(checkout), rev],
                       check=True)
        try:
            before = build(checkout, Path(tmp) / "before")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(checkout)], check=False)
        after = build(REPO, Path(tmp) / "after")
    differ = [key for key in before if before[key] != after[key]]
    for key in before:
        size = len(after[key])
        print(f"{'DIFFERS' if key in differ else 'same   '} {key} ({size} bytes)")
        if key in differ:
            print(f"        {_first_difference(before[key], after[key])}")
    print(f"{len(before) - len(differ)}/{len(before)} files byte-identical between {rev} and the working tree")
    return 1 if differ else 0


def compare_digests(path: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="dataset-identity-") as tmp:
        now = digests(build(REPO, Path(tmp)))
    recorded = json.loads(path.read_text())
    differ = sorted(key for key in set(now) | set(recorded) if now.get(key) != recorded.get(key))
    for key in sorted(set(now) | set(recorded)):
        if key in differ:
            print(f"DIFFERS {key}: {recorded.get(key)} recorded, {now.get(key)} now")
        else:
            print(f"same    {key} (sha256 {now[key][:16]})")
    print(f"{len(now) - len(differ)}/{len(now)} files match the digests in {path.relative_to(REPO)}")
    return 1 if differ else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rev", help="a git revision to build with and compare to the working tree")
    mode.add_argument("--check", action="store_true", help="compare the working tree's output to the digests")
    mode.add_argument("--smoke", action="store_true", help="as --check")
    mode.add_argument("--write-digests", action="store_true", help="record the working tree's digests")
    args = p.parse_args()
    if args.rev:
        return compare_revision(args.rev)
    if args.write_digests:
        with tempfile.TemporaryDirectory(prefix="dataset-identity-") as tmp:
            DIGESTS.write_text(json.dumps(digests(build(REPO, Path(tmp))), indent=1) + "\n")
        print(f"wrote {DIGESTS.relative_to(REPO)}")
        return 0
    return compare_digests(DIGESTS)


if __name__ == "__main__":
    sys.exit(main())
