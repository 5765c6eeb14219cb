"""How `finetune.py --evaluate` scores each voting action type (lib.evaluation.scores.Kind): the requests and offers
as amounts, the votes as choices, chat counted only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lib.evaluation.scores import AMOUNT, CHOICE, TEXT, Kind
from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST


def _amount(field_name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda message: message[field_name][1]


KINDS: dict[str, Kind] = {
    REQUEST: Kind(AMOUNT, _amount("compensationRequests"), "compensation requests"),
    OFFER: Kind(AMOUNT, _amount("compensationOffers"), "compensation offers"),
    DECISION: Kind(CHOICE, lambda message: message["compensationDecisions"][0], "votes"),
    CHAT: Kind(TEXT, lambda message: message.get("text"), "chat messages", unasked="chat is counted, not scored"),
}
