"""One contract for every registered game (lib.games.GAMES) and the test-only ultimatum game (tests/games/ultimatum,
registered here), checked the same way for each, as PettingZoo's api_test checks every environment:

- its baseline plays one short game with the agents on the local server in --strict mode, to game-over, and the
  server refuses none of their frames;
- the examples its data part makes from that game's log hold exactly the prompts the agents were shown at play time;
- the dataset builder writes them with their state sidecar, and the sidecar reads back (lib.dataset.sidecar.read_set)
  into the same examples, answers and views;
- on every example, the baseline's answer passes the game's own last check before sending;
- `finetune.py --evaluate --policies baseline` scores the baseline on that set (the game's ScoreRules).

One game per registered game with scaled-down timers: CI has two slow cores.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import finetune
from lib.agents import decisions, modes
from lib.agents.agent import AgentSettings
from lib.agents.run import safety_margin
from lib.agents.transcript import Transcript, read_transcript
from lib.dataset.build import TRAINING_FILE, BuildOptions, build_dataset
from lib.dataset.sidecar import EvalSet, read_set
from lib.games import GAMES, game_for, register, unregister
from lib.games.protocols import Game, Policy
from lib.localserver.server import LocalServer
from tests.games.ultimatum.game import GAME as ULTIMATUM

NAMES = [*GAMES, ULTIMATUM.name]
# The one error frame a client cannot avoid: in a continuous market a cancel may meet its order already filled, and
# the server answers "Order not found. N" (lib/games/market/view.py). No part of a game (lib.games.protocols) says
# which of its error frames answer such a race, so the contract names the frame's text rather than the games.
UNAVOIDABLE = re.compile(r"^Order not found\. \d+$")
TIMER_SCALE = 0.02  # of the real server's timers: seconds per phase, enough for rules that answer at once


@pytest.fixture(scope="module", autouse=True)
def _ultimatum() -> Iterator[None]:
    register(ULTIMATUM)
    yield
    unregister(ULTIMATUM.name)


@dataclass
class PromptRecorder:
    """A policy that writes down the prompt a model would be shown for each decision (the game's AnswerRules on
    the decision's view and action-required) and then lets the game's baseline decide."""

    game: Game
    inner: Policy
    prompts: dict[tuple[Any, ...], list[list[dict[str, str]]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.inner.name

    async def decide(self, view: Any, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Transcript | None) -> dict[str, Any] | None:
        key = (view.number, view.round, view.phase, wire_type)
        self.prompts.setdefault(key, []).append(self.game.answers.messages(view, action_required))
        return await self.inner.decide(view, wire_type, cap=cap, action_required=action_required,
                                       deadline=deadline, transcript=transcript)


@dataclass
class Played:
    game: Game
    result: modes.GameResult
    transcripts: list[list[dict[str, Any]]]
    prompts: dict[tuple[Any, ...], list[list[dict[str, str]]]]
    dataset: EvalSet


async def _play(game: Game, tmp: Path) -> tuple[modes.GameResult, PromptRecorder]:
    async with LocalServer(records_dir=tmp / "records", strict=True) as server:
        game_id = server.create_game(game.rules.local_parameters(rounds=1, practice=False, timer_scale=TIMER_SCALE))
        params = server.game(game_id).params
        margin = safety_margin(game.play.action_phases, params)
        settings = AgentSettings(safety_margin=margin, ready_delay=0.05, ready_resend=0.3)
        recorder = PromptRecorder(game, game.play.policy(game.seat.baseline_policy(seed=0), 0))
        with decisions.DecisionLog(tmp / "run" / "decisions.csv") as log:
            result = await modes.play_local(server, game_id, dict.fromkeys(range(1, game.play.seats + 1), recorder),
                                            settings=settings, run_dir=tmp / "run", log=log, stop=asyncio.Event(),
                                            say=lambda line: None)
    return result, recorder


# Under -n, the tests of one game run in one worker, which plays that game once (each worker would play it again).
@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.xdist_group(f"contract-{name}"))
                                        for name in NAMES])
def played(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, _ultimatum: None) -> Played:
    game = game_for(request.param)
    tmp = tmp_path_factory.mktemp(game.name)
    result, recorder = asyncio.run(_play(game, tmp))
    transcripts = [read_transcript(tmp / "run" / f"agent{k}.jsonl") for k in range(1, len(result.agents) + 1)]
    built = build_dataset(BuildOptions(inputs=[tmp / "records"], output_dir=tmp / "data", validation_fraction=0))
    assert built.errors == []
    path = tmp / "data" / TRAINING_FILE
    dataset = read_set(path, hashlib.sha256(path.read_bytes()).hexdigest())
    return Played(game, result, transcripts, recorder.prompts, dataset)


def _key(played: Played, example: Any) -> tuple[Any, ...]:
    view = example.view()
    return (example.state["seat"], view.round, view.phase, played.game.data.kinds[example.action])


def test_the_baseline_plays_a_strict_local_game_to_game_over_and_no_frame_is_refused(played: Played) -> None:
    assert played.result.outcome == "game-over" and played.result.game_log is not None
    assert len(played.result.agents) == played.game.play.seats
    for agent, records in zip(played.result.agents, played.transcripts, strict=True):
        assert agent.view.game_over and agent.frame_errors == 0, agent.name
        refused = [r for r in records if r["kind"] == "server-error" and not UNAVOIDABLE.match(str(r["message"]))]
        assert refused == [], (agent.name, refused)
        assert records[-1]["kind"] == "shutdown" and records[-1]["reason"] == "game-over"
    sent = [r for records in played.transcripts for r in records if r["kind"] == "send"
            and r["msg"].get("type") not in ("join", "player-is-ready")]
    assert sent, "the baseline took no decision that went out"
    recorded = json.loads(played.result.game_log.read_text())
    assert recorded["parameters"] and any(e["type"] == "message" for e in recorded["log"])


def test_example_prompts_are_the_prompts_of_play_time(played: Played) -> None:
    """A decision taken once per phase has one moment it became due, at play time and in the replay alike: its
    example's prompt is the prompt of play time. A decision the game repeats all phase long (a cadence: the market's
    trading) is made from what the seat had received when its message reached the server, which a live agent that
    decided a moment earlier had not all seen: its example shares the play-time system prompt only."""
    examples = played.dataset.examples
    assert examples, "the game's log gave no example"
    with open(played.result.decisions, newline="") as f:
        # a decision whose time ran out before the policy was asked has no play-time prompt (its fallback went out)
        unasked = {(int(r["seat"]), int(r["round"]), int(r["phase"]), r["action_type"]) for r in csv.DictReader(f)
                   if r["made_by"] == decisions.FALLBACK}
    once = 0
    for example in examples:
        key = _key(played, example)
        shown = played.prompts.get(key, [])
        if not shown and key in unasked:
            continue
        if played.game.seat.cadence(key[3]) is None:
            assert example.messages in shown, (example.line, key, example.messages, shown)
            once += 1
        else:
            assert example.messages[0] in [prompt[0] for prompt in shown], (example.line, key)
    assert once > 0


def test_the_sidecar_reads_back_every_example_with_its_answer_and_view(played: Played) -> None:
    lines = (played.dataset.path.read_text(encoding="utf-8").splitlines())
    assert len(played.dataset.examples) == len(lines)
    for example, line in zip(played.dataset.examples, lines, strict=True):
        written = json.loads(line)["messages"]
        assert example.messages == written[:2]
        assert example.human == json.loads(written[2]["content"]) and example.answer == written[2]["content"]
        assert example.game_type == played.game.name
        view = example.view()
        assert view.number in (None, example.state["seat"])
        assert view == played.game.data.view_from_state(json.loads(json.dumps(example.state)))


def test_every_baseline_answer_on_the_examples_passes_the_game_s_last_check(played: Played) -> None:
    game, answered = played.game, 0
    policy = game.play.policy(game.seat.baseline_policy(seed=0), 0)
    for example in played.dataset.examples:
        view = example.view()
        wire_type = game.data.kinds[example.action]
        cap = game.seat.cap(view, None)  # the seat's own cap: not every game's sidecar line holds one
        required = game.seat.action_required(view, wire_type, cap=cap, timer_seconds=None)
        answer = asyncio.run(policy.decide(view, wire_type, cap=cap or 0, action_required=required,
                                           deadline=float("inf"), transcript=None))
        if answer is None:
            continue  # the rules chose to send nothing here (a market's wait)
        checked = game.seat.check_answer(answer, view, wire_type, cap)
        game.seat.validate(checked, view, view, wire_type, cap)  # ActionError would fail the test
        answered += 1
    assert answered > 0


def test_finetune_evaluate_scores_the_baseline_on_the_game_s_examples(played: Played, monkeypatch, capsys) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)  # no model: the baseline alone
    data = played.dataset.path.parent
    out = data / "evaluations" / "contract"

    code = finetune.main(["--evaluate", "--data-dir", str(data), "--evaluate-on", str(played.dataset.path),
                          "--policies", "baseline", "--output-dir", str(out)])

    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((out / "evaluation_report.json").read_text())
    assert report["dataset"]["examples"] == len(played.dataset.examples)
    assert list(report["policy_info"]) == ["baseline"]
    assert played.game.scores is not None and played.game.scores.noun in printed
