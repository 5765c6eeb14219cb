"""lib.ibex.api against the local IBEX server's REST API, and against a scripted listener for the failures a real
deployment shows (gateway errors, hangs, HTML error pages, a closed port)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from websockets.asyncio.client import connect

from lib.agents.realserver import create_payload
from lib.ibex.api import CreatedGame, GameNotFound, IbexApi, IbexApiError, IbexUnreachable, short
from lib.localserver.server import LocalServer
from tests.helpers.scripted_http import HANG, ScriptedHttp

# create-for-llm takes the real server's nested gameParameters (the local server honours sub-second timers).
FAST = create_payload({"round_count": 1, "practice_round": False, **{f"timer_phase_{n}": 0.05 for n in range(1, 8)}})[0]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def join_all(server: LocalServer, game_id: int, codes: list[str]) -> list:
    sockets = []
    for code in codes:
        ws = await connect(server.ws_url, max_queue=None)  # nobody reads: do not stall the close handshake
        await ws.send(json.dumps({"gameId": game_id, "type": "join", "recovery": code}))
        await ws.send(json.dumps({"gameId": game_id, "type": "player-is-ready"}))
        sockets.append(ws)
    return sockets


# --- against the local server ----------------------------------------------------------------------------------


def test_a_whole_game_through_the_rest_api():
    async def scenario():
        async with LocalServer() as server, IbexApi(server.api_url) as api:
            created = await api.create_for_llm("admin", "admin", FAST)
            codes = [await api.get_recovery(created.id) for _ in range(6)]
            before = await api.status(created.id, codes[0])
            sockets = await join_all(server, created.id, codes)
            after = await api.status(created.id, codes[1])
            lobby = await api.started()
            await server.wait_game_over(created.id, 20)
            token = await api.login("admin", "admin")
            recorded = await api.game_json(created.id, token)
            for ws in sockets:
                await ws.close()
            return created, codes, before, after, lobby, recorded

    created, codes, before, after, lobby, recorded = run(scenario())

    assert created == CreatedGame(created.id) and created.warning is None
    assert len(set(codes)) == 6 and all(len(code) == 64 and code.isalnum() for code in codes)
    assert (before.found, before.can_join, before.game_data) == (False, True, None)
    assert after.found and after.game_data["player"]["number"] == 2
    assert after.game_data["game"]["id"] == created.id
    assert [game["id"] for game in lobby] == [created.id]
    assert {"parameters", "log", "server-log"} <= set(recorded)


def test_wrong_credentials_name_the_call_and_code_but_never_the_password():
    async def scenario():
        async with LocalServer() as server, IbexApi(server.api_url) as api:
            with pytest.raises(IbexApiError) as login:
                await api.login("admin", "hunter2-secret")
            with pytest.raises(IbexApiError) as create:
                await api.create_for_llm("admin", "hunter2-secret", FAST)
            return login.value, create.value

    login, create = run(scenario())

    assert (login.call, login.status) == ("login", 401)
    assert str(login) == "IBEX API login: HTTP 401: Login failed"
    assert (create.call, create.status) == ("create-for-llm", 401)
    assert "hunter2" not in str(login) + str(create)


def test_bad_game_parameters_come_back_with_the_servers_reason():
    async def scenario():
        async with LocalServer() as server, IbexApi(server.api_url) as api:
            with pytest.raises(IbexApiError) as caught:
                await api.create_for_llm("admin", "admin", {**FAST, "round_count": "many"})
            return caught.value

    error = run(scenario())

    assert error.status == 400
    assert "round_count" in str(error)


def test_an_agents_only_game_whose_spawn_call_fails_is_found_by_its_title():
    # The real server starts the game, then answers 400 with axios's error and no id.
    port = closed_port()
    two_developers = {**FAST, "agents_only": True, "title": "run 7", "developers": {**FAST["developers"], "count": 2}}

    async def scenario():
        async with LocalServer(agent_manager=f"127.0.0.1:{port}") as server, IbexApi(server.api_url) as api:
            server.create_game({}, title="run 7")  # an older game of the same title stays in the lobby
            created = await api.create_for_llm("admin", "admin", {**FAST, "agents_only": True, "title": "run 7"})
            with pytest.raises(IbexApiError) as untitled:
                await api.create_for_llm("admin", "admin", {**FAST, "agents_only": True})
            with pytest.raises(IbexApiError) as not_started:
                await api.create_for_llm("admin", "admin", two_developers)
            return created, untitled.value, not_started.value

    created, untitled, not_started = run(scenario())

    assert created == CreatedGame(2, warning=f"connect ECONNREFUSED 127.0.0.1:{port}")
    assert (untitled.status, untitled.message) == (400, f"connect ECONNREFUSED 127.0.0.1:{port}")
    assert not_started.message == ("Game 4 has 6 players but 7 were expected. This is most likely a player "
                                   "generation a bug")


def test_unknown_games_raise_game_not_found():
    async def scenario():
        async with LocalServer() as server, IbexApi(server.api_url) as api:
            with pytest.raises(GameNotFound) as status:
                await api.status(42, "a" * 64)
            with pytest.raises(GameNotFound) as recovery:
                await api.get_recovery(42, wait_for_start=0.3)
            return status.value, recovery.value

    status, recovery = run(scenario())

    assert "Game with id 42 not found" in str(status)
    assert "a" * 64 not in str(status) and short("a" * 64) in str(status)
    assert "get-recovery (game 42)" in str(recovery) and recovery.status == 400


def test_the_admin_token_is_checked():
    async def scenario():
        async with LocalServer() as server, IbexApi(server.api_url) as api:
            with pytest.raises(IbexApiError) as caught:
                await api.game_json(1, "not-a-token")
            return caught.value

    error = run(scenario())

    assert error.status == 401
    assert "not-a-token" not in str(error)


# --- against a scripted listener -------------------------------------------------------------------------------

OK_RECOVERY = (200, {"data": {"recovery": "r" * 64}, "status": True, "message": "Data available"})


def test_gateway_errors_are_retried_until_an_answer_comes():
    async def scenario():
        async with ScriptedHttp((502, b"<html>Bad Gateway</html>"), (503, {"message": "busy"}), OK_RECOVERY) as http:
            async with IbexApi(http.url + "/api/v1", backoff=0.01) as api:
                code = await api.get_recovery(7)
            return code, http.requests

    code, requests = run(scenario())

    assert code == "r" * 64
    expected = ("GET", "/api/v1/games/get-recovery", {"game_id": "7"})
    assert [(r.method, r.path, r.query) for r in requests] == [expected] * 3


def test_a_server_that_stays_down_gets_a_bounded_number_of_tries_and_a_clear_message():
    async def scenario():
        async with ScriptedHttp((503, {"data": {}, "status": True, "message": "Service Unavailable"})) as http:
            async with IbexApi(http.url + "/api/v1", retries=2, backoff=0.01) as api:
                with pytest.raises(IbexUnreachable) as caught:
                    await api.started()
            return caught.value, len(http.requests)

    error, calls = run(scenario())

    assert calls == 3
    assert "after 3 attempts" in str(error) and "HTTP 503: Service Unavailable" in str(error)


def test_a_closed_port_is_unreachable_after_the_retries():
    async def scenario():
        async with IbexApi(f"http://127.0.0.1:{closed_port()}/api/v1", retries=1, backoff=0.01) as api:
            with pytest.raises(IbexUnreachable) as caught:
                await api.status(3, "s" * 64)
            return caught.value

    error = run(scenario())

    assert error.call.startswith("status (game 3")
    assert "after 2 attempts" in str(error) and "ConnectError" in str(error)
    assert "s" * 64 not in str(error)


def test_a_hanging_server_times_out_and_is_retried():
    async def scenario():
        async with ScriptedHttp(HANG, OK_RECOVERY) as http:
            async with IbexApi(http.url + "/api/v1", timeout=0.3, backoff=0.01) as api:
                code = await api.get_recovery(7)
            return code, len(http.requests)

    code, calls = run(scenario())

    assert code == "r" * 64
    assert calls == 2


def test_create_is_not_repeated_once_the_server_may_have_acted():
    async def scenario():
        async with ScriptedHttp(HANG, (200, {"data": {"id": 9}})) as http:
            async with IbexApi(http.url + "/api/v1", timeout=0.3, backoff=0.01) as api:
                with pytest.raises(IbexApiError) as caught:
                    await api.create_for_llm("admin", "pw-never-shown", {})
            return caught.value, http.requests

    error, requests = run(scenario())

    assert len(requests) == 1
    assert "not repeated" in str(error)
    assert json.loads(requests[0].body)["gameParameters"] == {}


def test_create_is_repeated_when_the_gateway_never_reached_the_server():
    async def scenario():
        async with ScriptedHttp((503, b"upstream down"), (200, {"data": {"id": 9}, "message": "ok"})) as http:
            async with IbexApi(http.url + "/api/v1", backoff=0.01) as api:
                created = await api.create_for_llm("admin", "pw", {"round_count": 1})
            return created, len(http.requests)

    created, calls = run(scenario())

    assert created == CreatedGame(9)
    assert calls == 2


def test_an_html_error_page_is_quoted_as_words():
    async def scenario():
        page = b"<html><body><pre>Cannot GET /api/v1/games/started</pre></body></html>"
        async with ScriptedHttp((404, page)) as http:
            async with IbexApi(http.url + "/api/v1") as api:
                with pytest.raises(IbexApiError) as caught:
                    await api.started()
            return caught.value, len(http.requests)

    error, calls = run(scenario())

    assert calls == 1  # a 404 will not pass
    assert str(error) == "IBEX API started: HTTP 404: Cannot GET /api/v1/games/started"


@pytest.mark.parametrize(
    ("call", "answer", "expected"),
    [
        ("login", {"data": {}, "message": "Login successful"}, "no token"),
        ("recovery", {"data": {"recovery": None}}, "no recovery code"),
        ("started", {"data": {"games": []}}, "expected a list"),
        ("json", {"data": "{not json"}, "not JSON"),
        ("status", {"data": "found"}, "unexpected answer"),
        ("create", {"data": {"id": "6"}}, "no game id"),
    ],
)
def test_answers_of_the_wrong_shape_are_clear_errors(call, answer, expected):
    async def scenario():
        async with ScriptedHttp((200, answer)) as http, IbexApi(http.url + "/api/v1") as api:
            calls = {
                "login": lambda: api.login("u", "p"),
                "recovery": lambda: api.get_recovery(1),
                "started": api.started,
                "json": lambda: api.game_json(1, "t"),
                "status": lambda: api.status(1, "c" * 64),
                "create": lambda: api.create_for_llm("u", "p", {}),
            }
            with pytest.raises(IbexApiError) as caught:
                await calls[call]()
            return caught.value

    assert expected in str(run(scenario()))


@pytest.mark.parametrize("url", ["", "127.0.0.1:3080/api/v1", "ws://127.0.0.1:3088"])
def test_a_base_url_that_is_not_http_is_refused(url):
    with pytest.raises(ValueError, match="IBEX_API_URL must start with http:// or https://"):
        IbexApi(url)
