"""Shared test setup: the fake OpenAI server fixture, and no developer .env leaking into any test.

Helpers every test may import live in tests/helpers/ (paths, scripted IBEX players, the fake OpenAI server, local
server and handler runs); no test file imports another test file."""

import pytest

pytest_plugins = ["tests.helpers.fakeopenai"]


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    # handler.py and finetune.py read .env at start-up; a developer's keys must never reach a test.
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")
