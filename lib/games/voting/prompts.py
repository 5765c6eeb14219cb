"""The prompts a model sees: the rules and the player's role (system), then what the player knows now and the
action-required message (user). The dataset builder and the agents both call `build_messages`, so a model is
trained on exactly the prompts it is later played with.

What a prompt carries is bounded, whatever a game or a human does: the last MAX_EARLIER_ROUNDS finished rounds,
at most MAX_CHAT_MESSAGE_CHARS of one chat message and MAX_CHAT_CHARS of chat in all (the newest messages are
kept). Whatever is left out is said in the prompt. The bounds are far above what the real sessions had (5 paid
rounds, chat messages of at most 274 characters, at most about 5,000 characters of chat in a round of a game).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any

from lib.games.voting.rules import PHASES
from lib.games.voting.view import PlayerView, RoundRecord
from lib.ibex.params import CONDITIONS, NO_PROJECT, PROJECT, ROLE_DEVELOPER, ROLE_NAMES
from lib.util.text import printable

CONDITION_NAMES = {cond["id"]: cond["name"] for cond in CONDITIONS}
MAX_EARLIER_ROUNDS = 20  # finished rounds a prompt lists, the latest ones (a 1,000-round game stays linear)
MAX_CHAT_MESSAGE_CHARS = 1_000  # characters of one chat message's text in a prompt (twice what an agent may send)
MAX_CHAT_CHARS = 8_000  # characters of chat lines in a prompt, newest first (about 2,000 tokens)
EARLIER_ROUNDS = "Earlier rounds"  # how the header of the earlier rounds' lines begins (user_prompt_lines)
# What may follow the earlier rounds' lines in a user prompt (user_prompt_lines): this round, its chat, the action.
_AFTER_EARLIER_ROUNDS = ("This round so far: ", "Chat this round", "Action required:")
# json.dumps(..., ensure_ascii=False) without building an encoder per call (a prompt makes dozens of these calls).
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False)


def _json_number(value: Any) -> str:
    """json.dumps(value), with a shortcut for the usual int."""
    return str(value) if type(value) is int else json.dumps(value)


def _range_text(boundaries: dict[str, Any] | None, who: str) -> str:
    if not isinstance(boundaries, dict) or not isinstance(boundaries.get(who), dict):
        return ""
    parts = []
    for cond in CONDITIONS:
        b = boundaries[who].get(cond["key"])
        if isinstance(b, dict) and "low" in b and "high" in b:
            parts.append(f"{cond['name']} {b['low']}-{b['high']}")
    return "; ".join(parts)


def system_prompt(view: PlayerView) -> str:
    """The voting game's rules and this player's role (the same text all game long: kept with the view)."""
    made_from = (view.role, view.tag, view.number, view.round_count, view.practice_round)
    cached = view.system_rendered
    if cached is not None and cached[0] == made_from and _same(cached[1], view.boundaries):
        return cached[2]
    text = printable(_system_prompt(view))  # a tag or a range from a log may hold a lone surrogate
    view.system_rendered = (made_from, view.boundaries, text)
    return text


def _system_prompt(view: PlayerView) -> str:
    role = ROLE_NAMES.get(view.role or 0, "player")
    rounds = ""
    if view.round_count is not None:
        practice = " after a practice round (round 0) that does not count" if view.practice_round else ""
        rounds = f" The game has {view.round_count} paid rounds{practice}."
    owner_range = _range_text(view.boundaries, "owner")
    developer_range = _range_text(view.boundaries, "developer")
    ranges = ""
    if owner_range or developer_range:
        ranges = (f" Private values are drawn anew every round, owners' from {owner_range or 'unknown ranges'}, "
                  f"the developer's from {developer_range or 'unknown ranges'}.")
    return (
        "You are a participant in an economic experiment, the IBEX voting game. Six players: one developer "
        "(player 2) and five owners (players 1, 3, 4, 5, 6). In every round each player has two private values: "
        "the value of their lot if there is No Project, and if the Project goes ahead. The Project raises the "
        "developer's value and usually lowers the owners' values." + ranges + rounds + "\n"
        "Each round has phases: 1 presentation; 2 chat; 3 every owner privately sends the developer a "
        "compensation request; 4 the developer sees all requests and makes one offer X; 5 chat; 6 the owners vote "
        "for the Project [1] or No Project [0]; 7 results. The condition with more votes among owners who voted "
        "wins (a tie goes to the Project). If the Project wins, every owner receives X and the developer pays 5X.\n"
        "Profit in a round: an owner gets their value under the winning condition plus X if the Project won; the "
        "developer gets their value under the winning condition minus 5X if the Project won. Your payment depends "
        "on your profit.\n"
        f"You are {view.tag or 'a player'} (player {view.number}), the {role}. When an action is required, answer "
        "with exactly one JSON object in the format given, and nothing else."
    )


def _amount(amounts: Any) -> str:
    if isinstance(amounts, list) and len(amounts) > PROJECT:
        return _json_number(amounts[PROJECT])
    return "none"


def _condition_name(vote: Any) -> str:
    name = CONDITION_NAMES.get(vote)
    return name if name is not None else _json_number(vote)


def _vote(vote: Any) -> str:
    if isinstance(vote, list) and vote:
        return " and ".join(_condition_name(v) for v in vote)
    return "none"


def _values_line(rec: RoundRecord) -> str:
    if rec.values is None:
        return "Your private values this round: unknown."
    return (f"Your private values this round: {rec.values[NO_PROJECT]} if No Project, "
            f"{rec.values[PROJECT]} if Project.")


def _round_lines(view: PlayerView, rec: RoundRecord, finished: bool) -> list[str]:
    lines = []
    if view.role == ROLE_DEVELOPER:
        if rec.requests:
            reqs = ", ".join(f"{view.tag_of(n)} {_amount(r)}" for n, r in sorted(rec.requests.items()))
            lines.append(f"Requests received: {reqs}.")
        if rec.offer is not None:
            lines.append(f"Your offer: {_amount(rec.offer)}.")
    else:
        if rec.my_request is not None:
            lines.append(f"Your request: {_amount(rec.my_request)}.")
        if rec.offer is not None:
            lines.append(f"Developer's offer: {_amount(rec.offer)}.")
        if rec.my_vote is not None:
            lines.append(f"Your vote: {_vote(rec.my_vote)}.")
    if finished and rec.outcome is not None:
        out = {k: ("unknown" if v is None else v) for k, v in rec.outcome.items()}
        lines.append(
            f"Outcome: {CONDITION_NAMES.get(out.get('condition'), 'unknown')} won with {out.get('tally')} votes; "
            f"your value {out.get('value')}, compensation {out.get('compensation')}"
            + (f", profit {rec.profit}." if rec.profit is not None else ".")
        )
    return lines


def _same(old: Any, new: Any) -> bool:
    # players-known comes again every round, as a new but equal list: equal players give the same tags.
    return old is new or old == new


def _chat_line(view: PlayerView, msg: dict[str, Any]) -> str:
    who = "You" if msg.get("sender") == view.number else view.tag_of(msg.get("sender"))
    to = msg.get("to") if isinstance(msg.get("to"), list) else []
    audience = "everyone" if len(to) >= 5 else ", ".join(view.tag_of(n) for n in to)
    text = msg.get("text")
    cut = 0
    if type(text) is str:
        if len(text) > MAX_CHAT_MESSAGE_CHARS:
            text, cut = text[:MAX_CHAT_MESSAGE_CHARS], len(text) - MAX_CHAT_MESSAGE_CHARS
        # The server relays a lone surrogate (JSON "\\ud800") as it is: it becomes U+FFFD here instead of breaking
        # the prompt, its token count, the model call or the file it is written to (lib.util.text).
        text = encode_basestring(printable(text))
    else:  # not text at all (a number, a list): shown as the JSON it was, within the same bound
        text = _JSON_TEXT.encode(text)
        if len(text) > MAX_CHAT_MESSAGE_CHARS:
            text, cut = text[:MAX_CHAT_MESSAGE_CHARS], len(text) - MAX_CHAT_MESSAGE_CHARS
    line = f"- phase {msg.get('phase')}, {who} to {audience}: {text}"
    return line + f" [cut here: {cut:,} more characters not shown]" if cut else line


def _chat_lines(view: PlayerView, rec: RoundRecord) -> list[str]:
    """One line per chat message of the round. A round's chat only grows, and a player sees it in every later
    prompt of the round, so the lines are kept with the record and only new messages are rendered."""
    cached = rec.chat_rendered
    if cached is None or not _same(cached[0], view.players) or cached[1] != view.number \
            or len(cached[2]) > len(rec.chat):
        cached = rec.chat_rendered = (view.players, view.number, [])
    lines = cached[2]
    for msg in rec.chat[len(lines):]:
        lines.append(_chat_line(view, msg))
    return lines


def _earlier_round_line(view: PlayerView, rec: RoundRecord) -> str:
    """A finished round in one line. Every later prompt repeats it: it is rendered again only when something it is
    made from was replaced (the view replaces what it stores, never changes it in place)."""
    cached = rec.rendered
    if cached is not None:
        values, requests, my_request, offer, my_vote, outcome, players, role, profit, line = cached
        if values is rec.values and requests is rec.requests and my_request is rec.my_request \
                and offer is rec.offer and my_vote is rec.my_vote and outcome is rec.outcome and role == view.role \
                and profit == rec.profit and _same(players, view.players):
            return line
    values = f" values {rec.values[NO_PROJECT]}/{rec.values[PROJECT]}" if rec.values else ""
    line = f"Round {rec.round}{values}: " + " ".join(_round_lines(view, rec, finished=True))
    rec.rendered = (rec.values, rec.requests, rec.my_request, rec.offer, rec.my_vote, rec.outcome, view.players,
                    view.role, rec.profit, line)
    return line


def _earlier_rounds(view: PlayerView) -> tuple[list[int], list[int]]:
    """The numbers of the finished rounds a prompt lists (the last MAX_EARLIER_ROUNDS before the current one, in
    order) and of those it leaves out. Kept with the view while its rounds and current round are the same: a
    1,000-round game would otherwise sort its rounds for every prompt."""
    keys = tuple(view.rounds)
    cached = view.earlier_shown
    if cached is not None and cached[0] == view.round and cached[1] == keys:
        return cached[2], cached[3]
    numbers = sorted(n for n in keys if n < view.round)
    shown, left_out = numbers[-MAX_EARLIER_ROUNDS:], numbers[:-MAX_EARLIER_ROUNDS]
    view.earlier_shown = (view.round, keys, shown, left_out)
    return shown, left_out


def _chat_section(chat: list[str]) -> list[str]:
    """The chat lines a prompt holds: the newest, up to MAX_CHAT_CHARS, and a header that says what was left out."""
    size, first = 0, len(chat)
    while first > 0 and size + len(chat[first - 1]) + 1 <= MAX_CHAT_CHARS:
        first -= 1
        size += len(chat[first]) + 1
    if first == 0:
        return ["Chat this round:", *chat]
    return [f"Chat this round (the {first} oldest of {len(chat)} messages are left out: a prompt holds at most "
            f"{MAX_CHAT_CHARS:,} characters of chat):", *chat[first:]]


def user_prompt_lines(view: PlayerView, action_required: dict[str, Any]) -> list[str]:
    """The user prompt's lines (user_prompt joins them with newlines): the dataset builder counts tokens per line."""
    label = " (practice)" if view.round == 0 else ""
    of = f" of {view.round_count}" if view.round_count is not None else ""
    lines = [f"Game {view.game_id}, round {view.round}{of}{label}, phase {view.phase} ({PHASES.get(view.phase)}).",
             _values_line(view.current)]
    shown, left_out = _earlier_rounds(view)
    if left_out:
        lines.append(f"{EARLIER_ROUNDS} (the last {len(shown)}; {len(left_out)} earlier round(s), {left_out[0]} to "
                     f"{left_out[-1]}, are left out):")
    elif shown:
        lines.append(f"{EARLIER_ROUNDS}:")
    for number in shown:
        lines.append(_earlier_round_line(view, view.rounds[number]))
    now = _round_lines(view, view.current, finished=False)
    if now:
        lines.append("This round so far: " + " ".join(now))
    chat = _chat_lines(view, view.current)
    if chat:
        lines.extend(_chat_section(chat))
    lines.append("Action required:")
    lines.append(_JSON_TEXT.encode(action_required))
    # Tags, outcomes and the action's fields come from the server, or from a log, as they were: a lone surrogate
    # in any of them must not reach the model call or the training file (see lib.util.text).
    if all(map(str.isascii, lines)):
        return lines
    return [line if line.isascii() else printable(line) for line in lines]


def without_earlier_rounds(user: str) -> str:
    """A user prompt (user_prompt's text) without its earlier rounds: the header and the round lines that
    user_prompt_lines puts right after the values line, up to this round's lines. Read from the text, not the view,
    so that an example's prompt (whose sidecar line keeps only the current round) gives the same result as the
    play-time prompt (lib.games.voting.variants, the no-history prompt)."""
    lines = user.split("\n")
    if len(lines) < 3 or not lines[2].startswith(EARLIER_ROUNDS):
        return user
    end = next((i for i in range(3, len(lines)) if lines[i].startswith(_AFTER_EARLIER_ROUNDS)), len(lines))
    return "\n".join(lines[:2] + lines[end:])


def user_prompt(view: PlayerView, action_required: dict[str, Any]) -> str:
    """What this player knows now (round, own values, earlier rounds, this round so far), then the message."""
    return "\n".join(user_prompt_lines(view, action_required))


def build_messages(view: PlayerView, action_required: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages for a model call: system, then user."""
    return [
        {"role": "system", "content": system_prompt(view)},
        {"role": "user", "content": user_prompt(view, action_required)},
    ]

