"""Small evaluation sets written the way constructDataset.py writes them (prompts from lib.games.voting.prompts,
states from lib.games.voting.sidecar), with decisions chosen so that every score can be worked out by hand (see
HAND_SET's comments and tests/evaluation/test_cli.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lib.dataset.sidecar import header, sidecar_path
from lib.games.contract import wire_json
from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST, build_action_required
from lib.games.voting.prompts import build_messages
from lib.games.voting.rules import seat_role, seat_tag
from lib.games.voting.sidecar import example_state
from lib.games.voting.view import PlayerView
from lib.ibex.params import parameters_from_dict
from tests.helpers.frames import BOUNDARIES, PLAYERS

CAP = parameters_from_dict().amount_cap()
PHASE = {REQUEST: 3, OFFER: 4, DECISION: 6, CHAT: 2}


def view_for(game: int, seat: int, action: str, values: list[int], *, requests: dict[int, int] | None = None,
             offer: int | None = None, round_number: int = 1) -> PlayerView:
    view = PlayerView(game_id=game, number=seat, role=seat_role(seat), tag=seat_tag(seat), round=round_number,
                      phase=PHASE[action], boundaries=BOUNDARIES, players=PLAYERS, round_count=2,
                      practice_round=False)
    rec = view.current
    rec.values, rec.values_source = list(values), "sessions"
    if requests:
        rec.requests = {s: [None, x] for s, x in requests.items()}
    if offer is not None:
        rec.offer = [None, offer]
    return view


def answer(game: int, action: str, value: Any) -> dict[str, Any]:
    if action == REQUEST:
        return {"gameId": game, "type": REQUEST, "compensationRequests": [None, value]}
    if action == OFFER:
        return {"gameId": game, "type": OFFER, "compensationOffers": [None, value]}
    if action == DECISION:
        return {"gameId": game, "type": DECISION, "compensationDecisions": [value]}
    return {"gameId": game, "type": CHAT, "to": [1, 3], "text": value}


# (game, seat, action, [v_noProject, v_project], human answer, extra view fields). Baseline by hand:
#   requests: loss x 1.1 rounded up to 1000; offers: median request, below gain/5, rounded down; votes: margin >= 0.
HAND_SET: list[tuple[int, int, str, list[int], Any, dict[str, Any]]] = [
    (1, 1, REQUEST, [500000, 300000], 250000, {}),   # loss 200k: baseline 220k (-30k)
    (1, 3, REQUEST, [400000, 300000], 100000, {}),   # loss 100k: baseline 110k (+10k)
    (1, 2, OFFER, [300000, 1300000], 150000,          # median 200k, most 199,999: baseline 199k (+49k)
     {"requests": {1: 250000, 3: 100000, 4: 300000, 5: 200000, 6: 150000}}),
    (1, 1, DECISION, [500000, 300000], 0, {"offer": 150000}),  # margin -50k: baseline 0, agrees
    (1, 3, DECISION, [400000, 300000], 1, {"offer": 150000}),  # margin +50k: baseline 1, agrees
    (1, 4, DECISION, [450000, 320000], 0, {"offer": 150000}),  # margin +20k: baseline 1, disagrees
    (1, 5, CHAT, [420000, 310000], "I want at least my loss back.", {}),
    (2, 1, REQUEST, [600000, 200000], 500000, {}),   # loss 400k: baseline 440k (-60k)
    (2, 3, REQUEST, [300000, 250000], 40000, {}),    # loss 50k: baseline 55k (+15k)
    (2, 2, OFFER, [200000, 700000], 90000,            # median 100k, most 99,999: baseline 99k (+9k)
     {"requests": {1: 500000, 3: 40000, 4: 100000, 5: 120000, 6: 80000}}),
    (2, 1, DECISION, [600000, 200000], 0, {"offer": 90000}),   # margin -310k: baseline 0, agrees
    (2, 3, DECISION, [300000, 250000], 1, {"offer": 90000}),   # margin +40k: baseline 1, agrees
    (2, 4, DECISION, [350000, 300000], 1, {"offer": 90000}),   # margin +40k: baseline 1, agrees
]


def write_set(path: Path, rows: list[tuple[int, int, str, list[int], Any, dict[str, Any]]] = HAND_SET) -> Path:
    """The set and its sidecar, as the builder writes them."""
    lines, states = [], []
    for game, seat, action, values, human, extra in rows:
        view = view_for(game, seat, action, values, **extra)
        messages = build_messages(view, build_action_required(view, action, cap=CAP))
        messages.append({"role": "assistant", "content": wire_json(answer(game, action, human))})
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
        states.append(json.dumps(example_state(str(game), seat, action, CAP, view), ensure_ascii=False))
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    body = "".join(line + "\n" for line in states)
    head = json.dumps(header(path.name, len(lines), hashlib.sha256(data).hexdigest(),
                             states_sha256=hashlib.sha256(body.encode("utf-8")).hexdigest()))
    sidecar_path(path).write_text(head + "\n" + body, encoding="utf-8")
    return path
