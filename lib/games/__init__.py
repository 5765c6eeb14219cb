"""The games, one folder each, reached only through this registry.

`GAMES` maps the IBEX server's `game_type` to the game that plays it (lib.games.protocols.Game); generic code —
the agents, the local server, the dataset builder, the evaluation, studies — asks `game_for(game_type)` and uses
what the game offers, so that it never names a game itself. Adding a game is one folder and one line in BUILTIN
(a game defined outside lib/, a test's, calls `register`). Games are imported on first use: importing the
registry costs nothing and cannot form an import cycle with a game's own modules.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lib.games.protocols import Game

# game_type -> "module:attribute" of its Game.
BUILTIN: dict[str, str] = {
    "voting": "lib.games.voting.game:GAME",
    "harberger": "lib.games.market.game:HARBERGER",
    "futarchy": "lib.games.market.game:FUTARCHY",
}

# The game of parameters that name none (lib.games.voting.rules.GameParams.game_type's default, the real server's
# first game): what an in-process local game without a game_type plays.
DEFAULT_GAME = "voting"


class UnknownGame(ValueError):
    """A game_type no registered game plays; the message lists the ones that are."""


class _Registry(Mapping[str, "Game"]):
    def __init__(self) -> None:
        self._paths: dict[str, str] = dict(BUILTIN)
        self._games: dict[str, Game] = {}

    def __getitem__(self, name: str) -> Game:
        if name in self._games:
            return self._games[name]
        path = self._paths[name]  # KeyError for an unknown game, as a Mapping should
        module, _, attribute = path.partition(":")
        game = getattr(importlib.import_module(module), attribute)
        self._games[name] = game
        return game

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, game: Game) -> None:
        self._paths[game.name] = f"<registered {game.name}>"
        self._games[game.name] = game

    def remove(self, name: str) -> None:
        if name in BUILTIN:
            raise ValueError(f"{name!r} is a built-in game and cannot be removed")
        self._paths.pop(name, None)
        self._games.pop(name, None)


GAMES = _Registry()


def game_types() -> tuple[str, ...]:
    """Every registered game_type, built-in ones first."""
    return tuple(GAMES)


def game_for(game_type: object) -> Game:
    """The game that plays `game_type`; UnknownGame (a ValueError) naming the registered ones otherwise."""
    if not isinstance(game_type, str) or game_type not in GAMES:
        raise UnknownGame(f"game_type {game_type!r} is not a game this toolkit plays (it plays "
                          f"{', '.join(repr(name) for name in GAMES)})")
    return GAMES[game_type]


def register(game: Game) -> None:
    """Add a game defined outside lib/games (a test's); its name must not shadow another game."""
    if game.name in GAMES:
        raise ValueError(f"game_type {game.name!r} is already registered")
    GAMES.add(game)


def unregister(name: str) -> None:
    """Remove a game `register` added (a test cleaning up)."""
    GAMES.remove(name)
