"""Every registered game's server rules (lib.games.protocols.ServerRules, lib/games/<game>/serverrules.py): what the
local server needs to play it, the same checks for each game."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lib.games import GAMES, game_for
from lib.ibex.params import ParamError
from lib.ibex.sessions import load_sessions
from lib.localserver.core import CoreGame
from lib.localserver.server import DEFAULT_SESSIONS


@pytest.mark.parametrize("name", list(GAMES))
def test_every_game_s_server_rules_start_its_game_on_the_core_with_its_parameters(name: str) -> None:
    game = game_for(name)
    params = game.server.parameters(game.rules.local_parameters(rounds=2, practice=False, timer_scale=0.01))
    sessions = load_sessions(DEFAULT_SESSIONS)

    async def start() -> CoreGame:
        started = game.server.new_game(7, params, sessions, title="contract")
        started.close()
        return started

    started = asyncio.run(start())

    assert params.game_type == name and params.round_count == 2
    assert game.server.parameters().game_type == name  # without overrides: this game's defaults
    assert isinstance(started, CoreGame) and started.params is params and started.id == 7
    assert (started.round, started.phase) == (1, 0) and not started.over
    assert sorted(started.players) == sorted(game.rules.seat_roles(params))
    assert isinstance(started.RULESET, str) and started.RULESET != CoreGame.RULESET  # what /games/status says


@pytest.mark.parametrize("name", list(GAMES))
def test_every_game_s_server_rules_refuse_parameters_they_cannot_type_in_one_line(name: str) -> None:
    with pytest.raises(ParamError) as refused:
        game_for(name).server.parameters({"round_count": "many"})
    assert "round_count" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("name", list(GAMES))
def test_every_game_s_server_rules_accept_the_seats_its_rules_lay_out_and_refuse_a_game_without_owners(name):
    game = game_for(name)
    params = game.server.parameters()
    groups = game.rules.seat_groups(params)
    # create-for-llm's typed rows: the defaults, and the seat counts the nested payload stores
    values: dict[str, Any] = {**params.values, "developers_count": len(groups.get("developer", ())),
                              "owners_count": len(groups.get("owners", ())),
                              "speculators_count": len(groups.get("speculators", ()))}

    assert game.server.refusal(values, strict=True) is None
    refusal = game.server.refusal({**values, "owners_count": 0}, strict=False)
    assert isinstance(refusal, str) and "owners.count" in refusal and "\n" not in refusal
