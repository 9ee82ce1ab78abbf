"""A run's unsent writes, kept on disk until its server has them (layer 5).

A run recorded on a server (``RUNSTONE_URI=http(s)://...``) writes every batch
its writer drains to a spool file first (written whole, fsynced and renamed
into place), then sends it; the file goes once the server has applied it. So
neither a server that is away nor a process killed with SIGKILL loses more
than what was logged since the last flush (about a second). A run that ends
while its server is away spools its ending too.

Each process's spool is a folder ``<home>/spool/<run>-<pid>-<nonce>/`` that
the process holds an exclusive lock on while it lives. ``replay`` sends the
folders whose process is gone, oldest batch first, and removes them: the next
``runstone.init()`` in the same home does it in the background, ``runstone
sync`` and the ``runstone run`` wrapper (for its child) do it too. Batch IDs
make sending twice harmless: the server applies each batch once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runstone.entities import Batch, RunStatus
from runstone.errors import NotFoundError, StateError
from runstone.store import wire
from runstone.store.base import Store

__all__ = ["Replayed", "Spool", "replay", "spool_root"]

log = logging.getLogger("runstone")

_LOCK = "lock"
_STORE = "store"


def spool_root(home: Path) -> Path:
    """Where the runs recorded from ``home`` keep their unsent writes."""
    return home / "spool"


class Spool:
    """One process's spool for one run (see the module docstring).

    Raises:
        OSError: the folder cannot be made or locked.
    """

    def __init__(self, root: Path, run_id: str, store_uri: str) -> None:
        self.run_id = run_id
        name = f"{run_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        making = root / f".{name}"  # made and locked under a name replay ignores, then shown
        making.mkdir(parents=True)
        self._fd = os.open(making / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (making / _STORE).write_text(store_uri)
        self.path = root / name
        os.replace(making, self.path)
        self._seq = 0

    def add(self, entry: Batch | dict[str, Any]) -> Path:
        """Keep a batch (or the run's ending) until ``remove``; durable when this returns."""
        self._seq += 1
        final = self.path / f"{self._seq:012d}.json"
        part = final.with_suffix(".part")
        data = wire.dumps({"batch": entry} if isinstance(entry, Batch) else {"finish": entry})
        with open(part, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, final)
        return final

    @staticmethod
    def load(path: Path) -> Batch:
        entry = _read(path)
        batch = entry.get("batch")
        if not isinstance(batch, Batch):
            raise ValueError(f"{path} holds no batch")
        return batch

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)

    def close(self) -> None:
        """Release the lock; the folder goes too when nothing is left in it to send."""
        if self._fd < 0:
            return
        if not _entries(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._fd)
        self._fd = -1


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def _read(path: Path) -> dict[str, Any]:
    value = wire.loads(path.read_bytes())
    if not isinstance(value, dict):
        raise ValueError(f"{path} is not a spool entry")
    return value


@contextlib.contextmanager
def _orphan(folder: Path) -> Iterator[bool]:
    """Whether the folder's process is gone (its lock is free); held locked meanwhile."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False  # its process still lives and sends it itself
            return
        yield True
    finally:
        os.close(fd)


@dataclass
class Replayed:
    """What ``replay`` sent: batches and points, runs ended, and what it had to drop or leave."""

    batches: int = 0
    points: int = 0
    ended: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    left: int = 0  # folders not sent now (their process lives, another store's, or the store failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "points": self.points,
            "ended": self.ended,
            "dropped": self.dropped,
            "left": self.left,
        }


def replay(
    root: Path,
    store: Store,
    *,
    run_id: str | None = None,
    seal: Callable[[Store, str], Any] | None = None,
) -> Replayed:
    """Send what processes that are gone left in the spool under ``root`` to ``store``.

    Only folders written for this store are sent (``run_id``: only that run's).
    A batch the store refuses for good (its run ended, or is gone) is dropped
    with a warning; a store that fails leaves the rest for the next time.
    """
    done = Replayed()
    if not root.is_dir():
        return done
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if run_id is not None and not folder.name.startswith(run_id + "-"):
            continue
        try:
            mine = (folder / _STORE).read_text() == store.uri
        except OSError:
            mine = False
        if not mine:
            done.left += 1
            continue
        with _orphan(folder) as gone:
            if not gone:
                done.left += 1
                continue
            if not _send(folder, store, done, seal):
                done.left += 1
                continue
        shutil.rmtree(folder, ignore_errors=True)
    return done


def _send(folder: Path, store: Store, done: Replayed, seal: Callable[[Store, str], Any] | None) -> bool:
    """Send one folder's entries in order; False if the store failed (the rest stay)."""
    from runstone.errors import StoreError

    for path in _entries(folder):
        try:
            entry = _read(path)
        except (OSError, ValueError) as e:  # a file cut short cannot have been sent: nothing to lose
            log.warning("runstone: skipped unreadable spool file %s: %s", path, e)
            path.unlink(missing_ok=True)
            continue
        try:
            batch = entry.get("batch")
            if isinstance(batch, Batch):
                store.apply_batch(batch)
                done.batches += 1
                done.points += batch.point_count
            elif isinstance(entry.get("finish"), dict):
                end = entry["finish"]
                store.finish_run(
                    end["run_id"],
                    status=RunStatus(end["status"]),
                    end_time_ms=int(end["end_time_ms"]),
                    exit_code=end.get("exit_code"),
                    error=end.get("error"),
                )
                if seal is not None and end["status"] != RunStatus.CRASHED.value:
                    seal(store, end["run_id"])
                done.ended.append(end["run_id"])
        except (StateError, NotFoundError) as e:
            done.dropped.append(f"{path.name}: {e}")
            log.warning("runstone: dropped spooled writes %s: %s", path, e)
        except StoreError as e:
            log.info("runstone: spooled writes in %s stay for later: %s", folder, e)
            return False
        path.unlink(missing_ok=True)
    return True
