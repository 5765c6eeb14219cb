"""create-for-llm's nested gameParameters: the one conversion from flat parameters
(lib.agents.realserver.create_payload), what
the real server stores from it (lib.ibex.createparams.stored_rows), and back to typed parameters
(lib.games.voting.rules), checked
against rows recorded from the real server (tests/fixtures/create_for_llm/real_server_rows.json)."""

from __future__ import annotations

import json

import pytest

from lib.agents.realserver import create_payload
from lib.ibex import js
from lib.ibex.createparams import CREATE_ROWS, LOG_ONLY_KEYS, ROW_TYPES, nested_payload, stored_rows
from lib.ibex.params import DEFAULT_PARAMETERS, parse_parameters
from tests.helpers.paths import FIXTURES

RECORDED = json.loads((FIXTURES / "create_for_llm" / "real_server_rows.json").read_text())
CASES = ("ui_default_voting", "finished_game")


def log_rows(case: str) -> list[dict[str, str]]:
    """The recorded rows as a log lists them, without the two a finished game adds."""
    return [row for row in RECORDED[case]["rows"] if row["key"] not in LOG_ONLY_KEYS]


@pytest.mark.parametrize("case", CASES)
def test_stored_rows_are_what_the_real_server_stored_for_the_same_payload(case):
    assert stored_rows(RECORDED[case]["gameParameters"])[::-1] == log_rows(case)


@pytest.mark.parametrize("case", CASES)
def test_round_trip_from_a_recorded_log_to_the_payload_and_back(case):
    typed = parse_parameters(RECORDED[case]["rows"]).values  # what the dataset builder reads from that log

    payload, params = create_payload(RECORDED[case]["rows"], title="again")
    rows = stored_rows(payload)[::-1]

    assert rows == log_rows(case)
    assert parse_parameters(rows).values == {k: v for k, v in typed.items() if k not in LOG_ONLY_KEYS}
    assert params.values == parse_parameters(rows).values


def test_the_web_uis_default_voting_payload_is_the_projects_defaults():
    payload, _params = create_payload(None, title=RECORDED["ui_default_voting"]["gameParameters"]["title"])

    ui = RECORDED["ui_default_voting"]["gameParameters"]
    # Same object but for phase_0, which the UI sends as null and the server does not store.
    assert payload == {**ui, "timers": {k: v for k, v in ui["timers"].items() if v is not None}}
    assert log_rows("ui_default_voting") == [{"key": k, "type": t, "value": v} for k, t, v in DEFAULT_PARAMETERS]


@pytest.mark.parametrize(("key", "kind"), [(key, kind) for key, kind, _path in CREATE_ROWS])
def test_every_parameter_survives_nested_payload_stored_rows_and_typing(key, kind):
    changed = {"number": 7, "float": 0.25, "boolean": True, "string": "voting"}[kind]
    if key == "practice_round":
        changed = False

    payload, params = create_payload({key: changed})
    typed = parse_parameters(stored_rows(payload)).values

    assert typed[key] == changed and params.values[key] == changed
    assert typed == params.values


def test_the_table_is_createGames_voting_list():
    assert len(CREATE_ROWS) == len(ROW_TYPES) == 59  # 56 stored by default: timers 0, 8 and 9 are null/absent
    assert ROW_TYPES["signal_low"] == "float" and ROW_TYPES["practice_round"] == "boolean"


def test_a_flat_object_fails_as_on_the_real_server():
    with pytest.raises(js.JSTypeError) as flat:
        stored_rows({"round_count": 3, "timer_phase_3": 60})
    with pytest.raises(js.JSTypeError) as null_signal:
        stored_rows({**nested_payload({}), "tax_rate": {"initial": 1, "final": 2}, "signal": None})

    assert str(flat.value) == "Cannot read properties of undefined (reading 'initial')"
    assert str(null_signal.value) == "Cannot read properties of null (reading 'low')"


def test_values_are_stored_as_javascript_writes_them():
    payload = {**create_payload({})[0], "round_count": "3", "practice": None, "show_up_fee": "",
               "session_number": None, "minutes_for_trading": [1, 2], "seconds_for_deliberation": 1e21,
               "signal": {"low": 1e-7, "generate": "yes"}}

    rows = {row["key"]: row["value"] for row in stored_rows(payload)}

    assert rows["round_count"] == "3" and rows["practice_round"] == "null"
    assert "show_up_fee" not in rows and "session_number" not in rows  # a null or "" number is skipped
    assert rows["minutes_for_trading"] == "1,2" and rows["seconds_for_deliberation"] == "1e+21"
    assert (rows["signal_low"], rows["signal_high"], rows["generate_signals"]) == ("1e-7", "undefined", "yes")
