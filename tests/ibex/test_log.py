"""lib/ibex/log.py: reading both log formats of docs/protocol.md section 5, with one precise line per unusable file."""

import json

import pytest

from lib.ibex.log import LogError, parse_log, read_log, server_frame
from tests.helpers.paths import FIXTURES

FIXTURES = FIXTURES / "dataset"
LOGS, BROKEN = FIXTURES / "logs", FIXTURES / "broken"


def load(name: str) -> dict:
    return json.loads((LOGS / name).read_text(encoding="utf-8"))


def test_a_log_with_server_log_is_read_with_typed_parameters():
    log = read_log(LOGS / "901.log.json")
    assert log.game_id == 901
    assert log.source == str(LOGS / "901.log.json")
    assert log.params.round_count == 2 and log.params.practice_round is False
    assert log.params.rounds() == [1, 2]
    assert log.params.session_number == 2
    assert log.params.timer(3) == 3.0 and log.params.get("agents_only") is False
    assert log.server_log is not None and len(log.server_log) == len(load("901.log.json")["server-log"])
    assert log.entries[6]["content"] == {"gameId": 901, "type": "player-is-ready"}


def test_a_2023_log_without_server_log_is_read():
    log = read_log(LOGS / "902.log.json")
    assert log.server_log is None
    assert log.game_id == 902
    assert log.params.rounds() == [0, 1] and log.params.timer(2) == 180.0
    joins = [e for e in log.entries if e["type"] == "message" and e["content"]["type"] == "join"]
    assert len(joins) == 6 and all("number" not in e for e in joins)


def test_a_server_log_record_becomes_the_frame_the_client_received():
    event = {"sent": {"type": "set-timer", "data": {"end": 5}}, "meta": {"recipient": "all", "round": 0, "phase": 0}}
    assert server_frame(event) == {"type": "event", "eventType": "set-timer", "data": {"end": 5}}
    assert server_frame({"sent": {"type": "game-over"}, "meta": {}})["data"] == {}


def test_the_game_id_falls_back_to_the_simulation_parent_parameter():
    data = load("902.log.json")
    data["log"] = [e for e in data["log"] if e["type"] == "phase-timeout"]
    assert parse_log(data).game_id is None
    data["parameters"].append({"key": "simulation_parent_id", "type": "number", "value": "77"})
    assert parse_log(data).game_id == 77


@pytest.mark.parametrize("name, message", [
    ("truncated.log.json", "truncated.log.json:372: the JSON ends early (truncated file?): Expecting ',' delimiter"),
    ("not-json.log.json", "not-json.log.json:1: not valid JSON: Expecting value (column 1)"),
    ("not-a-log.log.json", "not-a-log.log.json: not an IBEX log (no 'parameters' or 'log')"),
    ("wrong-type.log.json", "wrong-type.log.json: log[3].content.type: expected a string, got number"),
    ("seat-as-string.log.json", "seat-as-string.log.json: log[8].number: expected an integer seat, got string"),
    ("bad-parameter.log.json",
     "bad-parameter.log.json: parameters[18]: parameter 'round_count' must be a number, got 'many'"),
    ("other-game.log.json",
     "other-game.log.json: a 'market' game; only voting, harberger and futarchy games can be used"),
])
def test_each_broken_fixture_gets_one_line_naming_the_file_and_the_problem(name, message):
    with pytest.raises(LogError) as caught:
        read_log(BROKEN / name)
    assert str(caught.value) == f"{BROKEN}/{message}"
    assert "\n" not in str(caught.value)


def test_a_missing_or_empty_file_is_named(tmp_path):
    with pytest.raises(LogError, match=r"nowhere\.log\.json: cannot read \(No such file or directory\)"):
        read_log(tmp_path / "nowhere.log.json")
    (tmp_path / "empty.log.json").write_text("  \n", encoding="utf-8")
    with pytest.raises(LogError, match=r"empty\.log\.json: empty file, not an IBEX log$"):
        read_log(tmp_path / "empty.log.json")
    (tmp_path / "latin1.log.json").write_bytes(b'{"log": "\xe9"}')
    with pytest.raises(LogError, match=r"latin1\.log\.json: not UTF-8 text"):
        read_log(tmp_path / "latin1.log.json")


def mutated(change) -> dict:
    data = load("901.log.json")
    change(data)
    return data


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(log={}), "log: expected an array, got object"),
    (lambda d: d["log"].__setitem__(2, "join"), "log[2]: expected an object, got string"),
    (lambda d: d["log"][4].update(type="chat"), "log[4].type: expected 'message' or 'phase-timeout', got 'chat'"),
    (lambda d: d["log"][4].update(content=[1]), "log[4].content: expected an object, got array"),
    (lambda d: d["log"][7].update(number=9), "log[7].number: seat 9 does not exist (1..6)"),
    (lambda d: d["log"][7].update(number=True), "log[7].number: expected an integer seat, got boolean"),
    (lambda d: d["log"][7].update(phase="3"), "log[7].phase: expected an integer, got string"),
    (lambda d: d["log"][7].update(phase=8), "log[7].phase: phase 8 does not exist (0..7)"),
    (lambda d: d["log"][7].pop("round"), "log[7].round: expected an integer, got null"),
    (lambda d: d["log"][7].update(round=-1), "log[7].round: round -1 is negative"),
    (lambda d: d.update({"server-log": {}}), "server-log: expected an array, got object"),
    (lambda d: d["server-log"][3].update(sent=None), "server-log[3].sent: expected an object, got null"),
    (lambda d: d["server-log"][3]["sent"].update(type=1), "server-log[3].sent.type: expected a string, got number"),
    (lambda d: d["server-log"][3]["sent"].update(data=[]), "server-log[3].sent.data: expected an object, got array"),
    (lambda d: d["server-log"][3].pop("meta"), "server-log[3].meta: expected an object, got null"),
    (lambda d: d["server-log"][3]["meta"].update(recipient="2"),
     'server-log[3].meta.recipient: expected "all" or a seat/role number, got string'),
    (lambda d: d["server-log"][3]["meta"].update(phase=None),
     "server-log[3].meta.phase: expected an integer, got null"),
    (lambda d: d["log"][7].update(round=3), "log[7].round: round 3 is beyond round_count 2"),
    (lambda d: d["server-log"][9]["meta"].update(round=10**9),
     "server-log[9].meta.round: round 1000000000 is beyond round_count 2"),
])
def test_wrong_types_are_reported_with_their_field_path(change, message):
    data = mutated(change)
    with pytest.raises(LogError) as caught:
        parse_log(data, "x.log.json")
    assert str(caught.value) == f"x.log.json: {message}"


def test_without_a_game_type_parameter_the_game_is_a_voting_game():
    data = mutated(lambda d: d.update(parameters=[p for p in d["parameters"] if p["key"] != "game_type"]))
    assert parse_log(data, "x").params.game_type == "voting"


def test_a_log_without_round_count_cannot_be_replayed():
    data = mutated(lambda d: d.update(parameters=[p for p in d["parameters"] if p["key"] != "round_count"]))
    with pytest.raises(LogError, match=r"^x: parameter 'round_count' is missing or not a number$"):
        parse_log(data, "x")


def test_top_level_shapes_that_are_not_logs():
    with pytest.raises(LogError, match=r"^x: not an IBEX log \(expected a JSON object .*, got array\)$"):
        parse_log([1, 2], "x")
    with pytest.raises(LogError, match=r"^x: not an IBEX log \(no 'log'\)$"):
        parse_log({"parameters": []}, "x")


@pytest.mark.parametrize("text", [
    '{"a": 18446744073709551616}',  # beyond 64 bits: orjson would give a float
    '[-9223372036854775809, 9223372036854775808, 123456789012345678901234567890]',
    '{"n": 1e400, "m": NaN, "i": -Infinity}',
    '{"text": "\\ud800 lone surrogate"}',
    '\ufeff{"bom": true}',
    '{"a": 1, "a": 2, "f": 0.1, "g": -0.0, "h": 5e-324, "z": -0, "s": "\\u0000\\ud83d\\ude00"}',
    '{"code": "code000000000000000000000000000000", "t": ": 12345678901234567890"}',
    '{"code": "code0000000000000000000000000", "then": [1, -12345678901234567890123]}',
])
def test_logs_are_parsed_to_exactly_the_values_the_json_module_gives(text):
    from lib.ibex.log import _loads

    raw = text.encode("utf-8")
    parsed, expected = _loads(raw), json.loads(raw)
    assert repr(parsed) == repr(expected)  # repr: NaN != NaN, and 1 == 1.0 would hide a float
    assert json.dumps(parsed) == json.dumps(expected)


def test_a_huge_integer_in_a_log_stays_an_integer(tmp_path):
    data = load(sorted(p.name for p in LOGS.glob("*.log.json"))[0])
    data["log"].append({"type": "message", "round": 1, "phase": 3, "number": 1,
                        "content": {"gameId": 9, "type": "compensation-request",
                                    "compensationRequests": [None, 10**20]}})
    path = tmp_path / "9.log.json"
    path.write_text(json.dumps(data))
    amount = read_log(path).entries[-1]["content"]["compensationRequests"][1]
    assert amount == 10**20 and type(amount) is int


def test_a_market_log_goes_to_its_game_whole_with_who_played_it():
    """The reader checks the envelope and hands the rest to the game found by game_type (no exception routing)."""
    import gzip

    from tests.helpers.paths import FIXTURES as ALL_FIXTURES

    with gzip.open(ALL_FIXTURES / "market_logs.json.gz", "rt") as f:
        data = json.load(f)["logs"]["harberger-12"]
    log = parse_log(data, "h.log.json")
    assert (log.source, log.game_type) == ("h.log.json", "harberger")
    assert log.data is data  # the market's examples replay the decoded log as it is
    marked = parse_log({**data, "recorded-by": "ibex-llm-agents local server"}, "h.log.json")
    assert marked.played_by_agents == "recorded by this project's local server"
    with pytest.raises(LogError, match=r"^h.log.json: parameters\[0\]: expected an object"):
        parse_log({**data, "parameters": [7]}, "h.log.json")
