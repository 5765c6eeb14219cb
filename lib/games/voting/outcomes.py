"""The voting game's outcome rows (per-game knowledge; to move into the voting game's folder).

From a recorded log (lib.ibex.log, the reader constructDataset.py uses): what each seat did in each round (the
compensation request of phase 3, the developer's offer of phase 4, the vote of phase 6, each the last one the
server accepted in its phase), the private values (lib.games.voting.examples.values_plan: a sessions table when
given, else server-log values that every final-profit confirms), and from them, by the server's rules
(lib.games.voting.rules: winner, offer_for, profit), the outcome, whether it is the efficient one, the surplus and
its division.

- loss of an owner: its value without the project minus its value with it; requests over loss = the request
  under the project / that loss (owners who lose nothing have none);
- break-even offer: the largest offer per owner at which the project still pays the developer, (v1 - v0) / owners;
  offer over break-even = the offer under the project / that.
"""

from __future__ import annotations

from typing import Any

from lib.games.voting.rules import DEVELOPER_SEAT, OWNER_SEATS, compensation, offer_for, seat_role, winner
from lib.ibex.params import CONDITIONS, PROJECT, ROLE_DEVELOPER, ROLE_NAMES, ROLE_OWNER
from lib.study.outcomes import RATE, Outcome, OutcomeReport, Relation, shares, surplus_fields

ROUND_COLUMNS = (
    ("approved", "INTEGER"), ("votes_for_project", "INTEGER"), ("offer_1", "REAL"), ("break_even_offer", "REAL"),
    ("offer_over_break_even", "REAL"), ("mean_request_over_loss", "REAL"), ("requests_made", "INTEGER"),
)
SEAT_COLUMNS = (
    ("request_0", "REAL"), ("request_1", "REAL"), ("loss", "REAL"), ("request_over_loss", "REAL"),
    ("offer_made_0", "REAL"), ("offer_made_1", "REAL"), ("offer_received_0", "REAL"), ("offer_received_1", "REAL"),
    ("vote_project", "INTEGER"),
)
REPORT = OutcomeReport(
    reference="the humans",
    outcomes=(
        Outcome("approval", "approval rate (project built)", "rounds", "approved", RATE),
        Outcome("efficiency", "efficient outcome reached", "rounds", "efficient", RATE),
        Outcome("developer_share", "developer's share of the surplus", "rounds", "developer_share"),
        Outcome("request_over_loss", "requests over loss (per owner)", "seat_rounds", "request_over_loss",
                role=ROLE_NAMES[ROLE_OWNER]),
        Outcome("offer_over_break_even", "offer over break-even", "rounds", "offer_over_break_even"),
    ),
    relations=(
        Relation("approval_by_margin", "approval against the margin", "rounds", "project_margin", "approved",
                 "project margin (landholders' values with minus without the project)", "approved (1) or not (0)"),
        Relation("request_by_loss", "requests against the loss", "seat_rounds", "loss", "request_1",
                 "owner's loss under the project", "request under the project", role=ROLE_NAMES[ROLE_OWNER]),
    ),
)
REQUEST, OFFER, DECISION = "compensation-request", "compensation-offer", "compensation-decision"
_ACTION_PHASE = {REQUEST: 3, OFFER: 4, DECISION: 6}
SEATS = (1, 2, 3, 4, 5, 6)
THE_OFFER = 0  # the key of the offer the server kept in _actions' OFFER entry


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _amount(amounts: Any, condition: int) -> float | None:
    return _number(amounts[condition]) if isinstance(amounts, list) and condition < len(amounts) else None


def _actions(entries: list[dict[str, Any]]) -> dict[tuple[int, str], dict[int, Any]]:
    """(round, action) -> seat -> the last content the server accepted (a message of its phase)."""
    out: dict[tuple[int, str], dict[int, Any]] = {}
    for entry in entries:
        if entry.get("type") != "message":
            continue
        content, seat = entry.get("content") or {}, entry.get("number")
        kind = content.get("type")
        if kind not in _ACTION_PHASE or not isinstance(seat, int) or entry.get("phase") != _ACTION_PHASE[kind]:
            continue
        field = {REQUEST: "compensationRequests", OFFER: "compensationOffers",
                 DECISION: "compensationDecisions"}[kind]
        # The server keeps the phase's last offer whoever sent it (so does lib.games.voting.examples' reconstruction).
        out.setdefault((entry["round"], kind), {})[THE_OFFER if kind == OFFER else seat] = content.get(field)
    return out


def round_rows(round_number: int, practice: bool, values: dict[int, list[int]], values_source: str,
               requests: dict[int, Any], offer: Any, decisions: dict[int, Any],
               policies: dict[int, str] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One round's `rounds` row and its `seat_rounds` rows, from what was played (as the server stored it) and the
    seats' values ({} when unknown: the value columns stay empty)."""
    owners = [s for s in SEATS if seat_role(s) == ROLE_OWNER]
    condition, _tally = winner(decisions.get(s) or [] for s in owners)
    paid = offer_for(offer, condition)
    known = len(values) == len(SEATS)
    row: dict[str, Any] = {"round": round_number, "practice": int(practice), "outcome": condition,
                           "outcome_name": CONDITIONS[condition]["name"], "approved": int(condition == PROJECT),
                           "values_source": values_source,
                           "votes_for_project": sum(1 for s in owners if PROJECT in (decisions.get(s) or [])),
                           "offer_1": _amount(offer, PROJECT)}
    seats = []
    gains: dict[int, float] = {}
    ratios = []
    for seat in SEATS:
        role = seat_role(seat)
        v = values.get(seat)
        request = requests.get(seat) if role == ROLE_OWNER else None
        r: dict[str, Any] = {"round": round_number, "seat": seat, "role": ROLE_NAMES[role],
                             "policy": (policies or {}).get(seat), "value_0": None, "value_1": None,
                             "request_0": _amount(request, 0), "request_1": _amount(request, PROJECT)}
        if role == ROLE_DEVELOPER:
            r.update(offer_made_0=_amount(offer, 0), offer_made_1=_amount(offer, PROJECT))
        else:
            r.update(offer_received_0=float(offer_for(offer, 0)), offer_received_1=float(offer_for(offer, PROJECT)))
            vote = decisions.get(seat)
            r["vote_project"] = int(PROJECT in vote) if isinstance(vote, list) and vote else None
        if v is not None:
            r.update(value_0=v[0], value_1=v[1], profit=v[condition] + compensation(role, paid, len(owners)))
            gains[seat] = r["profit"] - v[0]
            if role == ROLE_OWNER:
                r["loss"] = v[0] - v[1]
                if r["loss"] > 0 and r["request_1"] is not None:
                    r["request_over_loss"] = r["request_1"] / r["loss"]
                    ratios.append(r["request_over_loss"])
        seats.append(r)
    row["requests_made"] = sum(1 for r in seats if r.get("request_1") is not None)
    if known:
        surplus = surplus_fields(values, condition)
        row.update(surplus)
        row.update(shares(gains, {s: seat_role(s) for s in SEATS}, surplus["total_surplus"]))
        developer = values[DEVELOPER_SEAT]
        break_even = (developer[PROJECT] - developer[0]) / len(OWNER_SEATS)
        row["break_even_offer"] = break_even
        if break_even > 0 and row["offer_1"] is not None:
            row["offer_over_break_even"] = row["offer_1"] / break_even
        if ratios:
            row["mean_request_over_loss"] = sum(ratios) / len(ratios)
    return row, seats


def tables_from_log(data: dict[str, Any], source: str, sessions: Any = None) -> tuple[list[dict], list[dict]]:
    """(rounds rows, seat_rounds rows) of a decoded voting log; `sessions` is a lib.ibex.sessions.SessionsTable or None.
    Raises lib.ibex.log.LogError (one line) for a log the dataset builder could not read either."""
    from lib.dataset.examples import UNKNOWN
    from lib.games.voting.examples import values_plan
    from lib.ibex.log import parse_log

    log = parse_log(data, source)
    plan, _notes = values_plan(log, sessions)
    actions = _actions(log.entries)
    first = 0 if log.params.practice_round else 1
    rounds, seat_rows = [], []
    for r in sorted(plan):
        if not first <= r <= log.params.round_count:
            continue
        where, values = plan[r]
        row, seats = round_rows(r, r == 0, values if where != UNKNOWN else {}, where,
                                actions.get((r, REQUEST), {}), actions.get((r, OFFER), {}).get(THE_OFFER),
                                actions.get((r, DECISION), {}))
        rounds.append(row)
        seat_rows.extend(seats)
    return rounds, seat_rows
