"""lib.games.voting.resync: a /games/status snapshot folded into a PlayerView after a rejoin.

Snapshots are written here in the real server's shape (values made up), and taken from the local IBEX server in
the middle of a game played by scripted clients.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from lib.agents.realserver import create_payload
from lib.games.voting.actions import CHAT, DECISION, OFFER, REQUEST, action_due
from lib.games.voting.resync import READY, apply_resync
from lib.games.voting.view import PlayerView
from lib.ibex.api import IbexApi
from lib.localserver.server import LocalServer
from tests.helpers.frames import BOUNDARIES, PLAYERS, event

CONDITIONS = [{"name": "No Project", "id": 0, "parameter": "no_project", "key": "noProject"},
              {"name": "Project", "id": 1, "parameter": "project_a", "key": "projectA"}]
DEADLINE = 1_900_000_030_000


def snapshot(round_number: int | None, phase: int | None, seat: int = 4, *, game: dict[str, Any] | None = None,
             player: dict[str, Any] | None = None, timer: int | None = DEADLINE) -> dict[str, Any]:
    role = 2 if seat == 2 else 3
    tag = next(p["tag"] for p in PLAYERS if p["number"] == seat)
    return {
        "game": {"id": 8, "round": round_number, "phase": phase, "boundaries": BOUNDARIES, "conditions": CONDITIONS,
                 "players": PLAYERS, "compensationOffers": [], "over": False, "compensationRequests": None,
                 **(game or {})},
        "player": {"name": "Teal", "tag": tag, "number": seat, "role": role,
                   "property": {"id": seat, "owner": seat, "name": "Calm Otter Lot", "v": [510000, 240000, 150000]},
                   "recovery": "x" * 64, "ready": False, "summaries": [], **(player or {})},
        "timer": timer,
    }


def test_an_owner_rejoining_in_the_request_phase_owes_the_request_and_ignores_last_rounds_result():
    view = PlayerView(game_id=8)
    last_round = {"condition": 1, "value": 301000, "compensation": 120000}

    sync = apply_resync(view, snapshot(2, 3, player={"result": last_round}))

    assert (view.round, view.phase, view.number, view.role, view.tag) == (2, 3, 4, 3, "Owner 3")
    assert view.deadline_ms == DEADLINE and sync.deadline_ms == DEADLINE
    assert view.current.values == [510000, 240000]
    assert view.boundaries == BOUNDARIES and [p["number"] for p in view.players] == [1, 2, 3, 4, 5, 6]
    assert view.current.outcome is None, "round 1's result must not become round 2's outcome"
    assert sync.ignored_result == last_round
    assert sync.acted == set()
    assert action_due(view) == REQUEST


def test_a_request_the_server_already_has_is_not_owed_again():
    view = PlayerView(game_id=8)

    sync = apply_resync(view, snapshot(1, 3, player={"compensationRequestReceived": True,
                                                     "compensationRequests": [None, 300000]}))

    assert sync.acted == {REQUEST}
    assert view.current.my_request == [None, 300000]


def test_owners_learn_the_offer_from_phase_5_on_only():
    offered = {"compensationOffers": [None, 250000]}
    in_phase_4, in_phase_5 = PlayerView(game_id=8), PlayerView(game_id=8)

    apply_resync(in_phase_4, snapshot(1, 4, game=offered, player={"compensationOfferReceived": True}))
    apply_resync(in_phase_5, snapshot(1, 5, game=offered, player={"compensationOfferReceived": True}))

    assert in_phase_4.current.offer is None
    assert in_phase_5.current.offer == [None, 250000]


def test_a_vote_already_cast_is_kept_and_not_owed_again():
    view = PlayerView(game_id=8)

    sync = apply_resync(view, snapshot(1, 6, player={"compensationDecisionReceived": True,
                                                     "compensationDecisions": [1]}))

    assert sync.acted == {DECISION}
    assert view.current.my_vote == [1]


def test_the_developer_gets_the_requests_and_owes_the_offer():
    requests = [{"number": n, "compensationRequests": None if n == 2 else [None, 100000 * n]} for n in range(1, 7)]
    view = PlayerView(game_id=8)

    sync = apply_resync(view, snapshot(1, 4, seat=2, game={"compensationRequests": requests}))

    assert view.role == 2
    assert view.current.requests == {1: [None, 100000], 3: [None, 300000], 4: [None, 400000], 5: [None, 500000],
                                     6: [None, 600000]}
    assert sync.acted == set() and action_due(view) == OFFER


def test_requests_cleared_by_the_server_after_the_round_do_not_wipe_the_developers_record():
    view = PlayerView(game_id=8)
    apply_resync(view, snapshot(1, 4, seat=2, game={"compensationRequests": [
        {"number": 1, "compensationRequests": [None, 90000]}]}))
    cleared = [{"number": n, "compensationRequests": None} for n in range(1, 7)]

    apply_resync(view, snapshot(1, 7, seat=2, game={"compensationRequests": cleared}))

    assert view.current.requests == {1: [None, 90000]}


def test_results_are_trusted_in_phase_7_when_they_carry_this_rounds_tally():
    view = PlayerView(game_id=8)
    result = {"condition": 1, "value": 240000, "compensation": 250000, "tally": 4}

    sync = apply_resync(view, snapshot(1, 7, player={"result": result}, game={"winningCondition": 1}))

    assert view.current.outcome == result
    assert sync.ignored_result is None


def test_summaries_land_in_their_own_rounds_and_game_over_ends_the_view():
    summaries = [{"round": 2, "condition": 0, "value": 510000, "tally": 1, "compensation": 0, "profit": 510000},
                 {"round": 1, "condition": 1, "value": 240000, "tally": 4, "compensation": 250000, "profit": 490000}]
    reward = {"number": 4, "round": 1, "reward": 29.5}
    view = PlayerView(game_id=8)

    sync = apply_resync(view, snapshot(2, 7, player={"summaries": summaries},
                                       game={"over": True, "reward": reward}))

    assert sync.over and view.game_over
    assert view.reward == reward
    assert (view.rounds[1].profit, view.rounds[2].profit) == (490000, 510000)
    assert view.rounds[1].outcome["condition"] == 1
    assert action_due(view) is None


def test_chat_missed_while_away_is_added_once_under_the_phase_it_was_sent_in():
    view = PlayerView(game_id=8)
    for frame in (event("phase-transition", {"round": 1, "phase": 2}),
                  event("message-received", {"sender": 1, "to": [3, 4, 5, 6], "number": 0, "text": "hello"})):
        view.apply(frame)
    messages = [{"time": 1, "sender": 1, "to": [3, 4, 5, 6], "text": "hello"},
                {"time": 2, "sender": 2, "to": [1, 3, 4, 5, 6], "text": "offer soon"},
                {"time": 3, "sender": 4, "to": [2], "text": "mine"}]

    first = apply_resync(view, snapshot(1, 3, game={"messages": messages}))
    again = apply_resync(view, snapshot(1, 3, game={"messages": messages}))

    assert (first.chat_added, again.chat_added) == (2, 0)
    assert [(c["phase"], c["sender"], c["text"]) for c in view.current.chat] == [
        (2, 1, "hello"), (2, 2, "offer soon"), (2, 4, "mine")]


def test_own_chat_in_the_current_chat_phase_counts_as_done():
    view = PlayerView(game_id=8)

    sync = apply_resync(view, snapshot(1, 5, game={"messages": [{"time": 1, "sender": 4, "to": [2], "text": "hi"}]}))

    assert CHAT in sync.acted


def test_phase_0_takes_the_ready_flag_and_no_values():
    view = PlayerView(game_id=8)

    sync = apply_resync(view, snapshot(3, 0, player={"ready": True}, timer=None))

    assert (view.round, view.phase, view.number) == (3, 0, 4)
    assert view.ready_acked and sync.acted == {READY}
    assert view.current.values is None
    assert view.deadline_ms is None


def test_a_snapshot_between_rounds_says_to_ask_again():
    view = PlayerView(game_id=8)
    view.apply(event("phase-transition", {"round": 1, "phase": 7}))

    sync = apply_resync(view, snapshot(None, None))

    assert not sync.known
    assert (view.round, view.phase) == (1, 7)
    assert view.number == 4


def test_junk_in_a_snapshot_changes_nothing_it_should_not():
    view = PlayerView(game_id=8)

    sync = apply_resync(view, {"game": "?", "player": [1], "timer": "soon"})

    assert not sync.known
    assert view.number is None and view.round == 0


# --- a snapshot from the local server in the middle of a game --------------------------------------------------


async def scripted_player(server: LocalServer, game_id: int, code: str, stop_at: tuple[int, int]) -> None:
    """Plays by fixed rules (requests 300000, offers 250000, votes Project) until the game reaches `stop_at`."""
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"gameId": game_id, "type": "join", "recovery": code}))
        await ws.send(json.dumps({"gameId": game_id, "type": "player-is-ready"}))
        seat = None
        async for text in ws:
            frame = json.loads(text)
            data = frame.get("data") or {}
            if frame.get("eventType") == "assign-role":
                seat = data["number"]
            if frame.get("eventType") != "phase-transition":
                continue
            at = (data["round"], data["phase"])
            if at == stop_at:
                return
            answer = {
                0: {"type": "player-is-ready"},
                3: {"type": "compensation-request", "compensationRequests": [None, 300000]} if seat != 2 else None,
                4: {"type": "compensation-offer", "compensationOffers": [None, 250000]} if seat == 2 else None,
                6: {"type": "compensation-decision", "compensationDecisions": [1]} if seat != 2 else None,
            }.get(at[1])
            if answer:
                if at[1] == 0:
                    await asyncio.sleep(0.02)
                await ws.send(json.dumps({"gameId": game_id, **answer}))


def test_the_local_servers_snapshot_in_round_1_still_holds_the_practice_rounds_result():
    params = {"round_count": 1, "practice_round": True, "timer_phase_1": 0.05, "timer_phase_2": 0.05,
              "timer_phase_3": 30, "timer_phase_4": 30, "timer_phase_5": 0.05, "timer_phase_6": 30,
              "timer_phase_7": 0.05}

    async def scenario():
        async with LocalServer() as server, IbexApi(server.api_url) as api:
            game_id = (await api.create_for_llm("admin", "admin", create_payload(params)[0])).id
            codes = [await api.get_recovery(game_id) for _ in range(6)]
            players = []
            for code in codes:  # one by one, so that join order gives seats 1..6
                players.append(asyncio.create_task(scripted_player(server, game_id, code, (1, 3))))
                while server.game(game_id).assigned < len(players):
                    await asyncio.sleep(0.01)
            await asyncio.gather(*players)
            return (await api.status(game_id, codes[3])).game_data

    game_data = asyncio.run(asyncio.wait_for(scenario(), 30))
    view = PlayerView(game_id=1)

    sync = apply_resync(view, game_data)

    assert (sync.round, sync.phase) == (1, 3)
    assert sync.ignored_result == {"condition": 1, "value": sync.ignored_result["value"], "compensation": 250000}
    assert view.current.outcome is None
    assert view.number == 4 and action_due(view) == REQUEST
    assert view.current.values == game_data["player"]["property"]["v"][:2]
