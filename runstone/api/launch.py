"""Run any command as a tracked run: the engine behind ``runstone run``.

Layer 5. The command runs as a child process in its own process group with
the run passed through the environment (``RUNSTONE_RUN_ID``,
``RUNSTONE_URI``), so a child that calls ``runstone.init()`` joins the run.
Its stdout and stderr, combined, are streamed to ours as they come and
stored with the run. When our stdout is a terminal the child writes to a
pseudo-terminal, so it still sees a terminal (colors, progress bars).

Signals: SIGINT, SIGTERM and SIGHUP sent to the wrapper are forwarded to
the child's process group. When our stdin is the terminal's foreground, the
child's group becomes the foreground, so Ctrl-C reaches the child exactly
once (not once from the terminal and once from us). The run ends
``finished`` (exit 0), ``failed`` (non-zero exit) or ``killed`` (a signal),
and the wrapper exits with the child's exit status (128 + N for signal N).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import shutil
import signal
import subprocess
import sys
import termios
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any

from runstone import settings as settings_mod
from runstone.api.fluent import start_run
from runstone.entities import RunStatus
from runstone.errors import UsageError
from runstone.settings import ENV_ARTIFACTS, ENV_DETERMINISTIC, ENV_RUN_ID, ENV_SEED, ENV_URI

__all__ = ["LaunchResult", "launch"]

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: signals that mean "stop" rather than "crashed": a child they end is killed, not failed
_STOPPING = (*_FORWARDED, signal.SIGKILL)
_DRAIN_AFTER_EXIT_S = 2.0  # a grandchild may hold the output open after the child exits


@dataclass(frozen=True)
class LaunchResult:
    run_id: str
    status: RunStatus
    exit_code: int


def _check_command(command: Sequence[str]) -> None:
    """Refuse, before a run is created, a command that cannot start."""
    if not command:
        raise UsageError("No command to run; put it after --, e.g. runstone run -- python train.py")
    program = command[0]
    path = program if os.sep in program else shutil.which(program)
    if path is None:
        raise UsageError(f"Command {program!r} was not found on PATH; check the spelling or give its path")
    if not os.path.exists(path):
        raise UsageError(f"Command {program!r} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"Command {program!r} is a directory, not a program")
    if not os.access(path, os.X_OK):
        raise UsageError(
            f"Command {program!r} is not executable (chmod +x it, or run it through its interpreter)"
        )
    interpreter = _shebang(path)
    if interpreter is not None and not os.path.exists(interpreter):
        raise UsageError(f"Command {program!r} names the interpreter {interpreter!r}, which does not exist")


def _shebang(path: str) -> str | None:
    """The interpreter a script's #! line names, if it has one."""
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].strip().split()
    return parts[0].decode(errors="replace") if parts else None


# On Linux the command starts through this shim, which asks the kernel to send it
# SIGTERM if the wrapper dies (even by SIGKILL), then becomes the command (same
# PID, same argv). Without it an orphaned training job would run on unwatched.
_SHIM = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    os._exit(128 + signal.SIGTERM)  # the wrapper died before the request took effect
for name in ("SIGPIPE", "SIGXFSZ"):  # Python ignores these; the command must not inherit that
    signal.signal(getattr(signal, name), signal.SIG_DFL)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as e:
    sys.stderr.write(f"runstone run: cannot start {sys.argv[2]!r}: {e.strerror}\\n")
    os._exit(127)
"""


def _with_parent_death_signal(command: list[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-c", _SHIM, str(os.getpid()), *command]


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _outcome(returncode: int, forwarded: list[int]) -> tuple[RunStatus, str | None]:
    """How the run ended, from the child's return code and the signals we forwarded."""
    if returncode < 0:
        name = _signal_name(-returncode)
        if -returncode in _STOPPING:
            return RunStatus.KILLED, f"killed by {name}"
        return RunStatus.FAILED, f"died of {name}"  # a crash (SIGSEGV, SIGABRT, ...), not a stop
    if forwarded:
        return RunStatus.KILLED, f"stopped after {_signal_name(forwarded[0])} (exit code {returncode})"
    if returncode - 128 in _FORWARDED:
        # The conventional exit after handling Ctrl-C or SIGTERM (130, 143, 129),
        # e.g. a signal from the terminal that reached the child directly.
        name = signal.Signals(returncode - 128).name
        return RunStatus.KILLED, f"exited with code {returncode} ({name})"
    if returncode == 0:
        return RunStatus.FINISHED, None
    return RunStatus.FAILED, f"exited with code {returncode}"


class _Output:
    """Copies the child's output to ours and to the run, from a thread."""

    def __init__(self, fd: int, sink: IO[bytes], record: Any) -> None:
        self.fd = fd
        self.sink = sink
        self.record = record
        self.thread = threading.Thread(target=self._pump, name="runstone-output", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the pseudo-terminal's last writer closed it
                break
            if not data:
                break
            try:
                self.sink.write(data)
                self.sink.flush()
            except (OSError, ValueError):
                pass  # our stdout went away; keep recording
            self.record(data)

    def finish(self) -> None:
        self.thread.join(timeout=_DRAIN_AFTER_EXIT_S)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.thread.join(timeout=1.0)


def _give_terminal(pgid: int) -> int | None:
    """Make ``pgid`` the terminal's foreground group if we hold it; the fd to restore, or None."""
    try:
        if sys.stdin is None or not sys.stdin.isatty():
            return None
        fd = sys.stdin.fileno()
        if os.tcgetpgrp(fd) != os.getpgrp():
            return None
        _set_foreground(fd, pgid)
        return fd
    except (OSError, ValueError):
        return None


def _set_foreground(fd: int, pgid: int) -> None:
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # we may be in the background now
    try:
        os.tcsetpgrp(fd, pgid)
    finally:
        signal.signal(signal.SIGTTOU, old)


def _wait(child: subprocess.Popen[bytes], terminal: int | None) -> int:
    """Wait for the child, following job control: when it stops (Ctrl-Z), stop too.

    The shell sees runstone stopped and can resume it (fg/bg); the child is then
    continued, with the terminal back if we are in the foreground again.
    """
    while True:
        _, status = os.waitpid(child.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode
        if terminal is not None:
            with contextlib.suppress(OSError):
                _set_foreground(terminal, os.getpgrp())
        os.kill(os.getpid(), signal.SIGSTOP)  # until the shell continues us
        if terminal is not None:
            with contextlib.suppress(OSError):
                if os.tcgetpgrp(terminal) == os.getpgrp():
                    _set_foreground(terminal, child.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGCONT)


def _open_pty() -> tuple[int, int] | None:
    """A (master, slave) pseudo-terminal sized like ours, or None when ours isn't one."""
    try:
        if not sys.stdout.isatty():
            return None
        master, slave = pty.openpty()
        with contextlib.suppress(OSError):
            size = fcntl.ioctl(sys.stdout.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
        # Keep the child's bytes as written (no \n -> \r\n): our own terminal translates.
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        return master, slave
    except (OSError, ValueError, ImportError, AttributeError):
        return None


def _send_what_the_child_left(run: Any) -> None:
    """A command killed before it sent its last writes left them in its spool (a run on a
    server): sent now, before the run ends and takes no more."""
    if run._spool is None:
        return
    from runstone.api.spool import replay

    try:
        replay(run._spool.path.parent, run._store, run_id=run.id, objects=run._artifact_context()[1])
    except Exception as e:  # they stay on disk: runstone sync sends what the run still takes
        sys.stderr.write(f"runstone: the command's unsent writes stay in its spool: {e}\n")


def launch(
    command: Sequence[str],
    *,
    project: str | None = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    uri: str | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    resume: str | None = None,
    reproduction: Mapping[str, Any] | None = None,
) -> LaunchResult:
    """Run ``command`` as a new tracked run and wait for it.

    Args:
        command: the program and its arguments.
        project, name, tags, uri: as for ``runstone.init``.
        seed: set ``PYTHONHASHSEED`` for the command (it only works from the
            interpreter's start) and pass the seed on, so a command that calls
            ``runstone.init()`` seeds its generators with it.
        deterministic: with the seed, ask the command's frameworks for
            deterministic kernels.
        inputs: files or directories the command reads: recorded as the
            run's inputs by content digest before it starts.
        outputs: files or directories the command writes: stored as the
            run's outputs after it ends (a missing one is reported, not fatal).
        resume: reopen this run instead of starting one (see ``runstone.init``);
            the command joins it and restores its checkpoint itself.
        reproduction: this run reruns another (``runstone reproduce``): kept
            as the run's ``reproduction`` record, and its ``of`` as the tag
            ``reproduction_of``.

    Returns:
        The run's ID, final status and the exit code to exit with.

    Raises:
        UsageError: the command is empty or cannot be found (no run is created).
    """
    _check_command(command)
    command = [str(part) for part in command]
    for path in inputs:
        if not os.path.exists(path):
            raise UsageError(f"--input {path}: no such file or directory (no run was created)")
    # The URI as given (store.uri drops any password, which the child needs).
    store_uri = uri or settings_mod.current().uri
    if seed is not None and (isinstance(seed, bool) or not 0 <= seed < 2**32):
        raise UsageError(f"--seed {seed}: give an integer from 0 to 4294967295")
    if reproduction is not None:
        tags = {**(tags or {}), "reproduction_of": str(reproduction.get("of"))}
    run = start_run(
        project,
        name=name,
        tags=tags,
        uri=store_uri,
        command=command,
        join=False,
        capture=None,
        resume=resume,
    )
    # The wrapper's own options, so a reproduction can pass them again.
    run._add_record(
        "launch",
        {"seed": seed, "deterministic": deterministic, "inputs": list(inputs), "outputs": list(outputs)},
        if_absent=resume is not None,
    )
    if reproduction is not None:
        run._add_record("reproduction", dict(reproduction))
    try:
        for path in inputs:
            run.use_dataset(path)
    except BaseException as e:
        run.finish(RunStatus.FAILED, error=f"runstone run: recording --input: {type(e).__name__}: {e}")
        raise
    env = dict(os.environ)
    env[ENV_RUN_ID] = run.id
    env[ENV_URI] = store_uri
    # and its objects where the wrapper keeps them (the offline store's, a server's, ...)
    env[ENV_ARTIFACTS] = settings_mod.for_store(settings_mod.current(), store_uri).artifacts
    if seed is not None:
        env.update({"PYTHONHASHSEED": str(seed), ENV_SEED: str(seed)})
        if deterministic:
            env[ENV_DETERMINISTIC] = "1"
            env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # What the wrapper set; a command that joins the run replaces it with what it seeded.
        run._add_record(
            "seeds",
            {
                "seed": seed,
                "deterministic": deterministic,
                "seeded": [],
                "settings": {"PYTHONHASHSEED": str(seed)}
                | ({"CUBLAS_WORKSPACE_CONFIG": env["CUBLAS_WORKSPACE_CONFIG"]} if deterministic else {}),
                "PYTHONHASHSEED": str(seed),
                "set_by": "runstone run",
            },
            if_absent=True,  # the command's own seeding, if it joins, replaces this
        )
        run.flush()

    pty_pair = _open_pty()
    if pty_pair is None:
        env.setdefault("PYTHONUNBUFFERED", "1")  # stream a Python child's prints as they happen
    forwarded: list[int] = []
    child: subprocess.Popen[bytes] | None = None
    previous: dict[int, Any] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        forwarded.append(signum)
        if child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signum)

    terminal: int | None = None
    argv = _with_parent_death_signal(command)
    try:
        if threading.current_thread() is threading.main_thread():
            for signum in _FORWARDED:
                previous[signum] = signal.signal(signum, forward)
        try:
            if pty_pair is not None:
                master, slave = pty_pair
                child = subprocess.Popen(argv, stdout=slave, stderr=slave, env=env, process_group=0)
                os.close(slave)
                sources = [(master, sys.stdout.buffer)]
            else:
                # Two pipes keep stdout and stderr apart (so 2> still works); the
                # stored log interleaves them in arrival order.
                child = subprocess.Popen(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, process_group=0
                )
                assert child.stdout is not None and child.stderr is not None
                sources = [
                    (os.dup(child.stdout.fileno()), sys.stdout.buffer),
                    (os.dup(child.stderr.fileno()), sys.stderr.buffer),
                ]
                child.stdout.close()
                child.stderr.close()
        except OSError as e:
            raise UsageError(f"Cannot start {command[0]!r}: {e.strerror or e}") from None
        terminal = _give_terminal(child.pid)
        for early in forwarded:  # arrived while starting
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, early)
        pumps = [_Output(fd, sink, run._add_output) for fd, sink in sources]
        returncode = _wait(child, terminal)
        for pump in pumps:
            pump.finish()
        exit_code = _exit_code(returncode)
        status, error = _outcome(returncode, forwarded)
        _send_what_the_child_left(run)
    except BaseException as e:
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        run.finish(
            RunStatus.KILLED if isinstance(e, KeyboardInterrupt) else RunStatus.FAILED,
            error=f"runstone run: {type(e).__name__}: {e}",
        )
        raise
    finally:
        if terminal is not None:
            with contextlib.suppress(OSError):
                _set_foreground(terminal, os.getpgrp())
        for number, handler in previous.items():
            signal.signal(number, handler)
    for path in outputs:
        if not os.path.exists(path):
            sys.stderr.write(f"runstone: --output {path} was not written by the command; nothing stored\n")
            continue
        try:
            run.log_artifact(path, kind="directory" if os.path.isdir(path) else "file")
        except Exception as e:  # the command has ended: report, fail the run, go on with the others
            sys.stderr.write(f"runstone: --output {path} could not be stored: {e}\n")
            if status is RunStatus.FINISHED:
                status, error = RunStatus.FAILED, f"runstone run: storing --output {path}: {e}"
                exit_code = exit_code or 1
    run.finish(status, exit_code=exit_code, error=error)
    return LaunchResult(run.id, status, exit_code)
