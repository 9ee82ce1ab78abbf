"""``runstone run``: real child processes, real output, real signals."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import runstone
from runstone.capture.process import pid_alive
from runstone.entities import RunStatus
from tests.conftest import child_env, runstone_cmd

pytestmark = pytest.mark.slow


def _wrap(args: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*runstone_cmd(), "run", *args],
        cwd=cwd,
        env=child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2"),
        capture_output=True,
        text=True,
        timeout=120,
        **kw,  # type: ignore[arg-type]
    )


def _only_run(cwd: Path) -> runstone.Run:
    with runstone.Client() as client:
        [run] = client.find_runs()
    return run


def test_records_command_output_and_exit_code(workdir: Path) -> None:
    script = workdir / "train.py"
    script.write_text(
        "import sys, time\n"
        "print('to stdout', flush=True)\n"
        "time.sleep(0.2)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "time.sleep(0.2)\n"
        "print('more stdout')\n"
        "sys.exit(3)\n"
    )
    result = _wrap(
        ["--project", "p", "--name", "n", "--tag", "k=v", "--", sys.executable, "train.py", "--lr", "0.1"],
        workdir,
    )
    assert result.returncode == 3
    assert result.stdout == "to stdout\nmore stdout\n"  # each stream stays where it was going
    assert result.stderr.startswith("to stderr\n")
    run = _only_run(workdir)
    assert run.status is RunStatus.FAILED
    assert (run.exit_code, run.error) == (3, "exited with code 3")
    assert run.command == (sys.executable, "train.py", "--lr", "0.1")
    assert run.cwd == str(workdir)
    assert (run.project, run.name, run.tags) == ("p", "n", {"k": "v"})
    assert run.end_time_ms is not None and run.end_time_ms >= run.start_time_ms
    with runstone.Client() as client:
        assert client.read_output(run.id) == b"to stdout\nto stderr\nmore stdout\n"
    assert f"run {run.id} failed (exit code 3)" in result.stderr


def test_child_that_calls_init_joins_the_run(workdir: Path) -> None:
    (workdir / "train.py").write_text(
        "import runstone\n"
        "with runstone.init(project='ignored', config={'lr': 0.1, 'model': {'depth': 2}}) as run:\n"
        "    for step in range(100):\n"
        "        run.log({'loss': 1 / (step + 1)}, step=step)\n"
    )
    result = _wrap(["--", sys.executable, "train.py"], workdir)
    assert result.returncode == 0, result.stderr
    run = _only_run(workdir)  # one run, not two
    assert run.status is RunStatus.FINISHED and run.exit_code == 0
    assert run.params == {"lr": 0.1, "model.depth": 2}
    assert run.metrics["loss"].count == 100
    assert run.project == workdir.name


def test_missing_command_creates_no_run(workdir: Path) -> None:
    result = _wrap(["--", "no-such-program-xyz"], workdir)
    assert result.returncode == 2
    assert "was not found on PATH" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / ".runstone").exists()
    assert _wrap([], workdir).returncode == 2
    bad_tag = _wrap(["--tag", "novalue", "--", "true"], workdir)
    assert bad_tag.returncode == 2 and "KEY=VALUE" in bad_tag.stderr


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_are_forwarded_and_the_run_is_killed(workdir: Path, signum: int, exit_code: int) -> None:
    (workdir / "train.py").write_text(
        "import time, runstone\n"
        "run = runstone.init()\n"
        "for i in range(1000): run.log({'x': float(i)}, step=i)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [*runstone_cmd(), "run", "--", sys.executable, "train.py"],
        cwd=workdir,
        env=child_env(RUNSTONE_FLUSH_INTERVAL_S="3600"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == exit_code, err
    run = _only_run(workdir)
    assert run.status is RunStatus.KILLED
    assert run.exit_code == exit_code
    assert run.metrics["x"].count == 1000  # the child flushed on its way out


def test_a_child_that_ignores_sigterm_is_still_recorded(workdir: Path) -> None:
    (workdir / "stubborn.py").write_text(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('bye', flush=True) or exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [*runstone_cmd(), "run", "--", sys.executable, "stubborn.py"],
        cwd=workdir,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert "bye" in out
    assert proc.returncode == 0
    run = _only_run(workdir)
    assert run.status is RunStatus.KILLED  # it was asked to stop
    assert run.error == "stopped after SIGTERM (exit code 0)"


def _under_terminal(
    command: list[str],
    cwd: Path,
    *,
    when: bytes = b"",
    send: bytes = b"",
    then: Callable[[int], None] | None = None,
) -> tuple[int, bytes]:
    """Run ``runstone run -- COMMAND`` on a pseudo-terminal, as from an interactive shell.

    Types ``send`` into the terminal once ``when`` has appeared in the output,
    then calls ``then(pid)`` if given.
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the wrapper, on the pseudo-terminal
        os.chdir(cwd)
        os.execve(sys.executable, [*runstone_cmd(), "run", "--", *command], child_env())
    output = b""
    sent = not when
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not sent and when in output:
            os.write(fd, send)
            sent = True
            if then is not None:
                then(pid)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def test_child_sees_a_terminal_when_we_have_one(workdir: Path) -> None:
    """Under a pseudo-terminal the child gets one too (colors, progress bars), and its bytes are stored as written."""
    (workdir / "show_tty.py").write_text(
        "import sys\nprint('isatty', sys.stdout.isatty(), sys.stderr.isatty())\n"
    )
    code, output = _under_terminal([sys.executable, "show_tty.py"], workdir)
    assert code == 0, output
    assert b"isatty True True" in output
    run = _only_run(workdir)
    with runstone.Client() as client:
        assert client.read_output(run.id) == b"isatty True True\n", output


def test_ctrl_c_at_the_terminal_reaches_the_child_once(workdir: Path) -> None:
    (workdir / "count.py").write_text(
        "import signal, sys, time\n"
        "count = 0\n"
        "def handler(*args):\n"
        "    global count\n"
        "    count += 1\n"
        "signal.signal(signal.SIGINT, handler)\n"
        "print('ready', flush=True)\n"
        "deadline = time.time() + 30\n"
        "while count == 0 and time.time() < deadline:\n"
        "    time.sleep(0.01)\n"
        "time.sleep(0.5)\n"  # a second, forwarded SIGINT would arrive meanwhile
        "print('sigints', count, flush=True)\n"
        "sys.exit(130)\n"
    )
    code, output = _under_terminal([sys.executable, "count.py"], workdir, when=b"ready", send=b"\x03")
    assert b"sigints 1" in output, output
    assert code == 130
    run = _only_run(workdir)
    assert run.status is RunStatus.KILLED
    assert run.error == "exited with code 130 (SIGINT)"


@pytest.mark.postgres
def test_wrapping_into_a_postgresql_store(workdir: Path, postgres_uri: str) -> None:
    (workdir / "train.py").write_text(
        "import runstone\nwith runstone.init(config={'lr': 0.5}) as run:\n    run.log({'loss': 0.25})\n"
    )
    result = _wrap(["--uri", postgres_uri, "--", sys.executable, "train.py"], workdir)
    assert result.returncode == 0, result.stderr
    with runstone.Client(postgres_uri) as client:
        [run] = client.find_runs()
        assert (run.status, run.params, run.metrics["loss"].last_value) == (
            RunStatus.FINISHED,
            {"lr": 0.5},
            0.25,
        )
    assert not (workdir / ".runstone" / "runstone.db").exists()  # the metadata went to PostgreSQL


def test_the_childs_exception_is_the_runs_error(workdir: Path) -> None:
    (workdir / "train.py").write_text(
        "import runstone\nwith runstone.init() as run:\n    run.log({'x': 1.0})\n    raise ValueError('boom')\n"
    )
    result = _wrap(["--", sys.executable, "train.py"], workdir)
    assert result.returncode == 1
    run = _only_run(workdir)
    assert (run.status, run.exit_code, run.error) == (RunStatus.FAILED, 1, "ValueError: boom")


def test_a_sweep_under_the_wrapper_joins_once_then_starts_runs(workdir: Path) -> None:
    (workdir / "sweep.py").write_text(
        "import runstone\n"
        "for k in range(3):\n"
        "    with runstone.init(name=f'sweep{k}', config={'k': k}) as run:\n"
        "        run.log({'loss': float(k)})\n"
        "with runstone.init(uri='sqlite:///other.db') as run:\n"  # another store: never the wrapper's run
        "    run.log({'y': 1.0})\n"
    )
    result = _wrap(["--name", "outer", "--", sys.executable, "sweep.py"], workdir)
    assert result.returncode == 0, result.stderr
    with runstone.Client() as client:
        runs = {r.name: r for r in client.find_runs()}
    assert set(runs) == {"outer", "sweep1", "sweep2"}
    assert runs["outer"].params == {"k": 0}  # the first init() joined the wrapper's run
    assert runs["sweep2"].params == {"k": 2} and runs["sweep2"].metrics["loss"].last_value == 2.0
    with runstone.Client("sqlite:///other.db") as other:
        assert [r.metrics["y"].count for r in other.find_runs()] == [1]


@pytest.mark.parametrize(
    ("setup", "command", "message"),
    [
        (None, ["/"], "is a directory"),
        (
            "#!/no/such/interpreter\necho hi\n",
            ["./script.sh"],
            "names the interpreter '/no/such/interpreter'",
        ),
        ("echo hi\n", ["./not-executable.sh"], "is not executable"),
    ],
)
def test_commands_that_cannot_start_are_refused_without_a_run(
    workdir: Path, setup: str | None, command: list[str], message: str
) -> None:
    if setup is not None:
        target = workdir / command[0]
        target.write_text(setup)
        if "script" in command[0]:
            target.chmod(0o755)
    result = _wrap(["--", *command], workdir)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (workdir / ".runstone").exists()


def test_a_crash_by_signal_is_failed_not_killed(workdir: Path) -> None:
    result = _wrap(["--", "bash", "-c", "kill -SEGV $$"], workdir)
    assert result.returncode == 128 + signal.SIGSEGV
    run = _only_run(workdir)
    assert (run.status, run.error) == (RunStatus.FAILED, "died of SIGSEGV")


def test_the_command_does_not_outlive_a_killed_wrapper(workdir: Path) -> None:
    """kill -9 of runstone itself: the command gets SIGTERM (Linux) instead of running on unwatched."""
    (workdir / "long.py").write_text("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen(
        [*runstone_cmd(), "run", "--", sys.executable, "long.py"],
        cwd=workdir,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    child_pid = int(proc.stdout.readline())
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not pid_alive(child_pid):  # gone (or a zombie awaiting its new parent)
            break
        time.sleep(0.05)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the command kept running after runstone was killed")
    assert _only_run(workdir).status is RunStatus.CRASHED


def test_broken_pipes_end_a_pipeline_as_usual(workdir: Path) -> None:
    started = time.monotonic()
    result = _wrap(["--", "bash", "-c", "yes | head -1"], workdir)
    assert result.returncode == 0
    assert result.stdout == "y\n"
    assert time.monotonic() - started < 30
    assert "Broken pipe" not in result.stderr


def test_ctrl_z_stops_and_fg_resumes(workdir: Path) -> None:
    (workdir / "slow.py").write_text(
        "import time\nprint('ready', flush=True)\ntime.sleep(1)\nprint('done', flush=True)\n"
    )

    def fg_after_stop(pid: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the wrapper stops itself, as a job would
            _, status = os.waitpid(pid, os.WUNTRACED | os.WNOHANG)
            if status and os.WIFSTOPPED(status):
                os.kill(pid, signal.SIGCONT)  # what 'fg' does
                return
            time.sleep(0.02)
        pytest.fail("runstone did not stop on Ctrl-Z")

    code, output = _under_terminal(
        [sys.executable, "slow.py"], workdir, when=b"ready", send=b"\x1a", then=fg_after_stop
    )
    assert code == 0, output
    assert b"done" in output
    assert _only_run(workdir).status is RunStatus.FINISHED
