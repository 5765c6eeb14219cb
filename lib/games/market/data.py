"""Harberger's and futarchy's data part (lib.games.protocols.DataRules): their logs, examples and sidecar lines."""

from __future__ import annotations

from typing import Any

from lib.dataset.examples import GameResult, Sink
from lib.dataset.sidecar import Example
from lib.games.market import sidecar
from lib.games.market.examples import KINDS, MarketLog, game_examples
from lib.ibex.params import GameParams
from lib.ibex.sessions import SessionsTable


class MarketData:
    """Examples of a market log: one per declaration, snipe choice, order posted or cancelled by a human."""

    kinds = KINDS  # an example's kind -> the decision it answers (declare, speculate, trade)

    def read_log(self, data: dict[str, Any], params: GameParams, source: str,
                 played_by_agents: str | None) -> MarketLog:
        # Taken as it is: lib.games.market.examples replays it defensively and says what it cannot use.
        return MarketLog(source, data, params.game_type, played_by_agents)

    def examples(self, log: MarketLog, *, sessions: SessionsTable | None, include_chat: bool,
                 sink: Sink | None) -> GameResult:
        return game_examples(log, sessions=sessions, sink=sink)  # the market games have no chat

    def check_state(self, state: dict[str, Any], where: str) -> None:
        sidecar.check_state(state, where)

    def view_from_state(self, state: dict[str, Any]) -> Any:
        return sidecar.market_view_from_state(state["view"])

    def cap(self, state: dict[str, Any]) -> None:
        return None  # no market decision has an amount cap: every limit is the view's (lib.games.market.seat)

    def human_answer(self, answer: str, state: dict[str, Any]) -> dict[str, Any]:
        return sidecar.human_answer(answer, state)

    def probe(self, example: Example) -> None:
        sidecar.probe(example)


DATA = MarketData()
