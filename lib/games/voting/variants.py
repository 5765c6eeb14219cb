"""The voting game's prompt variants (lib.games.protocols.PromptRules): other prompts for the same decisions than
the one the dataset builder writes.

Only `default` is what a fine-tuned model was trained on (lib.games.voting.prompts.build_messages, byte for byte);
every other variant is a rewrite of it, so that it differs from the default in the one way its description says:

- `zero-shot`: the default system message, then the game's rules in full (RULES): what each phase and action does,
  who sees what, how the winner and the profits follow, the answer format of every decision. The default system
  message states the rules briefly; a model that was fine-tuned on the human decisions learnt the rest from them,
  but a model that was not (a base model behind an API) has only what the prompt says. The user message is the
  default's.
- `no-history`: the default user message without the earlier rounds (their header and lines); the system message
  is the default's. It isolates what a model makes of the earlier rounds (learning, reacting to past offers and
  outcomes): the same model asked with and without them, on the same decisions.

A rewrite reads only the default messages and the view's fields a sidecar line keeps (none, for these two), so
`finetune.py --evaluate` rebuilds the same prompt from an example as an agent asks at play time.
"""

from __future__ import annotations

from typing import Any

from lib.games.protocols import DEFAULT_PROMPT
from lib.games.voting.prompts import without_earlier_rounds

ZERO_SHOT, NO_HISTORY = "zero-shot", "no-history"

VARIANTS = {
    DEFAULT_PROMPT: "the training set's prompt, byte for byte: the only one a fine-tuned model has seen",
    ZERO_SHOT: "the default prompt with the game's full rules and every decision's answer format appended to the "
               "system message: for a model not fine-tuned on the human decisions (e.g. gpt-4o through the API)",
    NO_HISTORY: "the default prompt without the earlier rounds in the user message: what a model's decisions owe to "
                "what happened before",
}

# Appended to the default system message by zero-shot. The rules as lib.games.voting.rules and
# lib.games.voting.actions apply them (docs/games/voting.md), with no advice on what to do.
RULES = (
    "\n\nThe rules in full (all you need to play this game without having seen it before):\n"
    "- Money and values. All amounts are whole numbers of money units. Each player knows only their own two "
    "values; nobody sees another player's values. An owner's loss from the Project is their value under No "
    "Project minus their value under the Project; the developer's gain is their value under the Project minus "
    "their value under No Project. Every round stands alone: values are drawn anew and nothing carries over, but "
    "each prompt shows what happened in your earlier rounds.\n"
    "- Phase 3, compensation request (owners): each owner tells the developer the compensation they require to "
    "accept the Project. Only the developer sees the requests; owners never see each other's. A request commits "
    "nobody and pays nothing by itself.\n"
    "- Phase 4, compensation offer (the developer): after seeing every request, the developer makes one offer X, "
    "the same for every owner. If the Project wins, each of the five owners receives X and the developer pays 5X "
    "in all; if No Project wins, nothing is paid. No offer counts as an offer of 0.\n"
    "- Phase 6, vote (owners): after seeing the offer, each owner votes 1 for the Project or 0 for No Project. "
    "The condition with more votes among the owners who voted wins; a tie, or no vote at all, goes to the "
    "Project.\n"
    "- Phases 2 and 5, chat: players may send messages to some or all of the others; nothing said there binds "
    "anyone.\n"
    "- Answering. When you must act, the user message ends with \"Action required:\" and a JSON object: its "
    "actionType names the decision, instructions say what it is, deadline when it is due, format the exact "
    "answer and additionalInfo its limits. Answer with the format's JSON object and nothing else (no words, no "
    "code fence): the same gameId and type, and each placeholder (X, D) replaced by a whole number without "
    "quotes, separators or decimals. Amounts are lists by condition, [No Project, Project]: the first element "
    "stays null, the second is the amount. The decisions: SubmitCompensationRequest (owners, phase 3): "
    '{"gameId":G,"type":"compensation-request","compensationRequests":[null,X]}, X your request; '
    "SubmitCompensationOffer (the developer, phase 4): "
    '{"gameId":G,"type":"compensation-offer","compensationOffers":[null,X]}, X your offer to each owner; '
    "SubmitCompensationDecision (owners, phase 6): "
    '{"gameId":G,"type":"compensation-decision","compensationDecisions":[D]}, D 1 for the Project or 0 for No '
    "Project; SendChatMessage (phases 2 and 5, when the players may chat): "
    '{"gameId":G,"type":"chat-with-players","to":[N,...],"text":"..."}, the player numbers who receive it and your '
    "message."
)


class VotingPrompts:
    """The voting game's prompt variants (see the module docstring)."""

    variants = VARIANTS

    def rewrite(self, variant: str, view: Any, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        system, user = messages
        if variant == ZERO_SHOT:
            return [{**system, "content": system["content"] + RULES}, dict(user)]
        if variant == NO_HISTORY:
            return [dict(system), {**user, "content": without_earlier_rounds(user["content"])}]
        raise ValueError(f"no prompt variant {variant!r} in the voting game")


PROMPTS = VotingPrompts()
