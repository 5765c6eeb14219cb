"""lib.games.voting.examples against hostile and careless input: lone surrogates in a log, huge chats, long games
(issues #12 and #13): prompts stay writable and bounded, as at play time, and a game streams its examples."""

from __future__ import annotations

import json
import re

from lib.dataset.build import BuildOptions, build_dataset
from lib.games.voting.examples import game_examples
from lib.ibex.log import parse_log
from tests.helpers.paths import REPO
from tests.helpers.votinglogs import long_game

LOGS = REPO / "tests" / "fixtures" / "dataset" / "logs"


def log_text(name: str = "901.log.json") -> str:
    return (LOGS / name).read_text(encoding="utf-8")


# -- text that cannot be written as UTF-8 ------------------------------------------------------------------------

def with_lone_surrogates(text: str) -> str:
    """901 with lone surrogates (valid JSON escapes) in a tag, a tally, a value range and two chat messages."""
    text = re.sub(r'"tag": ?"Owner 2"', r'"tag": "Owner \\udfff"', text)
    text = re.sub(r'"tally": ?3,', r'"tally": "\\udc01",', text, count=1)
    text = re.sub(r'"low": ?150000', r'"low": "\\udc02"', text)
    text = text.replace('"Hello owners, I will pay fairly."', '"Hello \\udc00 owners"')
    return text.replace('"How much will you pay?"', '"How much \\ud800?"')




def test_prompts_never_carry_a_lone_surrogate():
    result = game_examples(parse_log(json.loads(with_lone_surrogates(log_text())), "901"), include_chat=True)
    assert len(result.lines) > 10  # the log's decisions, its odd chat included: lines to check, not none
    assert any("\ufffd" in line for line in result.lines)  # where the surrogates were
    for line in result.lines:
        line.encode("utf-8")  # raises on a lone surrogate


# -- bounded prompts: chat and earlier rounds --------------------------------------------------------------------

def prompts_of(data: dict, **options) -> list[str]:
    result = game_examples(parse_log(data, "long"), **options)
    return [json.loads(line)["messages"][1]["content"] for line in result.lines]


def test_a_huge_chat_message_is_cut_in_training_and_at_play_time_saying_so():
    from lib.games.voting.actions import CHAT, build_action_required
    from lib.games.voting.prompts import MAX_CHAT_MESSAGE_CHARS, build_messages
    from lib.games.voting.view import PlayerView

    huge = "word " * 40_000 + "END"  # 200 KB
    result = game_examples(parse_log(long_game(2, chats=((1, 2, huge),)), "long"), include_chat=True)
    prompts = [json.loads(line)["messages"][1]["content"] for line in result.lines]
    shown = huge[:MAX_CHAT_MESSAGE_CHARS]
    cut_line = f'- phase 2, Developer to everyone: "{shown}" [cut here: 199,003 more characters not shown]'
    with_chat = [p for p in prompts if "Chat this round" in p]
    assert len(with_chat) == 11  # round 1's requests, offer and votes
    own_line = cut_line.replace("Developer to", "You to")  # the developer's own prompt (the offer)
    assert all((cut_line in p.splitlines() or own_line in p.splitlines()) and "END" not in p for p in with_chat)
    assert max(map(len, prompts)) < 6_000
    # The message itself is no example: no agent may send more than 500 characters.
    assert result.samples["malformed"] == ['long log[0]: chat-with-players from seat 2 (Developer), round 1 phase 2: '
                                           '"text" must be at most 500 characters, got 200003']
    # At play time the agent's view gives the same line (same code: lib.games.voting.prompts).
    view = PlayerView(game_id=7001, number=1, role=3, tag="Owner 1", round=1, phase=2)
    view.apply({"type": "event", "eventType": "message-received",
                "data": {"sender": 2, "to": [1, 3, 4, 5, 6], "text": huge}})
    user = build_messages(view, build_action_required(view, CHAT, cap=2_750_000))[1]["content"]
    assert cut_line in user.splitlines() and len(user) < 4_000


def test_the_chat_section_keeps_the_newest_messages_and_says_how_many_were_left_out():
    from lib.games.voting.prompts import MAX_CHAT_CHARS

    chats = tuple((1, 1 + i % 6, f"message {i:03d} " + "b" * 480) for i in range(100))
    prompts = prompts_of(long_game(1, chats=chats))
    request = prompts[0]  # the first owner's request in round 1: all 100 messages were sent before it
    lines = request.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("Chat this round"))
    kept = lines[header + 1:lines.index("Action required:")]
    assert lines[header] == (f"Chat this round (the {100 - len(kept)} oldest of 100 messages are left out: a prompt "
                             f"holds at most {MAX_CHAT_CHARS:,} characters of chat):")
    assert 10 <= len(kept) < 100 and sum(len(line) + 1 for line in kept) <= MAX_CHAT_CHARS
    assert kept[-1].endswith(f'"message 099 {"b" * 480}"') and f"message {100 - len(kept):03d}" in kept[0]


def test_a_prompt_lists_the_last_rounds_only_and_says_which_were_left_out():
    from lib.games.voting.prompts import MAX_EARLIER_ROUNDS

    prompts = prompts_of(long_game(300))
    assert len(prompts) == 300 * 11
    last = prompts[-1].splitlines()
    assert f"Earlier rounds (the last {MAX_EARLIER_ROUNDS}; 279 earlier round(s), 1 to 279, are left out):" in last
    assert [line.split(":")[0] for line in last if line.startswith("Round ")] == \
        [f"Round {r}" for r in range(280, 300)]
    # What a prompt carries no longer grows with the game: round 300's prompts are as long as round 30's.
    assert max(map(len, prompts[-11:])) < 1.1 * max(map(len, prompts[29 * 11:30 * 11]))
    assert "Earlier rounds:" in prompts[11 * 5] and "left out" not in prompts[11 * 20]


def test_a_game_streams_its_examples_instead_of_holding_them(tmp_path):
    batches: list[tuple[int, int]] = []
    result = game_examples(parse_log(long_game(100), "long"),
                           sink=lambda lines, states: batches.append((len(lines), len(states))))
    assert all(n_lines == n_states for n_lines, n_states in batches)  # each example's state goes with its line
    sizes = [n for n, _ in batches]
    assert sum(sizes) + len(result.lines) == 1_100 and max(sizes) <= 256 and len(result.lines) < 256
    assert len(result.states) == len(result.lines)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "7001.log.json").write_text(json.dumps(long_game(100)), encoding="utf-8")
    (logs / "7002.log.json").write_text(json.dumps(long_game(3, game_id=7002)), encoding="utf-8")
    built = build_dataset(BuildOptions(inputs=[logs], output_dir=tmp_path / "out", validation_fraction=0.4))
    lines = []
    for name in ("training_set.jsonl", "validation_set.jsonl"):
        lines += (tmp_path / "out" / name).read_text(encoding="utf-8").splitlines()
    assert built.n_examples == len(lines) == 1_133
    states = []
    for name in ("training_set.state.jsonl", "validation_set.state.jsonl"):
        states += (tmp_path / "out" / name).read_text(encoding="utf-8").splitlines()[1:]  # after the header
    assert len(states) == 1_133
    assert sorted(lines) == sorted(game_examples(parse_log(long_game(100), "a")).lines
                                   + game_examples(parse_log(long_game(3, game_id=7002), "b")).lines)

