"""Training examples from market-game logs (lib/games/market/examples.py), checked against what each player saw.

The two games recorded on the real server come twice in the fixtures: their logs (market_logs.json.gz, what
constructDataset reads) and every frame each seat received (market_seats.json.gz). An example built from the log
must hold what the seat knew when it decided: its prompt is compared with the one built from that seat's own
frames at the moment it sent the decision.
"""

from __future__ import annotations

import copy
import gzip
import json

import pytest

from lib.games.market.actions import DECLARE, SPECULATE, TRADE, build_market_action_required, validate_market_action
from lib.games.market.examples import market_examples
from lib.games.market.prompts import bounded_view, build_market_messages
from lib.games.market.view import MarketView
from tests.helpers.paths import FIXTURES

GAMES = ("harberger-12", "futarchy-13")
KIND = {"declare": DECLARE, "done-speculating": SPECULATE, "post-order": TRADE, "cancel-order": TRADE}


def load(name: str) -> dict:
    with gzip.open(FIXTURES / name, "rt") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def logs() -> dict:
    return load("market_logs.json.gz")["logs"]


@pytest.fixture(scope="module")
def seats() -> dict:
    return load("market_seats.json.gz")["games"]


@pytest.fixture(scope="module")
def sessions() -> list:
    return json.loads((FIXTURES / "market_sessions.json").read_text())


def seen_when_sent(game: dict) -> dict[tuple, list[tuple[MarketView, dict]]]:
    """(seat, round, phase, wire type) -> [(the seat's view just before it sent, the message)], from its frames."""
    out: dict[tuple, list] = {}
    for seat, frames in game["seats"].items():
        view = MarketView(game_id=game["game_id"], game_type=game["game_type"], number=int(seat), round_count=2,
                          practice_round=True)  # as the agent sets them from the parameters
        for entry in frames:
            if entry[0] == "r":
                view.apply(entry[1])
                continue
            message = entry[1]
            if message.get("type") in KIND:
                key = (int(seat), view.round, view.phase, message["type"])
                out.setdefault(key, []).append((copy.deepcopy(view), message))
            view.apply_sent(message)
    return out


@pytest.mark.parametrize("name", GAMES)
def test_every_decision_type_gives_examples_in_the_play_time_format(logs, sessions, name):
    result = market_examples(logs[name], sessions=sessions)
    counts = {}
    for ex in result.examples:
        counts[ex.action_type] = counts.get(ex.action_type, 0) + 1
        system, user, assistant = ex.messages
        assert [m["role"] for m in ex.messages] == ["system", "user", "assistant"]
        required = json.loads(user["content"].rsplit("Action required:\n", 1)[1])
        assert required["data"]["actionType"] == {"declare": "SubmitDeclaration", "done-speculating": "SubmitSnipes",
                                                  "post-order": "TradeInMarket",
                                                  "cancel-order": "TradeInMarket"}[ex.action_type]
        assert json.loads(assistant["content"])["type"] == ex.action_type
        assert ex.values_source == ("sessions" if ex.role in (2, 3) else "none (a speculator)")
    # 6 landholders x 2 declaration phases x 3 rounds; 6 speculators x 2 speculation phases x 3 rounds.
    assert counts["declare"] == 36 and counts["done-speculating"] == 36
    assert counts["post-order"] > 50 and counts["cancel-order"] > 5
    skipped = result.skipped
    assert skipped["above the maximum (refused, not stored): declare"] == 1
    assert skipped["a second declaration in the phase (only the first counts): declare"] == 1
    assert skipped["not a decision the agents make: complete-current-phase"] == 1
    assert skipped["refused by the server: post-order"] >= 10  # the probes and the scripts' market orders


@pytest.mark.parametrize("name", GAMES)
def test_declaration_and_snipe_prompts_are_what_the_seat_saw(logs, seats, sessions, name):
    """Built from the log, each declaration's and snipe's prompt is the one the seat's own frames give at the
    moment it sent that decision, character for character (values from the sessions table)."""
    seen = seen_when_sent(seats[name])
    compared = 0
    for ex in market_examples(logs[name], sessions=sessions).examples:
        if ex.action_type not in ("declare", "done-speculating"):
            continue
        candidates = seen[(ex.seat, ex.round, ex.phase, ex.action_type)]
        sent = json.loads(ex.messages[2]["content"])
        view, message = next((v, m) for v, m in candidates if m == sent)
        kind = KIND[ex.action_type]
        expected = build_market_messages(view, build_market_action_required(view, kind))
        assert ex.messages[:2] == expected, (ex.seat, ex.round, ex.phase)
        compared += 1
    assert compared == 72


@pytest.mark.parametrize("name", GAMES)
def test_order_examples_hold_the_seats_signals_wallet_and_book(logs, seats, sessions, name):
    """An order's example holds the seat's signals, values and wallet; its book is the one the server had when
    that order arrived, which is what the seat saw except for frames still on their way (checked: mostly equal)."""
    seen = seen_when_sent(seats[name])
    same_book = total = 0
    for ex in market_examples(logs[name], sessions=sessions).examples:
        if ex.action_type not in ("post-order", "cancel-order"):
            continue
        sent = json.loads(ex.messages[2]["content"])
        view, _ = next((v, m) for v, m in seen[(ex.seat, ex.round, ex.phase, ex.action_type)]
                       if m.get("order") == sent["order"])
        rec = view.current
        assert ex.state["signals"] == rec.signals[:2] and ex.state["values"] == rec.values
        assert ex.state["winning"] == rec.winning or name.startswith("futarchy")
        total += 1
        # The example keeps the book as the prompt shows it (the best few per side and the seat's own), with the
        # rest counted: the same cut of the seat's own book, counts included.
        small = bounded_view(view).current
        seen_book = {c: sorted(small.books.get(c, {}).values(), key=lambda o: o["id"])
                     for c in view.market_conditions()}
        left_out = {c: small.hidden[c] for c in seen_book if c in small.hidden}
        same_book += ex.state["book"] == seen_book and ex.state.get("book_left_out", {}) == left_out
        # What the human sent validates in shape against the example's own view (the dataset keeps choices).
        assert validate_market_action(sent, view, TRADE, strict=False)["type"] == sent["type"]
    assert total > 50 and same_book / total > 0.5


def test_without_a_sessions_table_only_confirmed_values_are_used(logs):
    """The real server wrote assign-role by reference (every round shows the last round's values): without the
    sessions table, a round's values are used only where the round summaries confirm them."""
    result = market_examples(logs["harberger-12"])
    assert result.values_by_round == {0: "unknown", 1: "unknown", 2: "server-log"}
    for ex in result.examples:
        if ex.role in (2, 3):
            assert (ex.state["values"] is None) == (ex.round < 2)
            assert ("is worth to you" in ex.messages[1]["content"]) == (ex.round == 2)


def test_a_log_that_is_not_a_market_game_is_refused_in_one_line(logs):
    voting = copy.deepcopy(logs["harberger-12"])
    for row in voting["parameters"]:
        if row["key"] == "game_type":
            row["value"] = "voting"
    with pytest.raises(ValueError, match="not a market game"):
        market_examples(voting)
    broken = copy.deepcopy(logs["futarchy-13"])
    del broken["server-log"]
    with pytest.raises(ValueError, match="server-log"):
        market_examples(broken)


def test_the_baseline_is_scored_against_the_recorded_players(logs, sessions):
    """The evaluation compares the baseline with what the scripted players of the recorded games did, on what is
    comparable, and names what it does not score."""
    from lib.games.market.policy import MarketBaseline
    from lib.games.market.scores import score_market

    examples = market_examples(logs["harberger-12"], sessions=sessions).examples
    baseline = MarketBaseline(seed=0)
    report = score_market(examples, lambda view, kind: baseline.decide(view, kind))
    declare, snipes, orders = report["declare"], report["done-speculating"], report["post-order"]
    assert declare["n"] == 36 and declare["invalid"] == 0 and declare["values_unknown"] == 0
    assert 0 <= declare["policy_shading"] < 0.01  # truthful, rounded down to 1000
    assert declare["human_shading"] > 0.05  # the scripts declared well below their values
    assert declare["mean_rel_error"] == pytest.approx(declare["human_shading"] - declare["policy_shading"], abs=0.02)
    assert snipes["n"] == 36 and snipes["choices"] == 36 * 6
    assert snipes["policy_snipe_rate"] < snipes["human_snipe_rate"]
    assert 0 < snipes["agreement"] < 1
    assert orders["n"] > 50 and orders["invalid"] == 0 and 0 < orders["same_side"] <= 1
    assert orders["policy_markup"]["bid"] <= 0 <= orders["policy_markup"]["ask"]  # never against the signal
    assert report["cancel-order"]["scored"] is False and report["not_scored"]
