"""Objects in an object store through fsspec: ``s3://bucket/prefix`` and others (layer 4).

Keys are ``<prefix>/sha256/ab/cdef...``, as in a local directory. An object
store's PUT is atomic (a multipart upload becomes visible only when it
completes), so readers never see part of an object. s3fs uploads files larger
than its block size in parts. Credentials and the endpoint come from the
usual environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...).
Needs ``pip install 'runstone[s3]'`` for S3.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from runstone.artifacts.base import ObjectInfo, ObjectStore, Progress, check_digest, copy_hashing
from runstone.capture.code import strip_credentials
from runstone.errors import MissingDependencyError, NotFoundError, StoreError

__all__ = ["PART_BYTES", "FsspecObjectStore"]

#: a file larger than this is uploaded in parts of this size (S3's multipart upload)
PART_BYTES = 8 * 1024 * 1024


class FsspecObjectStore(ObjectStore):
    def __init__(self, url: str) -> None:
        protocol, _, rest = url.partition("://")
        try:
            import fsspec
        except ImportError:
            raise MissingDependencyError(f"Objects at {url}", package="s3fs", extra="s3") from None
        try:
            self.fs: Any = fsspec.filesystem(protocol)
        except ImportError:
            raise MissingDependencyError(
                f"Objects at {url}", package=f"the {protocol} fsspec backend", extra="s3"
            ) from None
        except ValueError as e:
            raise StoreError(f"Objects at {strip_credentials(url)}: {e}") from None
        self.prefix = rest.rstrip("/")
        self.location = strip_credentials(url)  # shown in messages

    def _key(self, digest: str) -> str:
        hexdigest = check_digest(digest).partition(":")[2]
        return f"{self.prefix}/sha256/{hexdigest[:2]}/{hexdigest[2:]}"

    def _fail(self, doing: str, error: Exception) -> StoreError:
        return StoreError(f"Object store {self.location}: {doing} failed: {type(error).__name__}: {error}")

    def has(self, digest: str) -> bool:
        key = self._key(digest)
        try:
            return bool(self.fs.exists(key))
        except Exception as e:
            raise self._fail(f"looking up {digest}", e) from e

    def _store(self, digest: str, source: Path | bytes, size: int, progress: Progress | None) -> None:
        key = self._key(digest)
        try:
            if isinstance(source, bytes):
                self.fs.pipe_file(key, source)  # one PUT: atomic
                return
            # Streamed to a temporary key (in parts), hashed on the way; moved under its
            # digest only if the content still has it, so no object is ever wrongly addressed.
            tmp = f"{self.prefix}/tmp/{uuid.uuid4().hex}"
            with self.fs.open(tmp, "wb", block_size=PART_BYTES) as out:
                copied = copy_hashing(source, out, size, progress)
            if copied != digest:
                self.fs.rm_file(tmp)
                raise StoreError(f"{source!s} changed while it was being stored; store it again")
            self.fs.mv(tmp, key)
        except StoreError:
            raise
        except Exception as e:
            raise self._fail(f"writing {digest}", e) from e

    def _open(self, digest: str) -> BinaryIO:
        key = self._key(digest)
        try:
            return self.fs.open(key, "rb")  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise NotFoundError(f"No object {digest} in {self.location}") from None
        except Exception as e:
            raise self._fail(f"reading {digest}", e) from e

    def delete(self, digest: str) -> None:
        key = self._key(digest)
        try:
            self.fs.rm_file(key)
        except FileNotFoundError:
            pass
        except Exception as e:
            raise self._fail(f"deleting {digest}", e) from e

    def clean_temporary(self, older_than_s: float) -> int:
        removed = 0
        cutoff = time.time() - older_than_s
        try:
            found = self.fs.find(f"{self.prefix}/tmp", detail=True)
        except FileNotFoundError:
            return 0
        except Exception as e:
            raise self._fail("listing interrupted uploads", e) from e
        for key, info in found.items():
            modified = info.get("LastModified") or info.get("mtime")
            seconds = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
            if seconds < cutoff:
                try:
                    self.fs.rm_file(key)
                    removed += 1
                except FileNotFoundError:
                    continue
        return removed

    def list_objects(self) -> Iterator[ObjectInfo]:
        base = f"{self.prefix}/sha256"
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        except Exception as e:
            raise self._fail("listing objects", e) from e
        for key, info in found.items():
            parts = key.rstrip("/").split("/")
            if len(parts) < 2 or len(parts[-2]) != 2 or len(parts[-1]) != 62:
                continue
            modified = info.get("LastModified") or info.get("mtime") or info.get("created")
            seconds = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
            yield ObjectInfo(f"sha256:{parts[-2]}{parts[-1]}", int(info.get("size", 0)), seconds)
