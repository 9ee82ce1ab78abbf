"""A run's provenance in the field's standard formats: OpenLineage, W3C PROV-JSON, RO-Crate (layer 5).

- OpenLineage: the run's ``RunEvent``s — START with its inputs, then
  COMPLETE, FAIL or ABORT with inputs and outputs — its project as the job
  namespace and its program as the job; each dataset carries a
  ``version`` facet and a runstone facet (digest, version, kind, size).
- W3C PROV (PROV-JSON): the run as an activity, artifacts and the code and
  environment records as entities (``used``, ``wasGeneratedBy``), the user and
  the host as agents (``wasAssociatedWith``).
- RO-Crate (Process Run Crate profile): a folder with
  ``ro-crate-metadata.json`` describing the run as a ``CreateAction`` of its
  command, with its inputs (``object``) and outputs (``result``), the stored
  artifacts' bytes copied in, and the run's record and manifest as JSON files.

Built as plain JSON; the tests read each with its standard's own library.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from runstone._version import __version__
from runstone.artifacts.base import ObjectStore
from runstone.artifacts.tree import restore
from runstone.entities import Artifact, ArtifactUse, Run, RunStatus
from runstone.errors import UsageError
from runstone.store.base import Store

__all__ = ["FORMATS", "export_run", "openlineage_events", "prov_document"]

FORMATS = ("openlineage", "prov", "ro-crate")
PRODUCER = f"https://pypi.org/project/runstone/{__version__}"
_OL_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_OL_VERSION_FACET = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
_RUNSTONE_FACET = "https://pypi.org/project/runstone/#artifact-facet"
_PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
_RO_CRATE = "https://w3id.org/ro/crate/1.1"
_ACTION_STATUS = {RunStatus.FINISHED: "CompletedActionStatus", RunStatus.RUNNING: "ActiveActionStatus"}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
        .isoformat()
        .replace("+00:00", "Z")
    )


def _run_uuid(run: Run) -> str:
    return str(uuid.UUID(hex=run.id))


def _job_name(run: Run) -> str:
    for arg in run.command[1:] if run.command else ():
        if arg.endswith(".py"):
            return Path(arg).name
    return run.name


def _dataset(use: ArtifactUse) -> dict[str, Any]:
    """An artifact as an OpenLineage dataset, named the same in every run that makes or uses it."""
    a = use.artifact
    return {
        "namespace": f"runstone://{a.project}",
        "name": a.name,
        "facets": {
            "version": {"_producer": PRODUCER, "_schemaURL": _OL_VERSION_FACET, "datasetVersion": a.ref},
            "runstone": {
                "_producer": PRODUCER,
                "_schemaURL": _RUNSTONE_FACET,
                "project": a.project,
                "name": a.name,
                "version": a.version,
                "kind": a.kind,
                "digest": a.digest,
                "size_bytes": a.size_bytes,
                "file_count": a.file_count,
                "stored": a.stored,
                "path": use.path,
            },
        },
    }


def openlineage_events(run: Run, uses: list[ArtifactUse]) -> list[dict[str, Any]]:
    """The run's OpenLineage ``RunEvent``s: START, then its end (when it has ended)."""
    inputs = [_dataset(u) for u in uses if u.direction == "input"]
    outputs = [_dataset(u) for u in uses if u.direction == "output"]
    job = {"namespace": run.project, "name": _job_name(run)}

    def event(kind: str, time_ms: int | None, with_outputs: bool) -> dict[str, Any]:
        return {
            "eventType": kind,
            "eventTime": _iso(time_ms),
            "run": {"runId": _run_uuid(run)},
            "job": job,
            "inputs": inputs,
            "outputs": outputs if with_outputs else [],
            "producer": PRODUCER,
            "schemaURL": _OL_SCHEMA,
        }

    events = [event("START", run.start_time_ms, False)]
    ending = {
        RunStatus.FINISHED: "COMPLETE",
        RunStatus.FAILED: "FAIL",
        RunStatus.CRASHED: "FAIL",
        RunStatus.KILLED: "ABORT",
    }.get(run.status)
    if ending:
        events.append(event(ending, run.end_time_ms or run.heartbeat_ms, True))
    return events


def _entity_id(a: Artifact) -> str:
    """One PROV entity per artifact version (two names holding the same bytes stay two entities)."""
    return f"artifact:{a.project}/{a.name}/v{a.version}"


def prov_document(run: Run, uses: list[ArtifactUse], records: dict[str, Any]) -> dict[str, Any]:
    """The run as W3C PROV-JSON."""
    activity = f"run:{run.id}"
    user = f"runstone:user-{run.user or 'unknown'}"
    host = f"runstone:host-{run.host or 'unknown'}"
    doc: dict[str, Any] = {
        "prefix": {
            "runstone": "https://pypi.org/project/runstone/#",
            "run": "urn:runstone:run:",
            "artifact": "urn:runstone:artifact:",
            "record": f"urn:runstone:record:{run.id}:",
        },
        "activity": {
            activity: {
                "prov:label": run.name,
                "prov:startTime": _iso(run.start_time_ms),
                **({"prov:endTime": _iso(run.end_time_ms)} if run.end_time_ms else {}),
                "runstone:project": run.project,
                "runstone:status": run.status.value,
                "runstone:command": " ".join(run.command),
                **({"runstone:config_digest": run.config_digest} if run.config else {}),
            }
        },
        "entity": {},
        "agent": {
            user: {"prov:type": {"$": "prov:Person", "type": "prov:QUALIFIED_NAME"}, "prov:label": run.user},
            host: {
                "prov:type": {"$": "prov:SoftwareAgent", "type": "prov:QUALIFIED_NAME"},
                "prov:label": run.host,
            },
        },
        "used": {},
        "wasGeneratedBy": {},
        "wasAssociatedWith": {
            "_:assoc-user": {"prov:activity": activity, "prov:agent": user},
            "_:assoc-host": {"prov:activity": activity, "prov:agent": host},
        },
    }
    for i, use in enumerate(uses):
        a = use.artifact
        entity = _entity_id(a)
        doc["entity"][entity] = {
            "prov:label": a.ref,
            "prov:type": a.kind,
            "runstone:digest": a.digest,
            "runstone:size_bytes": a.size_bytes,
            "runstone:path": use.path,
        }
        relation = "used" if use.direction == "input" else "wasGeneratedBy"
        doc[relation][f"_:{relation}-{i}"] = {
            "prov:activity": activity,
            "prov:entity": entity,
            "prov:time": _iso(use.time_ms),
        }
    for part in ("code", "environment", "config"):
        record = records.get(part)
        if not record:
            continue
        entity = f"record:{part}"
        attrs: dict[str, Any] = {"prov:label": f"the run's {part} record", "prov:type": "runstone:Record"}
        git = record.get("git") if part == "code" else None
        if git and git.get("commit"):
            attrs["runstone:commit"] = git["commit"]
        if part == "config" and record.get("digest"):
            attrs["runstone:digest"] = record["digest"]
        doc["entity"][entity] = attrs
        doc["used"][f"_:used-record-{part}"] = {"prov:activity": activity, "prov:entity": entity}
    return doc


def _crate_file(crate: Path, objects: ObjectStore, use: ArtifactUse, taken: set[str]) -> str | None:
    """Copy a stored artifact into the crate; its path there (None when only its digest is known)."""
    a = use.artifact
    if not a.stored:
        return None
    name = a.name if a.name not in taken else f"{a.version}-{a.name}"
    taken.add(name)
    dest = crate / ("inputs" if use.direction == "input" else "outputs") / name
    restore(objects, a.digest, a.is_dir, dest)
    return dest.relative_to(crate).as_posix() + ("/" if a.is_dir else "")


def write_ro_crate(
    crate: Path, run: Run, uses: list[ArtifactUse], records: dict[str, Any], objects: ObjectStore
) -> None:
    """A Process Run Crate for the run at ``crate`` (a new folder)."""
    if crate.exists():
        raise UsageError(f"{crate} already exists; give a new folder for the crate")
    crate.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=crate.parent, prefix=f".{crate.name}."))
    try:
        building = scratch / "crate"  # made with the usual permissions (mkdtemp's are private)
        building.mkdir()
        _write_crate(building, run, uses, records, objects)
        building.rename(crate)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_crate(
    building: Path, run: Run, uses: list[ArtifactUse], records: dict[str, Any], objects: ObjectStore
) -> None:
    (building / "runstone-run.json").write_text(
        json.dumps({"run": run.to_dict(), "records": records}, indent=2, default=str)
    )
    graph: list[dict[str, Any]] = [
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "conformsTo": {"@id": _RO_CRATE},
            "about": {"@id": "./"},
        },
        {"@id": _PROCESS_RUN_CRATE, "@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"},
    ]
    parts: list[dict[str, str]] = [{"@id": "runstone-run.json"}]
    action_id = f"#run-{run.id}"
    instrument = {"@id": "#command", "@type": "SoftwareApplication", "name": _job_name(run)}
    agent = {"@id": f"#user-{run.user or 'unknown'}", "@type": "Person", "name": run.user or "unknown"}
    objects_: list[dict[str, str]] = []
    results: list[dict[str, str]] = []
    taken: set[str] = set()
    files: list[dict[str, Any]] = [
        {
            "@id": "runstone-run.json",
            "@type": "File",
            "name": "The run's record and manifest, as runstone stored them",
            "encodingFormat": "application/json",
        }
    ]
    for use in uses:
        a = use.artifact
        local = _crate_file(building, objects, use, taken)
        entity_id = local or "#artifact-" + re.sub(
            r"[^A-Za-z0-9._-]", "-", f"{a.project}-{a.name}-v{a.version}"
        )
        entity: dict[str, Any] = {
            "@id": entity_id,
            "@type": "Dataset" if a.is_dir else "File",
            "name": a.ref,
            "contentSize": str(a.size_bytes),
            "identifier": a.digest,
            "description": f"{a.kind}; {'stored' if a.stored else 'by digest only'}; path {use.path}",
        }
        files.append(entity)
        if local is not None:
            parts.append({"@id": entity_id})
        (objects_ if use.direction == "input" else results).append({"@id": entity_id})
    action = {
        "@id": action_id,
        "@type": "CreateAction",
        "name": f"run {run.name} of project {run.project}",
        "instrument": {"@id": instrument["@id"]},
        "agent": {"@id": agent["@id"]},
        "object": objects_,
        "result": results,
        "startTime": _iso(run.start_time_ms),
        "actionStatus": {"@id": f"http://schema.org/{_ACTION_STATUS.get(run.status, 'FailedActionStatus')}"},
    }
    if run.end_time_ms:
        action["endTime"] = _iso(run.end_time_ms)
    root = {
        "@id": "./",
        "@type": "Dataset",
        "name": f"runstone run {run.name} ({run.id})",
        "description": f"Run {run.id} of project {run.project}: {' '.join(run.command)}",
        "datePublished": _iso(run.end_time_ms or run.start_time_ms),
        "license": "https://spdx.org/licenses/CC-BY-4.0",
        "conformsTo": {"@id": _PROCESS_RUN_CRATE},
        "hasPart": parts,
        "mentions": {"@id": action_id},
    }
    graph += [root, action, instrument, agent, *files]
    metadata = {"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph}
    (building / "ro-crate-metadata.json").write_text(json.dumps(metadata, indent=2))


def export_run(store: Store, objects: ObjectStore, run_id: str, fmt: str, dest: Path | None) -> str | None:
    """Export a run; returns the JSON text for ``openlineage`` (one event per line) and ``prov``
    when ``dest`` is None, else writes ``dest`` (a folder for ``ro-crate``) and returns None.

    Raises:
        UsageError: an unknown format, or ``ro-crate`` without a destination.
    """
    if fmt not in FORMATS:
        raise UsageError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    run = store.get_run(run_id)
    uses = store.run_artifacts(run_id)
    records = store.get_records(run_id)
    if fmt == "ro-crate":
        if dest is None:
            raise UsageError("An RO-Crate is a folder; name it (in the CLI: -o PATH)")
        write_ro_crate(dest, run, uses, records, objects)
        return None
    if fmt == "openlineage":
        text = "".join(json.dumps(event, sort_keys=True) + "\n" for event in openlineage_events(run, uses))
    else:
        text = json.dumps(prov_document(run, uses, records), indent=2, sort_keys=True) + "\n"
    if dest is None:
        return text
    if dest.is_dir():
        raise UsageError(f"{dest} is a folder; name a file to write the {fmt} export to")
    try:
        dest.write_text(text)
    except OSError as e:
        raise UsageError(f"Cannot write {dest}: {e.strerror or e}") from None
    return None
