"""The voting game's data part (lib.games.protocols.DataRules): its logs, its examples and their sidecar lines."""

from __future__ import annotations

from typing import Any

from lib.dataset.examples import GameResult, Sink
from lib.dataset.sidecar import Example
from lib.games.voting import examples, sidecar
from lib.games.voting.actions import SPECS
from lib.games.voting.rules import LAST_PHASE, SEATS
from lib.ibex.log import IbexLog, checked_log
from lib.ibex.params import GameParams
from lib.ibex.sessions import SessionsTable


class VotingData:
    """Examples of a voting log: one per request, offer, vote (and chat message, when asked) a human made."""

    kinds = {action: action for action in SPECS}  # an example's kind is the decision's wire type

    def read_log(self, data: dict[str, Any], params: GameParams, source: str,
                 played_by_agents: str | None) -> IbexLog:
        params.round_count  # noqa: B018 - required: replay needs the number of rounds (ParamError otherwise)
        return checked_log(data, params, source, played_by_agents, seats=SEATS, last_phase=LAST_PHASE)

    def examples(self, log: IbexLog, *, sessions: SessionsTable | None, include_chat: bool,
                 sink: Sink | None) -> GameResult:
        return examples.game_examples(log, sessions=sessions, include_chat=include_chat, sink=sink)

    def check_state(self, state: dict[str, Any], where: str) -> None:
        sidecar.check_state(state, where)

    def view_from_state(self, state: dict[str, Any]) -> Any:
        return sidecar.view_from_state(state["view"])

    def cap(self, state: dict[str, Any]) -> int:
        return state["cap"]  # every voting line holds the cap its prompt stated (lib.games.voting.sidecar)

    def human_answer(self, answer: str, state: dict[str, Any]) -> dict[str, Any]:
        return sidecar.human_answer(answer, state)

    def probe(self, example: Example) -> None:
        sidecar.probe(example)


DATA = VotingData()
