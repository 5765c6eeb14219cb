"""What one game prints as it goes, whatever the game: a short line when a model starts deciding in a phase (where
the game has one), and each round's report (fallbacks marked, then who decided) as soon as every agent of ours
has finished that round. The game writes the report (its PlayRules); this module decides when, and prints
through the `say` it is given."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lib.agents import decisions
from lib.games.protocols import Game

if TYPE_CHECKING:
    from lib.games.voting.rules import GameParams  # every game's parameters (lib.games.protocols)


class Progress:
    """The live report of one game. `compact` (--serve, many games at once): one line per finished round."""

    def __init__(self, say: Callable[[str], None], game: Game, game_id: int, params: GameParams | None,
                 compact: bool = False) -> None:
        self.say = say
        self.game = game
        self.game_id = game_id
        self.params = params
        self.compact = compact
        self.agents: list[Any] = []
        self.log: decisions.DecisionLog | None = None
        self.printed: set[int] = set()
        self._announced: set[tuple[int, int]] = set()

    def hear(self, kind: str, info: Any) -> None:
        """DecisionLog listener: a model starting to decide in a new phase gets one short line."""
        if kind != "start" or self.compact or not info.get("model") or info.get("game") != self.game_id:
            return
        key = (info["round"], info["phase"])
        if key not in self._announced:
            self._announced.add(key)
            line = self.game.play.deciding_line(*key)
            if line is not None:
                self.say(line)

    def on_phase(self, _agent: Any = None) -> None:
        """Print every round that all our agents have finished and that is not printed yet."""
        views = [a.view for a in self.agents]
        if not views:
            return
        for number in self.game.play.finished_rounds(views, self.params):
            if number not in self.printed:
                self.printed.add(number)
                self.print_round(number)

    def rows(self, number: int | None = None) -> list[decisions.Decision]:
        rows = self.log.rows if self.log is not None else []
        return [r for r in rows if r.game == self.game_id and (number is None or r.round == number)]

    def shares(self, number: int | None = None) -> str:
        rows = self.rows(number)
        made_by: Counter[str] = Counter(r.made_by for r in rows)
        reasons: Counter[str] = Counter(r.fallback_reason or "?" for r in rows if r.made_by == decisions.FALLBACK)
        return decisions.shares_line(made_by, reasons)

    def print_round(self, number: int, unfinished: bool = False) -> None:
        fallbacks = [r for r in self.rows(number) if r.made_by == decisions.FALLBACK]
        lines = self.game.play.round_lines([a.view for a in self.agents], number, fallbacks, unfinished)
        if self.compact:
            self.say(f"game {self.game_id} {self.game.play.compact_line(lines)}; {self.shares(number)}")
            return
        for line in lines:
            self.say(line)
        self.say(f"  {self.shares(number)}")

    def stopped(self) -> None:
        """After a stop: the finished rounds not printed yet, then the round under way as far as it went, where
        the game reports one."""
        self.on_phase()
        current = self.game.play.unfinished_round([a.view for a in self.agents])
        if current is not None and current not in self.printed:
            self.printed.add(current)
            self.print_round(current, unfinished=True)
