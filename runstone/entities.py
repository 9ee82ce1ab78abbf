"""The nouns of runstone as plain, frozen dataclasses.

Standard library only (layer 1): stores build these, the API and the command
line read them. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Artifact",
    "ArtifactSpec",
    "ArtifactUse",
    "Batch",
    "ConfigChange",
    "MetricHistory",
    "MetricSeries",
    "MetricSummary",
    "OutputChunk",
    "Run",
    "RunSpec",
    "RunStatus",
]


class RunStatus(str, enum.Enum):
    """Where a run is in its life.

    ``running`` until it ends; then ``finished`` (success), ``failed`` (an
    exception or a non-zero exit), ``killed`` (interrupted by a signal or
    Ctrl-C) or ``crashed`` (its process vanished without saying so: found by a
    dead process ID on the same host or a stale heartbeat).
    """

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"
    CRASHED = "crashed"

    @property
    def is_terminal(self) -> bool:
        """True once the run has ended (crashed counts: it may be revived by a heartbeat)."""
        return self is not RunStatus.RUNNING

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class MetricSummary:
    """What a run's metric came to: its last value (by step), extremes and count.

    Computed over the stored series, one point per step (a step logged again
    replaces its point). ``count`` includes NaN points; NaN never becomes
    ``min_value``/``max_value``.
    """

    key: str
    last_value: float
    last_step: int
    last_timestamp_ms: int
    min_value: float | None
    max_value: float | None
    count: int


@dataclass(frozen=True)
class RunSpec:
    """Everything known about a run when it is created."""

    id: str
    project: str
    name: str
    start_time_ms: int
    command: tuple[str, ...] = ()
    cwd: str = ""
    host: str = ""
    user: str = ""
    pid: int = 0
    runstone_version: str = ""


@dataclass(frozen=True)
class Run:
    """One recorded run, as read from a store.

    Attributes:
        id: 32 lowercase hex digits, a UUIDv7: sorts by creation time.
        config: the whole configuration tree; ``params`` holds its leaves
            flattened to dotted keys (``model.depth``).
        config_digest: ``sha256:`` of the config's canonical JSON.
        metrics: per metric key, the summary of its series.
    """

    id: str
    project: str
    name: str
    status: RunStatus
    start_time_ms: int
    end_time_ms: int | None
    heartbeat_ms: int | None
    exit_code: int | None
    error: str | None
    command: tuple[str, ...]
    cwd: str
    host: str
    user: str
    pid: int
    runstone_version: str
    config: Mapping[str, Any] = field(default_factory=dict)
    config_digest: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, MetricSummary] = field(default_factory=dict)
    output_size_bytes: int = 0

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (or to the last heartbeat while running)."""
        end = self.end_time_ms if self.end_time_ms is not None else self.heartbeat_ms
        if end is None:
            return None
        return max(0, end - self.start_time_ms) / 1000.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and infinities stay floats; JSON writers decide)."""
        return {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "status": self.status.value,
            "start_time_ms": self.start_time_ms,
            "end_time_ms": self.end_time_ms,
            "heartbeat_ms": self.heartbeat_ms,
            "duration_s": self.duration_s,
            "exit_code": self.exit_code,
            "error": self.error,
            "command": list(self.command),
            "cwd": self.cwd,
            "host": self.host,
            "user": self.user,
            "pid": self.pid,
            "runstone_version": self.runstone_version,
            "config": self.config,
            "config_digest": self.config_digest,
            "params": dict(self.params),
            "tags": dict(self.tags),
            "metrics": {
                k: {
                    "last": m.last_value,
                    "last_step": m.last_step,
                    "last_timestamp_ms": m.last_timestamp_ms,
                    "min": m.min_value,
                    "max": m.max_value,
                    "count": m.count,
                }
                for k, m in self.metrics.items()
            },
            "output_size_bytes": self.output_size_bytes,
        }


@dataclass(frozen=True)
class MetricSeries:
    """Points of one metric key, in the order they were logged (columnar)."""

    key: str
    steps: array[int]
    values: array[float]
    timestamps_ms: array[int]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class OutputChunk:
    """A piece of a run's captured stdout/stderr, placed by its byte offset."""

    offset: int
    data: bytes


@dataclass(frozen=True)
class Batch:
    """One idempotent unit of writes to a run.

    Writers send everything as batches; a store applies a batch at most once
    (by ``batch_id``), so a batch may be retried or replayed from a spool
    without changing the result.
    """

    batch_id: str
    run_id: str
    metrics: tuple[MetricSeries, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    output: tuple[OutputChunk, ...] = ()
    heartbeat_ms: int | None = None
    #: what went wrong, from a process that joined the run (the owner's finish keeps it)
    error: str | None = None
    #: parts of the run's record (``code``, ``environment``, ``system``, ``seeds``), each a JSON object
    records: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: record parts stored only where the run has none yet (a wrapper's view, which
    #: the view of a process that joins the run replaces)
    records_if_absent: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (
            self.metrics
            or self.params
            or self.tags
            or self.output
            or self.error
            or self.records
            or self.records_if_absent
        )

    @property
    def point_count(self) -> int:
        return sum(len(s) for s in self.metrics)


@dataclass(frozen=True)
class MetricHistory:
    """A metric's full series: numpy arrays sorted by step, one value per step.

    When a step was logged more than once, the value logged last wins.

    Attributes:
        steps: int64 array.
        values: float64 array; NaN and infinities are kept bit for bit.
        timestamps_ms: int64 array, wall time of each point.
    """

    run_id: str
    key: str
    steps: Any
    values: Any
    timestamps_ms: Any

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class ConfigChange:
    """One difference between two configuration trees, at a flattened key.

    ``kind`` is ``"added"`` (only in the new tree: ``old`` is None),
    ``"removed"`` (only in the old one: ``new`` is None) or ``"changed"``.
    Values are compared with their types: ``1``, ``1.0`` and ``"1"`` all differ.
    """

    key: str
    kind: str
    old: Any = None
    new: Any = None

    def to_dict(self) -> dict[str, Any]:
        """``{"key", "kind", "old", "new"}`` (``old`` is None when added, ``new`` when removed)."""
        return {"key": self.key, "kind": self.kind, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class ArtifactSpec:
    """What a run logs or uses: a named file or directory, by digest (see ``Artifact``)."""

    name: str
    kind: str
    digest: str
    size_bytes: int
    file_count: int
    is_dir: bool
    stored: bool  # whether its bytes are in the object store (a dataset may be recorded by digest only)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Artifact:
    """A version of a named artifact: immutable content, addressed by digest.

    The same name with different content in the same project is a new
    version (``v1``, ``v2``, ...); the same content again is the same version.
    ``run_id`` is the run that first produced it (None for an input recorded
    before any run produced it).
    """

    project: str
    name: str
    version: int
    kind: str
    digest: str
    size_bytes: int
    file_count: int
    is_dir: bool
    stored: bool
    metadata: Mapping[str, Any]
    created_ms: int
    run_id: str | None

    @property
    def ref(self) -> str:
        """``name@vN``: how to name this version."""
        return f"{self.name}@v{self.version}"

    def spec(self, metadata: Mapping[str, Any] | None = None) -> ArtifactSpec:
        """What recording this version again takes (in another run or store), with other metadata if given."""
        return ArtifactSpec(
            name=self.name,
            kind=self.kind,
            digest=self.digest,
            size_bytes=self.size_bytes,
            file_count=self.file_count,
            is_dir=self.is_dir,
            stored=self.stored,
            metadata=dict(self.metadata) if metadata is None else metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "kind": self.kind,
            "digest": self.digest,
            "size_bytes": self.size_bytes,
            "file_count": self.file_count,
            "is_dir": self.is_dir,
            "stored": self.stored,
            "metadata": dict(self.metadata),
            "created_ms": self.created_ms,
            "run_id": self.run_id,
        }


@dataclass(frozen=True)
class ArtifactUse:
    """An edge of the lineage graph: a run consumed (``input``) or produced (``output``) an artifact."""

    artifact: Artifact
    direction: str
    path: str
    time_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.artifact.to_dict(),
            "direction": self.direction,
            "path": self.path,
            "time_ms": self.time_ms,
        }
