"""The local server survives what careless or hostile clients send (issue #12, items 2, 8 and 9): a chat holding a
lone surrogate, malformed HTTP, and joins with recovery codes that are not codes."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from typing import Any

import pytest

from lib.games.voting.server import MAX_RECOVERY_CHARS
from lib.localserver.server import LocalServer
from tests.helpers.localserver import FAST, codes, http
from tests.helpers.players import Behaviour, Client, play_game

LONE = "a\ud800b"  # valid JSON ("a\\ud800b"), but no UTF-8 can carry it


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


# --- item 2: a lone surrogate in a chat --------------------------------------------------------------------------


def test_a_chat_holding_a_lone_surrogate_is_relayed_escaped_and_the_game_and_its_log_complete(tmp_path):
    talker = Behaviour(chat=lambda phase, _round: [([2, 3], LONE)] if phase == 2 else [])

    async def scenario():
        async with LocalServer(records_dir=tmp_path) as server:
            game_id = server.create_game({**FAST, "round_count": 1, "practice_round": False, "timer_phase_2": 1.0})
            recoveries = codes()
            players = await play_game(server.ws_url, game_id, recoveries, [talker] + [Behaviour()] * 5)
            await server.wait_game_over(game_id, timeout=60)
            query = urllib.parse.urlencode({"id": game_id, "recovery": recoveries[1]})
            status = await http("GET", f"{server.api_url}/games/status?{query}")
            return players, status

    players, (status, body) = run(scenario())

    received = [e["data"]["text"] for p in players for e in p.client.events("message-received")]
    assert received == [LONE, LONE]  # seats 2 and 3, as JSON.stringify sends it: "a\\ud800b"
    assert all(p.client.events("game-over") for p in players)  # nobody's socket was closed on the way
    assert status == 200 and body["data"]["gameData"]["game"]["messages"][0]["text"] == LONE
    text = (tmp_path / "1.log.json").read_text(encoding="utf-8")
    assert "a\\ud800b" in text and any(
        entry["content"].get("text") == LONE for entry in json.loads(text)["log"] if entry["type"] == "message")


# --- item 8: malformed HTTP gets a 4xx, never a 500 ---------------------------------------------------------------


async def raw_http(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


LOGIN = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
STARTED = b"GET /api/v1/games/started"
BIG_BODY = b'{"a":"' + b"a" * 200_000 + b'"}'

# What the real server (Node's parser, Express) answered to the same bytes.
MALFORMED = [
    ("negative Content-Length", LOGIN + b"Content-Length: -5\r\n\r\n", 400),
    ("Content-Length not a number", LOGIN + b"Content-Length: abc\r\n\r\n", 400),
    ("two Content-Lengths", LOGIN + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    ("200 KB header", STARTED + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", 431),
    ("200 KB URL", STARTED + b"?" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    ("not a request line", b"HELLO\r\n\r\n", 400),
    ("unknown method", b"FOO /api/v1/games/started HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("header without colon", STARTED + b" HTTP/1.1\r\nHost: x\r\nBadHeader\r\n\r\n", 400),
    ("NUL in a header", STARTED + b" HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("bare LF", STARTED + b" HTTP/1.1\nHost: x\n\n", 400),
    ("200 KB body", LOGIN + b"Content-Length: %d\r\n\r\n" % len(BIG_BODY) + BIG_BODY, 413),
    ("body not UTF-8", LOGIN + b"Content-Length: 4\r\n\r\n\"\xff\xfe\"", 400),
    ("chunked body", LOGIN + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411),  # Node reads it
    ("JSON nested 40,000 deep", LOGIN + b"Content-Length: 80000\r\n\r\n" + b"[" * 40_000 + b"]" * 40_000, 400),
]


@pytest.mark.parametrize(("data", "status"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_http_gets_a_4xx_and_nothing_is_logged_as_an_internal_error(caplog, data, status):
    async def scenario():
        async with LocalServer() as server:
            answer = await raw_http(server.api_port, data)
            after = await http("GET", f"{server.api_url}/games/started")
            return answer, after

    with caplog.at_level(logging.DEBUG, logger="lib.localserver.server"):
        answer, after = run(scenario())

    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == str(status).encode()
    assert after[0] == 200  # the listener goes on
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# --- item 9: joins whose recovery is not a code -------------------------------------------------------------------


BAD_CODES = [
    ("null", {"recovery": None}),
    ("missing", {}),
    ("list", {"recovery": ["a"]}),
    ("object", {"recovery": {"a": 1}}),
    ("number", {"recovery": 12345}),
    ("empty", {"recovery": ""}),
    ("1 MB", {"recovery": "x" * 1_000_000}),
    ("over the limit", {"recovery": "x" * (MAX_RECOVERY_CHARS + 1)}),
]


@pytest.mark.parametrize("extra", [case[1] for case in BAD_CODES], ids=[case[0] for case in BAD_CODES])
def test_a_join_whose_recovery_is_not_a_code_is_refused_and_takes_no_seat(extra):
    async def scenario():
        async with LocalServer() as server:
            game_id = server.create_game(FAST)
            first, second = await Client(server.ws_url).connect(), await Client(server.ws_url).connect()
            for client in (first, second):  # the real server seats the first and rebinds seat 1 to the second
                await client.send({"gameId": game_id, "type": "join", **extra})
                await client.wait_for(lambda f: f.get("type") in ("info", "error"))
            await first.send({"gameId": game_id, "type": "rejoin", **extra})
            await first.wait_for(lambda f: "error" in f and "rejoin" in str(f["error"]))
            good = await Client(server.ws_url).connect()
            await good.send({"gameId": game_id, "type": "join", "recovery": "a" * 64})
            await good.wait_for(lambda f: f.get("type") == "info")
            game = server.game(game_id)
            return first, second, good, game.assigned, game.sockets

    first, second, good, assigned, sockets = run(scenario())

    expected = (f"Game 1: recovery must be a string of 1 to {MAX_RECOVERY_CHARS} characters (the local server "
                "refuses what the real server would seat)")
    assert first.frames[0] == second.frames[0] == {"type": "error", "message": expected}
    assert first.frames[1] == {"error": "Cannot rejoin game 1: invalid recovery string"}
    assert good.frames[0]["message"].endswith("We have now 1 players in the game.")
    assert assigned == 1 and list(sockets) == [1]


def test_a_frame_nested_too_deep_for_python_is_answered_and_the_socket_stays_open():
    async def scenario():
        async with LocalServer() as server:
            game_id = server.create_game(FAST)
            client = await Client(server.ws_url).connect()
            await client.send("[" * 40_000 + "]" * 40_000)
            await client.wait_for(lambda f: "error" in f)
            await client.send({"gameId": game_id, "type": "join", "recovery": "a" * 64})
            await client.wait_for(lambda f: f.get("type") == "info")
            return client.frames

    frames = run(scenario())

    assert frames[0] == {"error": "Maximum call stack size exceeded"}
    assert frames[1]["message"].startswith("Player ")


def test_status_never_finds_a_seat_for_a_code_that_is_not_one():
    async def scenario():
        async with LocalServer() as server:
            game_id = server.create_game(FAST)
            client = await Client(server.ws_url).connect()
            await client.send({"gameId": game_id, "type": "status", "recovery": None})
            await client.wait_for(lambda f: f.get("eventType") == "status")
            rest = await http("GET", f"{server.api_url}/games/status?id={game_id}&recovery=")
            return client.frames[-1], rest

    frame, (status, body) = run(scenario())

    assert frame["data"] == {}  # `joined` undefined: no seat holds null
    assert status == 200 and body["data"]["found"] is False
