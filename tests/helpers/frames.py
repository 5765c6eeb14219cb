"""Server frames in the real server's shapes, for tests of the player view, actions and prompts.

Shapes follow the frames this project's team recorded from the real IBEX server (game 5, 2025-11); values are
made up here.
"""

from __future__ import annotations

from typing import Any

BOUNDARIES = {
    "developer": {"noProject": {"low": 200000, "high": 500000}, "projectA": {"low": 500000, "high": 2750000}},
    "owner": {"noProject": {"low": 350000, "high": 600000}, "projectA": {"low": 150000, "high": 350000}},
}
PLAYERS = [
    {"number": 1, "role": 3, "tag": "Owner 1"},
    {"number": 2, "role": 2, "tag": "Developer"},
    {"number": 3, "role": 3, "tag": "Owner 2"},
    {"number": 4, "role": 3, "tag": "Owner 3"},
    {"number": 5, "role": 3, "tag": "Owner 4"},
    {"number": 6, "role": 3, "tag": "Owner 5"},
]


def event(kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "event", "eventType": kind, "data": data if data is not None else {}}


def round_start(round_number: int, seat: int, values: list[int], end_ms: int) -> list[dict[str, Any]]:
    """What a seat receives when a round leaves phase 0: no reset-timer, then set-timer, assign-role, players-known,
    phase-transition and the notice."""
    role = 2 if seat == 2 else 3
    tag = next(p["tag"] for p in PLAYERS if p["number"] == seat)
    return [
        event("set-timer", {"end": end_ms}),
        event("assign-role", {
            "role": role, "property": {"id": seat, "owner": seat, "name": "Test Lot", "v": [*values, 150000]},
            "boundaries": BOUNDARIES, "id": seat - 1, "number": seat, "tag": tag,
            "conditions": [{"name": "No Project", "id": 0, "parameter": "no_project", "key": "noProject"},
                           {"name": "Project", "id": 1, "parameter": "project_a", "key": "projectA"}],
        }),
        event("players-known", {"players": PLAYERS}),
        event("phase-transition", {"round": round_number, "phase": 1}),
        {"type": "notice", "message": "Phase 1 has begun."},
    ]


def phase_start(round_number: int, phase: int, end_ms: int, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        event("reset-timer"),
        event("set-timer", {"end": end_ms}),
        *extra,
        event("phase-transition", {"round": round_number, "phase": phase}),
        {"type": "notice", "message": f"Phase {phase} has begun."},
    ]
