"""Process-wide bookkeeping of live runs: which one is active, and how they end.

Layer 5. The active run lives in a ``ContextVar`` so async tasks and
threads that start their own runs keep them apart; a thread that never set
one (a data-loading worker, say) falls back to the run started most
recently in the process.

Hooks installed with the first run of a process:

- ``atexit``: every live run is finished (as ``finished``, or as the status
  an uncaught exception or signal decided), so data is durable at exit.
- ``sys.excepthook``: an uncaught exception marks live runs ``failed``
  (``killed`` for KeyboardInterrupt) before the interpreter exits.
- SIGTERM and SIGHUP, when their handler is the default: the handler raises
  ``Terminated`` (a ``SystemExit`` with code 128 + signal) in the main
  thread, so ``finally`` blocks and ``with`` blocks run, the runs are marked
  ``killed``, and the data is flushed on the way out. A second signal while
  exiting kills the process at once.
- after ``os.fork()``: the child gets fresh buffers and a fresh writer and
  no longer owns the run's status (the parent does).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from runstone.entities import RunStatus

if TYPE_CHECKING:
    from runstone.api.run import ActiveRun

__all__ = ["Terminated", "active", "register", "unregister"]

_current: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "runstone_active_run", default=None
)
_live: list[ActiveRun] = []
_lock = threading.RLock()
_installed = False


class Terminated(SystemExit):
    """Raised in the main thread when the process receives SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(128 + signum)


def active() -> ActiveRun | None:
    """The run that module-level calls such as ``runstone.log`` go to, if any."""
    run = _current.get()
    if run is not None and run.is_open:
        return run
    with _lock:
        for candidate in reversed(_live):
            if candidate.is_open:
                return candidate
    return None


_joined: set[str] = set()


def claim_join(run_id: str) -> bool:
    """True the first time this process joins ``run_id``: a wrapper's run is joined
    once; later ``init()`` calls in the same process start runs of their own."""
    with _lock:
        if run_id in _joined:
            return False
        _joined.add(run_id)
        return True


def register(run: ActiveRun) -> None:
    """Make ``run`` the active run of this context and keep it until it ends."""
    with _lock:
        _install_hooks()
        _live.append(run)
    _current.set(run)


def unregister(run: ActiveRun) -> None:
    with _lock:
        if run in _live:
            _live.remove(run)
    if _current.get() is run:
        _current.set(None)


def _live_runs() -> list[ActiveRun]:
    with _lock:
        return list(_live)


def _on_exit() -> None:
    for run in reversed(_live_runs()):
        run._finish_at_exit()


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    status = RunStatus.KILLED if issubclass(exc_type, KeyboardInterrupt) else RunStatus.FAILED
    for run in _live_runs():
        run._set_exit_status(status, f"{exc_type.__name__}: {exc}".rstrip(": "))
    _previous_excepthook(exc_type, exc, tb)


_previous_excepthook = sys.excepthook


#: a repeat of the signal within this many seconds is the same request (a
#: service manager signalling the whole process group, and a wrapper forwarding it)
REPEAT_GRACE_S = 3.0
_terminating_since: float | None = None
_defer_depth = 0
_deferred: list[int] = []


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP exceptions until the block ends (main thread only).

    A flush moves points from the buffer into a batch; an exception raised in
    between would lose them, so it is raised right after instead.
    """
    global _defer_depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _defer_depth += 1
    try:
        yield
    finally:
        _defer_depth -= 1
        if _defer_depth == 0 and _deferred:
            signum = _deferred[0]
            _deferred.clear()
            _act_on(signum)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _defer_depth:
        _deferred.append(signum)
        return
    _act_on(signum)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _defer_depth:
        _deferred.append(signum)
        return
    raise KeyboardInterrupt


def _act_on(signum: int) -> None:
    global _terminating_since
    if signum == signal.SIGINT and signal.getsignal(signal.SIGINT) is _on_sigint:
        raise KeyboardInterrupt
    name = signal.Signals(signum).name
    if _terminating_since is not None:
        if time.monotonic() - _terminating_since < REPEAT_GRACE_S:
            return  # the same request again: keep saving
        # Asked again while already exiting: stop now, as the default would.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _terminating_since = time.monotonic()
    for run in _live_runs():
        run._set_exit_status(RunStatus.KILLED, f"terminated by {name}")
    raise Terminated(signum)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    for run in list(_live):
        run._after_fork()


def _install_hooks() -> None:
    global _installed, _previous_excepthook
    if _installed:
        return
    _installed = True
    atexit.register(_on_exit)
    _previous_excepthook = sys.excepthook
    sys.excepthook = _excepthook
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _on_signal)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            # The same KeyboardInterrupt, but never in the middle of a flush.
            signal.signal(signal.SIGINT, _on_sigint)
    os.register_at_fork(after_in_child=_after_fork_in_child)
