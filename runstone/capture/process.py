"""Who and where: the process a run is recorded from.

Layer 3, standard library only. Every function here returns something even
when the system refuses to tell (an unknown user in a container, no
hostname): capture must never break the user's job.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from runstone.capture.secrets import redact_argv

__all__ = ["ProcessInfo", "pid_alive", "process_info", "this_host"]


@dataclass(frozen=True)
class ProcessInfo:
    argv: tuple[str, ...]
    cwd: str
    host: str
    user: str
    pid: int


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry for this uid (common in containers)
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _host() -> str:
    try:
        return socket.gethostname() or "unknown"
    except OSError:
        return "unknown"


def process_info(argv: list[str] | tuple[str, ...] | None = None) -> ProcessInfo:
    """This process's command line, working directory, host, user and PID.

    Args:
        argv: the command to record instead of this interpreter's own (the
            wrapper records the command it runs). By default ``sys.argv``
            prefixed by the interpreter, so the command can be run again.
            Secret values in it (``--api-key X``, ``password=X``, credentials
            in URLs) are recorded as ``<redacted>``; see ``capture.secrets``.
    """
    if argv is None:
        # The interpreter's own arguments as given (``-m pkg.train``, ``-c ...``), which
        # sys.argv loses: a module run as a script would break its relative imports.
        argv = [sys.executable, *getattr(sys, "orig_argv", ["", *sys.argv])[1:]]
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was removed under us
        cwd = ""
    return ProcessInfo(
        argv=tuple(redact_argv([str(a) for a in argv])), cwd=cwd, host=_host(), user=_user(), pid=os.getpid()
    )


def this_host() -> str:
    """The host name runs record, for comparing with a stored run's host."""
    return _host()


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this host (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): existence is all we know
    return state not in ("Z", "X")
