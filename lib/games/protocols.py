"""What generic code may ask of a game: small Protocols, one per seam, and the record that gathers them.

A game (lib/games/<name>/game.py) is a `GameDefinition` whose parts each implement one Protocol here:

- `rules` (GameRules): its parameters (the web UI's defaults, typed and checked), seats and seat groups, phases.
- `server` (ServerRules): what the local IBEX server (lib/localserver) needs to play it.

Generic modules type against these Protocols and reach a game only through lib.games.game_for; nothing outside
lib/games branches on a game's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lib.games.voting.rules import GameParams
    from lib.ibex.sessions import SessionsTable
    from lib.localserver.core import CoreGame


class GameRules(Protocol):
    """A game's facts and parameters, as the real IBEX server has them."""

    last_phase: int  # the last phase with a timer; phase 0 waits for players

    def default_parameters(self) -> dict[str, Any]:
        """The real server's web UI defaults for this game, flat, named as a game log names them."""
        ...

    def parameters(self, flat: Mapping[str, Any] | None = None, where: str = "gameParameters") -> GameParams:
        """The defaults with `flat` applied, typed and checked; ParamError (one line naming the key) otherwise."""
        ...

    def local_parameters(self, rounds: int, practice: bool, timer_scale: float) -> dict[str, Any]:
        """Flat overrides for a game on the local server: round count, practice round, timers scaled."""
        ...

    def seat_roles(self, params: GameParams | None = None) -> dict[int, int]:
        """Seat number -> role (lib.games.voting.rules.ROLE_*), in join order, for a game with `params`."""
        ...

    def seat_groups(self, params: GameParams | None = None) -> dict[str, tuple[int, ...]]:
        """Seat-group name (developer, owners, speculators) -> its seats; only the groups this game has."""
        ...

    def timeout(self, params: GameParams) -> float:
        """Seconds after which a game with `params` that has not ended is given up (a bound, not an estimate)."""
        ...


class ServerRules(Protocol):
    """What the local IBEX server (lib/localserver) needs of a game to play it as the real server would."""

    def parameters(self, flat: Mapping[str, Any] | None = None) -> GameParams:
        """An in-process game's parameters: the local server's defaults for this game with `flat` applied, typed and
        checked; ParamError (one line naming the key) otherwise."""
        ...

    def refusal(self, values: Mapping[str, Any], strict: bool) -> str | None:
        """Why the local server cannot play a create-for-llm game whose stored rows typed to `values` (the real
        server would start it), with the --strict refusals when `strict`; None when it can."""
        ...

    def new_game(self, game_id: int, params: GameParams, sessions: SessionsTable, **options: Any) -> CoreGame:
        """The running game (a lib.localserver.core.CoreGame, which also answers /games/status); ValueError naming
        the parameter or the sessions table when the table lacks what `params` need. `options` are CoreGame's."""
        ...


class Game(Protocol):
    """A registered game: its name (the server's game_type) and its parts."""

    name: str
    title: str  # for people: "voting", "Harberger", "futarchy"
    rules: GameRules
    server: ServerRules


@dataclass(frozen=True)
class GameDefinition:
    """The record a game folder builds its Game from."""

    name: str
    title: str
    rules: GameRules
    server: ServerRules


GROUP_ROLES = {"developer": 2, "owners": 3, "speculators": 1}  # lib.games.voting.rules ROLE_* by seat-group name


def groups_from_roles(roles: Mapping[int, int]) -> dict[str, tuple[int, ...]]:
    """Seat groups from seat -> role, leaving out groups without a seat."""
    groups = {name: tuple(seat for seat, r in sorted(roles.items()) if r == role) for name, role in GROUP_ROLES.items()}
    return {name: seats for name, seats in groups.items() if seats}
