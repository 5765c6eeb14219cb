"""The ultimatum game's empirical policy (empirical.py) travels in the one samples file every game shares
(lib.evaluation.saved): `finetune.py --evaluate` writes its section though no generic module and no other game
knows it, and the policy handler.py chooses (the default game's play part loads the file) plays it in an ultimatum
game on the strict local server."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import finetune
from lib.agents import decisions, modes
from lib.agents.agent import AgentSettings
from lib.agents.run import safety_margin
from lib.dataset.build import TRAINING_FILE, BuildOptions, build_dataset
from lib.evaluation import saved as samplesfile
from lib.games import DEFAULT_GAME, game_for, register, unregister
from lib.games.protocols import Policy
from lib.localserver.server import LocalServer
from tests.games.ultimatum.empirical import SECTION
from tests.games.ultimatum.game import GAME


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    register(GAME)
    yield
    unregister(GAME.name)


async def _play(folder: Path, policy: Policy, rounds: int) -> modes.GameResult:
    async with LocalServer(records_dir=folder / "records", strict=True) as server:
        game_id = server.create_game(GAME.rules.local_parameters(rounds=rounds, practice=False, timer_scale=0.02))
        params = server.game(game_id).params
        settings = AgentSettings(safety_margin=safety_margin(GAME.play.action_phases, params), ready_delay=0.05,
                                 ready_resend=0.3)
        with decisions.DecisionLog(folder / "run" / "decisions.csv") as log:
            return await modes.play_local(server, game_id, {1: policy, 2: policy}, settings=settings,
                                          run_dir=folder / "run", log=log, stop=asyncio.Event(), say=lambda _: None)


def test_the_ultimatum_section_is_written_by_the_evaluation_and_played_from_the_run_s_choice(tmp_path, monkeypatch):
    baseline = asyncio.run(_play(tmp_path / "a", GAME.play.policy(GAME.seat.baseline_policy(0), 0), rounds=3))
    assert baseline.outcome == "game-over"
    data = tmp_path / "data"
    assert build_dataset(BuildOptions(inputs=[tmp_path / "a" / "records"], output_dir=data,
                                      validation_fraction=0)).errors == []
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    out = data / "evaluations" / "ultimatum-set"
    assert finetune.main(["--evaluate", "--data-dir", str(data), "--evaluate-on", str(data / TRAINING_FILE),
                          "--policies", "baseline,empirical", "--output-dir", str(out)]) == 0
    saved = samplesfile.read(out / samplesfile.SAMPLES_FILE)
    assert list(saved.sections) == [SECTION]  # the only game with examples; no other game's section
    section = saved.section(SECTION)
    assert section is not None and section["offer_share"] == [0.4] * 3  # the baseline offers 40 % of the pie
    assert section["answers"] == [[0.4, 1]] * 3
    report = json.loads((out / "evaluation_report.json").read_text())
    assert set(report[SECTION]["policies"]) == {"baseline", "empirical"}

    # handler.py --policy empirical: the default game's play part loads the newest file; this game takes its section
    chosen, line = game_for(DEFAULT_GAME).play.rule_policy("empirical", seed=0, path=None, data_dir=data)
    assert line == (f"policy: empirical (draws from 0 requests, 0 offers, 0 votes of training humans; {SECTION}: "
                    f"3 offers, 3 responses of the recorded players; seed 0, from {out / samplesfile.SAMPLES_FILE})")
    played = GAME.play.policy(chosen, 0)
    assert played.name == "empirical"
    again = asyncio.run(_play(tmp_path / "b", played, rounds=1))
    assert again.outcome == "game-over" and again.refusals == 0
    with (tmp_path / "b" / "run" / "decisions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["made_by"] for r in rows} == {"empirical"}
    assert [json.loads(r["action"]) for r in rows if r["action_type"] == "make-offer"][0]["offer"] == 40
