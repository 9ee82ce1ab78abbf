"""Copy runs from one store to another and check the copy: ``runstone sync``.

Layer 5. The usual source is the offline store (``RUNSTONE_MODE=offline``
records runs there when the store is a server), the usual target the server.
A run is copied as the store calls that made it: ``create_run``; one batch for
its config, tags and records; one batch per stored metric chunk, in the order
written (``Store.metric_chunks``), so the target stores the same chunks; its
output; its artifact edges; how it ended; its manifest. Every batch has an ID
derived from the run and its part, so a sync that is interrupted and run again
applies nothing twice. When the two stores keep their objects apart, the
objects the run refers to (captured code, stored artifacts and every file in
them) are copied first, streamed and checked against their digests on both sides.

After copying, the target's run is checked against the manifest the source
sealed (``build_manifest`` on the target): every part the manifest covers (attributes,
config, records, metrics chunk by chunk, output, artifacts) must match, or the
run is reported with the parts that differ. A run the source has not sealed
is checked by its metric digests and counts.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runstone._json import canonical_json
from runstone.artifacts.base import DIGEST, ObjectStore
from runstone.artifacts.tree import tree_digests
from runstone.entities import Batch, OutputChunk, RunSpec, RunStatus
from runstone.errors import NotFoundError, RunstoneError
from runstone.store.base import Store

__all__ = ["Synced", "copy_run_objects", "sync_runs"]

_OUTPUT_PIECE = 1 << 20
_ENDINGS = {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED}


@dataclass
class Synced:
    """What became of one run: ``copied``, ``present`` (already there, same manifest),
    ``skipped`` (still running), ``mismatch`` (``problems`` names what differs) or
    ``failed`` (it could not be sent: ``problems`` says why)."""

    run_id: str
    name: str
    outcome: str
    problems: list[str] = field(default_factory=list)
    points: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "name": self.name,
            "outcome": self.outcome,
            "problems": self.problems,
            "points": self.points,
        }


def sync_runs(
    source: Store,
    target: Store,
    run_ids: Iterable[str] | None = None,
    *,
    on_run: Callable[[Synced], None] | None = None,
    objects: tuple[ObjectStore, ObjectStore] | None = None,
) -> list[Synced]:
    """Copy runs (default: every run of ``source``) to ``target``, each checked; see the module docstring.

    Args:
        objects: the source's and the target's object stores, when they differ:
            the objects each run refers to are copied (streamed, digests checked)
            before the run's records that name them.
    """
    results = []
    for run_id in list(run_ids) if run_ids is not None else source.run_ids():
        try:
            result = _sync_one(source, target, run_id, objects)
        except RunstoneError as e:  # this run cannot go (a token for another project, ...): the rest still do
            result = Synced(run_id, _name(source, run_id), "failed", [str(e)])
        results.append(result)
        if on_run is not None:
            on_run(result)
    return results


def _name(store: Store, run_id: str) -> str:
    try:
        return store.get_run(run_id).name
    except RunstoneError:
        return ""


def _digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(len(part).to_bytes(8, "little"))
        sha.update(part)
    return sha.hexdigest()[:24]


def copy_run_objects(source: Store, run_id: str, objects: tuple[ObjectStore, ObjectStore]) -> list[str]:
    """Copy the objects a run refers to (its captured code, its stored artifacts and their files)
    that the target lacks; returns what could not be copied."""
    records = source.get_records(run_id)
    roots = dict.fromkeys(DIGEST.findall(canonical_json(records.get("code") or {})), False)
    for use in source.run_artifacts(run_id):
        if use.artifact.stored:
            roots[use.artifact.digest] = use.artifact.is_dir or roots.get(use.artifact.digest, False)
    have, want = objects
    problems = []
    with tempfile.TemporaryDirectory(prefix="runstone-sync-") as tmp:
        part = Path(tmp) / "object"
        for root, is_dir in roots.items():
            try:
                # a folder's manifest after everything it lists: a target that has a manifest has
                # its whole tree (store_tree relies on it), even after an interrupted sync
                for digest in reversed(list(tree_digests(have, root, is_dir))):
                    if not want.has(digest):
                        have.get_file(digest, part)  # checked against its digest
                        want.put_file(part, digest=digest)  # and again by the target
                        part.unlink()
            except NotFoundError as e:
                problems.append(f"object {root}: {e}")
    return problems


def _sync_one(
    source: Store, target: Store, run_id: str, objects: tuple[ObjectStore, ObjectStore] | None = None
) -> Synced:
    from runstone.api.manifest import build_manifest, manifest_changes, manifest_digest

    run = source.get_run(run_id)
    if run.status is RunStatus.RUNNING:
        return Synced(run.id, run.name, "skipped", ["still running: sync it once it ends"])
    records = source.get_records(run.id)
    sealed = records.get("manifest")
    try:
        there: Any = target.get_run(run.id)
    except NotFoundError:
        there = None
    # judged against the source's manifest, never the target's own (it may be an older one)
    if (
        there is not None
        and sealed
        and there.status is not RunStatus.RUNNING
        and manifest_digest(build_manifest(target, run.id)) == sealed.get("digest")
    ):
        return Synced(run.id, run.name, "present")
    if there is not None and there.status is not RunStatus.RUNNING and sealed:
        # an ended run takes no more writes: the source changed after the copy was made
        copy = build_manifest(target, run.id)
        changed = manifest_changes(sealed.get("manifest") or {}, copy) or ["manifest"]
        return Synced(
            run.id,
            run.name,
            "mismatch",
            [*changed, "the run changed after it was copied (resumed?); the target keeps the earlier copy"],
        )
    # the objects first: no record on the target names an object it does not have
    missing = copy_run_objects(source, run.id, objects) if objects is not None else []
    target.create_run(
        RunSpec(
            id=run.id,
            project=run.project,
            name=run.name,
            start_time_ms=run.start_time_ms,
            command=tuple(run.command),
            cwd=run.cwd,
            host=run.host,
            user=run.user,
            pid=run.pid,
            runstone_version=run.runstone_version,
        )
    )
    # Batch IDs name the content, not just the position: a run changed since an earlier sync
    # (resumed) sends its new parts, and a part sent before is never applied twice.
    prefix = f"sync-{run.id}"
    parts = {k: v for k, v in records.items() if k != "manifest"}
    meta = _digest(canonical_json({"config": run.config, "tags": dict(run.tags), "records": parts}).encode())
    target.apply_batch(
        Batch(f"{prefix}-meta-{meta}", run.id, params=dict(run.config), tags=dict(run.tags), records=parts)
    )
    points = 0
    for i, chunk in enumerate(source.metric_chunks(run.id)):
        arrays = (chunk.steps.tobytes(), chunk.values.tobytes(), chunk.timestamps_ms.tobytes())
        target.apply_batch(
            Batch(f"{prefix}-m{i}-{_digest(chunk.key.encode(), *arrays)}", run.id, metrics=(chunk,))
        )
        points += len(chunk)
    output = source.read_output(run.id)
    for offset in range(0, len(output), _OUTPUT_PIECE):
        piece = OutputChunk(offset, output[offset : offset + _OUTPUT_PIECE])
        target.apply_batch(Batch(f"{prefix}-o{offset}-{_digest(piece.data)}", run.id, output=(piece,)))
    for use in source.run_artifacts(run.id):
        target.record_artifact(
            run.id, use.artifact.spec(), direction=use.direction, path=use.path, time_ms=use.time_ms
        )
    end_ms = run.end_time_ms if run.end_time_ms is not None else run.start_time_ms
    if run.status in _ENDINGS:
        target.finish_run(
            run.id, status=run.status, end_time_ms=end_ms, exit_code=run.exit_code, error=run.error
        )
    else:  # crashed
        target.mark_crashed(run.id, end_time_ms=end_ms)
    if sealed:
        target.seal_run(run.id, sealed)
        copy = build_manifest(target, run.id)
        problems: list[str] = []
        if manifest_digest(copy) != sealed.get("digest"):
            problems = manifest_changes(sealed.get("manifest") or {}, copy) or ["manifest"]
            if there is not None:
                problems.append("the run was there already and has changed since (resumed?)")
    else:
        problems = [
            f"metrics.{key}"
            for key, entry in source.metric_digests(run.id).items()
            if target.metric_digests(run.id).get(key) != entry
        ]
    problems += missing
    return Synced(run.id, run.name, "mismatch" if problems else "copied", problems, points)
