"""Shared test setup: the fake OpenAI server fixture, no developer .env leaking into any test, one math thread per
process, and the groups of tests the README's `pytest -n 4` runs in one worker.

Helpers every test may import live in tests/helpers/ (paths, scripted IBEX players, the fake OpenAI server, local
server and handler runs); no test file imports another test file."""

import os

# One thread per process for the math libraries, set before torch, numpy or tokenizers are first imported (this file
# is imported before any test module), and inherited by every subprocess a test starts. The tests' models are tiny,
# so a second thread only waits on the first; and with the README's `-n 4` on the 2-core CI machine, four workers
# each spinning a pool of threads starved one another: the training tests took three times the CPU and one of them
# ran past its timeout. A developer who exports one of these keeps their value.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

pytest_plugins = ["tests.helpers.fakeopenai"]


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    # handler.py and finetune.py read .env at start-up; a developer's keys must never reach a test.
    monkeypatch.setenv("PYTHON_DOTENV_DISABLED", "1")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist's `--dist loadgroup` (pyproject.toml): each test marked `xdist_group("name")` says its group
    in its id, so that one worker runs the whole group. xdist schedules the groups first, the largest first, then
    the other tests one by one as workers free up.

    pytest-xdist 3.8 appends "@name" to `item._nodeid`, which pytest 9 no longer reads (a node's id is `item._id`),
    so its scheduler saw no group and sent a group's tests to every worker, each building the group's module fixture
    again. Grouping only saves that work: every module fixture is made in the worker's own temporary folder, so a
    group split over workers still passes."""
    if not getattr(config.option, "loadgroup", False):  # set in xdist's workers only
        return
    for item in items:
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        if names and "@" not in item.nodeid.rpartition("]")[2]:
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")
