"""The local IBEX server behaves like the real one: frames, logs, REST, bad inputs, rejoins and the start race.

Real sockets on loopback, real files in tmp_path. The central test replays every frame six players sent to the
real server (tests/fixtures/game5_replay.json, built from this project's recording) and checks that each player
receives the same sequence of frames, modulo values, timestamps and names.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lib.agents.realserver import create_payload
from lib.games.voting.server import new_recovery_code
from lib.ibex.js import MISSING
from lib.localserver.server import LocalServer
from tests.fixtures.build_game5_fixture import counts, log_skeleton, server_log_skeleton, skeleton
from tests.helpers.games import registered_copy
from tests.helpers.localserver import FAST, agent_manager_listener, codes, diff, expand, http
from tests.helpers.paths import FIXTURES, REPO
from tests.helpers.players import Behaviour, Client, is_event, is_message, join_all, play_game

ROOT = REPO
FIXTURE = FIXTURES / "game5_replay.json"

# Sub-second phases; phases 3, 4 and 6 end early when everyone has acted.


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """create-for-llm's nested gameParameters for these flat parameters over the real server's defaults."""
    return create_payload(flat)[0]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))










# ---------------------------------------------------------------------------------------------- replay of game 5

REPLAY = {
    "practice_round": True, "round_count": 2, "session_number": 1,
    "timer_phase_1": 0.25, "timer_phase_2": 0.5, "timer_phase_3": 0.6, "timer_phase_4": 2,
    "timer_phase_5": 0.5, "timer_phase_6": 0.6, "timer_phase_7": 0.25,
}


async def replay(fixture: dict[str, Any], server: LocalServer) -> tuple[int, dict[str, list[str]], list[str]]:
    """Play every recorded step when all players have received what they had then; return the skeletons."""
    game_id = server.create_game(REPLAY)
    recovery = {n: new_recovery_code() for n in fixture["players"]}
    arrived = asyncio.Condition()
    conns: dict[str, dict[int, Client]] = {n: {} for n in fixture["players"]}
    problems: list[str] = []

    def received(n: str) -> int:
        return sum(len(c.frames) for c in conns[n].values())

    def fill(value: Any, n: str) -> Any:
        marks = {"$game": game_id, "$game-as-text": str(game_id), "$recovery": recovery[n]}
        if isinstance(value, dict):
            return {k: marks.get(v, v) if isinstance(v, str) else v for k, v in value.items()}
        return value

    async def until(n: str, at: dict[str, int], what: str) -> None:
        async with arrived:
            try:
                await asyncio.wait_for(arrived.wait_for(lambda: all(received(m) >= c for m, c in at.items())), 10)
            except TimeoutError:
                have = {m: received(m) for m in at}
                raise AssertionError(f"player {n} waited in vain to {what}: needs {at}, has {have}") from None

    async def play(n: str) -> None:
        for step in fixture["players"][n]["steps"]:
            await until(n, step["at"], f"{step['do']} {step.get('msg', step.get('raw', ''))}")
            if step["do"] == "connect":
                conns[n][step["conn"]] = await Client(server.ws_url, arrived).connect()
            elif step["do"] == "close":
                await conns[n][step["conn"]].close()
            elif step["do"] == "send":
                await conns[n][step["conn"]].send(step["raw"] if "raw" in step else fill(step["msg"], n))
            elif step["do"] == "status":
                query = urllib.parse.urlencode({"id": game_id, "recovery": recovery[n]})
                status, body = await http("GET", f"{server.api_url}/games/status?{query}")
                data = body["data"]
                shape = {"data": list(data), "game": list(data["gameData"]["game"]),
                         "player": list(data["gameData"]["player"]),
                         "message": body["message"].replace(f"Game {game_id}", "Game <game>")}
                if status != 200 or shape != step["expect"]:
                    problems.append(f"player {n} REST status ({step.get('note')}): {status} {shape}")
        expected = len(expand(fixture["players"][n]["expect"]))
        await until(n, {n: expected}, "receive the rest of its frames")
        for client in conns[n].values():
            await client.close()

    await asyncio.gather(*(play(n) for n in fixture["players"]))
    skeletons = {}
    for n, sockets in conns.items():
        stamped = [(c.arrival[i], k, f) for k, c in sockets.items() for i, f in enumerate(c.frames)]
        skeletons[n] = [("" if k == 1 else f"c{k} ") + skeleton(f, game_id) for _, k, f in sorted(stamped)]
    return game_id, skeletons, problems


def test_replaying_the_recorded_game_gives_every_player_the_real_servers_frames(tmp_path: Path) -> None:
    fixture = json.loads(FIXTURE.read_text())

    async def scenario() -> None:
        async with LocalServer(records_dir=tmp_path) as server:
            game_id, skeletons, problems = await replay(fixture, server)
            recorded = await server.wait_game_over(game_id, timeout=60)
            for n, player in fixture["players"].items():
                expected = expand(player["expect"])
                assert skeletons[n] == expected, f"player {n}:\n{diff(expected, skeletons[n])}"
            assert problems == []
            assert [p["key"] for p in recorded["parameters"]] == fixture["parameter keys"]
            assert counts([log_skeleton(e) for e in recorded["log"]]) == fixture["log"]
            assert counts([server_log_skeleton(e) for e in recorded["server-log"]]) == fixture["server-log"]
            assert json.loads(server.log_path(game_id).read_text()) == recorded

    run(scenario())


# ---------------------------------------------------------------------------------------------- complete games

def round_template(fixture: dict[str, Any], seat: str) -> list[str]:
    """What `seat` received in round 1 of the recording, from ready-received to the next round's phase 0.

    In round 1 of the recording seat 6 (an owner) and seat 2 (the developer) did what every player does here:
    ready, request or offer, vote. Chat, info and error frames depend on the other players and are left out.
    """
    frames = [f for f in expand(fixture["players"][seat]["expect"]) if not f.startswith(IGNORED)]
    start = frames.index("event phase-transition round,phase 1.0") + 1
    return frames[start:frames.index("event phase-transition round,phase 2.0") + 1]


IGNORED = ("event message-received", "info", "error")


def expected_game(template: list[str], rounds: list[int]) -> list[str]:
    out = []
    for r in rounds:
        block = [f.replace("round,phase 1.", f"round,phase {r}.").replace("round-end round 1", f"round-end round {r}")
                 .replace("round,phase 2.0", f"round,phase {r + 1}.0") for f in template]
        if r == rounds[-1]:
            block = block[:-1] + [
                "event reward number,round,reward,basePoints,showupFee,gameFee,profit,points,factor,exchange,"
                "paymentToken",
                "event game-over ",
            ]
        out += block
    return out


def seat_skeleton(client: Client, game_id: int) -> list[str]:
    frames = [skeleton(f, game_id) for f in client.frames]
    frames = [f for f in frames if not f.startswith(IGNORED)]
    return frames[frames.index("event ready-received "):]


CHATTY = Behaviour(chat=lambda phase, r: [([1, 2, 3, 4, 5, 6], f"phase {phase} of round {r}")], ready_retry=1.0)
QUIET = Behaviour(ready_retry=1.0)


@pytest.mark.parametrize("practice", [True, False])
def test_complete_games_give_each_seat_the_real_servers_sequence(practice: bool, tmp_path: Path) -> None:
    fixture = json.loads(FIXTURE.read_text())

    async def scenario() -> None:
        async with LocalServer(records_dir=tmp_path) as server:
            game_id = server.create_game({**FAST, "practice_round": practice, "round_count": 2})
            behaviours = [CHATTY, QUIET, QUIET, CHATTY, QUIET, QUIET]
            players = await play_game(server.ws_url, game_id, codes(), behaviours)
            await server.wait_game_over(game_id, timeout=60)
        rounds = [0, 1, 2] if practice else [1, 2]
        for player in players:
            seat = "2" if player.number == 2 else "6"
            expected = expected_game(round_template(fixture, seat), rounds)
            actual = seat_skeleton(player.client, game_id)
            assert actual == expected, f"seat {player.number}:\n{diff(expected, actual)}"

    run(scenario())


def test_results_follow_the_winner_rule_the_values_table_and_the_offer(tmp_path: Path) -> None:
    from lib.games.voting.rules import profit, winner
    from lib.ibex.sessions import load_sessions

    table = load_sessions(ROOT / "jsonFiles" / "sessions.json")
    votes = {1: 1, 3: 1, 4: 0, 5: 0, 6: None}  # seat 6 never votes: a 2-2 tie among valid votes goes to Project
    behaviours = [Behaviour(vote=lambda o, v, r, s=s: votes[s], ready_retry=1.0) if s != 2 else
                  Behaviour(offer=lambda q, v, r: 100000 + r, ready_retry=1.0) for s in range(1, 7)]

    async def scenario() -> dict[str, Any]:
        async with LocalServer(records_dir=tmp_path) as server:
            params = {**FAST, "timer_phase_6": 0.3, "practice_round": False, "round_count": 2, "session_number": 3,
                      "simulation_reward_round": 2}
            game_id = server.create_game(params)
            players = await play_game(server.ws_url, game_id, codes(), behaviours)
            recorded = await server.wait_game_over(game_id, timeout=60)
        condition, tally = winner([[1], [1], [0], [0], []])
        assert (condition, tally) == (1, 2)
        for player in players:
            seat = player.number
            role = 2 if seat == 2 else 3
            summaries = [e["data"] for e in player.client.events("round-summary")]
            for summary in summaries:
                r = summary["round"]
                values = table.values(3, r, seat)
                assert player.values[r] == values
                offer = 100000 + r
                assert summary == {"round": r, "condition": 1, "value": values[1], "tally": 2,
                                   "compensation": -5 * offer if role == 2 else offer,
                                   "profit": profit(role, values[1], offer)}
            reward = player.client.events("reward")[0]["data"]
            factor, base = (50000, 500000) if role == 2 else (20000, 0)
            points = base + summaries[1]["profit"]
            assert reward["round"] == 2 and reward["points"] == points and reward["factor"] == factor
            assert reward["gameFee"] == pytest.approx(round(points * 100 / factor) / 100)
            assert reward["reward"] == pytest.approx(reward["gameFee"] + 5)
        return recorded

    recorded = run(scenario())
    # Event data is recorded by value: each round's assign-role keeps that round's values (not the last round's).
    roles = [e["sent"]["data"] for e in recorded["server-log"] if e["sent"]["type"] == "assign-role"
             and e["meta"]["recipient"] == 1]
    assert [r["property"]["v"][:2] for r in roles] == [table.values(3, r, 1) for r in (1, 2)]
    assert [p for p in recorded["parameters"] if p["key"] == "simulation_reward_round"][-1]["value"] == "2"


def test_several_games_run_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalServer(records_dir=tmp_path) as server:
            first = server.create_game({**FAST, "practice_round": False, "round_count": 1})
            second = server.create_game({**FAST, "practice_round": False, "round_count": 1})
            await asyncio.gather(play_game(server.ws_url, first, codes(), [QUIET] * 6),
                                 play_game(server.ws_url, second, codes(), [QUIET] * 6))
            await server.wait_game_over(first, timeout=60)
            await server.wait_game_over(second, timeout=60)
            assert {p.name for p in (server.log_path(first), server.log_path(second))} == {"1.log.json", "2.log.json"}

    run(scenario())


def test_a_deleted_game_leaves_nothing_of_itself_in_the_server(tmp_path: Path) -> None:
    # A study plays thousands of games on one server: neither the game nor its recorded log may outlive its deletion.
    import gc
    import weakref

    async def scenario() -> None:
        async with LocalServer(records_dir=tmp_path) as server:
            game_id = server.create_game({**FAST, "practice_round": False, "round_count": 1})
            await play_game(server.ws_url, game_id, codes(), [QUIET] * 6)
            recorded = await server.wait_game_over(game_id, timeout=60)
            assert recorded["parameters"]  # a finished game, whose log the server held until now
            game = weakref.ref(server.game(game_id))
            log_id = id(server.game(game_id).recorded)  # a dict takes no weak reference: find it among live objects
            await server.delete_game(game_id)
            gc.collect()
            assert game() is None
            assert not any(id(o) == log_id and "server-log" in o for o in gc.get_objects() if isinstance(o, dict))
            with pytest.raises(KeyError):
                await server.wait_game_over(game_id, timeout=1)

    run(scenario())


# ---------------------------------------------------------------------------------------------- joining

def test_a_seventh_player_is_refused_and_rest_status_says_the_game_is_full(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalServer() as server:
            game_id = server.create_game(FAST)
            players = await join_all(server.ws_url, game_id, codes())
            seventh = await Client(server.ws_url).connect()
            await seventh.send({"gameId": game_id, "type": "join", "recovery": new_recovery_code()})
            _, frame = await seventh.wait_for(lambda f: True)
            assert frame == {"type": "error", "message": f"Game {game_id} is full (and no current player matching "
                                                         "your recovery string). You cannot join"}
            query = urllib.parse.urlencode({"id": game_id, "recovery": "nobody"})
            status, body = await http("GET", f"{server.api_url}/games/status?{query}")
            assert status == 200 and body["data"] == {"found": False, "canJoin": False, "gameData": None,
                                                      "ruleset": "Voting"}
            assert body["message"] == f"Game {game_id} is full"
            for player in players:
                await player.close()
            await seventh.close()

    run(scenario())


def test_a_dropped_player_rejoins_mid_phase_and_catches_up_through_rest_status() -> None:
    async def scenario() -> None:
        async with LocalServer() as server:
            game_id = server.create_game({**FAST, "timer_phase_3": 5})
            recoveries = codes()
            players = await join_all(server.ws_url, game_id, recoveries)
            for player in players:
                await player.client.send(player.message("player-is-ready"))
            third = players[2].client
            await third.wait_for(is_event("phase-transition", phase=3))
            await server.drop_connection(game_id, 3)
            await third.closed.wait()
            assert server.game(game_id).phase == 3  # the game goes on without the seat
            back = await Client(server.ws_url).connect()
            await back.send({"gameId": game_id, "type": "join", "recovery": recoveries[2]})
            await back.wait_for(is_message("info", "Player 3 rejoined the game"))
            assert back.events() == []  # no replay of what was missed
            query = urllib.parse.urlencode({"id": game_id, "recovery": recoveries[2]})
            _, body = await http("GET", f"{server.api_url}/games/status?{query}")
            game, me = body["data"]["gameData"]["game"], body["data"]["gameData"]["player"]
            assert (game["round"], game["phase"], me["number"], me["tag"]) == (0, 3, 3, "Owner 2")
            assert body["data"]["gameData"]["timer"] == server.game(game_id).timer_end
            await back.send({"gameId": game_id, "type": "compensation-request", "compensationRequests": [None, 1]})
            await back.wait_for(is_event("compensation-request-received"))
            for player in players:
                await player.close()
            await back.close()

    run(scenario())


def test_the_server_can_restart_its_listeners_and_the_game_goes_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalServer(records_dir=tmp_path) as server:
            game_id = server.create_game({**FAST, "practice_round": False, "round_count": 1, "timer_phase_1": 0.5})
            recoveries = codes()
            players = await join_all(server.ws_url, game_id, recoveries)
            for player in players:
                await player.client.send(player.message("player-is-ready"))
            await players[0].client.wait_for(is_event("phase-transition", phase=1))
            await server.restart(pause=0.1)
            for player in players:
                await player.client.closed.wait()
            again = await play_game_after_restart(server, game_id, recoveries)
            await server.wait_game_over(game_id, timeout=60)
            assert all(p.client.events("game-over") for p in again)

    run(scenario())


async def play_game_after_restart(server: LocalServer, game_id: int, recoveries: list[str]) -> list[Any]:
    from tests.helpers.players import ScriptedPlayer

    players = [ScriptedPlayer(server.ws_url, game_id, code, QUIET) for code in recoveries]
    for player in players:
        await player.join()
    await asyncio.gather(*(p.play(resume_from=server.api_url) for p in players))
    for player in players:
        await player.close()
    return players


# ---------------------------------------------------------------------------------------------- bad inputs

async def ready_game(server: LocalServer, params: dict[str, Any]) -> tuple[int, list[Any]]:
    """A game whose six players have joined and sent ready (round 0 started)."""
    game_id = server.create_game({**FAST, **params})
    players = await join_all(server.ws_url, game_id, codes())
    for player in players:
        await player.client.send(player.message("player-is-ready"))
    return game_id, players


def test_by_default_wrong_roles_and_absurd_amounts_are_accepted_as_on_the_real_server() -> None:
    async def scenario() -> None:
        async with LocalServer() as server:
            game_id, players = await ready_game(server, {"timer_phase_3": 5})
            developer, owner = players[1].client, players[0].client
            await owner.wait_for(is_event("phase-transition", phase=3))
            request = {"gameId": game_id, "type": "compensation-request"}
            await developer.send({**request, "compensationRequests": [None, -5]})
            await owner.send({**request, "compensationRequests": "a lot"})
            _, ack = await developer.wait_for(is_event("compensation-request-received"))
            assert ack["data"] == {"compensationRequests": [None, -5]}
            _, ack = await owner.wait_for(is_event("compensation-request-received"))
            assert ack["data"] == {"compensationRequests": "a lot"}
            for player in players:
                await player.close()

    run(scenario())


def test_strict_mode_rejects_wrong_roles_and_out_of_range_values_with_an_error_frame() -> None:
    async def scenario() -> None:
        async with LocalServer(strict=True) as server:
            game_id, players = await ready_game(server, {"timer_phase_3": 5})
            developer, owner = players[1].client, players[0].client
            await owner.wait_for(is_event("phase-transition", phase=3))
            start = len(owner.frames)
            await developer.send({"gameId": game_id, "type": "compensation-request", "compensationRequests": [None, 5]})
            _, error = await developer.wait_for(is_message("error"))
            assert error["message"] == f"Game {game_id}: only 3 can send this message in this phase. You are 2."
            for bad in ([None, -1], [None, 10**15], [None, "5"], 5, [None, 1.5]):
                await owner.send({"gameId": game_id, "type": "compensation-request", "compensationRequests": bad})
                index, error = await owner.wait_for(is_message("error"), start)
                start = index + 1
                assert "compensationRequests must be [null, X] with X a whole number from 0 to" in error["message"]
            await owner.send({"gameId": game_id, "type": "compensation-request", "compensationRequests": [None, 5]})
            await owner.wait_for(is_event("compensation-request-received"), start)
            assert owner.events("compensation-request-received")[0]["data"] == {"compensationRequests": [None, 5]}
            assert server.game(game_id).players[2].requests is MISSING  # the rejected request was not stored...
            assert server.game(game_id).players[1].requests == [None, 5]  # ...only the valid one
            for player in players:
                await player.close()

    run(scenario())


def test_the_round_start_race_drops_an_early_ready_and_a_careful_player_resends_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalServer(records_dir=tmp_path, ready_race_window=0.3) as server:
            game_id = server.create_game({**FAST, "practice_round": True, "round_count": 1})
            hasty = [Behaviour(ready_retry=1.5)] + [Behaviour(ready_retry=0.05)] * 5
            players = await join_all(server.ws_url, game_id, codes(), hasty)
            tasks = [asyncio.create_task(p.play()) for p in players]
            first = players[0].client
            index, _ = await first.wait_for(is_event("phase-transition", round=1, phase=0))
            await asyncio.sleep(0.6)
            # The hasty player's ready arrived inside the window: no answer, and the game waits for it.
            assert not [f for f in first.frames[index:] if f.get("eventType") == "ready-received"]
            assert server.game(game_id).phase == 0
            await asyncio.gather(*tasks)  # it re-sends later and the game finishes
            recorded = await server.wait_game_over(game_id, timeout=60)
            readies = [e for e in recorded["log"] if e["content"].get("type") == "player-is-ready" and e["round"] == 1]
            assert sorted(e["number"] for e in readies) == [1, 2, 3, 4, 5, 6]  # the dropped frames left no trace
            for player in players:
                await player.close()

    run(scenario())


def test_an_apostrophe_in_a_stored_vote_freezes_the_game_as_on_the_real_server() -> None:
    async def scenario() -> None:
        async with LocalServer() as server:
            game_id, players = await ready_game(server, {"timer_phase_3": 0.1, "timer_phase_4": 0.1,
                                                         "timer_phase_6": 0.1})
            owner = players[0].client
            await owner.wait_for(is_event("phase-transition", phase=6))
            vote = {"gameId": game_id, "type": "compensation-decision", "compensationDecisions": ["it's yes"]}
            await owner.send(vote)
            await owner.wait_for(is_event("compensation-decision-received"))
            await asyncio.sleep(0.5)
            assert not owner.events("phase-transition") or owner.events("phase-transition")[-1]["data"]["phase"] == 6
            assert server.game(game_id).frozen and not server.game(game_id).over
            for player in players:
                await player.close()

    run(scenario())


# ---------------------------------------------------------------------------------------------- REST

def test_rest_api_answers_with_the_real_envelopes_and_codes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalServer(records_dir=tmp_path, admin_password="s3cret") as server:
            api = server.api_url
            status, body = await http("POST", f"{api}/auth/login", {"username": "admin", "password": "wrong"})
            assert (status, body) == (401, {"data": {}, "status": True, "message": "Login failed"})
            status, body = await http("POST", f"{api}/auth/login", {"username": "admin", "password": "s3cret"})
            assert status == 200 and body["status"] is True
            token = body["data"]["token"]

            credentials = {"username": "admin", "password": "s3cret"}
            status, body = await http("POST", f"{api}/games/create-for-llm", {**credentials, "password": "no"})
            assert (status, body["message"]) == (401, "Login failed")
            status, body = await http("POST", f"{api}/games/create-for-llm",
                                      {**credentials, "gameParameters": {**nested({}), "round_count": "many"}})
            assert status == 400 and "round_count" in body["message"]
            params = nested({**FAST, "practice_round": False, "round_count": 1, "title": "rest test"})
            status, body = await http("POST", f"{api}/games/create-for-llm", {**credentials, "gameParameters": params})
            assert (status, body) == (200, {"data": {"id": 2}, "status": True, "message": "Game created and started"})

            status, body = await http("GET", f"{api}/games/get-recovery?game_id=2")
            assert status == 200 and len(body["data"]["recovery"]) == 64
            assert set(body["data"]["recovery"]) <= set("abcdefghijklmnopqrstuvwxyz0123456789")
            status, body = await http("GET", f"{api}/games/get-recovery?game_id=99")
            assert (status, body["message"]) == (400, "Game 99 was not found")
            status, body = await http("GET", f"{api}/games/status?id=2&recovery=nobody")
            assert body["data"] == {"found": False, "canJoin": True, "gameData": None, "ruleset": "Voting"}
            assert body["message"] == "Player not found but game 2 can still be joined"
            status, body = await http("GET", f"{api}/games/status?id=abc")
            assert (status, body["message"]) == (400, "Game with id NaN not found")
            status, body = await http("GET", f"{api}/games/started")
            assert body["data"] == [{"id": 2, "title": "rest test", "type": "voting", "assignedPlayers": 0,
                                     "currentRound": {"id": 1, "number": 1, "phase": 0, "gameId": 2}}]

            status, body = await http("GET", f"{api}/games/json?gameId=2&token={token}")
            assert status == 500 and body["message"].startswith("ENOENT")  # not finished: no log yet
            await play_game(server.ws_url, 2, codes(), [QUIET] * 6)
            recorded = await server.wait_game_over(2, timeout=60)
            status, body = await http("GET", f"{api}/games/json?gameId=2&token=forged")
            assert (status, body["message"]) == (401, "Could not verify your token")
            status, body = await http("GET", f"{api}/games/json?gameId=2&token={token}")
            assert status == 200 and isinstance(body["data"], str) and json.loads(body["data"]) == recorded
            status, body = await http("GET", f"{api}/games/started")
            assert body["data"] == []
            status, _ = await http("GET", f"{api}/games/nothing-here")
            assert status == 404

    run(scenario())




def test_agents_only_games_ask_the_agent_manager_to_spawn_agents() -> None:
    async def scenario() -> None:
        calls: list[Any] = []
        listener, port = await agent_manager_listener(calls)
        async with LocalServer(agent_manager=f"127.0.0.1:{port}") as server:
            credentials = {"username": "admin", "password": "admin"}
            status, body = await http("POST", f"{server.api_url}/games/create-for-llm",
                                      {**credentials, "gameParameters": nested({"agents_only": True})})
            assert (status, body["data"]) == (200, {"id": 1})
            assert calls == [("POST", "/spawn-agents", {"game_id": 1, "game_type": "voting", "agents": 6})]
            game_id = server.create_game({"agents_only": True})  # in-process: the call happens in the background
            for _ in range(100):
                if len(calls) == 2:
                    break
                await asyncio.sleep(0.02)
            assert calls[1][2] == {"game_id": game_id, "game_type": "voting", "agents": 6}
        listener.close()
        await listener.wait_closed()

    run(scenario())


def test_when_no_agent_manager_listens_the_game_starts_anyway_and_the_answer_is_the_real_servers_400() -> None:
    async def scenario() -> None:
        listener, port = await agent_manager_listener([])
        listener.close()
        await listener.wait_closed()  # nothing listens on that port any more
        async with LocalServer(agent_manager=f"127.0.0.1:{port}") as server:
            request = {"username": "admin", "password": "admin", "gameParameters": nested({"agents_only": True})}
            status, body = await http("POST", f"{server.api_url}/games/create-for-llm", request)
            # As the real server: axios's error, no id, and the game created and started all the same.
            assert (status, body) == (400, {"data": {}, "status": True,
                                            "message": f"connect ECONNREFUSED 127.0.0.1:{port}"})
            assert server.game(1).phase == 0 and server.game(1).spawn_error
            status, body = await http("GET", f"{server.api_url}/games/get-recovery?game_id=1")
            assert status == 200  # agents started by hand can still join

    run(scenario())


# ---------------------------------------------------------------------------------------------- standalone

def test_standalone_server_prints_its_urls_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "PYTHON_DOTENV_DISABLED": "1", "IBEX_PASSWORD": "from-env"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lib.localserver.server", "--ws-port", "0", "--api-port", "0",
         "--records", str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("IBEX local server: ws://127.0.0.1:") and " api http://127.0.0.1:" in line
        api = line.split(" api ")[1].strip()

        async def login() -> int:
            status, _ = await http("POST", f"{api}/auth/login", {"username": "admin", "password": "from-env"})
            return status

        assert run(login()) == 200
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0
        assert "from-env" not in out + err + line
    finally:
        if process.poll() is None:
            process.kill()


def test_standalone_server_reports_a_bad_sessions_file_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "sessions.json"
    bad.write_text("[{]")
    result = subprocess.run([sys.executable, "-m", "lib.localserver.server", "--sessions", str(bad)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={"PYTHON_DOTENV_DISABLED": "1"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and str(bad) in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------- recorded logs

def test_the_sample_logs_are_complete_games_in_the_real_format() -> None:
    from lib.ibex.params import parse_parameters

    logs = sorted((ROOT / "jsonFiles").glob("*.log.json"))
    formats = []
    for path in logs:
        recorded = json.loads(path.read_text())
        formats.append([key for key in recorded if key != "recorded-by"])  # the local server's own mark
        params = parse_parameters(recorded["parameters"], str(path))
        assert {e["type"] for e in recorded["log"]} <= {"message", "phase-timeout"}, path
        timeouts = [(e["round"], e["phase"]) for e in recorded["log"] if e["type"] == "phase-timeout"]
        assert (params.rounds()[-1], 7) in timeouts, path  # played to the end
        if "server-log" in recorded:
            sent = [e["sent"]["type"] for e in recorded["server-log"]]
            assert sent[-1] == "game-over" and sent.count("reward") == 6, path
            assert sent.count("round-end") == len(params.rounds()), path
    # both formats of docs/protocol.md section 5: with server-log (since 2024) and without (the 2023 logs)
    assert ["parameters", "log", "server-log"] in formats and ["parameters", "log"] in formats
    assert len(formats) >= 3


def test_a_recorded_game_becomes_the_dataset_of_the_actions_the_players_sent(tmp_path: Path) -> None:
    import subprocess
    import sys

    if not (ROOT / "constructDataset.py").exists():
        pytest.skip("constructDataset.py is not in this checkout yet")
    logs, out = tmp_path / "logs", tmp_path / "out"
    behaviours = [Behaviour(request=lambda v, r, s=s: 100000 + 1000 * s + r, vote=lambda o, v, r, s=s: s % 2,
                            ready_retry=1.0) for s in (1, 2, 3, 4, 5, 6)]
    behaviours[1] = Behaviour(offer=lambda q, v, r: 123000 + r, ready_retry=1.0)

    async def scenario() -> list[Any]:
        async with LocalServer(records_dir=logs) as server:
            game_id = server.create_game({**FAST, "practice_round": False, "round_count": 2})
            players = await play_game(server.ws_url, game_id, codes(), behaviours)
            await server.wait_game_over(game_id, timeout=60)
        return [action for player in players for action in player.actions]

    actions = run(scenario())
    result = subprocess.run([sys.executable, "constructDataset.py", "--input", str(logs), "--output-dir", str(out),
                             "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHON_DOTENV_DISABLED": "1"})
    assert result.returncode == 0, result.stderr
    answers = []
    for name in ("training_set.jsonl", "validation_set.jsonl"):  # one game: it may all go to one side
        lines = (out / name).read_text().splitlines() if (out / name).exists() else []
        for line in lines:
            answers += [json.loads(m["content"]) for m in json.loads(line)["messages"] if m["role"] == "assistant"]
    assert len(actions) == 22  # 2 rounds x (5 requests + 1 offer + 5 votes)
    canonical = sorted(json.dumps(a, sort_keys=True) for a in actions)
    assert sorted(json.dumps(a, sort_keys=True) for a in answers) == canonical


def test_a_silent_developer_leaves_the_last_offer_standing_as_in_the_real_servers_code() -> None:
    behaviours = [Behaviour(vote=lambda o, v, r: 1, ready_retry=1.0) for _ in range(6)]
    behaviours[1] = Behaviour(offer=lambda q, v, r: 111000 if r == 1 else None, ready_retry=1.0)

    async def scenario() -> list[Any]:
        async with LocalServer() as server:
            game_id = server.create_game({**FAST, "timer_phase_4": 0.2, "practice_round": False, "round_count": 2})
            players = await play_game(server.ws_url, game_id, codes(), behaviours)
            await server.wait_game_over(game_id, timeout=60)
        return players

    owner = run(scenario())[0].client
    assert [e["data"]["compensationOffers"] for e in owner.events("compensation-offer-made")] == [
        [None, 111000], [0, 0]]
    assert [e["data"]["compensation"] for e in owner.events("final-profit")] == [111000, 111000]


def test_create_for_llm_refuses_a_game_longer_than_its_session_in_the_values_table() -> None:
    async def scenario() -> None:
        async with LocalServer() as server:
            request = {"username": "admin", "password": "admin", "gameParameters": nested({"round_count": 20})}
            status, body = await http("POST", f"{server.api_url}/games/create-for-llm", request)
            assert status == 400 and "session 1 has no private values for round 8" in body["message"]

    run(scenario())


def test_game_ids_continue_after_the_logs_already_in_the_records_folder(tmp_path: Path) -> None:
    (tmp_path / "41.log.json").write_text("{}")

    async def scenario() -> int:
        async with LocalServer(records_dir=tmp_path) as server:
            return server.create_game(FAST)

    assert run(scenario()) == 42


# ---------------------------------------------------------------------------------------------- registered games


def test_a_registered_game_is_played_in_process_by_its_own_server_rules(tmp_path: Path) -> None:
    # Nothing in lib/localserver names the game: registering it (lib.games.register) is all the server needs.
    flat = {**FAST, "game_type": "voting-copy", "practice_round": False, "round_count": 1}
    with registered_copy("voting", "voting-copy") as rules:
        async def scenario() -> tuple[int, dict[str, Any], list[Any]]:
            async with LocalServer(records_dir=tmp_path) as server:
                game_id = server.create_game(flat)
                _status, lobby = await http("GET", f"{server.api_url}/games/started")
                await play_game(server.ws_url, game_id, codes(), [Behaviour()] * 6)
                return game_id, await server.wait_game_over(game_id, timeout=60), lobby["data"]

        game_id, recorded, lobby = run(scenario())

    assert rules.calls == [("parameters", flat), ("new_game", game_id, "voting-copy")]
    assert lobby[0]["type"] == "voting-copy"
    assert {row["key"]: row["value"] for row in recorded["parameters"]}["game_type"] == "voting-copy"
    assert any(entry["sent"]["type"] == "game-over" for entry in recorded["server-log"])
    assert json.loads((tmp_path / f"{game_id}.log.json").read_text()) == recorded


@pytest.mark.parametrize("game_type", ["chess", "Voting", None, 3])
def test_an_in_process_game_no_registered_game_plays_is_refused_naming_the_games_played(game_type: Any) -> None:
    async def scenario() -> tuple[str, int]:
        async with LocalServer() as server:
            with pytest.raises(ValueError) as refused:
                server.create_game({**FAST, "game_type": game_type})
            return str(refused.value), server.create_game(FAST)

    message, next_id = run(scenario())
    assert next_id == 1  # the refused game used no id
    assert message == (f"gameParameters: game_type {game_type!r} is not played here (only 'voting', 'harberger' "
                       "and 'futarchy')")
