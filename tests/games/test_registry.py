"""The registry of games (lib/games/__init__.py) and the parts every registered game must offer."""

from dataclasses import replace

import pytest

from lib.games import GAMES, UnknownGame, game_for, game_types, register, unregister
from lib.games.protocols import GameDefinition
from lib.ibex.params import ParamError


def test_the_three_ibex_games_are_registered_and_load_by_name():
    assert game_types()[:3] == ("voting", "harberger", "futarchy")
    for name in ("voting", "harberger", "futarchy"):
        assert game_for(name).name == name


@pytest.mark.parametrize("bad", ["market", "Voting", "", None, 3, ["voting"]])
def test_an_unknown_game_type_is_one_line_naming_the_games_played(bad):
    with pytest.raises(UnknownGame) as caught:
        game_for(bad)
    message = str(caught.value)
    assert "\n" not in message and repr(bad) in message and "'voting', 'harberger', 'futarchy'" in message


@pytest.mark.parametrize("name", list(GAMES))
def test_every_game_s_rules_give_checked_parameters_and_seat_groups(name):
    rules = game_for(name).rules
    params = rules.parameters(rules.local_parameters(rounds=2, practice=False, timer_scale=0.5))
    assert params.game_type == name and params.round_count == 2 and params.rounds() == [1, 2]
    groups = rules.seat_groups(params)
    seats = sorted(seat for group in groups.values() for seat in group)
    assert seats == list(range(1, len(rules.seat_roles(params)) + 1))
    assert groups["developer"] == (2,) and len(groups["owners"]) == 5
    for phase in range(1, rules.last_phase + 1):
        assert params.timer(phase) is not None and params.timer(phase) > 0
    assert rules.timeout(params) > sum(params.timer(p) for p in range(1, rules.last_phase + 1)) * 2
    with pytest.raises(ParamError):
        rules.parameters({"round_count": "many"})


def test_a_registered_game_is_found_and_removed_but_a_builtin_is_kept():
    voting = game_for("voting")
    extra = replace(voting, name="voting-copy") if isinstance(voting, GameDefinition) else None
    assert extra is not None
    register(extra)
    try:
        assert game_for("voting-copy") is extra and "voting-copy" in game_types()
        with pytest.raises(ValueError, match="already registered"):
            register(extra)
    finally:
        unregister("voting-copy")
    assert "voting-copy" not in GAMES
    with pytest.raises(ValueError, match="built-in"):
        unregister("voting")


def test_no_game_folder_imports_another_game_s_folder():
    """A game is one folder (#21): what two games share lives in lib/games/common or a generic module
    (lib.evaluation, lib.ibex, ...), so that no game folder imports another's, not even inside a function."""
    import ast

    from tests.helpers.paths import REPO

    root = REPO / "lib" / "games"
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                     and p.name != "common" and not p.name.startswith("_"))
    assert {"voting", "market"} <= set(folders)
    crossing = []
    for folder in folders:
        for path in sorted((root / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for name in names:
                    parts = name.split(".")
                    if parts[:2] == ["lib", "games"] and len(parts) > 2 and parts[2] in folders \
                            and parts[2] != folder:
                        crossing.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
    assert crossing == []


def test_the_market_s_compatibility_module_for_the_model_policy_is_gone():
    """lib/games/market/llm.py (MarketLLMPolicy) only named LLMPolicy(game=...): its last caller uses that."""
    import importlib.util

    assert importlib.util.find_spec("lib.games.market.llm") is None
    from lib.agents.llm import LLMPolicy

    client = game_for("harberger").scores.chat_client(api_key="k", model="m", base_url="http://127.0.0.1:9/v1")
    assert isinstance(client, LLMPolicy) and client.game is game_for("harberger")
