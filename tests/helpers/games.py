"""A game registered by a test: an existing game's parts under a new name, its server rules recording what the
local server asks of them (lib.games.protocols.ServerRules)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from lib.games import game_for, register, unregister
from lib.games.protocols import GameDefinition, ServerRules
from lib.games.voting.rules import GameParams
from lib.ibex.sessions import SessionsTable
from lib.localserver.core import CoreGame


@dataclass
class RecordingServerRules:
    """Another game's server rules, each call recorded; `refuse` replaces what `refusal` answers when set."""

    inner: ServerRules
    refuse: str | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def parameters(self, flat: Mapping[str, Any] | None = None) -> GameParams:
        self.calls.append(("parameters", dict(flat or {})))
        return self.inner.parameters(flat)

    def refusal(self, values: Mapping[str, Any], strict: bool) -> str | None:
        self.calls.append(("refusal", values.get("game_type"), strict))
        return self.refuse if self.refuse is not None else self.inner.refusal(values, strict)

    def new_game(self, game_id: int, params: GameParams, sessions: SessionsTable, **options: Any) -> CoreGame:
        self.calls.append(("new_game", game_id, params.game_type))
        return self.inner.new_game(game_id, params, sessions, **options)

    def idle_phases(self, params: GameParams) -> frozenset[int]:
        return self.inner.idle_phases(params)


@contextmanager
def registered_copy(of: str, name: str) -> Iterator[RecordingServerRules]:
    """Register game `of` again as `name`, with recording server rules; unregistered afterwards."""
    original = game_for(of)
    assert isinstance(original, GameDefinition)
    rules = RecordingServerRules(original.server)
    register(replace(original, name=name, server=rules))
    try:
        yield rules
    finally:
        unregister(name)
