"""Harberger and futarchy outcome rows (per-game knowledge; to move into the market games' folders).

From a recorded log's `server-log` (what the server sent; lib.games.market.rules holds its rules):
- outcome: the winning condition of `final-price` (Harberger: from the declarations; futarchy: the markets);
- values: the sessions table's when given and the round's `round-summary` values agree with it, else each
  landholder's v of `assign-role` in rounds where every landholder's `round-summary` confirms them (the server
  wrote events by reference, lib.games.market.examples);
- declaration shading: the published first declaration (`declarations-published`) over the true value, per
  condition; a round's mean is taken under the outcome over the landholders;
- snipes: the second snipes that pay (`round-summary` of each speculator); trades: `contract-fulfilled`;
- final price against the fundamental value: the share price the server paid (`final-price`) and the price the
  true values would give (sum of values under the outcome x tax_rate_final / 100 / 100 shares, lib.games.market.rules
  .final_price with values in place of declarations);
- profit: lib.games.market.rules.round_profit of the seat's `round-summary`.
"""

from __future__ import annotations

from typing import Any

from lib.ibex.params import CONDITIONS, ROLE_NAMES, ROLE_SPECULATOR
from lib.study.outcomes import AMOUNT, RATE, Outcome, OutcomeReport, Relation, surplus_fields

ROUND_COLUMNS = (
    ("mean_declaration_over_value", "REAL"), ("snipes", "INTEGER"), ("trades", "INTEGER"), ("final_price", "REAL"),
    ("fundamental_price", "REAL"), ("price_over_fundamental", "REAL"),
)
SEAT_COLUMNS = (
    ("declaration_0", "REAL"), ("declaration_1", "REAL"), ("declaration_over_value_0", "REAL"),
    ("declaration_over_value_1", "REAL"), ("snipes_made", "INTEGER"), ("times_sniped", "INTEGER"),
    ("trades_bought", "INTEGER"), ("trades_sold", "INTEGER"),
)

REPORT = OutcomeReport(
    reference="the recorded players",  # no human Harberger or futarchy games exist
    outcomes=(
        Outcome("project", "project chosen (winning condition)", "rounds", "outcome", RATE),
        Outcome("efficiency", "efficient outcome reached", "rounds", "efficient", RATE),
        Outcome("declaration_shading", "declaration over true value (under the outcome)", "rounds",
                "mean_declaration_over_value", AMOUNT),
        Outcome("snipes", "snipes per round", "rounds", "snipes", AMOUNT),
        Outcome("trades", "trades per round", "rounds", "trades", AMOUNT),
        Outcome("price_over_fundamental", "final price over the fundamental value", "rounds",
                "price_over_fundamental", AMOUNT),
    ),
    relations=(
        Relation("price_by_fundamental", "final price against the fundamental value", "rounds", "fundamental_price",
                 "final_price", "fundamental price (true values)", "final share price"),
    ),
)


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def tables_from_log(data: dict[str, Any], source: str, sessions: Any = None) -> tuple[list[dict], list[dict]]:
    """(rounds rows, seat_rounds rows) of a decoded Harberger or futarchy log with a server-log; `sessions` is a
    lib.ibex.sessions.SessionsTable or None. Raises ValueError (one line naming `source`) for a log it cannot use."""
    from lib.games.market.examples import _trusted_rounds  # wanted public: the same check the dataset builder trusts
    from lib.games.market.rules import TOTAL_SHARES, round_profit, round_values, seat_layout
    from lib.ibex.params import ParamError, parse_parameters

    try:
        params = dict(parse_parameters(data.get("parameters"), where="parameters").values)
    except ParamError as exc:
        raise ValueError(f"{source}: {exc}") from None
    server_log = data.get("server-log")
    if not isinstance(server_log, list):
        raise ValueError(f"{source}: a market game's log needs its 'server-log' list")
    layout = seat_layout(int(params.get("owners_count", 5)), int(params.get("speculators_count", 6)))
    roles = {s.number: s.role for s in layout}
    trusted = _trusted_rounds(server_log)
    per_round: dict[int, dict[str, Any]] = {}
    for event in server_log:
        sent, meta = event.get("sent") or {}, event.get("meta") or {}
        kind, d, who = sent.get("type"), sent.get("data") or {}, meta.get("recipient")
        r = meta.get("round")
        if not isinstance(r, int):
            continue
        slot = per_round.setdefault(r, {"summaries": {}, "signals": {}, "declarations": {}, "trades": []})
        if kind == "final-price":
            slot["outcome"], slot["price"] = d.get("winningCondition"), _number(d.get("price"))
        elif kind == "round-summary" and isinstance(who, int):
            slot["summaries"][who] = d
        elif kind == "value-signals" and isinstance(who, int):
            slot["signals"][who] = d.get("signals")
        elif kind == "declarations-published" and not slot["declarations"]:
            for item in d.get("declarations") or []:
                if isinstance(item, dict) and isinstance(item.get("number"), int):
                    slot["declarations"][item["number"]] = item.get("d")
        elif kind == "contract-fulfilled" and who == "all":
            slot["trades"].append(d)
    first = 0 if params.get("practice_round") else 1
    rounds, seat_rows = [], []
    table = None if sessions is None else [{"id": k, "rounds": v} for k, v in sessions.sessions.items()]
    for r in sorted(per_round):
        slot = per_round[r]
        if not first <= r <= int(params.get("round_count", 0)) or slot.get("outcome") not in (0, 1):
            continue
        outcome = slot["outcome"]
        values: dict[int, list] = {}
        source_name = "unknown"
        if table is not None:
            try:
                values = {n: v[:2] for n, v in round_values(table, params, r, layout).items()}
                source_name = "sessions"
            except ValueError:
                values = {}
            # as the dataset builder does: a table that disagrees with the round's results is the wrong table
            if any(isinstance(summary := slot["summaries"].get(n), dict) and "value" in summary
                   and summary["value"] != v[outcome] for n, v in values.items()):
                values, source_name = {}, "unknown"
        if not values and r in trusted:
            values, source_name = trusted[r], "server-log"
        row: dict[str, Any] = {"round": r, "practice": int(r == 0), "outcome": outcome,
                               "outcome_name": CONDITIONS[outcome]["name"], "values_source": source_name,
                               "trades": len(slot["trades"]), "final_price": slot.get("price")}
        shading = []
        snipes = 0
        for number, role in roles.items():
            summary = slot["summaries"].get(number) or {}
            signals = slot["signals"].get(number)
            declared = slot["declarations"].get(number)
            s: dict[str, Any] = {"round": r, "seat": number, "role": ROLE_NAMES[role], "policy": None,
                                 "signal_0": _number(signals[0]) if isinstance(signals, list) else None,
                                 "signal_1": _number(signals[1]) if isinstance(signals, list) else None,
                                 "profit": round_profit(summary) if summary else None,
                                 "trades_bought": sum(1 for t in slot["trades"] if t.get("to") == number),
                                 "trades_sold": sum(1 for t in slot["trades"] if t.get("from") == number)}
            mine = summary.get("snipes") if isinstance(summary.get("snipes"), list) else []
            if role == ROLE_SPECULATOR:
                s["snipes_made"] = len(mine)
                snipes += len(mine)
            else:
                s["times_sniped"] = len(mine)
                v = values.get(number)
                if isinstance(declared, list):
                    s["declaration_0"], s["declaration_1"] = _number(declared[0]), _number(declared[1])
                if v is not None:
                    s["value_0"], s["value_1"] = v[0], v[1]
                    for c in (0, 1):
                        if s.get(f"declaration_{c}") is not None and v[c]:
                            s[f"declaration_over_value_{c}"] = s[f"declaration_{c}"] / v[c]
                    if s.get(f"declaration_over_value_{outcome}") is not None:
                        shading.append(s[f"declaration_over_value_{outcome}"])
            seat_rows.append(s)
        row["snipes"] = snipes
        if shading:
            row["mean_declaration_over_value"] = sum(shading) / len(shading)
        landholders = [n for n, role in roles.items() if role != ROLE_SPECULATOR]
        if values and all(n in values for n in landholders):
            surplus = surplus_fields({n: values[n] for n in landholders}, outcome)
            row.update(surplus)
            # developer_share and owners_share stay empty: market profits hold balances, shares and taxes, so a
            # landholder's gain over its no-project value is no part of the surplus as in the voting game.
            fundamental = surplus["total_value"] * float(params.get("tax_rate_final", 33)) / 100 / TOTAL_SHARES
            row["fundamental_price"] = fundamental
            if row["final_price"] is not None and fundamental:
                row["price_over_fundamental"] = row["final_price"] / fundamental
        rounds.append(row)
    return rounds, seat_rows
