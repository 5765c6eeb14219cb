"""The rules of Harberger and futarchy (lib/games/market/rules.py) against two games recorded on the real IBEX server.

Each recorded round is played again from its inputs only (the sessions table, the parameters, the declare,
done-speculating and market frames in the server's order) and every number the server told each seat is
recomputed: values, signals, public signals, the winning condition, snipe profits, the final price, tax income,
total profit, the round summary and the reward.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

from lib.games.market.book import Market, js_json, listed_conditions_rule, winning_condition_rule
from lib.games.market.rules import (
    FUTARCHY,
    HARBERGER,
    PHASES,
    Lot,
    add_snipes,
    assign_role,
    declaration_above_max,
    declarations_published,
    declared_sums,
    default_declaration,
    final_price,
    futarchy_winner,
    harberger_winner,
    js_round,
    phase_timers,
    profit_entries,
    public_signals,
    reconcile,
    reward,
    round_profit,
    round_signals,
    round_summary,
    round_values,
    seat_layout,
    snipes_seen_by,
    speculation_conditions,
    starting_wallets,
    tax_bill,
    tax_income,
    total_profit,
)
from lib.ibex.params import ROLE_DEVELOPER, ROLE_OWNER, ROLE_SPECULATOR, parse_parameters
from tests.helpers.paths import FIXTURES

RECORDED = {name: game for fixture in ("market_replay.json", "market_probes.json")
            for name, game in json.loads((FIXTURES / fixture).read_text())["games"].items()}
SESSIONS = json.loads((FIXTURES / "market_sessions.json").read_text())  # the real server's sessions.json, in part


def same(a, b) -> bool:
    return json.dumps(js_json(a)) == json.dumps(js_json(b))


def declare_all(messages: list, seats: dict, params: dict, out: list) -> dict[int, list]:
    """A declaration phase: the first accepted declaration of each lot counts, one above twice `high` is refused."""
    declared: dict[int, list] = {}
    for number, message in messages:
        seat = seats[number]
        if seat.role == ROLE_SPECULATOR or seat.lot in declared:
            continue  # wrong role: an error frame; a second declaration: a warning; neither changes anything
        refusal = declaration_above_max(seat.role, message["declaration"], params)
        if refusal is not None:
            out.append((number, "declaration-above-max", refusal))
            continue
        declared[seat.lot] = message["declaration"]
    for seat in seats.values():
        if seat.lot is not None and seat.lot not in declared:
            declared[seat.lot] = default_declaration(seat.role, params)
    return declared


def speculate_all(messages: list, seats: dict, game_type: str, phase: int, winning) -> dict[int, list[list[int]]]:
    snipers = {seat.lot: [[], [], []] for seat in seats.values() if seat.lot is not None}
    conditions, required = speculation_conditions(game_type, phase, winning)
    for number, message in messages:
        if seats[number].role == ROLE_SPECULATOR:
            add_snipes(snipers, number, message["snipe"], conditions, message["gameId"], required)
    return snipers


def published(game_type: str, layout: list, lot_names: dict, names: dict, declared: dict, phase: int, winning):
    lots = [{"id": s.lot, "name": lot_names[s.number], "owner": names[s.number], "role": s.role,
             "number": s.number, "d": declared[s.lot]} for s in layout if s.lot is not None]
    return declarations_published(game_type, phase, lots, winning)


def play_recorded_game(name: str):
    """Yield, round by round, the recorded round and what the rules make of its inputs."""
    game = RECORDED[name]
    game_type = game["game_type"]
    params = parse_parameters(game["parameters"]).values
    layout = seat_layout()
    seats = {s.number: s for s in layout}
    roles = {s.number: s.role for s in layout}
    ledger: dict[int, list] = {s.number: [] for s in layout}  # every profit entry since the game began
    previous: dict[int, dict] = {}  # per lot: the previous round's d and speculators, which assign-role carries
    summaries: dict[int, dict[int, dict]] = {}
    rounds = game["rounds"]
    for rnd in rounds:
        r, rules, out = rnd["round"], rnd["rules"], []
        values = round_values(SESSIONS, params, r, layout)
        roles_sent = {}
        for seat in layout:
            lot = None
            if seat.lot is not None:
                name = rules["seats"][str(seat.number)]["assign-role"]["property"]["name"]  # random on the server
                lot = {"id": seat.lot, "owner": seat.number, "name": name, "v": values[seat.number],
                       **previous.get(seat.lot, {})}
            roles_sent[seat.number] = assign_role(seat, params, starting_wallets(seat.role, params), lot)
        signals = round_signals(SESSIONS, params, r, layout, values)

        first = declare_all(rules["messages"]["phase 2"], seats, params, out)
        sums = declared_sums([first[lot] for lot in sorted(first)])
        winning = harberger_winner(sums) if game_type == HARBERGER else None
        names = {d["number"]: d["owner"] for d in rules["declarations-published"][0]["declarations"]}  # random
        lot_names = {n: sent["property"]["name"] for n, sent in roles_sent.items() if "property" in sent}
        publications = [published(game_type, layout, lot_names, names, first, 3, winning)]
        publics = public_signals(sums, params["tax_rate_final"], winning)
        snipers = speculate_all(rules["messages"]["phase 3"], seats, game_type, 3, winning)

        wallets = {s.number: starting_wallets(s.role, params) for s in layout}
        market = Market(wallets, winning_condition_rule(winning) if winning is not None
                        else listed_conditions_rule([0, 1]))
        for number, message in rnd["messages"]:
            market.handle(number, copy.deepcopy(message))
        if game_type == FUTARCHY:
            winning = futarchy_winner([market.median(0), market.median(1)])
            out += [(n, "winning-condition", {"winningCondition": winning}) for n in seats]

        lots = [Lot(s.lot, s.number, s.role, values[s.number], first[s.lot]) for s in layout if s.lot is not None]
        tax_i, tax_f = params["tax_rate_initial"], params["tax_rate_final"]
        bills, first_outcomes = reconcile(lots, snipers, winning, tax_i, r, 4, roles,
                                          any_condition=game_type == FUTARCHY)
        out += [(to, e["eventType"], e["data"]) for to, e in bills]
        out += [(n, "first-snipes", {"snipes": snipes_seen_by(first_outcomes, n)}) for n in seats]

        second = declare_all(rules["messages"]["phase 7"], seats, params, out)
        publications.append(published(game_type, layout, lot_names, names, second, 8, winning))
        snipers = speculate_all(rules["messages"]["phase 8"], seats, game_type, 8, winning)
        lots = [Lot(s.lot, s.number, s.role, values[s.number], second[s.lot]) for s in layout if s.lot is not None]
        bills, second_outcomes = reconcile(lots, snipers, winning, tax_f, r, 9, roles)
        out += [(to, e["eventType"], e["data"]) for to, e in bills]
        pot, price = final_price(declared_sums([second[lot] for lot in sorted(second)]), winning, tax_f)
        out += [(n, "final-price", {"price": price, "winningCondition": winning}) for n in seats]
        for n, seat in seats.items():
            amount = tax_income(pot, wallets[n][winning], params)
            out += [(n, "tax-income", {"amount": amount, "condition": winning}),
                    (n, "profit", tax_bill(r, winning, seat, amount))]
        for to, kind, data in out:
            ledger[to] += profit_entries(kind, data)
        out += [(n, "total-profit", {"amount": total_profit(ledger[n])}) for n in seats]
        out += [(n, "second-snipes", {"snipes": snipes_seen_by(second_outcomes, n)}) for n in seats]

        for n, seat in seats.items():
            landholder = seat.lot is not None
            summary = round_summary(
                seat, r, winning, params, value=values[n][winning] if landholder else None,
                first_declaration=first[seat.lot][winning] if landholder else None,
                second_declaration=second[seat.lot][winning] if landholder else None,
                first_outcomes=first_outcomes, second_outcomes=second_outcomes, wallet=wallets[n][winning],
                price=price)
            summaries.setdefault(n, {})[r] = summary
            out.append((n, "round-summary", summary))
        if rnd is rounds[-1]:
            paid = params["simulation_reward_round"]
            for n, seat in seats.items():
                token = next(d for k, d in rules["seats"][str(n)]["results"] if k == "reward")["paymentToken"]
                out.append((n, "reward", reward(seat, paid, round_profit(summaries[n][paid]), params, token)))

        previous = {lot: {"d": second[lot], "speculators": snipers[lot]} for lot in second}
        yield {"recorded": rnd, "events": out, "assign-role": roles_sent, "signals": signals,
               "public signals": publics, "declarations-published": publications}


GAMES = [(name, i) for name, game in RECORDED.items() for i in range(len(game["rounds"]))]


@pytest.mark.parametrize(("name", "index"), GAMES, ids=[f"{name}-{i}" for name, i in GAMES])
def test_recorded_round_numbers_are_the_servers(name: str, index: int) -> None:
    played = list(play_recorded_game(name))[index]
    rnd = played["recorded"]
    for number, told in rnd["rules"]["seats"].items():
        n = int(number)
        assert same(played["assign-role"][n], told["assign-role"]), f"assign-role of seat {n}"
        assert told["value-signals"]["signals"] == played["signals"][n]
        assert same(told["value-signals"]["publicSignal"], played["public signals"])
        expected = [[kind, data] for kind, data in told["results"]]
        got = [[kind, data] for to, kind, data in played["events"] if to == n]
        assert json.dumps(js_json(got)) == json.dumps(expected), f"seat {n}"
    assert same(played["declarations-published"], rnd["rules"]["declarations-published"])


def test_the_recordings_cover_what_the_rules_claim() -> None:
    """Both winning conditions occur, snipes with several speculators on one lot, a refused declaration, and a
    futarchy lot sniped only under the losing condition (its owner's profit is null, as on the real server)."""
    winners = {(game["game_type"], d["condition"]) for game in RECORDED.values() for rnd in game["rounds"]
               for k, d in rnd["rules"]["seats"]["1"]["results"] if k == "round-summary"}
    assert {0, 1} <= {w for g, w in winners if g == HARBERGER} and {0, 1} <= {w for g, w in winners if g == FUTARCHY}
    events = [(game["game_type"], k, d) for game in RECORDED.values() for rnd in game["rounds"]
              for s in rnd["rules"]["seats"].values() for k, d in s["results"]]
    assert any(k == "declaration-above-max" for _, k, _ in events)
    assert any(k == "profit" and isinstance(d.get("speculator"), list) and len(d["speculator"]) > 1
               for _, k, d in events)
    assert any(g == FUTARCHY and k == "profit" and d.get("speculator") == [] and d["total"] is None
               for g, k, d in events)


def test_seats_roles_tags_and_lots_are_the_servers() -> None:
    for game in RECORDED.values():
        known = game["players-known"]["players"]
        assert [{"number": s.number, "role": s.role, "tag": s.tag} for s in seat_layout()] == known
    layout = seat_layout()
    assert [s.lot for s in layout] == [1, 2, 3, 4, 5, 6] + [None] * 6
    assert [s.role for s in layout][:2] == [ROLE_OWNER, ROLE_DEVELOPER]


def test_phases_and_timers() -> None:
    params = parse_parameters(RECORDED["harberger-12"]["parameters"]).values
    assert phase_timers(params) == [None, 2, 15, 10, 2, 2, 12, 10, 10, 3]
    assert phase_timers({"timer_phase_1": 0, "timer_phase_2": None}) == [None] * 10
    for game_type in (HARBERGER, FUTARCHY):
        assert [p.number for p in PHASES[game_type]] == list(range(10))
        assert [p.message for p in PHASES[game_type]] == [
            "player-is-ready", None, "declare", "done-speculating", None, "complete-current-phase", "post-order",
            "declare", "done-speculating", None]
    assert PHASES[FUTARCHY][6].name.startswith("two markets")


def test_winners_ties_and_the_public_signal() -> None:
    assert harberger_winner([100, 100, 0]) == 1  # a tie goes to Project
    assert harberger_winner([101, 100, 0]) == 0
    assert futarchy_winner([None, None]) == 1  # no trades: Project
    assert futarchy_winner([9000, 9000]) == 0  # a tie keeps No Project (strict >)
    assert futarchy_winner([None, 5]) == 1 and futarchy_winner([5, None]) == 0
    assert futarchy_winner([0, None]) == 1  # a median of 0 never beats the start value 0
    assert public_signals([2377000, 1000000, 0], 33, 0) == [7844.1, 0, 0]
    assert final_price([2478000, 1, 0], 0, 33) == (817740.0, 8177.4)


def test_declaration_limits_and_defaults() -> None:
    params = parse_parameters(RECORDED["harberger-12"]["parameters"]).values
    assert declaration_above_max(ROLE_OWNER, [1200001, 0, 0], params) == {"condition": "No Project",
                                                                          "maximum": 1200000}
    assert declaration_above_max(ROLE_OWNER, [1200000, 700001, 0], params) == {"condition": "Project",
                                                                               "maximum": 700000}
    assert declaration_above_max(ROLE_DEVELOPER, [-5, 123456.75, 0], params) is None  # not checked on the server
    assert default_declaration(ROLE_OWNER, params) == [350000, 150000]
    assert default_declaration(ROLE_DEVELOPER, params) == [200000, 500000]


def test_snipes_add_up_and_unknown_lots_get_the_servers_text() -> None:
    snipers = {1: [[], [], []], 2: [[], [], []]}
    assert add_snipes(snipers, 9, [[1, 99], [2], []], [0], 12) == (["Game 12: lot 99} not found"], True)
    add_snipes(snipers, 9, [[1], [], []], [0], 12)  # speculating twice is accepted and adds up
    assert snipers[1][0] == [9, 9] and snipers[2][1] == []
    # where the server throws there is no answer; futarchy's phase 3 keeps condition 0's lots
    assert add_snipes(snipers, 10, None, [0], 12) == ([], False)
    conditions, required = speculation_conditions(FUTARCHY, 3, None)
    assert add_snipes(snipers, 10, [[2]], conditions, 12, required) == ([], False)
    assert snipers[2][0] == [10]
    conditions, required = speculation_conditions(HARBERGER, 3, 1)
    assert add_snipes(snipers, 11, [[2]], conditions, 12, required) == ([], True)
    conditions, required = speculation_conditions(HARBERGER, 8, 1)
    assert add_snipes(snipers, 11, [[2]], conditions, 12, required) == ([], False)
    lots = [Lot(1, 1, ROLE_OWNER, [468000, 164000, 150000], [374000, 131000, 0])]
    bills, outcomes = reconcile(lots, snipers, 0, 1, 0, 4, {1: ROLE_OWNER, 9: ROLE_SPECULATOR})
    assert [o["profit"] for o in outcomes] == [23500, 23500]
    assert bills[-1] == (1, {"eventType": "profit", "data": {
        "round": 0, "phase": 4, "property": 1, "condition": 0, "value": 468000, "declaration": 374000, "sniped": True,
        "speculator": [9, 9], "snipeProfit": 23500, "taxes": 3740, "owner": 1, "role": ROLE_OWNER,
        "total": 440760}})


def test_js_rounding_and_rewards() -> None:
    assert js_round(2.5) == 3 and js_round(-2.5) == -2 and js_round(0.49999999999999994) == 0
    params = parse_parameters(RECORDED["harberger-12"]["parameters"]).values
    owner = seat_layout()[0]
    got = reward(owner, 1, 432783, params, "ER")
    assert got == {"number": 1, "round": 1, "reward": 36.64, "basePoints": 200000, "showupFee": 5, "gameFee": 31.64,
                   "profit": 432783, "points": 632783, "factor": 20000, "exchange": 5e-05, "paymentToken": "ER"}


def expand(expect: list[str]) -> list[str]:
    """A whole-game fixture's run-length entries ('text *N') expanded."""
    out = []
    for item in expect:
        text, _, count = item.rpartition(" *")
        out += [text] * int(count) if text and count.isdigit() else [item]
    return out


@pytest.mark.parametrize("game_type", [HARBERGER, FUTARCHY])
def test_probe_games_run_the_phase_list_with_its_timers(game_type: str) -> None:
    """Every seat of the recorded probe game saw phases 1..9 in order, each announced by a set-timer exactly when
    `phase_timers` gives it one (the whole-game fixtures are for the local server's replay test to come)."""
    whole = json.loads((FIXTURES / f"probes_{game_type}_replay.json").read_text())
    params = parse_parameters(RECORDED[f"probes-{game_type}"]["parameters"]).values
    timers = phase_timers(params)
    for seat, player in whole["players"].items():
        seen, timer_set = [], False
        for entry in expand(player["expect"]):
            if entry == "event set-timer end":
                timer_set = True
            elif entry.startswith("event phase-transition round,phase "):
                phase = int(entry.rsplit(".", 1)[1])
                seen.append(phase)
                assert timer_set == (timers[phase] is not None), f"seat {seat}, phase {phase}"
                timer_set = False
        assert seen == [p.number for p in PHASES[game_type]][1:], f"seat {seat}"


def test_generated_signals_have_the_servers_scale() -> None:
    """With `signal.generate` the real server draws S[c] = round(V[c] x U(low, high) x tax_rate_final/100 / 100),
    V[c] the sum of the lots' values: every signal it sent lies within the bounds of that formula, and so does
    every draw of round_signals."""
    recorded = json.loads((FIXTURES / "market_generated_signals.json").read_text())
    params = parse_parameters(recorded["parameters"]).values
    assert params["generate_signals"] is True
    layout = seat_layout()
    values = round_values(SESSIONS, params, recorded["round"], layout)
    sums = [sum(v[c] for v in values.values()) for c in (0, 1)]
    rate = params["tax_rate_final"] / 100
    bounds = [(js_round(sums[c] * params["signal_low"] * rate / 100),
               js_round(sums[c] * params["signal_high"] * rate / 100)) for c in (0, 1)]
    for seat, told in recorded["value-signals"].items():
        for c in (0, 1):
            assert bounds[c][0] <= told["signals"][c] <= bounds[c][1], f"seat {seat} condition {c}"
        assert told["signals"][2] == 0
    assert len({tuple(t["signals"]) for t in recorded["value-signals"].values()}) == 12  # drawn per player
    for seed in range(20):
        drawn = round_signals(SESSIONS, params, recorded["round"], layout, values, random.Random(seed))
        for s in drawn.values():
            assert all(bounds[c][0] <= s[c] <= bounds[c][1] for c in (0, 1)) and s[2] == 0


def test_a_sessions_table_without_the_round_or_the_signals_is_named_in_the_error() -> None:
    params = dict(parse_parameters(RECORDED["harberger-12"]["parameters"]).values)
    layout = seat_layout()
    with pytest.raises(ValueError, match="no round 3"):
        round_values(SESSIONS, params, 3, layout)  # the fixture keeps rounds 0..2
    with pytest.raises(ValueError, match="no session with id 99"):
        round_values(SESSIONS, {**params, "session_number": 99}, 0, layout)
    values_only = [{"id": 1, "rounds": [{"values": SESSIONS[0]["rounds"][0]["values"]}]}]  # the voting sample's shape
    values = round_values(values_only, params, 0, layout)
    with pytest.raises(ValueError, match=r"session 1 round 0 signals\[0\] has no owner\[0\]"):
        round_signals(values_only, params, 0, layout, values)
