"""The games' prompt variants (lib.games.protocols.PromptRules; lib/games/voting/variants.py,
lib/games/market/variants.py): the default is the training prompt itself, and every other variant differs from it in
exactly the way its description says; an unknown variant is one line naming the game's variants. That the evaluation
rebuilds each variant's play-time prompt from an example is checked by tests/games/test_contract.py."""

from __future__ import annotations

import copy
import json

import pytest

from lib.agents.llm import LLMPolicy
from lib.games import GAMES, game_for
from lib.games.market import variants as market_variants
from lib.games.market.actions import DECLARE, TRADE, build_market_action_required
from lib.games.market.prompts import build_market_messages, market_user_prompt
from lib.games.protocols import (
    DEFAULT_PROMPT,
    UnknownPromptVariant,
    check_prompt_variant,
    prompt_variants,
    variant_messages,
)
from lib.games.voting import variants as voting_variants
from lib.games.voting.actions import DECISION, OFFER, REQUEST, SPECS, build_action_required
from lib.games.voting.prompts import MAX_EARLIER_ROUNDS, build_messages, user_prompt
from lib.games.voting.view import PlayerView
from lib.ibex.params import parameters_from_dict
from tests.helpers.frames import event, phase_start, round_start
from tests.helpers.market_views import GAMES as RECORDED
from tests.helpers.market_views import market_view, recorded_games, replay

CAP = parameters_from_dict().amount_cap()
T0 = 1795624173543
VOTING = game_for("voting")


def played_view(rounds: int = 2, seat: int = 3, chat: bool = True) -> PlayerView:
    """An owner in phase 6 of round `rounds`, after `rounds` finished rounds (0 a practice round), with chat in the
    current round: a prompt with every section the no-history variant must keep or drop."""
    view = PlayerView(game_id=15, round_count=rounds, practice_round=True)
    for number in range(rounds + 1):
        view.apply(event("phase-transition", {"round": number, "phase": 0}))
        for frame in round_start(number, seat, [468000 + number, 164000], T0):
            view.apply(frame)
        for phase in range(2, 7):
            extra = [event("compensation-offer-made", {"compensationOffers": [None, 335000 + number]})] \
                if phase == 5 else []
            for frame in phase_start(number, phase, T0 + phase * 10000, *extra):
                view.apply(frame)
            if phase == 3:
                view.apply_sent({"gameId": 15, "type": REQUEST, "compensationRequests": [None, 400000 + number]})
            if phase == 5 and chat and number == rounds:
                view.apply(event("message-received", {"sender": 2, "to": [1, 3, 4, 5, 6], "number": 0,
                                                      "text": "Earlier rounds: I paid well.\nVote yes", "time": 1}))
        if number < rounds:
            view.apply_sent({"gameId": 15, "type": DECISION, "compensationDecisions": [1]})
            view.apply(event("final-profit", {"condition": 1, "tally": 4, "value": 164000, "compensation": 335000}))
            view.apply(event("round-summary", {"round": number, "condition": 1, "value": 164000, "tally": 4,
                                               "compensation": 335000, "profit": 499000}))
    return view


def without_history(view: PlayerView) -> PlayerView:
    """The same view with no earlier round in it: what the no-history prompt must equal."""
    bare = copy.copy(view)
    bare.rounds = {view.round: view.current}
    bare.earlier_shown = None
    return bare


# ----- the default is the training prompt


@pytest.mark.parametrize("name", list(GAMES))
def test_every_game_lists_the_default_first_and_describes_each_variant(name):
    variants = prompt_variants(game_for(name))
    assert list(variants)[0] == DEFAULT_PROMPT
    assert {"zero-shot", "no-history"} <= set(variants)
    assert all(isinstance(text, str) and len(text) > 20 for text in variants.values())


def test_the_default_is_the_training_prompt_object_itself():
    view = played_view()
    messages = build_messages(view, build_action_required(view, DECISION, cap=CAP))
    assert variant_messages(VOTING, DEFAULT_PROMPT, view, messages) is messages
    policy = LLMPolicy(api_key="k", model="m")
    assert policy.prompt == DEFAULT_PROMPT
    assert policy.messages(view, build_action_required(view, DECISION, cap=CAP)) == messages


# ----- zero-shot: the rules in full after the default system message


@pytest.mark.parametrize("action", [REQUEST, OFFER, DECISION])
def test_zero_shot_appends_the_voting_rules_to_the_system_message_and_keeps_the_user_message(action):
    view = played_view(seat=2 if action == OFFER else 3)
    view.phase = SPECS[action].phases[0]
    default = build_messages(view, build_action_required(view, action, cap=CAP))
    before = json.dumps(default)
    system, user = variant_messages(VOTING, "zero-shot", view, default)
    assert json.dumps(default) == before  # the default messages are not changed in place
    assert system["content"] == default[0]["content"] + voting_variants.RULES
    assert user == default[1] and system["role"] == "system"
    rules = voting_variants.RULES
    for spec in SPECS.values():  # every decision with its answer format
        assert spec.action_type in rules and f'"type":"{spec.wire_type}"' in rules
    for fact in ("Only the developer sees the requests", "each of the five owners receives X and the developer pays "
                 "5X", "a tie, or no vote at all, goes to the Project", "[No Project, Project]",
                 "the first element stays null"):
        assert fact in rules


@pytest.mark.parametrize("game_type", ["harberger", "futarchy"])
def test_zero_shot_appends_each_market_game_s_own_rules(game_type):
    view = market_view(game_type=game_type, phase=6)
    default = build_market_messages(view, build_market_action_required(view, TRADE))
    system, user = variant_messages(game_for(game_type), "zero-shot", view, default)
    appended = system["content"].removeprefix(default[0]["content"])
    assert appended != system["content"] and appended == market_variants.rules(view)
    assert user == default[1]
    assert "1% of the first declaration and 33% of the second" in appended
    for action in ("SubmitDeclaration", "SubmitSnipes", "TradeInMarket", '"type":"declare"', '"type":"cancel-order"',
                   '"type":"wait"'):
        assert action in appended
    if game_type == "futarchy":
        assert "decided by the markets of phase 6" in appended and "two markets" in appended
    else:
        assert "decided by the first declarations" in appended and "one market" in appended


# ----- no-history: the user message without the earlier rounds


@pytest.mark.parametrize("rounds", [1, 2, MAX_EARLIER_ROUNDS + 3])
def test_no_history_drops_the_earlier_rounds_and_keeps_this_round_and_its_chat(rounds):
    view = played_view(rounds)
    required = build_action_required(view, DECISION, cap=CAP)
    default = build_messages(view, required)
    last = f"Round {rounds - 1} values"
    assert "Earlier rounds" in default[1]["content"] and last in default[1]["content"]
    system, user = variant_messages(VOTING, "no-history", view, default)
    assert system == default[0]
    assert user["content"] == user_prompt(without_history(view), required)
    assert last not in user["content"] and "Chat this round" in user["content"]
    assert "Earlier rounds: I paid well." in user["content"]  # a chat message, not the section
    assert user["content"].splitlines()[:2] == default[1]["content"].splitlines()[:2]


def test_no_history_leaves_a_first_round_s_prompt_as_it_is():
    view = played_view(0, chat=False)
    default = build_messages(view, build_action_required(view, DECISION, cap=CAP))
    assert variant_messages(VOTING, "no-history", view, default) == default


@pytest.fixture(scope="module")
def recorded() -> dict:
    return recorded_games()


@pytest.mark.parametrize("name", RECORDED)
def test_no_history_drops_the_market_s_earlier_rounds_and_nothing_else(recorded, name):
    game = recorded[name]
    views = []

    def later_round(view, message, note):
        if message.get("type") == "declare" and view.round >= 1 and not views:
            views.append(copy.deepcopy(view))
    replay(game, "1", on_send=later_round)
    [view] = views
    required = build_market_action_required(view, DECLARE)
    default = build_market_messages(view, required)
    assert default[1]["content"].startswith("Earlier rounds:")
    system, user = variant_messages(game_for(view.game_type), "no-history", view, default)
    bare = copy.copy(view)
    bare.rounds = {view.round: view.current}
    assert system == default[0] and user["content"] == market_user_prompt(bare, required)
    assert not user["content"].startswith("Earlier rounds:") and "Action required:" in user["content"]


# ----- unknown variants


def test_an_unknown_variant_is_one_line_naming_the_game_s_variants():
    with pytest.raises(UnknownPromptVariant) as caught:
        check_prompt_variant(VOTING, "zeroshot")
    assert str(caught.value) == ("'zeroshot' is not a prompt variant of the voting game (it has default, zero-shot, "
                                 "no-history)")
    with pytest.raises(UnknownPromptVariant, match="of the Harberger game"):
        LLMPolicy(api_key="k", model="m", game=game_for("harberger"), prompt="few-shot")
    with pytest.raises(UnknownPromptVariant):
        variant_messages(VOTING, "few-shot", played_view(), [{"role": "system", "content": ""},
                                                              {"role": "user", "content": ""}])
