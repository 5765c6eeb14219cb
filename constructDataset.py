#!/usr/bin/env python3
"""Build the chat fine-tuning dataset from IBEX game logs: one example per decision a human made.

    python constructDataset.py                          # every *.log.json under jsonFiles/ -> data/
    python constructDataset.py --input LOGS/ game.log.json --sessions sessions.json --include-chat
    python constructDataset.py --check data/training_set.jsonl

Writes training_set.jsonl, validation_set.jsonl (split by game), their state sidecars (*.state.jsonl, read by
finetune.py --evaluate) and dataset_report.json into the output folder; the previous files stay as they were until
all are ready. Every unusable log gets one line on
stderr and the others are still used. Exit codes: 0 done; 1 no example at all, a failed --check, or (with
--strict) any unusable input or failed check; 2 bad options; 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from lib.dataset import ftcheck
from lib.dataset.build import (
    MAX_DEFAULT_WORKERS,
    BuildOptions,
    BuildResult,
    UsageError,
    build_dataset,
    check_file_report,
    default_workers,
)
from lib.ibex.sessions import SessionsError, load_sessions
from lib.util.text import display_path

HERE = Path(__file__).resolve().parent
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROGRESS_MIN_FILES = 20  # smaller corpora finish before a progress line would help
PROGRESS_INTERVAL = 0.5  # seconds between progress lines


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from lib.games import GAMES

    p = argparse.ArgumentParser(
        description=f"Turn IBEX game logs ({', '.join(game.title for game in GAMES.values())}) into OpenAI chat "
                    "fine-tuning JSONL (one example per human decision), or check a JSONL file.")
    p.add_argument("--input", nargs="+", type=Path, metavar="PATH",
                   help="log files, or folders searched for *.log.json (default: jsonFiles/ next to this script)")
    p.add_argument("--output-dir", type=Path, default=HERE / "data",
                   help="where the three output files go (default: data/ next to this script)")
    p.add_argument("--sessions", type=Path, metavar="FILE",
                   help="the server's sessions.json: private values for logs that lack trustworthy ones")
    p.add_argument("--include-chat", action="store_true",
                   help="also one example per chat message sent in phases 2 and 5")
    p.add_argument("--validation-fraction", type=_fraction, default=0.2, metavar="F",
                   help="share of the games that go to the validation set (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split by game (default: 0)")
    p.add_argument("--model", default=ftcheck.DEFAULT_MODEL,
                   help=f"model whose token limit and price the checks use (default: {ftcheck.DEFAULT_MODEL})")
    p.add_argument("--workers", type=_positive_int, default=default_workers(),
                   help="processes reading logs in parallel; the output is the same for any number (default: the "
                        f"number of CPUs, at most {MAX_DEFAULT_WORKERS}: {default_workers()} here)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when any input is unusable or a check of the output fails")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary; errors still shown")
    p.add_argument("--check", nargs="+", type=Path, metavar="FILE",
                   help="only run OpenAI's data checks on these JSONL files, and exit")
    return p.parse_args(argv)


class Progress:
    """files done / total on stderr, at most every PROGRESS_INTERVAL seconds, for corpora worth waiting for."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0
        self.open_line = False

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_MIN_FILES:
            return
        now = time.monotonic()
        if done < total and now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        if self.tty:
            self.stream.write(f"\r{done}/{total} files")
            self.open_line = done < total
            if not self.open_line:
                self.stream.write("\n")
        else:
            self.stream.write(f"{done}/{total} files\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "none"


def print_summary(result: BuildResult, out: TextIO) -> None:
    report = result.report
    files, examples, games = report["files"], report["examples"], report["games"]
    print(f"{files['found']} log file(s): {files['used']} used, {files['failed']} unusable", file=out)
    print(f"{examples['total']} examples: training {examples['training']} from {len(games['training'])} game(s), "
          f"validation {examples['validation']} from {len(games['validation'])} game(s)", file=out)
    for role, actions in report["per_role_action"].items():
        print(f"  {role}: {_counts(actions)}", file=out)
    print(f"  private values: {_counts(report['private_values'])}", file=out)
    skipped = {reason: item["count"] for reason, item in report["skipped"].items()}
    print(f"  skipped submissions: {_counts(skipped)}", file=out)
    if report["chat_messages_not_included"]:
        print(f"  chat messages not included: {report['chat_messages_not_included']} (see --include-chat)",
              file=out)
    for warning in report["warnings"]:
        print(f"  warning: {warning}", file=out)
    written = [display_path(path) for key, path in result.outputs.items()
               if not key.startswith("validation") or examples["validation"]]
    print("Wrote " + ", ".join(written), file=out)
    training = report["checks"]["training"]
    cost = report["training_cost"]
    print(f"Check of {training['source']}: {'OK' if training['ok'] else str(training['n_errors']) + ' error(s)'}, "
          f"{len(training['warnings'])} warning(s); {cost['billed_tokens']:,} billed tokens over {cost['epochs']} "
          f"epochs, estimated ${cost['estimated_cost_usd'] or 0:,.2f} for {cost['model']}", file=out)


def print_check_problems(result: BuildResult, err: TextIO) -> None:
    checks = result.report["checks"]
    for name in ("training", "validation"):
        check = checks.get(name)
        if check:
            for line in check["errors"]:
                print(f"check error: {line}", file=err)
            for line in check["warnings"]:
                print(f"check warning: {line}", file=err)
    if checks["examples_in_both_files"]:
        print(f"check error: {checks['examples_in_both_files']} example(s) are in both the training and the "
              "validation set", file=err)


def run_checks(paths: list[Path], model: str) -> int:
    ok = True
    for path in paths:
        report = check_file_report(path, model)
        print(report.format_text())
        ok = ok and report.ok
    return EXIT_OK if ok else EXIT_FAILED


def _writable_streams() -> None:
    """Lines that quote a file name which is not UTF-8, or a log's text, are printed with escapes instead of
    ending the run with UnicodeEncodeError (stdout is strict by default)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _writable_streams()
    if args.check:
        return run_checks(args.check, args.model)
    sessions = None
    if args.sessions is not None:
        try:
            sessions = load_sessions(args.sessions)
        except SessionsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    progress = None if args.quiet else Progress(sys.stderr)

    def on_error(line: str) -> None:
        if progress:
            progress.clear()
        print(line, file=sys.stderr)

    options = BuildOptions(inputs=args.input or [HERE / "jsonFiles"], output_dir=args.output_dir,
                           sessions=sessions, include_chat=args.include_chat,
                           validation_fraction=args.validation_fraction, seed=args.seed, model=args.model,
                           workers=args.workers)
    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # `kill` or `timeout`: clean up as after Ctrl-C, leaving no temporary file

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread (main() called by a program of its own): its handlers stay
        previous = None
    try:
        result = build_dataset(options, progress=progress, on_error=on_error)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted: the previous output files were left as they were", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # e.g. a full disk or a read-only output folder
        where = f"{display_path(exc.filename)}: " if exc.filename else ""
        print(f"error: cannot write the output: {where}{exc.strerror or exc}; the previous output files were left "
              "as they were", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if result.n_examples == 0:
        print(f"error: no example produced from {', '.join(map(display_path, options.inputs))}; the output files were "
              "left as they were", file=sys.stderr)
        return EXIT_FAILED
    if not args.quiet:
        print_summary(result, sys.stdout)
    print_check_problems(result, sys.stderr)
    if args.strict and (result.errors or not result.checks_ok):
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
