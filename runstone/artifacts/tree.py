"""Files and directories as objects: a directory is a Merkle tree of manifests (layer 3).

Symbolic links are followed (a dataset of links, such as a model hub's
snapshot folder, is stored by its content); a dangling link, or one that
loops back to a folder above it, is kept as a link.

A directory is stored as a *manifest*, a canonical JSON object listing its
entries — each file by digest, size and executable bit, each subdirectory by
the digest of its own manifest, each symlink by its target — and the
directory's digest is the manifest's. So a changed file in a 100,000-file
dataset costs one new file object and the manifests on its path; everything
else is shared with the earlier version. A manifest is stored only after
everything it lists, so a stored manifest means a complete tree: storing an
unchanged directory again stops at its root.

Hashing a large file on every run is slow, so ``DigestCache`` remembers
digests by path, size, modification time, inode and device (a SQLite file
beside the store); a file whose key changed is hashed again.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat as stat_mod
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runstone.artifacts.base import ObjectStore, Progress, digest_bytes, digest_file
from runstone.errors import NotFoundError, StoreError, UsageError

__all__ = ["TREE_FORMAT", "DigestCache", "Tree", "hash_path", "restore", "store_tree", "tree_digests"]

#: the ``format`` of a directory manifest
TREE_FORMAT = "runstone.tree/1"


@dataclass
class Tree:
    """A hashed file or directory, before or after its objects are stored."""

    digest: str
    size_bytes: int
    file_count: int
    is_dir: bool
    path: Path
    manifest: bytes | None = None  # a directory's manifest
    children: list[Tree] | None = None  # a directory's files and subdirectories


class DigestCache:
    """File digests by (path, size, mtime, ctime, inode, device), in a SQLite file.

    The change time is in the key because nothing can set it back: a file
    rewritten with the same size and an old mtime (``tar x`` reusing a freed
    inode) still misses. A file changed less than two seconds before it was
    hashed is not remembered (a later write in the same clock tick could keep
    every key the same). Any failure here only costs a re-hash.
    """

    _KEY = "size = ? AND mtime_ns = ? AND ctime_ns = ? AND inode = ? AND device = ?"

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._preloaded: dict[str, tuple[Any, ...]] = {}
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=5, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=OFF")  # a cache: a lost entry costs a re-hash
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS file_digests (path TEXT PRIMARY KEY, size INTEGER, "
                "mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, device INTEGER, digest TEXT)"
            )
        except (sqlite3.Error, OSError):
            self._conn = None

    @staticmethod
    def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)

    def preload(self, folder: str) -> None:
        """Read every entry under ``folder`` at once (a directory's files are then looked up in memory)."""
        if self._conn is None:
            return
        prefix = folder.rstrip("/") + "/"
        try:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode, device, digest FROM file_digests "
                    "WHERE path >= ? AND path < ?",
                    (prefix, prefix[:-1] + "0"),  # "0" sorts right after "/"
                ).fetchall()
        except (sqlite3.Error, UnicodeError):
            return
        self._preloaded.update({row[0]: tuple(row[1:]) for row in rows})

    def lookup(self, path: Path, st: os.stat_result) -> str | None:
        if self._conn is None:
            return None
        row = self._preloaded.get(str(path))
        if row is not None:
            return str(row[5]) if tuple(row[:5]) == self._key(st) else None
        try:
            with self._lock:
                found = self._conn.execute(
                    f"SELECT digest FROM file_digests WHERE path = ? AND {self._KEY}",
                    (str(path), *self._key(st)),
                ).fetchone()
        except (sqlite3.Error, UnicodeError):  # a name with undecodable bytes: no caching for it
            return None
        return None if found is None else str(found[0])

    def remember(self, path: Path, st: os.stat_result, digest: str) -> None:
        if self._conn is None or time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < 2_000_000_000:
            return
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (str(path), *self._key(st), digest),
                )
        except (sqlite3.Error, UnicodeError):
            pass

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _hash_file(path: str, st: os.stat_result, cache: DigestCache | None, verify: bool) -> str:
    if cache is not None and not verify:
        known = cache.lookup(Path(path), st)
        if known is not None:
            return known
    try:
        digest, _ = digest_file(Path(path))
    except OSError as e:
        raise StoreError(f"Cannot read {path}: {e.strerror or e}") from e
    if cache is not None:
        cache.remember(Path(path), st, digest)
    return digest


def hash_path(path: Path, *, cache: DigestCache | None = None, verify: bool = False) -> Tree:
    """The digest of a file, or the Merkle tree of a directory (nothing is stored).

    Raises:
        NotFoundError: ``path`` does not exist.
        UsageError: ``path`` is neither a file nor a directory (a socket, a device).
    """
    try:
        st = path.stat()
        absolute = str(path.resolve())
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist") from None
    except OSError as e:
        raise StoreError(f"Cannot read {path}: {e.strerror or e}") from e
    if cache is not None and stat_mod.S_ISDIR(st.st_mode):
        cache.preload(absolute)
    return _hash(path, absolute, st, cache=cache, verify=verify, ancestors=frozenset())


def _hash(
    path: Path,
    absolute: str,
    st: os.stat_result,
    *,
    cache: DigestCache | None,
    verify: bool,
    ancestors: frozenset[tuple[int, int]],
) -> Tree:
    if stat_mod.S_ISREG(st.st_mode):
        return Tree(_hash_file(absolute, st, cache, verify), st.st_size, 1, False, path)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise UsageError(f"{path} is neither a file nor a directory")
    entries: dict[str, Any] = {}
    children: list[Tree] = []
    size = files = 0
    try:
        listing = sorted(os.scandir(absolute), key=lambda e: e.name)
    except OSError as e:
        raise StoreError(f"Cannot read the folder {path}: {e.strerror or e}") from e
    inside = ancestors | {(st.st_dev, st.st_ino)}
    for entry in listing:
        try:
            child_st = entry.stat()  # follows a symlink: the content is what a run used
        except FileNotFoundError:  # a dangling symlink: kept as a link
            entries[entry.name] = {"type": "symlink", "target": os.readlink(entry.path)}
            continue
        except OSError as e:
            raise StoreError(f"Cannot read {path / entry.name}: {e.strerror or e}") from e
        if stat_mod.S_ISDIR(child_st.st_mode) and (child_st.st_dev, child_st.st_ino) in inside:
            entries[entry.name] = {"type": "symlink", "target": os.readlink(entry.path)}  # a loop
            continue
        if not (stat_mod.S_ISREG(child_st.st_mode) or stat_mod.S_ISDIR(child_st.st_mode)):
            raise UsageError(
                f"{path / entry.name} is neither a file nor a folder (a socket, a pipe?); move it out"
            )
        sub = _hash(path / entry.name, entry.path, child_st, cache=cache, verify=verify, ancestors=inside)
        children.append(sub)
        size += sub.size_bytes
        files += sub.file_count
        if sub.is_dir:
            entries[entry.name] = {
                "type": "tree",
                "digest": sub.digest,
                "size": sub.size_bytes,
                "files": sub.file_count,
            }
        else:
            entries[entry.name] = {"type": "file", "digest": sub.digest, "size": sub.size_bytes}
            if child_st.st_mode & stat_mod.S_IXUSR:
                entries[entry.name]["executable"] = True
    manifest = json.dumps({"format": TREE_FORMAT, "entries": entries}, sort_keys=True, separators=(",", ":"))
    data = manifest.encode("utf-8")
    return Tree(digest_bytes(data), size, files, True, path, manifest=data, children=children)


def store_tree(objects: ObjectStore, tree: Tree, *, progress: Progress | None = None) -> int:
    """Store a hashed file or directory; returns the bytes uploaded (0 when all were there).

    Children go first and a manifest last, so a stored manifest stands for a
    complete tree and an unchanged directory is skipped at its root.
    """
    if objects.has(tree.digest):
        return 0
    if not tree.is_dir:
        objects.put_file(tree.path, digest=tree.digest, progress=progress)
        return tree.size_bytes
    sent = sum(store_tree(objects, child, progress=progress) for child in tree.children or [])
    assert tree.manifest is not None
    objects.put_bytes(tree.manifest)
    return sent


def read_manifest(objects: ObjectStore, digest: str) -> dict[str, Any]:
    """A directory manifest's entries.

    Raises:
        StoreError: the object is not a directory manifest.
    """
    try:
        manifest = json.loads(objects.get_bytes(digest))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StoreError(f"Object {digest} is not a directory manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != TREE_FORMAT:
        raise StoreError(f"Object {digest} is not a directory manifest ({TREE_FORMAT})")
    entries = manifest.get("entries")
    if not isinstance(entries, dict):
        raise StoreError(f"Directory manifest {digest} has no entries")
    return entries


def tree_digests(objects: ObjectStore, digest: str, is_dir: bool) -> Iterator[str]:
    """Every object a stored file or directory consists of (itself first)."""
    yield digest
    if not is_dir:
        return
    for entry in read_manifest(objects, digest).values():
        if entry.get("type") == "tree":
            yield from tree_digests(objects, entry["digest"], True)
        elif entry.get("type") == "file":
            yield entry["digest"]


def restore(
    objects: ObjectStore, digest: str, is_dir: bool, dest: Path, *, progress: Progress | None = None
) -> None:
    """Materialize a stored file or directory at ``dest``, checking every object's digest.

    Files appear only once verified; a directory is built beside ``dest`` and
    renamed into place, so an interrupted restore never leaves a partial tree there.
    """
    if not is_dir:
        objects.get_file(digest, dest, progress=progress)
        return
    if dest.exists():
        raise UsageError(f"{dest} already exists; remove it or choose another destination")
    dest.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.")) / "tree"
    try:
        _restore_dir(objects, digest, building, progress)
        os.rename(building, dest)
    finally:
        shutil.rmtree(building.parent, ignore_errors=True)


def _restore_dir(objects: ObjectStore, digest: str, dest: Path, progress: Progress | None) -> None:
    dest.mkdir(parents=True)
    for name, entry in read_manifest(objects, digest).items():
        if "/" in name or name in ("", ".", ".."):
            raise StoreError(f"Directory manifest {digest} holds an unsafe name {name!r}")
        target = dest / name
        kind = entry.get("type")
        if kind == "tree":
            _restore_dir(objects, entry["digest"], target, progress)
        elif kind == "file":
            objects.get_file(entry["digest"], target, progress=progress)
            if entry.get("executable"):
                target.chmod(target.stat().st_mode | 0o111)
        elif kind == "symlink":
            os.symlink(entry["target"], target)
