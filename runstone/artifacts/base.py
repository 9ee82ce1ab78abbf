"""The object store interface (layer 3, standard library only).

Objects are immutable and addressed by ``sha256:<hex>`` of their content. A
backend implements five primitives — ``has``, ``_store`` (an atomic write),
``_open`` (a read stream), ``delete`` and ``list_objects`` — and gets the rest
from here: storing bytes or a file (streamed, never read whole), reading an
object back with its digest checked, and verifying one in place.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from runstone.errors import StoreError, UsageError

__all__ = [
    "CHUNK_BYTES",
    "DIGEST",
    "ObjectInfo",
    "ObjectStore",
    "Progress",
    "check_digest",
    "copy_hashing",
    "digest_bytes",
    "digest_file",
]

#: bytes read or written at a time when streaming
CHUNK_BYTES = 1024 * 1024
#: an object's address: ``sha256:`` and 64 lowercase hex digits
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

#: called with (bytes done so far, total bytes) as a transfer goes on
Progress = Callable[[int, int], None]


def digest_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: an object's address."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_file(path: Path, progress: Progress | None = None) -> tuple[str, int]:
    """``sha256:<hex>`` and size of a file, read in chunks (never whole)."""
    sha = hashlib.sha256()
    size = 0
    total = path.stat().st_size if progress else 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            sha.update(chunk)
            size += len(chunk)
            if progress:
                progress(size, total)
    return "sha256:" + sha.hexdigest(), size


def copy_hashing(source: Path, out: BinaryIO, size: int, progress: Progress | None) -> str:
    """Copy a file to ``out`` in chunks; returns ``sha256:<hex>`` of what was copied."""
    sha = hashlib.sha256()
    done = 0
    with open(source, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            sha.update(chunk)
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, size)
    return "sha256:" + sha.hexdigest()


def check_digest(digest: str) -> str:
    """``digest`` if it is ``sha256:<64 hex digits>``, else a UsageError."""
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise UsageError(f"{digest!r} is not an object digest (sha256:<64 hex digits>)")
    return digest


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object, as listed."""

    digest: str
    size_bytes: int
    modified_s: float


class ObjectStore(abc.ABC):
    """Immutable objects addressed by the SHA-256 of their content.

    Writing the same content twice stores it once; reading checks the digest.
    """

    #: where the objects live, for messages
    location: str

    # --- primitives -------------------------------------------------------------

    @abc.abstractmethod
    def has(self, digest: str) -> bool:
        """Whether the object is stored."""

    @abc.abstractmethod
    def _store(self, digest: str, source: Path | bytes, size: int, progress: Progress | None) -> None:
        """Write an object whose digest is known, atomically: readers never see part of it."""

    @abc.abstractmethod
    def _open(self, digest: str) -> BinaryIO:
        """A read stream of the stored bytes (unchecked).

        Raises:
            NotFoundError: no such object.
        """

    @abc.abstractmethod
    def delete(self, digest: str) -> None:
        """Remove an object (no error if it is already gone)."""

    @abc.abstractmethod
    def list_objects(self) -> Iterator[ObjectInfo]:
        """Every stored object, in no particular order."""

    # --- writers and the collector ---------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Held while objects are stored and then recorded; ``collecting`` waits for it.

        Backends that can lock (a local directory) take a shared lock; others
        rely on ``gc``'s grace period.
        """
        yield

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """Held by ``gc`` while it decides and deletes: no writer is between storing and recording."""
        yield

    def adopt(self, path: Path, digest: str) -> None:
        """Store a file whose content the caller has just hashed to ``digest`` (an upload staged
        in ``staging_dir``); the file is gone afterwards. Backends that can move it into place do."""
        try:
            if not self.has(digest):
                self.put_file(path, digest=digest)
        finally:
            path.unlink(missing_ok=True)

    def staging_dir(self) -> Path | None:
        """Where to put bytes on their way in (cleaned by ``clean_temporary``), if the store has a place."""
        return None

    def clean_temporary(self, older_than_s: float) -> int:
        """Remove leftovers of interrupted writes older than ``older_than_s`` seconds; how many."""
        return 0

    # --- built on them ----------------------------------------------------------

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its digest."""
        digest = digest_bytes(data)
        if not self.has(digest):
            self._store(digest, data, len(data), None)
        return digest

    def put_file(self, path: Path, *, digest: str | None = None, progress: Progress | None = None) -> str:
        """Store a file's content, streamed; returns its digest.

        ``digest`` is the file's digest when already known (a cache); the
        backend checks it as it copies, so a file changed since is refused
        rather than stored under the wrong address.
        """
        if digest is None:
            digest, _ = digest_file(path)
        check_digest(digest)
        if not self.has(digest):
            self._store(digest, path, path.stat().st_size, progress)
        return digest

    def get_bytes(self, digest: str) -> bytes:
        """The object's bytes, checked against the digest.

        Raises:
            NotFoundError: no such object.
            StoreError: the stored bytes do not match the digest (corruption).
        """
        check_digest(digest)
        with self._open(digest) as f:
            data = f.read()
        if digest_bytes(data) != digest:
            raise StoreError(f"Object {digest} in {self.location} is corrupt: its content no longer matches")
        return data

    def get_file(self, digest: str, dest: Path, *, progress: Progress | None = None) -> None:
        """Copy an object to ``dest``, checking its digest before the file appears there.

        Raises:
            NotFoundError: no such object.
            StoreError: the stored bytes do not match the digest (nothing is written).
        """
        check_digest(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            sha = hashlib.sha256()
            done = 0
            with os.fdopen(fd, "wb") as out, self._open(digest) as f:
                while chunk := f.read(CHUNK_BYTES):
                    sha.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, 0)
            if "sha256:" + sha.hexdigest() != digest:
                raise StoreError(
                    f"Object {digest} in {self.location} is corrupt: its content no longer matches"
                )
            os.chmod(tmp, 0o644)  # as a file written here would be (mkstemp makes it private)
            os.replace(tmp, dest)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def iter_bytes(self, digest: str) -> Iterator[bytes]:
        """The object's bytes in chunks, streamed, for sending on without holding them whole.

        The digest is checked as the chunks pass: after the last one, a mismatch
        raises ``StoreError`` (the receiver must treat what it got as incomplete).

        Raises:
            NotFoundError: no such object.
        """
        sha = hashlib.sha256()
        yield from self._hashed_chunks(digest, sha)
        if "sha256:" + sha.hexdigest() != digest:
            raise StoreError(f"Object {digest} in {self.location} is corrupt: its content no longer matches")

    def read_from(self, digest: str, start: int) -> tuple[int, Iterator[bytes]]:
        """The object's size, and its bytes from ``start`` on in chunks, unchecked: the rest of a
        download that broke off, whose reader checks the digest of the whole.

        Raises:
            NotFoundError: no such object.
            UsageError: ``start`` is not inside the object.
        """
        f = self._open(check_digest(digest))
        try:
            size = f.seek(0, os.SEEK_END)
            if not 0 <= start < size:
                raise UsageError(f"Byte {start} is not inside object {digest} ({size} bytes)")
            f.seek(start)
        except BaseException:
            f.close()
            raise

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(CHUNK_BYTES):
                    yield chunk

        return size, chunks()

    def read_head(self, digest: str, size: int) -> bytes:
        """The first ``size`` bytes of an object, unchecked (to tell what kind of object it is)."""
        with self._open(check_digest(digest)) as f:
            return f.read(size)

    def verify(self, digest: str) -> bool:
        """Whether the stored object still has the content its digest says (streamed).

        Raises:
            NotFoundError: no such object.
        """
        sha = hashlib.sha256()
        for _ in self._hashed_chunks(digest, sha):
            pass
        return "sha256:" + sha.hexdigest() == digest

    def _hashed_chunks(self, digest: str, sha: Any) -> Iterator[bytes]:
        with self._open(check_digest(digest)) as f:
            while chunk := f.read(CHUNK_BYTES):
                sha.update(chunk)
                yield chunk
