"""The study file: loading, one-line errors naming file, key and problem, the digest and the game slots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lib.study.spec import ModelPolicy, StudyError, load_study
from tests.helpers.paths import REPO

ROOT = REPO
LOG = ROOT / "jsonFiles" / "1.log.json"

BASE = """
name = "s1"
game = "voting"
games_per_arm = 3
[endpoints.local]
base_url_env = "FAKE_BASE_URL"
[arms.rules]
developer = "baseline"
owners = "baseline"
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(StudyError) as info:
        load_study(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "study.toml") + ": ")
    return message


def test_the_shipped_example_loads():
    study = load_study(ROOT / "studies" / "example.toml")
    assert study.name == "example" and study.game == "voting" and study.games_per_arm == 20
    assert [arm.name for arm in study.arms] == ["rules", "model-developer"]
    developer = study.arms[1].seats[2]
    assert developer == ModelPolicy("openai", "gpt-4o-mini", 0.7, "default")
    assert study.arms[1].seats[1] == "baseline"
    assert study.parameters["round_count"] == 5 and study.parameters["timer_phase_2"] == 60
    assert study.parameters_like == ROOT / "studies" / ".." / "jsonFiles" / "1.log.json"
    assert study.fast and study.limits.spend_usd == 5.0 and study.limits.max_fallback_share == 0.05
    assert len(study.compare_with) == 3 and len(study.digest) == 64


def test_a_minimal_study_gets_the_defaults(tmp_path):
    study = load_study(write(tmp_path, BASE))
    assert study.server == "local" and study.concurrency == 1 and study.workers == 1 and not study.fast
    assert study.values.source == "fresh" and study.values.seed == 0
    assert study.parameters["round_count"] == 5  # the real server's default
    assert study.arms[0].seats == dict.fromkeys(range(1, 7), "baseline")


def test_a_seat_number_overrides_its_group(tmp_path):
    text = BASE + '3 = "fitted"\n'
    assert load_study(write(tmp_path, text)).arms[0].seats[3] == "fitted"


@pytest.mark.parametrize("extra, key, problem", [
    ('colour = "red"\n', "colour", "unknown key"),
    ('[limits]\nspend = 3\n', "limits.spend", "unknown key"),
    ('[arms.x]\ndeveloper = "baseline"\nspeculators = "baseline"\n', "arms.x.speculators",
     "not a seat group of a voting game"),
    ('[arms.x]\ndeveloper = "baseline"\nowners = "baseline"\n7 = "baseline"\n', "arms.x.7",
     "seat 7 does not exist in a voting game"),
    ('[arms.x]\ndeveloper = { model = "gpt-4o-mini" }\nowners = "baseline"\n', "arms.x.developer.endpoint",
     "a model needs the name of an endpoint"),
    ('[arms.x]\ndeveloper = { endpoint = "azure", model = "m" }\nowners = "baseline"\n',
     "arms.x.developer.endpoint", "'azure' is not in [endpoints] (have: local)"),
    ('[arms.x]\ndeveloper = { endpoint = "local", model = "m", temperature = 5 }\nowners = "baseline"\n',
     "arms.x.developer.temperature", "at most 2"),
    ('[arms.x]\ndeveloper = "smart"\nowners = "baseline"\n', "arms.x.developer", "'smart' is not a policy"),
    ('[arms.x]\ndeveloper = { endpoint = "local", model = "m", prompt = "zeroshot" }\nowners = "baseline"\n',
     "arms.x.developer.prompt", "'zeroshot' is not a prompt variant of the voting game (it has default, zero-shot, "
                                "no-history)"),
    ('[arms.x]\ndeveloper = "baseline"\n', "arms.x", "seat(s) 1, 3, 4, 5, 6 have no policy"),
    ('concurrency = 0\n', "concurrency", "must be from 1"),
    ('concurrency = "4"\n', "concurrency", "must be a whole number"),
    ('workers = 0\n', "workers", "must be from 1 to 64"),
    ('workers = 2\nserver = "real"\n', "workers", "on the local server only"),
    ('fast = "yes"\n', "fast", "must be true or false"),
    ('server = "real"\nfast = true\n', "fast", "only on the local server"),
    ('strict = 1\n', "strict", "must be true or false"),
    ('server = "real"\nstrict = true\n', "strict", "only on the local server"),
    ('[limits]\nmax_fallback_share = 1.5\n', "limits.max_fallback_share", "at most 1"),
    ('[limits]\nspend_usd = 0\n', "limits.spend_usd", "above 0"),
    ('[endpoints.leaky]\nbase_url_env = "X"\napi_key = "sk-secret"\n', "endpoints.leaky.api_key",
     "keys never go in a study file"),
    ('[endpoints.odd]\nbase_url_env = "http://x"\n', "endpoints.odd.base_url_env",
     "an environment variable's name"),
    ('[values]\nsource = "dreams"\n', "values.source", "must be one of fresh, sessions, logs"),
    ('[values]\nsource = "fresh"\nlogs = ["a"]\n', "values.logs", "not used with source = 'fresh'"),
    ('[values]\nsource = "logs"\nlogs = ["nowhere.log.json"]\n', "values.logs[0]", "no such file"),
    ('compare_with = "x"\n', "compare_with", "must be an array"),
    ('compare_sessions = "nowhere.json"\n', "compare_sessions", "no such file"),
    ('compare_sessions = "study.toml"\n', "compare_sessions", "not valid JSON"),
    ('server = "real"\n', "values.source", "a real server reads values only from its own sessions table"),
])
def test_a_wrong_study_file_gets_one_line_naming_the_key(tmp_path, extra, key, problem):
    head, arms = BASE.split("[endpoints.local]")
    # top-level keys must come before the first table
    text = head + extra + "[endpoints.local]" + arms if not extra.startswith("[") else BASE + extra
    message = error_of(tmp_path, text)
    assert f": {key}: " in message and problem in message, message


def test_missing_required_keys_and_bad_toml(tmp_path):
    assert ": games_per_arm: missing" in error_of(tmp_path, BASE.replace("games_per_arm = 3\n", ""))
    assert "not valid TOML" in error_of(tmp_path, BASE + "[arms\n")
    assert ": game: 'chess' is not a game type" in error_of(tmp_path, BASE.replace('"voting"', '"chess"'))
    assert ": name: " in error_of(tmp_path, BASE.replace('"s1"', '"../escape"'))


def test_parameters_are_checked_as_handler_params_checks_them(tmp_path):
    message = error_of(tmp_path, BASE + "[parameters]\nround_cnt = 3\n")
    assert "'round_cnt': not a parameter create-for-llm sets" in message
    message = error_of(tmp_path, BASE + "[parameters]\ntimer_phase_3 = -1\n")
    assert "timer_phase_3" in message
    message = error_of(tmp_path, BASE + '[parameters]\ngame_type = "futarchy"\n')
    assert "parameters.game_type: 'futarchy' disagrees with game = 'voting'" in message


def test_parameters_like_a_recorded_log(tmp_path):
    shutil.copy(LOG, tmp_path / "g.log.json")
    recorded = {p["key"]: p["value"] for p in json.loads(LOG.read_text())["parameters"]}
    study = load_study(write(tmp_path, BASE + '[parameters]\nlike = "g.log.json"\ntimer_phase_3 = 45\n'))
    assert study.parameters["timer_phase_3"] == 45
    assert study.parameters["round_count"] == int(recorded["round_count"])
    assert "simulation_parent_id" not in study.parameters


def test_a_market_study_has_speculators(tmp_path):
    text = BASE.replace('"voting"', '"harberger"') + 'speculators = "baseline"\n'
    study = load_study(write(tmp_path, text))
    assert sorted(study.arms[0].seats) == list(range(1, 13))
    message = error_of(tmp_path, BASE.replace('"voting"', '"futarchy"'))
    assert "seat(s) 7, 8, 9, 10, 11, 12 have no policy" in message


def test_sessions_must_hold_every_round_the_parameters_play(tmp_path):
    table = [{"id": 4, "rounds": [{"values": [{"developer": 300, "owner": [400] * 5},
                                              {"developer": 900, "owner": [200] * 5}]}] * 3}]
    (tmp_path / "sessions.json").write_text(json.dumps(table))
    ok = BASE + '[parameters]\nround_count = 2\n[values]\nsource = "sessions"\ntable = "sessions.json"\n' \
                'sessions = [4]\n'
    study = load_study(write(tmp_path, ok))
    assert study.games_in_arm() == 3 and [s.source for s in study.slots()] == ["session 4"] * 3
    assert [s.replay for s in study.slots()] == [0, 1, 2]
    message = error_of(tmp_path, ok.replace("round_count = 2", "round_count = 8"))
    assert "values.sessions[0]: session 4 of" in message and "no values for round 3" in message
    message = error_of(tmp_path, ok.replace("sessions = [4]", "sessions = [5]"))
    assert "values.sessions[0]: session 5 is not in" in message


def test_logs_take_turns_and_every_arm_gets_the_same_seeds(tmp_path):
    for name in ("a.log.json", "b.log.json"):
        shutil.copy(LOG, tmp_path / name)
    text = BASE + '[values]\nsource = "logs"\nlogs = ["a.log.json", "b.log.json"]\nseed = 9\n'
    study = load_study(write(tmp_path, text))
    slots = study.slots()
    assert len(slots) == 6
    assert [Path(s.source).name for s in slots] == ["a.log.json", "b.log.json"] * 3
    assert [s.replay for s in slots] == [0, 0, 1, 1, 2, 2]
    assert len({s.seed for s in slots}) == 6
    again = load_study(write(tmp_path, text, "again.toml"))
    assert [s.seed for s in again.slots()] == [s.seed for s in slots]


def test_the_digest_follows_meaning_not_layout(tmp_path):
    first = load_study(write(tmp_path, BASE))
    reordered = BASE.replace('developer = "baseline"\nowners = "baseline"', 'owners = "baseline"\n'
                             'developer = "baseline"') + "# a comment\n"
    assert load_study(write(tmp_path, reordered, "b.toml")).digest == first.digest
    head, rest = BASE.split("[endpoints.local]")
    not_results = head + "concurrency = 8\nworkers = 2\n[limits]\nspend_usd = 2.5\n[endpoints.local]" + rest
    assert load_study(write(tmp_path, not_results, "c.toml")).digest == first.digest
    assert load_study(write(tmp_path, BASE.replace("= 3", "= 4"), "d.toml")).digest != first.digest
    assert load_study(write(tmp_path, BASE + '2 = "fitted"\n', "e.toml")).digest != first.digest
    assert json.loads(first.canonical)["arms"]["rules"]["2"] == "baseline"


def test_the_sessions_of_the_compared_logs_count_in_the_digest_only_when_given(tmp_path):
    shutil.copy(ROOT / "jsonFiles" / "sessions.json", tmp_path / "sessions.json")
    head, rest = BASE.split("[endpoints.local]")
    plain = load_study(write(tmp_path, BASE))
    study = load_study(write(tmp_path, head + 'compare_sessions = "sessions.json"\n[endpoints.local]' + rest, "b.toml"))
    assert plain.compare_sessions is None and "compare_sessions" not in json.loads(plain.canonical)
    assert study.compare_sessions == tmp_path / "sessions.json" and study.digest != plain.digest


def test_strict_mode_counts_in_the_digest_only_when_asked(tmp_path):
    head, rest = BASE.split("[endpoints.local]")
    plain = load_study(write(tmp_path, BASE))
    strict = load_study(write(tmp_path, head + "strict = true\n[endpoints.local]" + rest, "b.toml"))
    assert not plain.strict and "strict" not in json.loads(plain.canonical)  # older files keep their digest
    assert strict.strict and strict.digest != plain.digest


def test_editing_a_file_the_study_reads_changes_the_digest(tmp_path):
    shutil.copy(LOG, tmp_path / "g.log.json")
    text = BASE + '[values]\nsource = "logs"\nlogs = ["g.log.json"]\n'
    before = load_study(write(tmp_path, text)).digest
    data = json.loads((tmp_path / "g.log.json").read_text())
    data["log"] = data["log"][:-1]
    (tmp_path / "g.log.json").write_text(json.dumps(data))
    assert load_study(write(tmp_path, text)).digest != before


def test_the_docs_show_the_shipped_example():
    docs = (ROOT / "docs/studies.md").read_text(encoding="utf-8")
    shown = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    shipped = (ROOT / "studies" / "example.toml").read_text(encoding="utf-8")
    assert shipped.endswith(shown)


def test_logs_of_another_game_are_refused(tmp_path):
    import gzip

    with gzip.open(ROOT / "tests" / "fixtures" / "market_logs.json.gz") as fh:
        market = json.load(fh)["logs"]["futarchy-13"]
    (tmp_path / "f.log.json").write_text(json.dumps(market))
    head, rest = BASE.split("[endpoints.local]")
    message = error_of(tmp_path, head + 'compare_with = ["f.log.json"]\n[endpoints.local]' + rest)
    assert ": compare_with[0]: " in message and "is a 'futarchy' game, the study's game is 'voting'" in message
    message = error_of(tmp_path, BASE + '[values]\nsource = "logs"\nlogs = ["f.log.json"]\n')
    assert ": values.logs[0]: " in message and "'futarchy' game" in message


@pytest.fixture
def ultimatum():
    """The test-only ultimatum game (tests/games/ultimatum), whose seat groups are its own: proposer, responder."""
    from lib.games import register, unregister
    from tests.games.ultimatum.game import GAME

    register(GAME)
    yield GAME
    unregister(GAME.name)


ULTIMATUM = """
name = "u1"
game = "ultimatum"
games_per_arm = 2
[parameters]
pie = 40
"""


def test_arms_name_the_seat_groups_of_the_study_s_own_game(tmp_path, ultimatum):
    study = load_study(write(tmp_path, ULTIMATUM + '[arms.rules]\nproposer = "baseline"\nresponder = "fitted"\n'))
    assert study.arms[0].seats == {1: "baseline", 2: "fitted"}
    assert study.parameters["pie"] == 40 and study.parameters["game_type"] == "ultimatum"
    # the IBEX games' group names are not the ultimatum game's: one line listing the groups it has
    message = error_of(tmp_path, ULTIMATUM + '[arms.rules]\nproposer = "baseline"\nowners = "baseline"\n')
    assert ": arms.rules.owners: 'owners' is not a seat group of a ultimatum game (proposer, responder, or a seat " \
           "number)" in message
    # its parameters are its own rules' (create-for-llm cannot set them): checked by them, in one line
    assert ": parameters: parameter 'pie' must be a whole number" in error_of(
        tmp_path, ULTIMATUM.replace("pie = 40", "pie = 0") + '[arms.rules]\nproposer = "baseline"\n'
                                                              'responder = "baseline"\n')
    assert ": server: the real server cannot create a ultimatum game" in error_of(
        tmp_path, ULTIMATUM.replace("[parameters]", 'server = "real"\n[parameters]')
        + '[arms.rules]\nproposer = "baseline"\nresponder = "baseline"\n')


def test_a_model_s_prompt_variant_is_kept_and_counts_in_the_digest(tmp_path):
    arm = ('[arms.zero]\ndeveloper = { endpoint = "local", model = "gpt-4o", prompt = "zero-shot" }\n'
           'owners = "baseline"\n')
    study = load_study(write(tmp_path, BASE + arm))
    assert study.arms[1].seats[2] == ModelPolicy("local", "gpt-4o", 1.0, "zero-shot")
    other = load_study(write(tmp_path, BASE + arm.replace("zero-shot", "no-history"), "b.toml"))
    assert other.digest != study.digest
    assert json.loads(study.canonical)["arms"]["zero"]["2"]["prompt"] == "zero-shot"
