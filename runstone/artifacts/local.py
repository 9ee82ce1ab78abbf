"""Objects in a local directory: ``<root>/sha256/ab/cdef...`` (layer 4).

A write goes to a temporary file in ``<root>/tmp`` and is renamed into place,
so a reader or a crash never leaves a partial object under a digest.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from runstone.artifacts.base import ObjectStore, digest_bytes
from runstone.errors import NotFoundError, StoreError, UsageError

__all__ = ["LocalObjectStore"]


class LocalObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        if (
            algorithm != "sha256"
            or len(hexdigest) != 64
            or not all(c in "0123456789abcdef" for c in hexdigest)
        ):
            raise UsageError(f"{digest!r} is not an object digest (sha256:<64 hex digits>)")
        return self.root / "sha256" / hexdigest[:2] / hexdigest[2:]

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        path = self._path(digest)
        if path.exists():
            return digest  # content-addressed: already stored
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_dir = self.root / "tmp"
            tmp_dir.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=tmp_dir)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o444)
                os.replace(tmp, path)
            except BaseException:
                with_suppressed_unlink(tmp)
                raise
        except OSError as e:
            raise StoreError(f"Cannot write an object to {self.root}: {e.strerror or e}") from e
        return digest

    def get_bytes(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"No object {digest} in {self.root}") from None
        except OSError as e:
            raise StoreError(f"Cannot read object {digest} from {self.root}: {e.strerror or e}") from e
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"Object {digest} in {self.root} is corrupt: its content no longer matches")
        return data

    def has(self, digest: str) -> bool:
        return self._path(digest).exists()


def with_suppressed_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
