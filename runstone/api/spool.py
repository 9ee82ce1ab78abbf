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

import fcntl
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runstone.artifacts.base import ObjectStore
from runstone.artifacts.local import LocalObjectStore
from runstone.artifacts.tree import tree_digests
from runstone.entities import ArtifactSpec, Batch, RunStatus
from runstone.errors import AccessError, NotFoundError, RunstoneError, StateError, StoreError, UsageError
from runstone.store import wire
from runstone.store.base import Store

__all__ = ["Replayed", "Spool", "replay", "spool_root"]

log = logging.getLogger("runstone")

_LOCK = "lock"
_STORE = "store"
_CREATED = "created"
_OBJECTS = ".objects"


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
        (making / _CREATED).write_text(str(time.time_ns()))
        self.path = root / name
        os.replace(making, self.path)
        self._seq = 0
        self._lock = threading.Lock()
        #: artifacts spooled and not yet sent (a new one waits behind them, to keep version order)
        self.waiting_artifacts = 0

    @property
    def objects(self) -> ObjectStore:
        """Where spooled artifacts keep their bytes until the server has them (shared by all runs here)."""
        return LocalObjectStore(self.path.parent / _OBJECTS)

    def add(self, entry: Batch | dict[str, Any]) -> Path:
        """Keep a batch (or the run's ending) until ``remove``; durable when this returns."""
        return self._write({"batch": entry} if isinstance(entry, Batch) else {"finish": entry})

    def add_artifact(self, spec: ArtifactSpec, *, direction: str, path: str, time_ms: int) -> Path:
        """Keep an artifact edge whose objects are in ``objects``, for when the server is back."""
        self.waiting_artifacts += 1
        return self._write(
            {
                "artifact": {
                    "run_id": self.run_id,
                    "spec": spec,
                    "direction": direction,
                    "path": path,
                    "time_ms": time_ms,
                }
            }
        )

    def _write(self, payload: dict[str, Any]) -> Path:
        with self._lock:  # the writer thread and the program's thread both add
            self._seq += 1
            final = self.path / f"{self._seq:012d}.json"
        part = final.with_suffix(".part")
        data = wire.dumps(payload)
        with open(part, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, final)
        folder = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)
        return final

    @staticmethod
    def load(path: Path) -> Batch:
        entry = _read(path)
        batch = entry.get("batch")
        if not isinstance(batch, Batch):
            raise ValueError(f"{path} holds no batch")
        return batch

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


def _claim(folder: Path) -> int | None:
    """The folder's lock, held, if its process is gone (the lock is free); else None."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # its process still lives and sends it itself
        os.close(fd)
        return None
    return fd


def _created(folder: Path) -> int:
    try:
        return int((folder / _CREATED).read_text())
    except (OSError, ValueError):
        return 0


@dataclass
class Replayed:
    """What ``replay`` sent: batches and points, runs ended, and what it had to drop or leave."""

    batches: int = 0
    points: int = 0
    artifacts: int = 0
    ended: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    left: int = 0  # folders not sent now (their process lives, another store's, or the store failed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def replay(
    root: Path,
    store: Store,
    *,
    run_id: str | None = None,
    seal: Callable[[Store, str], Any] | None = None,
    objects: ObjectStore | None = None,
) -> Replayed:
    """Send what processes that are gone left in the spool under ``root`` to ``store``.

    Only folders written for this store are sent (``run_id``: only that run's).
    A run's folders are sent together, oldest process first, batches before
    the run's ending (a wrapper's ending is never applied before its
    command's last batches). A batch the store refuses for good (its run
    ended, or is gone) is dropped with a warning; a store that fails leaves
    the rest for the next time. ``objects`` is the object store spooled
    artifacts' bytes go to (the server's); without it they stay.
    """
    done = Replayed()
    if not root.is_dir():
        return done
    runs: dict[str, list[Path]] = {}
    held: list[int] = []
    try:
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            owner = folder.name.split("-", 1)[0]
            if run_id is not None and owner != run_id:
                continue
            try:
                mine = (folder / _STORE).read_text() == store.uri
            except OSError:
                mine = False
            fd = _claim(folder) if mine else None
            if fd is None:
                done.left += 1
                continue
            held.append(fd)
            runs.setdefault(owner, []).append(folder)
        for folders in runs.values():
            folders.sort(key=_created)
            if _send_run(folders, store, done, seal, objects):
                for folder in folders:
                    shutil.rmtree(folder, ignore_errors=True)
            else:
                done.left += len(folders)
    finally:
        for fd in held:
            os.close(fd)
    clean_objects(root)
    return done


def send_artifacts(spool: Spool, store: Store, objects: ObjectStore) -> Replayed:
    """Send the artifacts a live run spooled (its own folder, held), in the order they were logged."""
    done = Replayed()
    _send_run([spool.path], store, done, None, objects, only_artifacts=True)
    spool.waiting_artifacts = sum(1 for path in _entries(spool.path) if b'"artifact"' in _head(path))
    clean_objects(spool.path.parent)
    return done


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(64)
    except OSError:
        return b""


def clean_objects(root: Path) -> int:
    """Delete the spooled artifacts' objects no spool entry under ``root`` needs any more; how many."""
    folder = root / _OBJECTS
    if not folder.is_dir():
        return 0
    objects = LocalObjectStore(folder)
    with objects.collecting():  # no process is between storing an artifact's objects and spooling it
        keep: set[str] = set()
        for entry_path in root.glob("*/*.json"):
            if b'"artifact"' not in _head(entry_path):
                continue
            try:
                spec = _read(entry_path)["artifact"]["spec"]
                keep.update(tree_digests(objects, spec.digest, spec.is_dir))
            except (OSError, ValueError, KeyError, TypeError, RunstoneError):
                continue  # unreadable: what it needs is kept only if another entry needs it too
        removed = 0
        for info in list(objects.list_objects()):
            if info.digest not in keep:
                objects.delete(info.digest)
                removed += 1
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)  # nothing waits: no folder left behind
    return removed


def _send_run(
    folders: list[Path],
    store: Store,
    done: Replayed,
    seal: Callable[[Store, str], Any] | None,
    objects: ObjectStore | None = None,
    *,
    only_artifacts: bool = False,
) -> bool:
    """Send one run's entries: every batch and artifact in order, then its ending.

    An entry the server refuses for good (its run ended or is gone, bad
    content) is dropped with a warning. False if the server failed or refused
    the token: what was sent is gone from disk, the rest stays for next time.
    """
    endings: list[tuple[Path, dict[str, Any]]] = []
    kept = False
    try:
        for folder in folders:
            for path in _entries(folder):
                try:
                    entry = _read(path)
                except (OSError, ValueError) as e:  # a file cut short was never sent: nothing to lose
                    log.warning("runstone: skipped unreadable spool file %s: %s", path, e)
                    path.unlink(missing_ok=True)
                    continue
                kind = next(iter(entry), "")
                if only_artifacts and kind != "artifact":
                    continue
                if kind == "finish" and isinstance(entry["finish"], dict):
                    endings.append((path, entry["finish"]))
                    continue
                if kind not in ("batch", "artifact"):
                    log.warning("runstone: %s was written by a newer runstone; it stays in the spool", path)
                    kept = True
                    continue
                try:
                    if kind == "batch":
                        batch = entry["batch"]
                        store.apply_batch(batch)
                        done.batches += 1
                        done.points += batch.point_count
                    else:
                        if objects is None:
                            raise StoreError("no object store to send spooled artifacts to")
                        _record(folder.parent / _OBJECTS, objects, store, entry["artifact"])
                        done.artifacts += 1
                except (StateError, NotFoundError, UsageError) as e:
                    done.dropped.append(f"{path.name}: {e}")
                    log.warning("runstone: dropped the spooled %s %s: %s", kind, path, e)
                path.unlink(missing_ok=True)
        if kept:
            return False
        for path, end in endings:
            _end(store, end, done, seal, path)
            path.unlink(missing_ok=True)
    except (StoreError, AccessError) as e:
        log.info("runstone: spooled writes stay for later: %s", e)
        return False
    return True


def _record(spooled: Path, objects: ObjectStore, store: Store, edge: dict[str, Any]) -> None:
    """Upload a spooled artifact's objects (files before the manifests that list them), then record it."""
    spec = edge["spec"]
    have = LocalObjectStore(spooled)
    for digest in reversed(list(tree_digests(have, spec.digest, spec.is_dir))):
        if not objects.has(digest):
            if not have.has(digest):
                raise NotFoundError(f"its object {digest} is gone from {spooled}")
            objects.put_file(have.path_of(digest), digest=digest)  # hashed again on the way
    store.record_artifact(
        edge["run_id"], spec, direction=edge["direction"], path=edge["path"], time_ms=int(edge["time_ms"])
    )


def _end(
    store: Store, end: dict[str, Any], done: Replayed, seal: Callable[[Store, str], Any] | None, path: Path
) -> None:
    """Apply a spooled ending, unless the run was resumed after it ended (it is running again)."""
    run_id = str(end["run_id"])
    try:
        resumes = store.get_records(run_id).get("resumes", {}).get("resumes", [])
        if any(int(r.get("time_ms", 0)) >= int(end["end_time_ms"]) for r in resumes):
            log.info("runstone: run %s was resumed after the ending in %s: not applied", run_id, path)
            return
        store.finish_run(
            run_id,
            status=RunStatus(end["status"]),
            end_time_ms=int(end["end_time_ms"]),
            exit_code=end.get("exit_code"),
            error=end.get("error"),
        )
    except (StateError, NotFoundError, UsageError) as e:
        done.dropped.append(f"{path.name}: {e}")
        log.warning("runstone: dropped the spooled ending %s: %s", path, e)
        return
    done.ended.append(run_id)
    if seal is not None and end["status"] != RunStatus.CRASHED.value:
        try:
            seal(store, run_id)
        except RunstoneError as e:  # the run has ended; its manifest can be sealed again later
            log.warning("runstone: run %s: its manifest could not be written: %s", run_id, e)
