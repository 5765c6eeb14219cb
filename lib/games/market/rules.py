"""Rules of IBEX's two market games, Harberger and futarchy, as the real server plays them (pure functions).

Both games share seats, values, declarations, snipes, the market (lib/games/market/book.py) and the settlement; they
differ in
what decides the outcome: in Harberger the first declarations (phase 3), in futarchy the prices of two conditional
markets (end of phase 6). Every formula here follows the real server's source (IBEX-TUDelft/IBEX-game_server,
master 92735655: `logics/Logic.js`, `logics/harberger/`, `logics/futarchy/`), including the order of its floating
point operations, so that the numbers players see are the same to the last digit.

Server behaviour that players can see and that is reproduced (a researcher comparing runs must meet it here too):
- `assign-role` of a later round still carries the lot's previous `d` (second declarations) and `speculators`;
- a lot sniped twice by one speculator (a repeated `done-speculating`, or a lot listed twice) counts twice in the
  division of the lot's snipe profit; the speculator is paid, and the owner charged, twice in Harberger and in
  futarchy's second settlement, once in futarchy's first (which pays the snipers once each, in seat order);
- declarations are checked only against twice the role's `high`: negative and fractional values are taxed as
  they are; an undeclared lot gets the role's `low` values;
- the informational `profit`, `tax-income` and `total-profit` events are partly wrong: `tax-income` subtracts the
  owner's starting balance from every role's balance, the owner's `profit.total` charges one speculator's share
  only, `total-profit` adds up every profit entry since the game began (all rounds, the practice round included),
  and a futarchy lot sniped only under the losing condition divides by zero (`snipeProfit`/`total` null);
  `round-summary` and `reward` (what pays) are computed from the snipe outcomes, the market wallets and the
  declarations, without those errors.
Not reproduced: string declarations (the real server concatenates them into its sums and public signals) and
fractional `number` parameters (parseInt-ed on the real server; lib.games.voting.rules keeps them as given).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from lib.games.market.book import js_json, js_str
from lib.ibex.params import CONDITIONS, ROLE_DEVELOPER, ROLE_OWNER, ROLE_SPECULATOR

HARBERGER, FUTARCHY = "harberger", "futarchy"
GAME_TYPES = (HARBERGER, FUTARCHY)
ROLE_KEYS = {ROLE_SPECULATOR: "speculator", ROLE_DEVELOPER: "developer", ROLE_OWNER: "owner"}
TOTAL_SHARES = 100  # the final share price divides the tax pot by 100 shares, of which players hold 90
CONDITION_SLOTS = 3  # arrays by condition have a third slot (project B), never used

Out = tuple[int | None, dict]  # (recipient seat, None = every player; event data with its type)


# ----- JavaScript arithmetic the server's numbers depend on


def js_round(x: float) -> float:
    """Math.round: halves go up (Python's round() goes to even)."""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return x
    floor = math.floor(x)
    return floor + 1 if x - floor >= 0.5 else floor


def js_div(a: float, b: float) -> float:
    """a / b with JS semantics for b == 0 (Infinity, -Infinity or NaN instead of an exception)."""
    if b == 0:
        if a == 0 or (isinstance(a, float) and math.isnan(a)):
            return math.nan
        return math.inf if a > 0 else -math.inf
    return a / b


def js_parse_int(text: Any) -> Any:
    """parseInt: the leading integer of the text ('1.05' -> 1), else NaN."""
    digits = ""
    stripped = str(text).strip()
    sign = -1 if stripped.startswith("-") else 1
    for ch in stripped.lstrip("+-"):
        if not ch.isdigit():
            break
        digits += ch
    return sign * int(digits) if digits else math.nan


# ----- seats, phases, wallets


@dataclass(frozen=True)
class Seat:
    number: int
    role: int
    tag: str
    lot: int | None  # the id of the lot this seat owns (owners and the developer)


def seat_layout(owners: int = 5, speculators: int = 6) -> list[Seat]:
    """Seats in join order (gameService.js): Owner 1, the developer, the other owners, then the speculators.
    Lot ids go to landholders in seat order, so a lot's id is its owner's seat number."""
    roles = [ROLE_OWNER, ROLE_DEVELOPER] + [ROLE_OWNER] * (owners - 1) + [ROLE_SPECULATOR] * speculators
    owner_count = roles.count(ROLE_OWNER)
    seats, lots = [], 0
    for number, role in enumerate(roles, start=1):
        if role == ROLE_SPECULATOR:
            tag = f"Speculator {number - owner_count - 1}"
        elif role == ROLE_DEVELOPER:
            tag = "Developer"
        else:
            tag = "Owner 1" if number == 1 else f"Owner {number - 1}"
        lot = None
        if role != ROLE_SPECULATOR:
            lots += 1
            lot = lots
        seats.append(Seat(number, role, tag, lot))
    return seats


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    actors: tuple[int, ...]  # roles whose message the phase takes; () = nobody's; all roles = anyone
    message: str | None  # the client message type the phase handles
    ends_early: str  # what ends it before its timer


_ANYONE = (ROLE_SPECULATOR, ROLE_DEVELOPER, ROLE_OWNER)
_LANDHOLDERS = (ROLE_DEVELOPER, ROLE_OWNER)
_HARBERGER_PHASES = (
    Phase(0, "ready", _ANYONE, "player-is-ready", "all players joined and ready (no timer)"),
    Phase(1, "presentation", (), None, "timer only"),
    Phase(2, "first declaration", _LANDHOLDERS, "declare", "every lot declared"),
    Phase(3, "first speculation", (ROLE_SPECULATOR,), "done-speculating", "every speculator sent done-speculating"),
    Phase(4, "reconciliation", (), None, "timer only"),
    Phase(5, "transition", _ANYONE, "complete-current-phase", "complete-current-phase from anyone"),
    Phase(6, "market (winning condition)", _ANYONE, "post-order", "timer only"),
    Phase(7, "second declaration", _LANDHOLDERS, "declare", "every lot declared"),
    Phase(8, "second speculation", (ROLE_SPECULATOR,), "done-speculating", "every speculator sent done-speculating"),
    Phase(9, "results", (), None, "timer only"),
)
_FUTARCHY_PHASES = _HARBERGER_PHASES[:3] + (
    Phase(3, "speculation under both conditions", (ROLE_SPECULATOR,), "done-speculating",
          "every speculator sent done-speculating, or minutes_for_sniping elapsed when a message arrives"),
    Phase(4, "wait", (), None, "timer only"),
    Phase(5, "signals", _ANYONE, "complete-current-phase", "complete-current-phase from anyone"),
    Phase(6, "two markets, conditions 0 and 1; decides the winning condition", _ANYONE, "post-order", "timer only"),
) + _HARBERGER_PHASES[7:]
PHASES = {HARBERGER: _HARBERGER_PHASES, FUTARCHY: _FUTARCHY_PHASES}


def phase_timers(params: dict[str, Any]) -> list[int | None]:
    """Seconds of each phase's timer (`timer_phase_N`); None where the server sets none (JoinablePhase.js: only a
    positive number counts), so that phase waits for its early end, or forever."""
    timers: list[int | None] = []
    for number in range(len(_HARBERGER_PHASES)):
        value = params.get(f"timer_phase_{number}")
        ok = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value) and value > 0
        timers.append(value if ok else None)
    return timers


def starting_wallets(role: int, params: dict[str, Any]) -> list[dict[str, Any]]:
    """One wallet per condition slot, reset at every round's start (Logic.js refreshWallet); everyone's
    `cashForSniping` is `cash_for_snipers` (gameManager.js), although nothing spends it."""
    key = ROLE_KEYS[role]
    wallet = {"balance": params[f"{key}_balance"], "shares": params[f"{key}_shares"],
              "cashForSniping": params.get("cash_for_snipers")}
    return [dict(wallet) for _ in range(CONDITION_SLOTS)]


# ----- private values and signals (sessions.json)


def _session_round(sessions: list[dict], session_number: int, round_number: int) -> dict:
    session = next((s for s in sessions if isinstance(s, dict) and s.get("id") == session_number), None)
    if session is None:
        raise ValueError(f"sessions table: no session with id {session_number}")
    rounds = session.get("rounds")
    if not isinstance(rounds, list) or not 0 <= round_number < len(rounds):
        raise ValueError(f"sessions table: session {session_number} has no round {round_number}")
    return rounds[round_number]


def _series(entry: Any, where: str, role: int, k: int) -> Any:
    """The developer's number or the k-th owner's / speculator's from one condition's entry of the table."""
    field = ROLE_KEYS[role]
    value = entry.get(field) if isinstance(entry, dict) else None
    if role != ROLE_DEVELOPER:
        value = value[k] if isinstance(value, list) and k < len(value) else None
    if value is None:
        raise ValueError(f"sessions table: {where} has no {field}" + ("" if role == ROLE_DEVELOPER else f"[{k}]"))
    return value


def round_values(sessions: list[dict], params: dict[str, Any], round_number: int,
                 seats: list[Seat]) -> dict[int, list]:
    """Each landholder's `v` for a round: v[c] = table value x 1000 for conditions 0 and 1 (the k-th owner seat takes
    the k-th owner entry), v[2] = the role's project-B `fixed` (or its draw; meaningless either way)."""
    values = _session_round(sessions, params["session_number"], round_number).get("values")
    out: dict[int, list] = {}
    owner_k = 0
    for seat in seats:
        if seat.role == ROLE_SPECULATOR:
            continue
        k = owner_k if seat.role == ROLE_OWNER else 0
        v = []
        for c in range(len(CONDITIONS)):
            entry = values[c] if isinstance(values, list) and c < len(values) else None
            where = f"session {params['session_number']} round {round_number} values[{c}]"
            v.append(js_parse_int(_series(entry, where, seat.role, k)) * 1000)
        key = ROLE_KEYS[seat.role]
        v.append(params.get(f"{key}_project_b_fixed"))
        out[seat.number] = v
        if seat.role == ROLE_OWNER:
            owner_k += 1
    return out


def round_signals(sessions: list[dict], params: dict[str, Any], round_number: int, seats: list[Seat],
                  values: dict[int, list], rng: random.Random | None = None) -> dict[int, list]:
    """Each player's private signals S = [S0, S1, 0] for a round: from the table's `signals` (developer, k-th owner,
    k-th speculator), or, with `generate_signals`, round(sum of lot values[c] x U(signal_low, signal_high) x
    tax_rate_final/100 / 100) per player and condition, drawn in seat order (Logic.js beginRound)."""
    out: dict[int, list] = {}
    if params.get("generate_signals") is True:
        rng = rng or random.Random()
        sums = [0, 0]
        for v in values.values():
            for j in range(2):
                sums[j] += v[j]
        for seat in seats:
            s = [0, 0, 0]
            for j in range(2):
                coefficient = params["signal_low"] + (params["signal_high"] - params["signal_low"]) * rng.random()
                s[j] = js_round(sums[j] * coefficient * (params["tax_rate_final"] / 100) / 100)
            out[seat.number] = s
        return out
    signals = _session_round(sessions, params["session_number"], round_number).get("signals")
    counters = {ROLE_OWNER: 0, ROLE_SPECULATOR: 0, ROLE_DEVELOPER: 0}
    for seat in seats:
        k = counters[seat.role]
        s = [0, 0, 0]
        for c in range(len(CONDITIONS)):
            entry = signals[c] if isinstance(signals, list) and c < len(signals) else None
            where = f"session {params['session_number']} round {round_number} signals[{c}]"
            s[c] = js_parse_int(_series(entry, where, seat.role, k))
        out[seat.number] = s
        counters[seat.role] += 1
    return out


def boundaries(params: dict[str, Any]) -> dict:
    """The public value ranges of `assign-role` (harberger/phases/1.js)."""
    def bounds(key: str, parameter: str) -> dict:
        return {"low": params[f"{key}_{parameter}_low"], "high": params[f"{key}_{parameter}_high"]}

    return {key: {c["key"]: bounds(key, c["parameter"]) for c in CONDITIONS} for key in ("developer", "owner")}


def assign_role(seat: Seat, params: dict[str, Any], wallets: list[dict], lot: dict | None) -> dict:
    """The `assign-role` data a seat gets in phase 1. `lot` is the lot as the server holds it: {id, owner, name, v}
    and, from the second round on, the previous round's `d` and `speculators`, which the server sends along."""
    data: dict[str, Any] = {"role": seat.role, "wallet": wallets}
    if lot is not None:
        data["property"] = lot
    data.update({"boundaries": boundaries(params), "taxRate": params["tax_rate_initial"],
                 "initialTaxRate": params["tax_rate_initial"], "finalTaxRate": params["tax_rate_final"],
                 "conditions": [dict(c) for c in CONDITIONS]})
    return js_json(data)


# ----- declarations


def declaration_above_max(role: int, declaration: Any, params: dict[str, Any]) -> dict | None:
    """The `declaration-above-max` data if a value exceeds twice the role's `high` for its condition (checked in
    condition order, the first one reported), else None. Nothing else is checked (negative, fractional values pass)."""
    for i, condition in enumerate(CONDITIONS):
        maximum = params[f"{ROLE_KEYS[role]}_{condition['parameter']}_high"] * 2
        d = declaration[i] if isinstance(declaration, list) and i < len(declaration) else None
        if _js_number(d) > maximum:
            return {"condition": condition["name"], "maximum": maximum}
    return None


def _js_number(value: Any) -> float:
    """How JS's `>` sees a value compared with a number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return value
    if value is None:
        return 0
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        try:
            return float(text)
        except ValueError:
            return math.nan
    return math.nan


def default_declaration(role: int, params: dict[str, Any]) -> list:
    """What a lot that was not declared in time gets: the role's `low` under each condition (2.js, 7.js onExit)."""
    return [params[f"{ROLE_KEYS[role]}_{c['parameter']}_low"] for c in CONDITIONS]


def declarations_published(game_type: str, phase: int, lots: list[dict], winning: int | None) -> dict:
    """The `declarations-published` data of phase 3 (first declarations) or 8 (second ones). `lots` are
    {id, name, owner (the owner's player name), role, number, d} in lot order. In phase 3 every condition is
    available and futarchy does not know the winner yet; in phase 8 only the winning condition is available."""
    declarations = []
    for lot in lots:
        available = [True] * CONDITION_SLOTS if phase == 3 else [c == winning for c in range(CONDITION_SLOTS)]
        declarations.append({**lot, "available": available})
    data: dict[str, Any] = {"declarations": declarations}
    if not (game_type == FUTARCHY and phase == 3):
        data["winningCondition"] = winning
    return data


def declared_sums(declarations: list[list]) -> list:
    """D[c]: the sum of the lots' declarations under each condition, in lot order."""
    sums = [0, 0, 0]
    for d in declarations:
        for j in range(len(CONDITIONS)):
            sums[j] += d[j]
    return sums


def harberger_winner(sums: list) -> int:
    """Harberger's winning condition (harberger/phases/3.js): the highest D; a tie goes to Project."""
    winning, best = 0, sums[0]
    for j in range(1, len(CONDITIONS)):
        if sums[j] > best or (winning == 0 and sums[j] == best):
            winning, best = j, sums[j]
    return winning


def public_signals(sums: list, tax_rate_final: int, winning: int | None = None) -> list:
    """publicSignal[c] = D[c] x (tax_rate_final/100) / 100, for the winning condition only (Harberger) or every
    condition (futarchy, winning=None)."""
    out = [0, 0, 0]
    for c in range(len(CONDITIONS)):
        if winning is None or c == winning:
            out[c] = sums[c] * (tax_rate_final / 100) / 100
    return out


def futarchy_winner(medians: list) -> int:
    """Futarchy's winning condition (futarchy/phases/6.js): the highest median of the last seven prices; a
    condition without trades is skipped, a tie keeps the earlier condition, no trades at all -> Project."""
    winning, best = 1, 0
    for condition, median in enumerate(medians):
        if median is None:
            continue
        if median > best:
            winning, best = condition, median
    return winning


def final_price(second_sums: list, winning: int, tax_rate_final: int) -> tuple[float, float]:
    """(tax pot, final share price): D2[w] x tax_rate_final / 100, divided by 100 shares (harberger/phases/8.js)."""
    tax_pot = second_sums[winning] * tax_rate_final / 100
    return tax_pot, tax_pot / TOTAL_SHARES


# ----- snipes and their reconciliation


def add_snipes(snipers: dict[int, list[list[int]]], seat: int, snipe: Any, conditions: list[int], game_id: Any,
               required: tuple[int, ...] = ()) -> tuple[list[str], bool]:
    """Record one `done-speculating`: under each listed condition, every lot id in `snipe[c]` gets the seat added
    (again, if it is already there: a second message adds up). Returns (the error texts the server sends for
    unknown lot ids, whether it answers at all).

    Not answered (no `speculation-received`, the speculator not marked done, lots added before stay added) where
    the server throws: `snipe` is not a list (lib/localserver_market first reads a number, boolean, object or string
    as JavaScript indexes it), or a list in `required` is missing (futarchy phase 3 reads the length
    of both lists, Harberger phase 8 that of the winning one; Harberger phase 3 reads neither)."""
    errors: list[str] = []
    if not isinstance(snipe, list):
        return errors, False
    for c in conditions:
        lots = snipe[c] if c < len(snipe) else None
        if lots is None and c in required:
            return errors, False
        if not isinstance(lots, list):
            continue
        for lot_id in lots:
            if isinstance(lot_id, bool) or not isinstance(lot_id, int | float) or lot_id not in snipers:
                errors.append(f"Game {js_str(game_id)}: lot {js_str(lot_id)}}} not found")  # sic
                continue
            snipers[int(lot_id)][c].append(seat)
    return errors, True


def speculation_conditions(game_type: str, phase: int, winning: int | None) -> tuple[list[int], tuple[int, ...]]:
    """(conditions whose snipes count, conditions whose list must be present) for a speculation phase."""
    if game_type == FUTARCHY and phase == 3:
        return [0, 1], (0, 1)
    return [winning], ((winning,) if phase == 8 else ())


@dataclass
class Lot:
    id: int
    owner: int  # seat
    role: int  # the owner's role
    v: list
    d: list


def reconcile(lots: list[Lot], snipers: dict[int, list[list[int]]], winning: int, tax_rate: int, round_number: int,
              phase: int, roles: dict[int, int], any_condition: bool = False) -> tuple[list[Out], list[dict]]:
    """Settle one speculation round: per lot, each sniper of the lot under the winning condition gets
    (v - d) / (2 x number of snipes on the lot), the owner is billed. Returns the `profit` events (speculators'
    first, then the owner's, lot by lot) and the snipe outcomes (for `first-snipes`/`second-snipes` and summaries).

    `phase` is the number the owner's bill carries (4 for the first settlement, 9 for the second).
    `any_condition` is futarchy's first settlement (futarchy/phases/6.js), which counts a lot as sniped if it was
    sniped under any condition, so a lot sniped only under the losing one divides by zero (the server's bug, kept:
    players see it), and pays the snipers in seat order, once each, even one that sniped the lot twice (whose
    second snipe still halves the others' share, and is billed to the owner)."""
    outs: list[Out] = []
    outcomes: list[dict] = []
    for lot in lots:
        bill = {"round": round_number, "phase": phase, "property": lot.id, "condition": winning,
                "value": lot.v[winning], "declaration": lot.d[winning], "sniped": False, "speculator": None,
                "snipeProfit": 0, "taxes": lot.d[winning] * tax_rate / 100}
        lists = snipers.get(lot.id, [[], [], []])
        sniped = any(lists) if any_condition else len(lists[winning]) > 0
        if sniped:
            bidders = lists[winning]
            share = js_div(lot.v[winning] - lot.d[winning], 2 * len(bidders))
            bill.update(sniped=True, speculator=list(bidders), snipeProfit=share)
            # Harberger pays each snipe in the order sent; futarchy's first settlement walks the players in seat
            # order and pays each sniper once, although a repeated snipe still divides the share
            paid = bidders if not any_condition else [n for n in sorted(roles) if n in bidders]
            for speculator in paid:
                outcomes.append({"player": {"number": speculator, "role": roles[speculator]},
                                 "target": {"number": lot.owner, "role": lot.role}, "profit": share})
                outs.append((speculator, {"eventType": "profit", "data": {
                    "round": round_number, "owner": lot.owner, "sniped": True, "snipeProfit": share,
                    "condition": winning, "declaration": lot.d[winning]}}))
        bill.update(owner=lot.owner, role=lot.role, total=bill["value"] - bill["taxes"] - bill["snipeProfit"])
        outs.append((lot.owner, {"eventType": "profit", "data": bill}))
    return outs, outcomes


def snipes_seen_by(outcomes: list[dict], seat: int) -> list[dict]:
    """The outcomes a seat is told about in `first-snipes`/`second-snipes`: those it made or suffered."""
    return [o for o in outcomes if o["player"]["number"] == seat or o["target"]["number"] == seat]


def tax_income(tax_pot: float, wallet: dict, params: dict[str, Any]) -> float:
    """The `tax-income` amount (8.js): round(pot x shares / 100 + balance - owner_balance). The owner's starting
    balance is subtracted for every role: informational only, and wrong for the developer and speculators."""
    return js_round(tax_pot * wallet["shares"] / TOTAL_SHARES + wallet["balance"] - params["owner_balance"])


def tax_bill(round_number: int, winning: int, seat: Seat, amount: float) -> dict:
    """The `profit` event that follows `tax-income` (speculators get the amount as `snipeProfit`, `total` 0)."""
    speculator = seat.role == ROLE_SPECULATOR
    return {"round": round_number, "phase": 9, "condition": winning, "owner": seat.number, "role": seat.role,
            "taxes": 0, "snipeProfit": amount if speculator else 0, "total": 0 if speculator else amount}


def profit_entries(kind: str, data: dict) -> list[float]:
    """What an event adds to a player's profit list, which `total-profit` sums: a snipe's share for a speculator,
    a lot's bill total for its owner, the tax income for everyone (the tax bill that follows it adds nothing)."""
    if kind == "tax-income":
        return [data["amount"]]
    if kind != "profit":
        return []
    if "property" in data:
        return [data["total"]]
    if "phase" not in data:
        return [data["snipeProfit"]]
    return []


def total_profit(amounts: list[float]) -> float:
    """`total-profit`: the sum of every profit entry a player has had since the game began (never reset)."""
    total = 0
    for amount in amounts:
        total += amount
    return total


# ----- the round's summary, profit and the reward


def round_summary(seat: Seat, round_number: int, winning: int, params: dict[str, Any], *, value: Any = None,
                  first_declaration: Any = None, second_declaration: Any = None, first_outcomes: list[dict],
                  second_outcomes: list[dict], wallet: dict, price: float) -> dict:
    """The `round-summary` a seat gets at the end of a round (Harberger.js/Futarchy.js getSummary), keys in the
    server's order; `wallet` is the seat's wallet under the winning condition when the market closed."""
    summary: dict[str, Any] = {"round": round_number, "condition": winning}
    landholder = seat.role != ROLE_SPECULATOR
    if landholder:
        summary["value"] = value
        summary["firstDeclaration"] = first_declaration
        summary["firstTaxes"] = first_declaration * params["tax_rate_initial"] / 100
    summary["firstRepurchase"] = _repurchase(first_outcomes, seat)
    summary["snipes"] = _mine(first_outcomes, seat)
    summary["market"] = {"balance": wallet["balance"], "shares": wallet["shares"]}
    if landholder:
        summary["secondDeclaration"] = second_declaration
        summary["secondTaxes"] = second_declaration * params["tax_rate_final"] / 100
    summary["secondRepurchase"] = _repurchase(second_outcomes, seat)
    summary["snipes"] = _mine(second_outcomes, seat)
    summary["market"]["price"] = price
    return summary


def _mine(outcomes: list[dict], seat: Seat) -> list[dict]:
    key = "player" if seat.role == ROLE_SPECULATOR else "target"
    return [o for o in outcomes if o[key]["number"] == seat.number]


def _repurchase(outcomes: list[dict], seat: Seat) -> float:
    """A speculator's snipe gains, or minus an owner's snipe losses, summed in the server's order."""
    total = 0
    for o in _mine(outcomes, seat):
        total = total + o["profit"] if seat.role == ROLE_SPECULATOR else total - o["profit"]
    return total


def round_profit(summary: dict) -> float:
    """A round's profit from its summary (getProfit): v - taxes + repurchases + balance + shares x final price."""
    total = 0
    for key, sign in (("value", 1), ("firstTaxes", -1), ("secondTaxes", -1), ("firstRepurchase", 1),
                      ("secondRepurchase", 1)):
        if summary.get(key) is not None:
            total = total + summary[key] if sign > 0 else total - summary[key]
    market = summary.get("market") or {}
    if market.get("balance") is not None:
        total += market["balance"]
    if market.get("shares") is not None and market.get("price") is not None:
        total += market["shares"] * market["price"]
    return total


def reward(seat: Seat, paid_round: int, profit: float, params: dict[str, Any], payment_token: str) -> dict:
    """The `reward` event (Logic.js): points = base points + the paid round's profit, converted by the role's
    factor, plus the show-up fee."""
    key = ROLE_KEYS[seat.role] + "s"
    factor, base = params[f"{key}_reward_scale_factor"], params[f"{key}_base_points"]
    points = base + profit
    fee = js_round(points * 100 / factor) / 100
    return {"number": seat.number, "round": paid_round, "reward": fee + params["show_up_fee"], "basePoints": base,
            "showupFee": params["show_up_fee"], "gameFee": fee, "profit": profit, "points": points,
            "factor": factor, "exchange": js_round(1000000 / factor) / 1000000, "paymentToken": payment_token}
