"""Every bench/*.py runs, at its smallest size, and prints its figures: a bench can no longer break unseen.

A bench is found by its file name (bench/*.py); each must take `--smoke` (the smallest run that still goes through
every measurement: one small game, a handful of logs) and say so in its docstring. The benches run at the same
time, each in its own process, so the test takes as long as the slowest of them; nothing here looks at the
figures' values, which depend on the machine, only at their being there and being numbers.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time

import pytest

from tests.helpers.paths import REPO

SMOKE = "--smoke"
BENCHES = sorted(p for p in (REPO / "bench").glob("*.py") if not p.name.startswith("_"))
BENCH_TIMEOUT = 240.0  # seconds, for all of them together; a smoke run takes seconds
# Lines a known bench prints when its measurements ran (a bench added later gets the generic checks only).
FIGURES = {
    "agents_bench.py": [r"K = 1 games, 6 agents, 2 rounds each \(wall [\d.]+ s, 6/6 agents saw game-over\)",
                        r"overhead event -> action \([1-9]\d* actions\): p50 [\d.]+ ms",
                        r"CPU: [\d.]+ s in all"],
    "market_agents_bench.py": [r"K = 1 harberger games, 12 agents, 1 rounds each \(wall [\d.]+ s, 12/12 agents saw "
                               r"game-over\)",
                               r"overhead event -> declaration/snipe \([1-9]\d*\): p50 [\d.]+ ms",
                               r"trading: \d+ policy decisions"],
    "study_bench.py": [r"^\s+4" + r"\s+[\d.]+" * 9 + r"\s+0\s+0\s+[1-9]\d*\s+[\d.]+$",
                       r"growth from 2 to 4 games \(median/median\): games/min x[\d.]+, CPU per game x[\d.]+",
                       r"model arm: 1 games, .* [1-9]\d* calls in [\d.]+ s .* busiest second [1-9]\d* calls"],
    "dataset_bench.py": [r"^\s+4\s+1\s+[\d.]+s\s+[\d.]+s .* [1-9]\d*$",
                         r"median ratio builder / json.load at 4 logs: [\d.]+",
                         r"ms per log in all"],
}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> dict[str, tuple[int | None, str, str]]:
    """name -> (exit code, or None when it ran out of time; stdout; stderr) of every bench run with --smoke."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IBEX_"))},
           "PYTHON_DOTENV_DISABLED": "1"}
    procs = {}
    for bench in BENCHES:
        cwd = tmp_path_factory.mktemp(bench.stem)
        procs[bench.name] = subprocess.Popen([sys.executable, str(bench), SMOKE], cwd=cwd, env=env, text=True,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    give_up = time.monotonic() + BENCH_TIMEOUT
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(1.0, give_up - time.monotonic()))
            results[name] = (proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            results[name] = (None, out, err)
    return results


def test_the_benches_are_found():
    assert {"agents_bench.py", "dataset_bench.py", "market_agents_bench.py"} <= {b.name for b in BENCHES}


@pytest.mark.parametrize("bench", BENCHES, ids=lambda p: p.name)
def test_each_bench_documents_its_smallest_size_flag(bench):
    doc = ast.get_docstring(ast.parse(bench.read_text(encoding="utf-8"))) or ""
    assert SMOKE in doc, f"{bench.name}: its docstring must show the {SMOKE} run (tests/scripts/test_bench.py runs it)"


@pytest.mark.xdist_group("bench-smoke")  # one worker runs the benches once for all of them (under -n)
@pytest.mark.parametrize("bench", BENCHES, ids=lambda p: p.name)
def test_each_bench_runs_at_its_smallest_size_and_prints_its_figures(bench, smoke_runs):
    code, out, err = smoke_runs[bench.name]
    assert code is not None, f"{bench.name} {SMOKE} did not end within {BENCH_TIMEOUT:g} s:\n{out}\n{err}"
    assert code == 0, f"{bench.name} {SMOKE} exited {code}:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = out.splitlines()
    assert sum(1 for line in lines if re.search(r"\d", line)) >= 3, f"{bench.name} printed no figures:\n{out}"
    assert not re.search(r"\bnan\b", out), f"{bench.name}: a figure with nothing measured in it:\n{out}"
    assert "agents that failed" not in out, out
    for pattern in FIGURES.get(bench.name, []):
        assert any(re.search(pattern, line) for line in lines), f"{bench.name}: no line like {pattern!r}:\n{out}"
