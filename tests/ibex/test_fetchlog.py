"""A finished game's log fetched with the admin token into a folder, against the local server's REST API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lib.ibex.fetchlog import FetchError, fetch_game_log
from lib.localserver.server import LocalServer
from tests.helpers.localserver import FAST, codes
from tests.helpers.players import Behaviour, play_game

PASSWORD = "s3cret-admin-password"


async def finished(server: LocalServer) -> int:
    game_id = server.create_game({**FAST, "practice_round": False, "round_count": 1})
    await play_game(server.ws_url, game_id, codes(), [Behaviour(ready_retry=1.0)] * 6)
    await server.wait_game_over(game_id, timeout=60)
    return game_id


def test_a_finished_games_log_is_fetched_byte_for_byte_into_the_folder(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, Path, Path]:
        async with LocalServer(records_dir=tmp_path / "records", admin_password=PASSWORD) as server:
            game_id = await finished(server)
            path = await fetch_game_log(server.api_url, game_id, tmp_path / "study" / "logs", username="admin",
                                        password=PASSWORD)
            return game_id, path, server.log_path(game_id)

    game_id, path, recorded = asyncio.run(scenario())
    assert path == tmp_path / "study" / "logs" / f"{game_id}.log.json"
    assert path.read_bytes() == recorded.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_every_failure_is_one_line_naming_the_game_and_server_and_never_a_secret(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        lines = []
        async with LocalServer(admin_password=PASSWORD) as server:
            game_id = await finished(server)
            running = server.create_game(FAST)
            blocked = tmp_path / "a-file"
            blocked.write_text("")
            for game, password, folder in ((game_id, "wrong-password-123", tmp_path), (99, PASSWORD, tmp_path),
                                           (running, PASSWORD, tmp_path), (game_id, PASSWORD, blocked / "logs")):
                with pytest.raises(FetchError) as failed:
                    await fetch_game_log(server.api_url, game, folder, username="admin", password=password,
                                         retries=1, backoff=0.0)
                lines.append(str(failed.value))
            with pytest.raises(FetchError) as failed:
                await fetch_game_log("ftp://nowhere", 1, tmp_path, username="admin", password=PASSWORD)
            lines.append(str(failed.value))
            url = server.api_url
        return [line.replace(url, "URL") for line in lines]

    lines = asyncio.run(scenario())
    for line in lines:
        assert "\n" not in line and PASSWORD not in line and "wrong-password-123" not in line and "eyJ" not in line
    assert lines[0].startswith("cannot fetch game 1's log from URL: IBEX API login: HTTP 401")
    for line, game in ((lines[1], 99), (lines[2], 2)):  # unknown, not over yet: asked again, then given up
        assert line == (f"cannot fetch game {game}'s log from URL: IBEX API json (game {game}): no usable answer from "
                        f"URL after 2 attempts (last: HTTP 500: ENOENT: no such file or directory, open "
                        f"'../records/{game}.log.json')")
    assert lines[3] == (f"cannot fetch game 1's log from URL: cannot write {tmp_path}/a-file/logs/1.log.json "
                        "(Not a directory)")
    assert lines[4] == ("cannot fetch game 1's log from ftp://nowhere: IBEX_API_URL must start with http:// or "
                        "https://, got 'ftp://nowhere'")
