"""The market games' prompt variants (lib.games.protocols.PromptRules), for Harberger and futarchy alike: other
prompts for the same decisions than the one the dataset builder writes.

Only `default` is what a fine-tuned model was trained on (lib.games.market.prompts.build_market_messages, byte for
byte); every other variant is a rewrite of it, so that it differs from the default in the one way its description
says:

- `zero-shot`: the default system message, then the game's rules in full (`rules`): declarations and their taxes,
  how the winning condition is decided, snipes, signals, the market and its orders, the final share price, every
  decision's answer format. The default system message states the rules briefly; a model that was not fine-tuned
  on the game's decisions has only what the prompt says. The user message is the default's.
- `no-history`: the default user message without the earlier rounds' summaries that open it; the system message is
  the default's. It isolates what a model makes of the earlier rounds.

A rewrite reads only the default messages and the view's fields a sidecar line keeps (the game type and the tax
rates), so `finetune.py --evaluate` rebuilds the same prompt from an example as an agent asks at play time.
"""

from __future__ import annotations

from typing import Any

from lib.games.market.prompts import without_earlier_rounds
from lib.games.market.rules import FUTARCHY
from lib.games.protocols import DEFAULT_PROMPT

ZERO_SHOT, NO_HISTORY = "zero-shot", "no-history"

VARIANTS = {
    DEFAULT_PROMPT: "the training set's prompt, byte for byte: the only one a fine-tuned model has seen",
    ZERO_SHOT: "the default prompt with the game's full rules and every decision's answer format appended to the "
               "system message: for a model not fine-tuned on the game's decisions (e.g. gpt-4o through the API)",
    NO_HISTORY: "the default prompt without the earlier rounds' summaries in the user message: what a model's "
                "decisions owe to what happened before",
}


def rules(view: Any) -> str:
    """What zero-shot appends to the default system message of a seat with `view`: the rules as lib.games.market.rules
    and lib.games.market.actions apply them (docs/games/harberger.md, docs/games/futarchy.md), with no advice on
    what to do. Reads the view's game type and tax rates only (a sidecar line keeps both)."""
    futarchy = view.game_type == FUTARCHY
    initial, final = view.tax_rate_initial, view.tax_rate_final
    winning = (
        "- Winning condition: decided by the markets of phase 6. The condition whose market ends with the higher "
        "median of its last seven trade prices wins; a market without trades does not count, a tie goes to No "
        "Project, and no trades at all make Project win.\n"
        if futarchy else
        "- Winning condition: decided by the first declarations. The condition with the higher sum of declared "
        "values wins (a tie goes to Project); it is announced when phase 3 begins.\n")
    snipes = ("Phase 3 snipes the first declarations under both conditions (snipes under the condition that loses "
              "are void); phase 8 snipes the second declarations under the winning condition."
              if futarchy else
              "Phase 3 snipes the first declarations and phase 8 the second ones, under the winning condition only.")
    markets = ("two markets, one per condition, each with its own wallet of money and shares; trades in the losing "
               "condition's market are void"
               if futarchy else "one market, under the winning condition")
    return (
        "\n\nThe rules in full (all you need to play this game without having seen it before):\n"
        "- Money and values. All amounts are whole numbers of money units. Each landholder (owner or developer) "
        "knows only its own lot's two true values; nobody sees another's. Your lot's id is given with its values. "
        "Every round stands alone: values and signals are drawn anew and wallets are reset, but each prompt shows "
        "what happened in your earlier rounds.\n"
        "- Declarations (phases 2 and 7; owners and the developer): declare your lot's value under each "
        "condition. Only your first declaration in a phase counts. A value above twice your role's highest "
        "possible value is refused; a lot not declared in time is declared at its role's lowest values. You pay "
        f"tax on your declaration under the winning condition: {initial}% of the first declaration and {final}% of "
        "the second.\n"
        f"{winning}"
        "- Snipes (phases 3 and 8; speculators): a snipe of lot L counts only under the winning condition; it pays "
        "the sniper (true value - declared value) / (2 x the number of snipes on L), and the lot's owner pays it: "
        f"a loss for the sniper when the lot was declared above its true value. {snipes} Each speculator sends its "
        "choice once per phase; choosing no lot is allowed.\n"
        "- Signals (phase 5): each player receives a private signal of the final share price under each condition, "
        "and everyone the public signal, the price the first declarations would give.\n"
        f"- Market (phase 6; everyone): {markets}. Each order buys (bid) or sells (ask) one share at your limit "
        "price. An order that meets the best opposite order trades at once, at the resting order's price; "
        "otherwise it rests in the book until it trades or you cancel it. A bid needs money not committed to your "
        "other bids, an ask a share not committed to your other asks. While the market is open you are asked "
        "again whenever the book or your wallet changes.\n"
        "- Final share price: at the end of the round each share pays the sum of the second declarations under the "
        f"winning condition x {final}% / 100. A round's profit: your lot's value under the winning condition "
        "(landholders) minus your taxes, plus your snipe gains or minus your snipe losses, plus your money and your "
        "shares x the final price after the market. One paid round counts for your payment.\n"
        "- Answering. When you must act, the user message ends with \"Action required:\" and a JSON object: its "
        "actionType names the decision, instructions say what it is, deadline when it is due, format the exact "
        "answer and additionalInfo its limits (declaration maxima, lot ids, price caps, free money and shares). "
        "Answer with one JSON object in that format and nothing else (no words, no code fence): the same gameId, "
        "and each placeholder replaced by whole numbers without quotes, separators or decimals. Lists by "
        "condition give No Project first, then Project. The decisions: SubmitDeclaration (owners and the "
        'developer, phases 2 and 7): {"gameId":G,"type":"declare","declaration":[X0,X1,0]}, X0 your declaration '
        "under No Project, X1 under Project, the third element 0; SubmitSnipes (speculators, phases 3 and 8): "
        '{"gameId":G,"type":"done-speculating","snipe":[L0,L1,[]]}, L0 and L1 the lists of lot ids you snipe under '
        "No Project and under Project, each id at most once, [] for none; TradeInMarket (everyone, phase 6): "
        '{"gameId":G,"type":"post-order","order":{"price":P,"quantity":1,"condition":C,"type":"bid","now":false}} '
        '(type "ask" to sell; C the condition of the market), or {"gameId":G,"type":"cancel-order","order":{"id":N,'
        '"condition":C}} to cancel your resting order N, or {"gameId":G,"type":"wait","order":null} to do nothing '
        "now."
    )


class MarketPrompts:
    """The market games' prompt variants (see the module docstring)."""

    variants = VARIANTS

    def rewrite(self, variant: str, view: Any, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        system, user = messages
        if variant == ZERO_SHOT:
            return [{**system, "content": system["content"] + rules(view)}, dict(user)]
        if variant == NO_HISTORY:
            return [dict(system), {**user, "content": without_earlier_rounds(user["content"])}]
        raise ValueError(f"no prompt variant {variant!r} in the market games")


PROMPTS = MarketPrompts()
