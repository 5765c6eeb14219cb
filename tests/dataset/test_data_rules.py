"""The dataset builder and the sidecar reader know no game: a game registered by a test (a coin toss, one decision:
call heads or tails) becomes examples, sidecar lines and report numbers through its data part alone
(lib.games.protocols.DataRules), and its lines are read back, checked and probed by that part."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lib.dataset.build import BuildOptions, build_dataset
from lib.dataset.examples import GameResult, Sink
from lib.dataset.sidecar import Example, SetError, check_fields, read_set, sidecar_path, state_line
from lib.games import game_types, register, unregister
from lib.ibex.log import LogError, parse_log
from lib.ibex.params import GameParams

SYSTEM = "You toss a coin with friends."


@dataclass(frozen=True)
class CoinLog:
    source: str
    game_type: str
    played_by_agents: str | None
    calls: list[tuple[int, str]]


class CoinData:
    """DataRules of the coin game; records what the builder and the reader asked of it."""

    kinds = {"call": "call"}

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    def read_log(self, data: dict[str, Any], params: GameParams, source: str,
                 played_by_agents: str | None) -> CoinLog:
        self.asked.append(("read_log", source))
        if not isinstance(data["log"], list):
            raise LogError(f"{source}: log: expected an array")
        calls = [(entry["number"], entry["content"]["side"]) for entry in data["log"]]
        return CoinLog(source, params.game_type, played_by_agents, calls)

    def examples(self, log: CoinLog, *, sessions: Any, include_chat: bool, sink: Sink | None) -> GameResult:
        self.asked.append(("examples", log.source))
        game_id = int(Path(log.source).name.split(".")[0])
        result = GameResult(log.source, game_id, "server-log", log.game_type, played_by_agents=log.played_by_agents,
                            sink=sink)
        for k, (seat, side) in enumerate(log.calls):
            state = {"game": str(game_id), "game_type": "coin", "seat": seat, "action": "call", "view": {"calls": k}}
            result.add(SYSTEM, [f"Call {k + 1}.", "Heads or tails?"], json.dumps({"type": "call", "side": side}),
                       state_line(state), seat=seat, role="caller", action="call", values_source="none")
        return result

    def check_state(self, state: dict[str, Any], where: str) -> None:
        check_fields(where, state, {"seat": (int,), "view": {"calls": (int,)}})

    def view_from_state(self, state: dict[str, Any]) -> Any:
        return dict(state["view"])

    def human_answer(self, answer: str, state: dict[str, Any]) -> dict[str, Any]:
        message = json.loads(answer)
        if message.get("side") not in ("heads", "tails"):
            raise ValueError(f"side must be heads or tails, not {message.get('side')!r}")
        return message

    def probe(self, example: Example) -> None:
        self.asked.append(("probe", example.line))


@dataclass(frozen=True)
class CoinGame:
    name: str = "coin"
    title: str = "coin toss"
    data: CoinData = field(default_factory=CoinData)


@pytest.fixture
def coin():
    game = CoinGame()
    register(game)  # a game with only the part the dataset needs
    yield game
    unregister(game.name)


def coin_log(folder: Path, game_id: int, sides: list[str], game_type: str = "coin") -> Path:
    path = folder / f"{game_id}.log.json"
    path.write_text(json.dumps({
        "parameters": [{"key": "game_type", "type": "string", "value": game_type}],
        "log": [{"type": "message", "round": 1, "phase": 1, "number": seat,
                 "content": {"type": "call", "side": side}} for seat, side in enumerate(sides, 1)]}))
    return path


def test_a_registered_game_is_built_split_reported_and_read_back_through_its_data_part(tmp_path, coin):
    logs = tmp_path / "logs"
    logs.mkdir()
    coin_log(logs, 11, ["heads", "tails", "heads"])
    coin_log(logs, 12, ["tails"])
    built = build_dataset(BuildOptions(inputs=[logs], output_dir=tmp_path / "out", validation_fraction=0.5))
    assert built.errors == [] and built.n_examples == 4
    assert [what for what, _ in coin.data.asked] == ["read_log", "examples"] * 2

    report = built.report
    assert report["per_role"] == {"caller": 4} and report["per_action"] == {"call": 4}
    assert {f["game_type"] for f in report["per_file"]} == {"coin"}  # not the default game: named
    training = built.outputs["training"]
    side = sidecar_path(training)
    head = json.loads(side.read_text().splitlines()[0])
    assert head["game"] == "coin" and head["examples"] == len(training.read_text().splitlines())

    coin.data.asked.clear()
    evalset = read_set(training, hashlib.sha256(training.read_bytes()).hexdigest())
    assert {e.game_type for e in evalset.examples} == {"coin"}
    assert [e.view() for e in evalset.examples] == [{"calls": k} for k in range(len(evalset.examples))]
    assert coin.data.asked == [("probe", e.line) for e in evalset.examples]
    assert evalset.examples[0].messages[0] == {"role": "system", "content": SYSTEM}
    assert "coin" in game_types()


def test_a_line_of_a_registered_game_is_checked_by_it_one_line_naming_file_line_and_field(tmp_path, coin):
    logs = tmp_path / "logs"
    logs.mkdir()
    coin_log(logs, 11, ["heads", "tails"])
    training = build_dataset(BuildOptions(inputs=[logs], output_dir=tmp_path / "out",
                                          validation_fraction=0)).outputs["training"]
    side = sidecar_path(training)
    head, *states = side.read_text().splitlines()

    def read_with(states: list[str], lines: list[str] | None = None) -> None:
        body = "".join(s + "\n" for s in states).encode()
        header = {**json.loads(head), "states_sha256": hashlib.sha256(body).hexdigest()}
        side.write_bytes((json.dumps(header) + "\n").encode() + body)
        if lines is not None:
            training.write_text("".join(line + "\n" for line in lines))
            header["sha256"] = hashlib.sha256(training.read_bytes()).hexdigest()
            side.write_bytes((json.dumps(header) + "\n").encode() + body)
        read_set(training, hashlib.sha256(training.read_bytes()).hexdigest())

    wrong = json.loads(states[1])
    wrong["view"]["calls"] = "two"
    with pytest.raises(SetError, match=rf"^{side} line 3: field view.calls must be a whole number, not a string; "):
        read_with([states[0], json.dumps(wrong)])
    unknown = {**json.loads(states[0]), "game_type": "dice"}
    with pytest.raises(SetError, match=rf"^{side} line 2: field game_type must be one of harberger, futarchy, coin,"):
        read_with([json.dumps(unknown), states[1]])
    lines = training.read_text().splitlines()
    record = json.loads(lines[0])
    record["messages"][2]["content"] = json.dumps({"type": "call", "side": "edge"})
    with pytest.raises(SetError, match=rf"^{training} line 1: not an example written by constructDataset.py: its "
                                       r"answer is not a valid call .*side must be heads or tails, not 'edge'"):
        read_with(states, [json.dumps(record), lines[1]])


def test_a_game_nobody_registered_is_one_line_naming_the_games_that_are(tmp_path, coin):
    with pytest.raises(LogError) as caught:
        parse_log(json.loads(coin_log(tmp_path, 5, ["heads"], game_type="dice").read_text()), "5.log.json")
    assert str(caught.value) == ("5.log.json: a 'dice' game; only voting, harberger, futarchy and coin games can be "
                                 "used")
    logs = tmp_path / "logs"
    logs.mkdir()
    coin_log(logs, 6, ["heads"], game_type="dice")
    coin_log(logs, 7, ["tails"])
    built = build_dataset(BuildOptions(inputs=[logs], output_dir=tmp_path / "out", validation_fraction=0))
    assert built.n_examples == 1
    assert built.errors == [f"{logs / '6.log.json'}: a 'dice' game; only voting, harberger, futarchy and coin games "
                            "can be used"]
