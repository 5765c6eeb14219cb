"""Regenerate the project's sample logs: complete games recorded by the local server, in the real log format.

    python tests/make_sample_logs.py [--out jsonFiles]

Plays four games with scripted players of varied behaviour (cooperative, greedy, silent, chatty; practice round
on and off; different sessions of jsonFiles/sessions.json) and writes `<id>.log.json` for each into the output
folder, replacing earlier sample logs; the second game without its server-log, as the 2023 logs are. The
players are scripts, not people: these logs show the format and exercise the tools, they are no data about human
behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib.games.voting.server import new_recovery_code  # noqa: E402
from lib.localserver.server import LocalServer  # noqa: E402
from tests.helpers.players import Behaviour, play_game  # noqa: E402

# Short phases so that a game takes seconds; the recorded parameters say so.
TIMERS = {"timer_phase_1": 0.3, "timer_phase_2": 0.6, "timer_phase_3": 3, "timer_phase_4": 3,
          "timer_phase_5": 0.6, "timer_phase_6": 3, "timer_phase_7": 0.3}

OWNER_LINES = [
    "I need decent compensation to support the project.",
    "The project lowers my plot's value, so I'm asking for a fair amount.",
    "Happy to vote yes if the offer covers my loss.",
    "Let's all ask for the same so the developer takes us seriously.",
]
DEVELOPER_LINES = [
    "The project creates a lot of value; I will compensate you fairly.",
    "That is my best offer, please vote for the project.",
    "I can't pay everyone's highest request, but the offer beats the status quo for most of you.",
]


def owner(rng: random.Random, seat: int, greed: float, chatty: bool, silent_rounds: tuple[int, ...] = ()
          ) -> Behaviour:
    """An owner asking for its loss plus `greed` of it, voting for the project when the offer covers the loss."""

    def request(values: list[int], r: int) -> int | None:
        if r in silent_rounds:
            return None
        loss = max(0, values[0] - values[1])
        return int(round(loss * (1 + greed) / 5000) * 5000) or 5000

    def vote(offer: int, values: list[int], r: int) -> int | None:
        if r in silent_rounds:
            return None
        return 1 if values[1] + offer >= values[0] else 0

    def chat(phase: int, r: int) -> list[tuple[list[int], str]]:
        if not chatty:
            return []
        others = [n for n in (1, 2, 3, 4, 5, 6) if n != seat and rng.random() < 0.7] or [2]
        return [(others, rng.choice(OWNER_LINES))]

    return Behaviour(request=request, vote=vote, chat=chat, ready_retry=0.5)


def developer(rng: random.Random, rank: int, chatty: bool) -> Behaviour:
    """A developer offering the `rank`-th smallest owner request (0 = stingiest)."""

    def offer(requests: list[int], _values: list[int], _r: int) -> int:
        ordered = sorted(requests)
        return ordered[min(rank, len(ordered) - 1)]

    def chat(phase: int, r: int) -> list[tuple[list[int], str]]:
        return [([1, 3, 4, 5, 6], rng.choice(DEVELOPER_LINES))] if chatty else []

    return Behaviour(offer=offer, chat=chat, ready_retry=0.5)


GAMES = [
    ({"practice_round": True, "round_count": 3, "session_number": 1},
     lambda rng: [owner(rng, 1, 0.1, True), developer(rng, 2, True), owner(rng, 3, 0.2, False),
                  owner(rng, 4, 0.0, True), owner(rng, 5, 0.3, False), owner(rng, 6, 0.1, True)]),
    ({"practice_round": False, "round_count": 2, "session_number": 2},
     lambda rng: [owner(rng, 1, 1.0, True), developer(rng, 0, True), owner(rng, 3, 0.8, False),
                  owner(rng, 4, 1.5, False), owner(rng, 5, 0.9, True, silent_rounds=(2,)), owner(rng, 6, 1.2, False)]),
    ({"practice_round": True, "round_count": 2, "session_number": 3},
     lambda rng: [owner(rng, 1, 0.2, False, silent_rounds=(1,)), developer(rng, 4, False), owner(rng, 3, 0.1, True),
                  owner(rng, 4, 0.2, True), owner(rng, 5, 0.05, True), owner(rng, 6, 0.4, False)]),
    ({"practice_round": False, "round_count": 3, "session_number": 4},
     lambda rng: [owner(rng, 1, 0.5, True), developer(rng, 3, True), owner(rng, 3, 0.3, True),
                  owner(rng, 4, 0.6, True), owner(rng, 5, 0.2, True), owner(rng, 6, 0.4, True)]),
]


OLDER_FORMAT_GAME = 1  # index in GAMES: the second game is written without its server-log


async def make(out: Path, seed: int) -> list[Path]:
    rng = random.Random(seed)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.log.json"):
        old.unlink()  # the new games take ids 1.. again
    async with LocalServer(records_dir=out) as server:
        for params, behaviours in GAMES:
            game_id = server.create_game({**TIMERS, **params})
            await play_game(server.ws_url, game_id, [new_recovery_code() for _ in range(6)], behaviours(rng))
            await server.wait_game_over(game_id, timeout=60)
            written.append(server.log_path(game_id))
    # One game in the older format (the 2023 logs have no server-log), so both formats of docs/protocol.md section 5
    # are in the samples; its values can be joined from jsonFiles/sessions.json with --sessions.
    older = written[OLDER_FORMAT_GAME]
    recorded = json.loads(older.read_text(encoding="utf-8"))
    del recorded["server-log"]
    older.write_text(json.dumps(recorded), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "jsonFiles", help="folder for the logs (default jsonFiles)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the players' choices (default 7)")
    args = parser.parse_args(argv)
    for path in asyncio.run(make(args.out, args.seed)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
