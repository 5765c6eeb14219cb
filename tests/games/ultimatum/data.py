"""lib.games.protocols.DataRules for the ultimatum game: its logs (the envelope lib.ibex.log reads; the rest is
checked here), its examples (examples.py) and their sidecar lines (sidecar.py)."""

from __future__ import annotations

from typing import Any

from lib.dataset.examples import GameResult, Sink
from lib.dataset.sidecar import Example
from lib.ibex.log import IbexLog, checked_log
from lib.ibex.params import GameParams
from lib.ibex.sessions import SessionsTable
from tests.games.ultimatum import examples, sidecar
from tests.games.ultimatum.actions import OFFER, RESPONSE
from tests.games.ultimatum.rules import LAST_PHASE, SEATS, check


class UltimatumData:
    kinds = {OFFER: OFFER, RESPONSE: RESPONSE}

    def read_log(self, data: dict[str, Any], params: GameParams, source: str,
                 played_by_agents: str | None) -> IbexLog:
        check(params, f"{source}: parameters")
        return checked_log(data, params, source, played_by_agents, seats=SEATS, last_phase=LAST_PHASE)

    def examples(self, log: IbexLog, *, sessions: SessionsTable | None, include_chat: bool,
                 sink: Sink | None) -> GameResult:
        return examples.game_examples(log, sink=sink)

    def check_state(self, state: dict[str, Any], where: str) -> None:
        sidecar.check_state(state, where)

    def view_from_state(self, state: dict[str, Any]) -> Any:
        return sidecar.view_from_state(state["view"])

    def cap(self, state: dict[str, Any]) -> int:
        return sidecar.cap(state)

    def human_answer(self, answer: str, state: dict[str, Any]) -> dict[str, Any]:
        return sidecar.human_answer(answer, state)

    def probe(self, example: Example) -> None:
        sidecar.probe(example)


DATA = UltimatumData()
