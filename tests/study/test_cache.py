"""The study's model-call cache: keys per game, seat and attempt, damaged and cut lines, cost and the cap."""

from __future__ import annotations

import json

import pytest

from lib.study.cache import CachedCall, CallCache, SpendTracker, call_key, cost_usd

MESSAGES = [{"role": "system", "content": "You own a lot."}, {"role": "user", "content": "Your request?"}]


def key(**changes):
    fields = {"endpoint": "openai", "model": "gpt-4o-mini", "temperature": 0.7, "messages": MESSAGES,
              "game_index": 3, "seat": 1, "attempt": 0} | changes
    return call_key(**fields)


def test_repeated_games_seats_and_attempts_are_separate_draws():
    base = key()
    assert key() == base and key(temperature=0.7000) == base
    for change in ({"game_index": 4}, {"seat": 3}, {"attempt": 1}, {"temperature": 0.0}, {"model": "gpt-4o"},
                   {"endpoint": "other"}, {"messages": MESSAGES[:1]}):
        assert key(**change) != base, change


def test_a_prompt_variant_is_a_key_of_its_own_and_the_default_keys_stay_as_they_were():
    """Two variants never share an answer, even with the same messages (no-history on a first round has the
    default's); a key without a prompt is the default's, so the caches written before variants still answer."""
    base = key()
    assert key(prompt="default") == base
    assert key(prompt="no-history") != base and key(prompt="zero-shot") != key(prompt="no-history")
    # the default's key is the one call_key gave before prompt variants existed
    assert base == "fbd4d0247bce87fb6a391faa40bbf543e89ea3f854d1ed353a35bd46555efa87"


def test_answers_survive_a_new_run(tmp_path):
    path = tmp_path / "calls.jsonl"
    cache = CallCache(path)
    call = CachedCall(key(), '{"request": 250000}', 120, 8, 0.0001, "openai", "gpt-4o-mini", 3, 1, 0)
    cache.put(call)
    again = CallCache(path)
    assert again.get(key()) == call and len(again) == 1 and again.get(key(seat=2)) is None


def test_a_damaged_line_is_skipped_with_a_warning_naming_it(tmp_path):
    path = tmp_path / "calls.jsonl"
    good = CachedCall(key(), "a")
    path.write_text("{not json\n" + json.dumps({"key": 5}) + "\n" + json.dumps(good.__dict__) + "\n")
    warnings = []
    cache = CallCache(path, warn=warnings.append)
    assert cache.get(key()) == good and cache.skipped == 2
    assert warnings == [f"{path}:1: damaged cache line skipped (the call will be made again)",
                        f"{path}:2: damaged cache line skipped (the call will be made again)"]


def test_a_cut_line_is_never_glued_to_the_next_record(tmp_path):
    path = tmp_path / "calls.jsonl"
    first = CachedCall(key(), "first")
    whole = json.dumps(first.__dict__)
    path.write_text(whole + "\n" + whole[: len(whole) // 2])  # a kill mid-write
    warnings = []
    cache = CallCache(path, warn=warnings.append)
    second = CachedCall(key(attempt=1), "second")
    cache.put(second)
    reread = CallCache(path, warn=warnings.append)
    assert reread.get(second.key) == second and reread.get(first.key) == first
    assert len(warnings) == 2 and all(":2: damaged" in w for w in warnings)
    assert path.read_text().count("\n") == 3


def test_cost_uses_the_list_prices_and_unknown_models_cost_none():
    from lib.evaluation.cli import prices

    per_input, per_output = prices("gpt-4o-mini")
    assert cost_usd("gpt-4o-mini", 1_000_000, 2_000_000) == pytest.approx(per_input + 2 * per_output)
    assert cost_usd("no-such-model", 10, 10) is None


def test_the_spend_cap_is_reached_by_priced_calls_only():
    spend = SpendTracker(cap_usd=0.01)
    spend.add(0.004)
    spend.add(None)
    assert not spend.reached() and spend.unpriced == 1 and spend.calls == 2
    spend.add(0.006)
    assert spend.reached() and spend.spent == pytest.approx(0.01)
    assert not SpendTracker(None).reached()


def test_the_key_ignores_wall_clock_times_but_not_the_rest_of_the_text():
    def said(text: str) -> str:
        return call_key("e", "m", None, [{"role": "user", "content": text}], 0, 1, 1)

    first = said('{"actionRequiredBy": "2026-12-05T13:05:19.516Z"}, before the timer ends at 2026-12-05T13:05:19Z')
    again = said('{"actionRequiredBy": "2026-12-06T09:00:00.001Z"}, before the timer ends at 2026-12-06T09:00:00Z')
    assert first == again != said('{"actionRequiredBy": "2026-12-05T13:05:19.516Z"}, before the timer ends')
    assert call_key("e", "m", None, [], 0, 1, 1) != call_key("e", "m", 1.0, [], 0, 1, 1)


def test_the_tracker_names_the_cap_once_it_is_reached():
    spend = SpendTracker(cap_usd=0.5)
    spend.add(0.25)
    assert spend.cap_reason() is None
    spend.add(0.25)
    assert spend.cap_reason() == "the spending cap of $0.50 is reached ($0.5000 spent on 2 calls)"
    assert SpendTracker().cap_reason() is None
