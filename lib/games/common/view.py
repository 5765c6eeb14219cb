"""The events every IBEX game's view folds alike: they touch only the seat's own record (reward, game-over, the
ready acknowledgement, an action-required), whatever else the game's view holds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any


def _on_reward(view: Any, data: dict[str, Any]) -> None:
    view.reward = data


def _on_game_over(view: Any, data: dict[str, Any]) -> None:
    view.game_over = True


def _on_ready(view: Any, data: dict[str, Any]) -> None:
    view.ready_acked = True


def _on_action_required(view: Any, data: dict[str, Any]) -> None:
    view.server_action = data


# eventType -> handler(view, data), for a view with `reward`, `game_over`, `ready_acked` and `server_action`.
SEAT_EVENT_HANDLERS: Mapping[str, Callable[[Any, dict[str, Any]], None]] = MappingProxyType({
    "reward": _on_reward,
    "game-over": _on_game_over,
    "ready-received": _on_ready,
    "action-required": _on_action_required,
})
