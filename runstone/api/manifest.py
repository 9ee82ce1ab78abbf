"""Run manifests: a finished run's content, as one digest that shows any later change (layer 5).

When a run ends, its manifest is written beside it: canonical JSON of the
run's attributes (command, working directory, host, times, status), digests
of its config in every stored form (the tree, its digest, its searchable
params), the digest of each record part (code, environment, system, seeds,
config, command line), its inputs and outputs (name, version, digest, kind,
size, metadata, path), a digest of every metric series as stored (steps,
values and times, bit for bit) and of the metric summaries ``ls`` filters
on, and a digest of its captured output. The manifest's own digest is the
run's content fingerprint (``runstone show``). ``runstone fsck`` builds the
manifest again from what is stored now and names what no longer matches.
Tags may change; they are not in it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from runstone._json import canonical_json, digest
from runstone.store.base import Store

__all__ = ["FORMAT", "build_manifest", "manifest_digest", "seal", "verify_manifest"]

FORMAT = "runstone.manifest/1"
_RUN_FIELDS = (
    "id",
    "project",
    "name",
    "command",
    "cwd",
    "host",
    "user",
    "start_time_ms",
    "end_time_ms",
    "status",
    "exit_code",
    "error",
    "runstone_version",
)


def build_manifest(store: Store, run_id: str) -> dict[str, Any]:
    """The manifest of a run as stored now."""
    run = store.get_run(run_id)
    attributes = run.to_dict()
    records = store.get_records(run_id)
    output = store.read_output(run_id)
    uses = store.run_artifacts(run_id)

    def edges(direction: str) -> list[dict[str, Any]]:
        return [
            {
                "name": u.artifact.name,
                "version": u.artifact.version,
                "digest": u.artifact.digest,
                "kind": u.artifact.kind,
                "size_bytes": u.artifact.size_bytes,
                "stored": u.artifact.stored,
                "metadata": digest(dict(u.artifact.metadata)),
                "path": u.path,
            }
            for u in uses
            if u.direction == direction
        ]

    return {
        "format": FORMAT,
        "run": {name: attributes.get(name) for name in _RUN_FIELDS},
        # every stored form of the config: its tree, its digest column, its searchable params
        "config": {
            "tree": digest(run.config),
            "digest": run.config_digest,
            "params": digest(dict(run.params)),
        },
        "records": {part: digest(record) for part, record in sorted(records.items()) if part != "manifest"},
        "inputs": edges("input"),
        "outputs": edges("output"),
        "metrics": dict(sorted(store.metric_digests(run_id).items())),
        "metric_summaries": digest(attributes["metrics"]),
        "output": {"size_bytes": len(output), "digest": "sha256:" + hashlib.sha256(output).hexdigest()},
    }


def manifest_digest(manifest: dict[str, Any]) -> str:
    return digest(manifest)


def seal(store: Store, run_id: str) -> str:
    """Write an ended run's manifest; returns its digest."""
    manifest = build_manifest(store, run_id)
    value = manifest_digest(manifest)
    store.seal_run(run_id, {"digest": value, "manifest": manifest})
    return value


def verify_manifest(store: Store, run_id: str) -> list[str] | None:
    """What in a sealed run no longer matches its manifest (empty: it all does; None: not sealed).

    Names the parts: ``run.status``, ``records.code``, ``metrics.loss``, ``outputs``, ...
    """
    sealed = store.get_records(run_id).get("manifest")
    if not sealed:
        return None
    now = build_manifest(store, run_id)
    if manifest_digest(now) == sealed.get("digest") and manifest_digest(
        sealed.get("manifest", {})
    ) == sealed.get("digest"):
        return []
    changed = manifest_changes(sealed.get("manifest") or {}, now)
    return changed or ["manifest"]  # nothing differs: the stored manifest itself was edited


def manifest_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The parts in which two manifests differ: ``run.status``, ``metrics.loss``, ``outputs``, ..."""
    changed = []
    for section in sorted(set(before) | set(now)):
        old, new = before.get(section), now.get(section)
        if isinstance(old, dict) and isinstance(new, dict) and section != "output":
            for key in sorted(set(old) | set(new)):
                if canonical_json(old.get(key)) != canonical_json(new.get(key)):
                    changed.append(f"{section}.{key}")
        elif canonical_json(old) != canonical_json(new):
            changed.append(section)
    return changed
