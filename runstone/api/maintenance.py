"""Checking and cleaning the object store: ``fsck`` and ``gc`` (layer 5).

``fsck`` re-hashes every stored object and follows every reference the
metadata store holds (artifact versions, and the digests in run records:
diffs, untracked files, source snapshots) through directory manifests,
reporting corrupt objects and missing ones by who refers to them.

``gc`` deletes objects nothing refers to. Writers store objects before they
record them (a directory's files, then its manifest, then the artifact), so
an object younger than the grace period is never deleted: a run storing
right now keeps what it has stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runstone.api.manifest import verify_manifest
from runstone.artifacts.base import ObjectInfo, ObjectStore
from runstone.artifacts.tree import tree_digests
from runstone.errors import NotFoundError, StoreError
from runstone.store.base import Store

__all__ = ["FsckReport", "GcReport", "fsck", "gc"]


@dataclass
class FsckReport:
    objects: int = 0
    bytes: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)  # digest, referred to by
    references: int = 0
    runs: int = 0
    sealed: int = 0
    tampered: list[dict[str, Any]] = field(default_factory=list)  # run, what changed

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing and not self.tampered

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "bytes": self.bytes,
            "references": self.references,
            "runs": self.runs,
            "sealed": self.sealed,
            "corrupt": self.corrupt,
            "missing": self.missing,
            "tampered": self.tampered,
        }


@dataclass
class GcReport:
    kept: int = 0
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    young: int = 0  # unreferenced, but within the grace period
    temporary: int = 0  # leftovers of interrupted writes removed
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "kept": self.kept,
            "deleted": len(self.deleted),
            "deleted_bytes": self.deleted_bytes,
            "young": self.young,
            "temporary": self.temporary,
            "digests": self.deleted,
        }


def _referrer(store: Store, digest: str) -> str:
    artifacts = store.artifacts_by_digest(digest)
    if artifacts:
        return ", ".join(f"artifact {a.project}/{a.ref}" for a in artifacts[:3])
    return "a run record"


def _describe(store: Store, reachable: dict[str, str], digest: str) -> str:
    """What refers to a reachable object (looked up only for the ones reported)."""
    root = reachable[digest]
    who = _referrer(store, root)
    return who if root == digest else f"{who} (a file or folder in it)"


def _reachable(
    store: Store,
    objects: ObjectStore,
    on_missing: Callable[[str, str], None] | None = None,
    *,
    strict: bool = False,
) -> tuple[dict[str, str], int]:
    """Every object reachable from the store's references, mapped to the reference it is reached
    from (see ``_describe``); and the reference count."""
    refs = store.referenced_objects()
    reachable: dict[str, str] = {}
    for digest, is_dir in refs.items():
        try:
            for found in tree_digests(objects, digest, is_dir):
                reachable.setdefault(found, digest)
        except NotFoundError:
            reachable.setdefault(digest, digest)
            if on_missing is not None:
                on_missing(digest, _referrer(store, digest))
        except StoreError as e:  # a corrupt or unreadable manifest
            if strict:  # what it lists is unknown: deleting anything could delete that
                raise StoreError(
                    f"gc stopped before deleting anything: cannot read {digest}, referred to by "
                    f"{_referrer(store, digest)} ({e}). Run runstone fsck to see what is damaged"
                ) from e
            reachable.setdefault(digest, digest)
            if on_missing is not None:
                on_missing(digest, f"{_referrer(store, digest)} ({e})")
    return reachable, len(refs)


def fsck(store: Store, objects: ObjectStore, *, progress: Callable[[int], None] | None = None) -> FsckReport:
    """Verify every stored object and every reference to one."""
    report = FsckReport()
    stored: set[str] = set()
    for info in objects.list_objects():
        stored.add(info.digest)
        report.objects += 1
        report.bytes += info.size_bytes
        try:
            if not objects.verify(info.digest):
                report.corrupt.append(info.digest)
        except NotFoundError:  # removed while we looked (a concurrent gc)
            stored.discard(info.digest)
        if progress:
            progress(report.objects)

    def missing(digest: str, who: str) -> None:
        report.missing.append({"digest": digest, "referred_to_by": who})

    reachable, report.references = _reachable(store, objects, missing)
    known = {m["digest"] for m in report.missing}
    for digest in sorted(reachable.keys() - stored - known):
        report.missing.append({"digest": digest, "referred_to_by": _describe(store, reachable, digest)})
    for run_id in store.run_ids():
        report.runs += 1
        changed = verify_manifest(store, run_id)
        if changed is None:  # not sealed (still running, or crashed)
            continue
        report.sealed += 1
        if changed:
            report.tampered.append({"run": run_id, "changed": changed})
    return report


def gc(store: Store, objects: ObjectStore, *, grace_s: float = 3600.0, dry_run: bool = False) -> GcReport:
    """Delete objects no artifact or run record refers to, older than ``grace_s`` seconds."""
    report = GcReport(dry_run=dry_run)
    with objects.collecting():
        started = time.time()
        listed = list(objects.list_objects())  # before the references: anything newer is younger
        reachable, _ = _reachable(store, objects, strict=True)
        doomed = []
        for info in listed:
            if info.digest in reachable:
                report.kept += 1
            elif started - info.modified_s < grace_s:
                report.young += 1
            else:
                doomed.append(info)
        # Directory manifests go first: an interrupted gc never leaves a manifest whose files are gone
        # (a stored manifest is what tells a writer the whole tree is there).
        doomed.sort(key=lambda info: not _is_manifest(objects, info))
        for info in doomed:
            report.deleted.append(info.digest)
            report.deleted_bytes += info.size_bytes
            if not dry_run:
                objects.delete(info.digest)
        if not dry_run:
            report.temporary = objects.clean_temporary(grace_s)
    return report


def _is_manifest(objects: ObjectStore, info: ObjectInfo) -> bool:
    if info.size_bytes > 64 * 1024 * 1024:
        return False
    try:
        return objects.read_head(info.digest, 12) == b'{"entries":{'
    except (NotFoundError, StoreError):
        return False
