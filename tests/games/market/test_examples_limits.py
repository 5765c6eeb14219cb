"""Market examples stay bounded however many orders a seat leaves resting, and odd values in a market log give a
built log or one clear line, never an internal error (issue #20)."""

from __future__ import annotations

import copy
import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bench.market_dataset_bench import resting_orders_log
from lib.dataset.build import _build
from lib.dataset.sidecar import state_line
from lib.games.market.actions import TRADE, build_market_action_required
from lib.games.market.examples import market_examples
from lib.games.market.policy import zic_trade
from lib.games.market.prompts import BOOK_DEPTH, OWN_SHOWN, bounded_view, build_market_messages
from lib.games.market.sidecar import market_example_state, market_view_from_state, market_view_state
from lib.games.market.view import MarketView
from tests.helpers.paths import FIXTURES


def sizes(orders: int) -> tuple[int, int, list[str]]:
    """(longest user prompt, longest sidecar line, the user prompts) of the examples of a log where the developer
    left `orders` bids resting."""
    made = market_examples(resting_orders_log(orders), sessions=json.loads((FIXTURES / "market_sessions.json")
                                                                           .read_text())).examples
    prompts = [ex.messages[1]["content"] for ex in made]
    lines = [state_line(market_example_state("12", ex)) for ex in made]
    return max(map(len, prompts)), max(map(len, lines)), prompts


def test_a_seat_with_many_resting_orders_gets_prompts_and_sidecar_lines_of_a_bounded_size():
    few_prompt, few_line, _ = sizes(40)
    many_prompt, many_line, prompts = sizes(400)
    # Ten times the resting orders: only the counts' digits grow ("and 395 more (390 of them yours)").
    assert many_prompt <= few_prompt + 20
    assert many_line <= few_line + 200
    assert any("of them yours" in p for p in prompts)
    assert max(p.count("(yours, id") for p in prompts) <= 2 * (BOOK_DEPTH + OWN_SHOWN)


def frame(kind: str, **data) -> dict:
    return {"type": "event", "eventType": kind, "data": data}


def busy_view(orders: int, seed: int = 0) -> MarketView:
    """A futarchy developer (seat 2) in phase 6 with `orders` orders of several seats coming and going, its own
    among them (some without a usable price), as the broadcasts build the books."""
    rng = random.Random(seed)
    view = MarketView(game_id=5, game_type="futarchy", number=2, role=2, round_count=2, practice_round=False)
    view.apply(frame("assign-role", role=2, wallet=[{"balance": 300000, "shares": 30}] * 3,
                     property={"id": 2, "owner": 2, "v": [500000, 400000, 0]}))
    view.apply(frame("phase-transition", round=1, phase=6))
    view.apply(frame("value-signals", signals=[900, 1100, 0], publicSignal=[950, 1050, 0]))
    live: list[dict] = []
    for number in range(1, orders + 1):
        c, side = rng.choice((0, 1)), rng.choice(("bid", "ask"))
        price = rng.randint(1, 2000) if rng.random() > 0.02 else "odd"
        order = {"id": number, "sender": rng.choice((2, 2, 2, 3, 7, 9)), "type": side, "price": price,
                 "quantity": 1, "condition": c}
        view.apply(frame("add-order", order=order))
        live.append(order)
        if rng.random() < 0.2 and live:
            gone = live.pop(rng.randrange(len(live)))
            view.apply(frame("delete-order", order={"id": gone["id"], "condition": gone["condition"]}))
        if rng.random() < 0.1 and live:
            changed = rng.choice(live)
            view.apply(frame("update-order", order={"id": changed["id"], "condition": changed["condition"],
                                                    "quantity": 1}))
    return view


def decisions(view: MarketView) -> tuple:
    required = build_market_action_required(view, TRADE)
    return (build_market_messages(view, required), [view.uncommitted(c) for c in (0, 1)],
            [view.my_orders(c)[:1] for c in (0, 1)], zic_trade(view, random.Random(3)))


def test_the_bounded_copy_gives_the_whole_views_prompt_money_and_baseline_decision():
    """What the dataset builder keeps of a view (bounded_view) is what play time's whole view gives: the same
    prompt, character for character, the same uncommitted money and shares, the same oldest own order (the one
    the baseline cancels) and the same baseline decision; through the sidecar's JSON too."""
    for seed in range(4):
        view = busy_view(600, seed)
        small = bounded_view(view)
        assert decisions(small) == decisions(view), seed
        again = market_view_from_state(json.loads(state_line(market_view_state(small))))
        assert decisions(again)[:3] == decisions(view)[:3], seed
        assert sum(len(b) for b in small.current.books.values()) <= 4 * (BOOK_DEPTH + OWN_SHOWN + 1)
        # The ranked index kept up frame by frame gives what one built afresh from the book gives.
        fresh = copy.deepcopy(view)
        fresh._indexes = {}
        assert decisions(bounded_view(fresh)) == decisions(small), seed
        assert "of them yours" in decisions(view)[0][1]["content"]


def surrogate_log(tmp_path: Path) -> Path:
    with gzip.open(FIXTURES / "market_logs.json.gz", "rt") as f:
        log = json.load(f)["logs"]["harberger-12"]
    for entry in log["server-log"]:
        if entry["sent"]["type"] == "assign-role":
            entry["sent"]["data"]["boundaries"]["owner"]["projectA"]["low"] = "\ud800"
    path = tmp_path / "surrogate.log.json"
    path.write_text(json.dumps(log))
    return path


def test_a_lone_surrogate_in_a_lot_range_is_built_like_any_bad_value_not_an_internal_error(tmp_path):
    outcome = _build(surrogate_log(tmp_path), None, False)
    assert outcome.error is None
    assert outcome.result is not None and outcome.result.lines
    for line in outcome.result.lines + outcome.result.states:
        line.encode("utf-8")
    system = json.loads(outcome.result.lines[0])["messages"][0]["content"]
    assert "owners' lots No Project 350000-600000; Project unknown-350000" in system


# -- an interrupted build leaves no temporary file ------------------------------------------------------------------

def market_logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    with gzip.open(FIXTURES / "market_logs.json.gz", "rt") as f:
        (folder / "h.log.json").write_text(json.dumps(json.load(f)["logs"]["harberger-12"]))
    return folder


def test_an_exception_or_interrupt_while_a_market_log_is_built_leaves_no_temporary_file(tmp_path, monkeypatch):
    from lib.dataset import build as dataset
    from lib.games.market import data

    logs, out = market_logs(tmp_path), tmp_path / "out"
    for stop in (KeyboardInterrupt, OSError):
        def broken(*args, stop=stop, **kwargs):
            raise stop("stopped mid-build")

        monkeypatch.setattr(data, "game_examples", broken)
        with pytest.raises(stop):
            dataset.build_dataset(dataset.BuildOptions(inputs=[logs], output_dir=out, workers=1))
        assert list(out.iterdir()) == []


def test_a_build_terminated_mid_way_cleans_up_and_says_so(tmp_path):
    """`kill` (or `timeout`) sends SIGTERM: constructDataset.py ends as after Ctrl-C, its temporary files gone."""
    from constructDataset import EXIT_INTERRUPTED

    logs, out = market_logs(tmp_path), tmp_path / "out"
    script = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})\n"
        "import lib.games.market.data as d\n"
        "real = d.game_examples\n"
        "def terminated(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*args, **kwargs)\n"
        "d.game_examples = terminated\n"
        "import constructDataset\n"
        f"sys.exit(constructDataset.main(['-q', '--input', {str(logs)!r}, '--output-dir', {str(out)!r},"
        " '--workers', '1']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert "interrupted" in done.stderr and "Traceback" not in done.stderr
    assert list(out.iterdir()) == []


def test_temporary_files_of_a_build_killed_outright_go_at_the_next_build(tmp_path):
    """SIGKILL (or the out-of-memory killer) leaves no chance to clean up: the next build in that folder removes
    what dead builds left, and leaves a running build's files and anything else alone."""
    from lib.dataset.build import BuildOptions, build_dataset

    logs, out = market_logs(tmp_path), tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    pid = int(dead.stdout)
    stale = [out / f".examples.{pid}.0123abcd.tmp", out / f".states.{pid}.0123abcd.tmp",
             out / f".training_set.jsonl.state.{pid}.89abcdef.tmp"]
    kept = [out / f".examples.{os.getppid()}.0123abcd.tmp", out / "notes.tmp", out / ".mine.1.0123abcd.tmp"]
    for path in stale + kept:
        path.write_text("x")
    build_dataset(BuildOptions(inputs=[logs], output_dir=out, workers=1, validation_fraction=0))
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
