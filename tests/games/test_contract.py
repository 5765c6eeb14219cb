"""One contract for every registered game (lib.games.GAMES) and the test-only ultimatum game (tests/games/ultimatum,
registered here), checked the same way for each, as PettingZoo's api_test checks every environment:

- its baseline plays one short game with the agents on the local server in --strict mode, to game-over, and the
  server refuses none of their frames;
- the examples its data part makes from that game's log hold exactly the prompts the agents were shown at play time;
- each of its prompt variants, rebuilt from an example and its sidecar line as `finetune.py --evaluate` rebuilds it,
  is the variant's prompt of play time;
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
from lib.games.protocols import DEFAULT_PROMPT, Game, Policy, prompt_variants, variant_messages
from lib.ibex.params import GameParams
from lib.localserver.server import LocalServer
from tests.games.ultimatum.game import GAME as ULTIMATUM

NAMES = [*GAMES, ULTIMATUM.name]
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
    # the other prompt variants' messages for the same decisions, by variant
    variants: dict[str, dict[tuple[Any, ...], list[list[dict[str, str]]]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.inner.name

    async def decide(self, view: Any, wire_type: str, *, cap: int, action_required: dict[str, Any],
                     deadline: float, transcript: Transcript | None) -> dict[str, Any] | None:
        key = (view.number, view.round, view.phase, wire_type)
        messages = self.game.answers.messages(view, action_required)
        self.prompts.setdefault(key, []).append(messages)
        for variant in prompt_variants(self.game):
            if variant != DEFAULT_PROMPT:
                self.variants.setdefault(variant, {}).setdefault(key, []).append(
                    variant_messages(self.game, variant, view, messages))
        return await self.inner.decide(view, wire_type, cap=cap, action_required=action_required,
                                       deadline=deadline, transcript=transcript)


@dataclass
class Played:
    game: Game
    result: modes.GameResult
    transcripts: list[list[dict[str, Any]]]
    prompts: dict[tuple[Any, ...], list[list[dict[str, str]]]]
    dataset: EvalSet
    params: GameParams  # the game's, as its seats had them at play time
    variants: dict[str, dict[tuple[Any, ...], list[list[dict[str, str]]]]]


async def _play(game: Game, tmp: Path) -> tuple[modes.GameResult, PromptRecorder, GameParams]:
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
    return result, recorder, params


# Under -n, the tests of one game run in one worker, which plays that game once (each worker would play it again).
@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.xdist_group(f"contract-{name}"))
                                        for name in NAMES])
def played(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, _ultimatum: None) -> Played:
    game = game_for(request.param)
    tmp = tmp_path_factory.mktemp(game.name)
    result, recorder, params = asyncio.run(_play(game, tmp))
    transcripts = [read_transcript(tmp / "run" / f"agent{k}.jsonl") for k in range(1, len(result.agents) + 1)]
    built = build_dataset(BuildOptions(inputs=[tmp / "records"], output_dir=tmp / "data", validation_fraction=0))
    assert built.errors == []
    path = tmp / "data" / TRAINING_FILE
    dataset = read_set(path, hashlib.sha256(path.read_bytes()).hexdigest())
    return Played(game, result, transcripts, recorder.prompts, dataset, params, recorder.variants)


def _key(played: Played, example: Any) -> tuple[Any, ...]:
    view = example.view()
    return (example.state["seat"], view.round, view.phase, played.game.data.kinds[example.action])


def test_the_baseline_plays_a_strict_local_game_to_game_over_and_no_frame_is_refused(played: Played) -> None:
    assert played.result.outcome == "game-over" and played.result.game_log is not None
    assert len(played.result.agents) == played.game.play.seats
    for agent, records in zip(played.result.agents, played.transcripts, strict=True):
        assert agent.view.game_over and agent.frame_errors == 0, agent.name
        # The only error frames allowed answer a race no client can avoid, as the game's seat part says
        # (SeatRules.race: the market's cancel that crossed its order's fill); the record names the race.
        refused = [r for r in records if r["kind"] in ("server-error", "server-warning") and "race" not in r]
        assert refused == [] and agent.refusals == 0, (agent.name, refused)
        assert sum(agent.races.values()) == sum(r["kind"] == "server-error" for r in records)
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


def test_a_repeated_decision_s_example_prompt_is_what_play_time_code_builds_from_its_view(played: Played) -> None:
    """A decision repeated all phase long (a cadence: the market's trading) cannot promise its play-time prompt (the
    test above says why), but it can promise the code: its example's prompt is exactly what an agent's code builds
    from the example's view (its sidecar line's, read back): the seat's action-required (SeatRules.action_required,
    with the cap and the phase's timer as the agent passes them) shown through AnswerRules.messages. So what differs
    from play time is the view alone (what had arrived), never how a prompt is made of it. A game with such a
    decision keeps in its sidecar view everything its prompt shows."""
    game, checked = played.game, 0
    for example in played.dataset.examples:
        view = example.view()
        wire_type = game.data.kinds[example.action]
        if game.seat.cadence(wire_type) is None:
            continue  # decided once per phase: its example is the play-time prompt itself (the test above)
        required = game.seat.action_required(view, wire_type, cap=example.cap,
                                             timer_seconds=played.params.timer(view.phase))
        assert game.answers.messages(view, required) == example.messages, (example.line, example.action)
        checked += 1
    if not checked:
        pytest.skip(f"{game.name}: no example of a decision repeated all phase long")


def test_every_prompt_variant_rebuilt_from_an_example_is_its_prompt_of_play_time(played: Played) -> None:
    """What finetune.py --evaluate --prompt-variant asks a model (lib.evaluation.policies.LLMEvalPolicy.messages: the
    variant of the example's messages on the view its sidecar line rebuilds) is what an agent playing that variant
    was asked for the same decision, for decisions taken once per phase (see the test above)."""
    variants = [v for v in prompt_variants(played.game) if v != DEFAULT_PROMPT]
    if not variants:
        pytest.skip(f"{played.game.name} has no prompt variant but the default")
    compared = 0
    for example in played.dataset.examples:
        key = _key(played, example)
        if played.game.seat.cadence(key[3]) is not None or example.messages not in played.prompts.get(key, []):
            continue
        for variant in variants:
            rebuilt = variant_messages(played.game, variant, example.view(), example.messages)
            assert rebuilt in played.variants[variant][key], (variant, example.line, key)
            compared += 1
    assert compared > 0


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
        cap = example.cap  # the game's data part reads it (DataRules.cap): not every game's line holds a cap
        assert cap == game.seat.cap(view, played.params), (example.line, cap)  # the seat's cap at play time
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
