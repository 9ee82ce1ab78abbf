"""Artifacts of a run: log outputs, use inputs, fetch them back (layer 5).

``log_artifact`` hashes a file or directory (digests cached by path, size,
mtime and inode, so an unchanged dataset costs a stat walk), stores its
objects (a directory as a Merkle tree of manifests) and records the run's
output edge; ``use_artifact`` resolves ``name@v3``/``name@latest``/a digest,
materializes it (checked) and records the input edge; ``use_dataset``
records an input by digest, uploading its bytes only when asked. Transfers
of more than 64 MiB show a progress bar on a terminal.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runstone._json import check_text
from runstone.artifacts.base import CHUNK_BYTES, ObjectStore, Progress
from runstone.artifacts.tree import DigestCache, Tree, hash_path, restore, store_tree
from runstone.entities import Artifact, ArtifactSpec
from runstone.errors import (
    MissingDependencyError,
    NotFoundError,
    StateError,
    StoreError,
    StoreVersionError,
    UsageError,
)
from runstone.settings import Settings
from runstone.store.base import Store

__all__ = ["KINDS", "check_stored", "digest_cache", "fetch", "log_artifact", "use_artifact", "use_dataset"]

log = logging.getLogger("runstone")

#: artifact kinds with a meaning elsewhere (any other short name is accepted too)
KINDS = ("file", "dataset", "model", "checkpoint", "directory", "table", "image", "text")
_PROGRESS_MIN_BYTES = 64 * 1024 * 1024


def digest_cache(settings: Settings) -> DigestCache:
    """The digest cache beside the embedded store (``.runstone/digests.db``)."""
    return DigestCache(settings.home / "digests.db")


@contextmanager
def _progress(description: str, total: int) -> Iterator[Progress | None]:
    if total < _PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, TransferSpeedColumn
    from rich.progress import Progress as Bar

    with Bar(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done, _total: bar.update(task, completed=done)


def _check_name(name: str, what: str = "Artifact name") -> str:
    check_text(name, what)
    bad = (
        not name
        or len(name) > 200
        or "@" in name
        or "/" in name
        or "\\" in name
        or name in (".", "..")
        or name.startswith("sha256:")
    )
    if bad:
        raise UsageError(
            f"{what} {name!r} cannot be used: it must be a plain name (no '/', not '.' or '..'), "
            "at most 200 characters, without '@' (which selects a version) and not start with 'sha256:'"
        )
    return name


def _default_name(path: str | os.PathLike[str]) -> str:
    """A path's own name (a symlink's, not its target's: ``latest.pt`` stays ``latest.pt``)."""
    return os.path.basename(os.path.abspath(os.fspath(path)))


def _spec(tree: Tree, name: str, kind: str, metadata: Mapping[str, Any] | None, stored: bool) -> ArtifactSpec:
    check_text(kind, "Artifact kind")
    if not kind or len(kind) > 50:
        raise UsageError(f"Artifact kind {kind!r} must be a short name such as one of {', '.join(KINDS)}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise UsageError(f"metadata must be a mapping, got {type(metadata).__name__}")
    return ArtifactSpec(
        name=name,
        kind=kind,
        digest=tree.digest,
        size_bytes=tree.size_bytes,
        file_count=tree.file_count,
        is_dir=tree.is_dir,
        stored=stored,
        metadata=dict(metadata or {}),
    )


def _hash(path: Path, settings: Settings, verify: bool) -> Tree:
    cache = digest_cache(settings)
    try:
        return hash_path(path, cache=cache, verify=verify)
    finally:
        cache.close()


def log_artifact(
    store: Store,
    objects: ObjectStore,
    settings: Settings,
    run_id: str,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    kind: str = "file",
    metadata: Mapping[str, Any] | None = None,
    verify: bool = False,
    spool: Any = None,
    project: str = "",
    queue: bool = False,
) -> Artifact:
    """Store a file or directory as an output of a run (see ``ActiveRun.log_artifact``).

    With a ``spool`` (a run on a server), a server that cannot be reached or
    fails does not lose the artifact: its bytes go to the spool's objects and
    its edge to the spool, sent when the server is back (the returned version
    is 0 until then). ``queue``: straight to the spool (earlier artifacts wait
    there, and versions are numbered in the order they were logged).
    """
    source = Path(path)
    tree = _hash(source, settings, verify)
    spec = _spec(tree, _check_name(name or _default_name(source)), kind, metadata, stored=True)
    if queue and spool is not None:
        return _spooled(spool, tree, spec, run_id=run_id, project=project, path=str(path), error=None)
    try:
        with objects.writing(), _progress(f"storing {spec.name}", tree.size_bytes) as progress:
            store_tree(objects, tree, progress=progress)
            return store.record_artifact(run_id, spec, direction="output", path=str(path), time_ms=_now_ms())
    except StoreError as e:
        if spool is None or isinstance(e, StoreVersionError):
            raise
        return _spooled(spool, tree, spec, run_id=run_id, project=project, path=str(path), error=e)


def _spooled(
    spool: Any,
    tree: Tree,
    spec: ArtifactSpec,
    *,
    run_id: str,
    project: str,
    path: str,
    error: StoreError | None,
) -> Artifact:
    """Keep an output artifact in the run's spool: its bytes locally, its edge for later."""
    objects = spool.objects
    now = _now_ms()
    with objects.writing():  # the spool's cleaning waits until the entry that needs them is written
        store_tree(objects, tree)
        spool.add_artifact(spec, direction="output", path=path, time_ms=now)
    log.warning(
        "runstone: run %s: %s is kept in the spool (%s) and sent with the run's other unsent writes: %s",
        run_id,
        spec.name,
        spool.path,
        error or "artifacts logged before it are still waiting for the server",
    )
    return Artifact(
        project=project,
        name=spec.name,
        version=0,  # the server numbers it when it arrives
        kind=spec.kind,
        digest=spec.digest,
        size_bytes=spec.size_bytes,
        file_count=spec.file_count,
        is_dir=spec.is_dir,
        stored=True,
        metadata=dict(spec.metadata),
        created_ms=now,
        run_id=run_id,
    )


def use_dataset(
    store: Store,
    objects: ObjectStore,
    settings: Settings,
    run_id: str,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    kind: str = "dataset",
    metadata: Mapping[str, Any] | None = None,
    verify: bool = False,
    upload: bool = False,
) -> Artifact:
    """Record a file or directory as an input of a run, by digest (see ``ActiveRun.use_dataset``)."""
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        if upload:
            raise UsageError(
                f"{text}: only local files and folders can be uploaded; record it without upload"
            )
        tree = _hash_remote(text)
        spec = _spec(
            tree, _check_name(name or text.rstrip("/").rsplit("/", 1)[-1]), kind, metadata, stored=False
        )
        return store.record_artifact(run_id, spec, direction="input", path=text, time_ms=_now_ms())
    source = Path(text.removeprefix("file://"))
    tree = _hash(source, settings, verify)
    spec = _spec(tree, _check_name(name or _default_name(source)), kind, metadata, stored=upload)
    with objects.writing(), _progress(f"storing {spec.name}", tree.size_bytes if upload else 0) as progress:
        if upload:
            store_tree(objects, tree, progress=progress)
        return store.record_artifact(run_id, spec, direction="input", path=str(path), time_ms=_now_ms())


def _hash_remote(url: str) -> Tree:
    """The digest of a file at an fsspec URL (``s3://bucket/key``), streamed."""
    import hashlib

    try:
        import fsspec
    except ImportError:
        raise MissingDependencyError(f"Reading {url}", package="fsspec", extra="s3") from None
    sha = hashlib.sha256()
    size = 0
    try:
        with fsspec.open(url, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                sha.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise NotFoundError(f"{url} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{url} is a folder; only single files are recorded from URLs") from None
    except Exception as e:
        raise StoreError(f"Cannot read {url}: {type(e).__name__}: {e}") from e
    return Tree("sha256:" + sha.hexdigest(), size, 1, False, Path(url.rsplit("/", 1)[-1]))


def check_stored(artifact: Artifact) -> None:
    """Raise StateError for an artifact recorded by digest only (its bytes are not stored)."""
    if not artifact.stored:
        raise StateError(
            f"Artifact {artifact.ref} ({artifact.digest}) was recorded by digest only: its bytes are not "
            "in the object store. Log it with log_artifact, or record it with use_dataset(upload=True)"
        )


def fetch(objects: ObjectStore, artifact: Artifact, dest: Path) -> Path:
    """Materialize an artifact version at ``dest`` (every object's digest checked).

    Raises:
        StateError: the artifact was recorded by digest only; its bytes are not stored.
        NotFoundError: an object is missing from the object store.
    """
    check_stored(artifact)
    with _progress(f"fetching {artifact.name}", artifact.size_bytes) as progress:
        restore(objects, artifact.digest, artifact.is_dir, dest, progress=progress)
    return dest


def cached_copy(objects: ObjectStore, settings: Settings, artifact: Artifact) -> Path:
    """A local, checked, read-only copy of an artifact version, kept in ``.runstone/cache`` by digest.

    Processes fetching the same version at once each build their own copy
    and the first to finish is kept; the files are read-only, so a program
    cannot change its input for the next one by accident.
    """
    hexdigest = artifact.digest.partition(":")[2]
    dest = settings.home / "cache" / hexdigest[:2] / hexdigest[2:] / _check_name(artifact.name)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".fetching-")) / artifact.name
    try:
        fetch(objects, artifact, building)
        for file in [building] if not artifact.is_dir else [p for p in building.rglob("*") if p.is_file()]:
            file.chmod(file.stat().st_mode & ~0o222)
        try:
            os.rename(building, dest)
        except OSError:
            if not dest.exists():  # not another process's copy arriving first
                raise
    finally:
        shutil.rmtree(building.parent, ignore_errors=True)
    return dest


def use_artifact(
    store: Store,
    objects: ObjectStore,
    settings: Settings,
    run_id: str,
    ref: str,
    *,
    project: str,
    from_project: str | None = None,
    dest: str | Path | None = None,
) -> tuple[Artifact, Path]:
    """Resolve, fetch and record an input (see ``ActiveRun.use_artifact``)."""
    if from_project is not None:
        artifact = store.resolve_artifact(ref, project=from_project)
    else:
        name = ref.rpartition("@")[0] if "@" in ref else ref
        here = ref.startswith("sha256:") or bool(store.artifact_versions(project, name))
        # this project's artifact if it has that name; else another's, when only one has it
        artifact = store.resolve_artifact(ref, project=project if here else None)
    local = (
        fetch(objects, artifact, Path(dest)) if dest is not None else cached_copy(objects, settings, artifact)
    )
    record_input(store, run_id, artifact, project=project, path=str(local))
    return artifact, local


def record_input(store: Store, run_id: str, artifact: Artifact, *, project: str, path: str) -> Artifact:
    """Record an existing artifact version as an input of a run (of ``project``)."""
    metadata = dict(artifact.metadata)
    if artifact.project != project:  # recorded under its name in this run's project, saying where from
        metadata.update(from_project=artifact.project, from_ref=artifact.ref)
    return store.record_artifact(
        run_id, artifact.spec(metadata), direction="input", path=path, time_ms=_now_ms()
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
