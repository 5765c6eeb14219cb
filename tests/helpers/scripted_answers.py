"""Helpers shared by several test files (moved from test_policies_llm.py)."""

from __future__ import annotations

import json
import re

from lib.games.voting.actions import DECISION, OFFER, REQUEST


def player(body: dict) -> tuple[int, int, str]:
    """(game, seat, action type) of the prompt the fake was asked with."""
    user = body["messages"][-1]["content"]
    game = int(re.search(r'"gameId\\?":(\d+)', user).group(1))
    seat = int(re.search(r"\(player (\d+)\)", user).group(1))
    action = re.search(r'"actionType": "(\w+)"', user).group(1)
    return game, seat, action


def scripted(body: dict) -> str:
    """A model that asks 300,000, offers 100,000 and votes for the Project; game 2's seat 3 answers a request in
    words, game 1's seat 1 votes [2]: both invalid."""
    game, seat, action = player(body)
    if action == "SubmitCompensationRequest":
        if (game, seat) == (2, 3):
            return "I would like 300000, please."
        return json.dumps({"gameId": game, "type": REQUEST, "compensationRequests": [None, 300000]})
    if action == "SubmitCompensationOffer":
        return json.dumps({"gameId": game, "type": OFFER, "compensationOffers": [None, 100000]})
    vote = 2 if (game, seat) == (1, 1) else 1
    return json.dumps({"gameId": game, "type": DECISION, "compensationDecisions": [vote]})
