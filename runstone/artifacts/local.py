"""Objects in a local directory: ``<root>/sha256/ab/cdef...`` (layer 4).

A write goes to a temporary file in ``<root>/tmp``, is fsynced and renamed
into place, so a reader or a crash never leaves a partial object under a
digest. A file is hashed as it is copied, and refused if its content no
longer has the digest it was stored under (it changed in the meantime).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from runstone.artifacts.base import (
    ObjectInfo,
    ObjectStore,
    Progress,
    check_digest,
    copy_hashing,
    digest_bytes,
)
from runstone.errors import NotFoundError, StoreError

__all__ = ["LocalObjectStore"]


class LocalObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _path(self, digest: str) -> Path:
        hexdigest = check_digest(digest).partition(":")[2]
        return self.root / "sha256" / hexdigest[:2] / hexdigest[2:]

    def has(self, digest: str) -> bool:
        return self._path(digest).exists()

    def path_of(self, digest: str) -> Path:
        """The file that holds an object (read-only; it may not exist)."""
        return self._path(digest)

    @contextlib.contextmanager
    def _lock(self, mode: int) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / "gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"Cannot lock {self.root}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._lock(fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        with self._lock(fcntl.LOCK_EX):
            yield

    def _store(self, digest: str, source: Path | bytes, size: int, progress: Progress | None) -> None:
        path = self._path(digest)
        tmp = ""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_dir = self.root / "tmp"
            tmp_dir.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=tmp_dir)
            with os.fdopen(fd, "wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                    copied = digest_bytes(source)
                else:
                    copied = copy_hashing(source, out, size, progress)
                out.flush()
                os.fsync(out.fileno())
            if copied != digest:
                raise StoreError(f"{source!s} changed while it was being stored; store it again")
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        except OSError as e:
            _unlink(tmp)
            raise StoreError(f"Cannot write an object to {self.root}: {e.strerror or e}") from e
        except BaseException:
            _unlink(tmp)
            raise

    def _open(self, digest: str) -> BinaryIO:
        try:
            return open(self._path(digest), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"No object {digest} in {self.root}") from None
        except OSError as e:
            raise StoreError(f"Cannot read object {digest} from {self.root}: {e.strerror or e}") from e

    def delete(self, digest: str) -> None:
        _unlink(str(self._path(digest)))

    def staging_dir(self) -> Path:
        return self.root / "tmp"

    def adopt(self, path: Path, digest: str) -> None:
        if path.parent != self.staging_dir():
            super().adopt(path, digest)
            return
        target = self._path(digest)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(path, 0o444)
            os.replace(path, target)  # same file system: no second copy
        except OSError as e:
            _unlink(str(path))
            raise StoreError(f"Cannot write an object to {self.root}: {e.strerror or e}") from e

    def clean_temporary(self, older_than_s: float) -> int:
        removed = 0
        cutoff = time.time() - older_than_s
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return 0
        for entry in os.scandir(tmp):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
        return removed

    def list_objects(self) -> Iterator[ObjectInfo]:
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for prefix in sorted(base.iterdir()):
            if not prefix.is_dir() or len(prefix.name) != 2:
                continue
            for entry in os.scandir(prefix):
                if entry.is_file(follow_symlinks=False) and len(entry.name) == 62:
                    stat = entry.stat(follow_symlinks=False)
                    yield ObjectInfo(f"sha256:{prefix.name}{entry.name}", stat.st_size, stat.st_mtime)


def _unlink(path: str) -> None:
    if not path:
        return
    try:
        os.unlink(path)
    except OSError:
        pass
