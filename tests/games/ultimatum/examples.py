"""Training examples from an ultimatum log: one per offer and response a seat made.

The log's `server-log` is replayed seat by seat through the same view the agents fold (view.py); when a decision
becomes due (actions.due) its prompt is built with the functions the agents use at play time (actions.py,
prompts.py), so an example's prompt is the play-time prompt. Its answer is the seat's message the server
acknowledged in that round and phase; a decision the seat never made gives no example.
"""

from __future__ import annotations

from typing import Any

from lib.dataset.examples import GameResult, Sink
from lib.dataset.sidecar import state_line
from lib.ibex.log import IbexLog, LogError, server_frame
from tests.games.ultimatum.actions import action_required, check, due, wire_json
from tests.games.ultimatum.prompts import system_prompt, user_prompt
from tests.games.ultimatum.rules import NAME, ROLE_NAMES, SEATS, pie, seat_role
from tests.games.ultimatum.sidecar import example_state
from tests.games.ultimatum.view import UltimatumView

NOT_MADE = "not made"  # a decision that was due but that the seat never sent (the round went on without it)
REFUSED = "refused"  # what the seat sent, the checks refuse


def game_examples(log: IbexLog, *, sink: Sink | None) -> GameResult:
    if log.server_log is None:
        raise LogError(f"{log.source}: no server-log: an ultimatum log is replayed from its server-log")
    if log.game_id is None:
        raise LogError(f"{log.source}: no gameId in any client message or parameter")
    params, cap = log.params, pie(log.params)
    result = GameResult(log.source, log.game_id, "server-log", NAME, played_by_agents=log.played_by_agents,
                        sink=sink)
    sent: dict[tuple[int, int, int, str], dict[str, Any]] = {}  # (seat, round, phase, type) -> first message
    for entry in log.entries:
        content = entry.get("content")
        if entry.get("type") == "message" and isinstance(content, dict) and isinstance(entry.get("number"), int):
            sent.setdefault((entry["number"], entry["round"], entry["phase"], str(content.get("type"))), content)
    for seat in range(1, SEATS + 1):
        view = UltimatumView(game_id=log.game_id, round_count=params.round_count)
        made: set[tuple[int, int, str]] = set()
        for event in log.server_log:
            if event["meta"]["recipient"] not in ("all", seat):
                continue
            view.apply(server_frame(event))
            action = due(view)
            if action is None or (view.round, view.phase, action) in made:
                continue
            made.add((view.round, view.phase, action))
            message = sent.get((seat, view.round, view.phase, action))
            if message is None:
                result.skip(NOT_MADE, action)
                continue
            try:
                answer = check(message, view, action, cap)
            except ValueError as exc:
                where = f"{log.source}: seat {seat} round {view.round}: {exc}"
                result.skip(REFUSED, action, lambda where=where: where)
                continue
            required = action_required(view, action, cap=cap, timer_seconds=params.timer(view.phase))
            user = user_prompt(view, required)
            state = state_line(example_state(str(log.game_id), seat, action, view))
            result.add(system_prompt(view), user.split("\n"), wire_json(answer), state, seat=seat,
                       role=ROLE_NAMES[seat_role(seat)], action=action, values_source="parameters", user=user)
    return result
