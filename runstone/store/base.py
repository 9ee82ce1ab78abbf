"""The Store interface: what every metadata backend provides.

Layer 3 (entities, errors, the query language). A store keeps runs, their
params, tags, metric series and captured output; it never holds artifact
bytes. Backends implement the abstract primitives; the concrete helpers here
(``resolve_run_id``, ``unique_prefix_length``) are built on them so every
backend behaves the same. ``runstone.store.testing`` is the contract suite
every backend passes.

Writes arrive as ``Batch`` objects carrying an ID; ``apply_batch`` is
idempotent, so a writer may retry (or replay from a spool) freely.
"""

from __future__ import annotations

import abc
import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runstone._ids import normalize_id_prefix
from runstone.errors import AmbiguousError, NotFoundError, UsageError

if TYPE_CHECKING:
    from runstone.entities import (
        Artifact,
        ArtifactSpec,
        ArtifactUse,
        Batch,
        MetricHistory,
        MetricSeries,
        Run,
        RunSpec,
        RunStatus,
    )
    from runstone.store.query import Expr, OrderKey

__all__ = ["LiveRun", "RunQuery", "Store"]


@dataclass(frozen=True)
class RunQuery:
    """Which runs to find, in which order.

    Attributes:
        filter: a parsed filter (``runstone.store.query.parse_filter``), or None for all.
        order_by: sort keys; runs missing a sort field come last. Ties (and the
            default) order by ID, newest first.
        limit: at most this many runs (None: all).
        offset: skip this many first.
        project: only this project's runs (None: every project).
    """

    filter: Expr | None = None
    order_by: tuple[OrderKey, ...] = ()
    limit: int | None = None
    offset: int = 0
    project: str | None = None


@dataclass(frozen=True)
class LiveRun:
    """What a reader needs to judge whether a ``running`` run is still alive."""

    id: str
    host: str
    pid: int
    heartbeat_ms: int | None


class Store(abc.ABC):
    """A metadata store. Thread-safe; one instance may serve many threads."""

    #: where the store lives, credentials removed (for messages)
    uri: str

    # --- writes --------------------------------------------------------------

    @abc.abstractmethod
    def create_run(self, spec: RunSpec) -> None:
        """Create a run in status ``running``; creating the same ID again changes nothing."""

    @abc.abstractmethod
    def apply_batch(self, batch: Batch) -> bool:
        """Apply a batch of writes atomically, at most once.

        Returns:
            True if applied now, False if a batch with this ID was applied before.

        Raises:
            NotFoundError: the run does not exist.
            StateError: the run has ended and the batch changes more than tags.
        """

    @abc.abstractmethod
    def heartbeat(self, run_id: str, time_ms: int) -> None:
        """Record that the run's process is alive (a crashed run becomes running again)."""

    @abc.abstractmethod
    def finish_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        end_time_ms: int,
        exit_code: int | None = None,
        error: str | None = None,
    ) -> None:
        """End a running (or crashed) run with a final status.

        An error already recorded (by a process that joined the run) is kept
        over ``error``: it is the more specific account.

        Raises:
            NotFoundError: the run does not exist.
            StateError: the run already ended with finished, failed or killed.
        """

    @abc.abstractmethod
    def seal_run(self, run_id: str, manifest: dict[str, Any]) -> bool:
        """Keep an ended run's manifest (the record part ``manifest``); True if this call kept it.

        A run is sealed once: a second manifest is ignored.

        Raises:
            NotFoundError: the run does not exist.
            StateError: the run has not ended.
        """

    @abc.abstractmethod
    def mark_crashed(self, run_id: str, *, end_time_ms: int) -> bool:
        """Mark a run crashed if it is still ``running``; True if it was changed."""

    @abc.abstractmethod
    def reopen_run(self, run_id: str, *, time_ms: int, host: str, pid: int, entry: dict[str, Any]) -> Run:
        """Make an ended or crashed run ``running`` again, for a process that resumes it.

        In one transaction: the run takes the new host and process ID (readers
        judge its liveness by them), loses its end time, exit code, error and
        manifest (it is sealed again when it ends), and ``entry`` -- with the
        status, end time, exit code and error it had -- is appended to the
        list in its ``resumes`` record.

        Returns:
            The run as it was before reopening.

        Raises:
            NotFoundError: the run does not exist.
            StateError: the run is ``running`` (settle a dead one with ``mark_crashed`` first).
        """

    @abc.abstractmethod
    def supersede_metrics(self, run_id: str, after_step: int) -> dict[str, int]:
        """Drop every metric point at a step above ``after_step`` (a resumed run logs them again).

        Returns:
            Per metric key, how many stored points were dropped (keys with none are left out).
        """

    # --- reads ---------------------------------------------------------------

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Run:
        """The run with exactly this ID.

        Raises:
            NotFoundError: no such run.
        """

    @abc.abstractmethod
    def match_run_ids(self, prefix: str, *, limit: int) -> list[str]:
        """IDs starting with ``prefix`` (normalized), at most ``limit``, ascending."""

    @abc.abstractmethod
    def run_ids(self) -> list[str]:
        """Every run ID in the store, ascending."""

    @abc.abstractmethod
    def find_runs(self, query: RunQuery) -> list[Run]:
        """Runs matching the query, in its order."""

    @abc.abstractmethod
    def count_runs(self, query: RunQuery) -> int:
        """How many runs match the query's filter and project (ignoring limit/offset)."""

    @abc.abstractmethod
    def live_runs(self) -> list[LiveRun]:
        """Runs whose status is ``running``."""

    @abc.abstractmethod
    def metric_history(self, run_id: str, key: str) -> MetricHistory:
        """The whole series of one metric, sorted by step.

        Raises:
            NotFoundError: no such run, or the run has no such metric.
        """

    @abc.abstractmethod
    def metric_digests(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Per metric key, ``{"count", "digest"}``: the SHA-256 of its stored points, chunk by chunk.

        Any change to a stored point (step, value bits or time) changes it.

        Raises:
            NotFoundError: no such run.
        """

    @abc.abstractmethod
    def metric_chunks(self, run_id: str) -> list[MetricSeries]:
        """Every metric's points as stored: one series per stored chunk, in the order written.

        Applying them as batches, in this order, to a new run stores the same
        chunks, so ``metric_digests`` (and a run's manifest) come out the same:
        how a run is copied to another store.

        Raises:
            NotFoundError: no such run.
        """

    @abc.abstractmethod
    def get_records(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's record parts (``code``, ``environment``, ...), as stored.

        Raises:
            NotFoundError: no such run.
        """

    @abc.abstractmethod
    def read_output(self, run_id: str) -> bytes:
        """The run's captured stdout/stderr, as stored (may be empty)."""

    @abc.abstractmethod
    def record_artifact(
        self, run_id: str, spec: ArtifactSpec, *, direction: str, path: str, time_ms: int
    ) -> Artifact:
        """Record that a run used (``input``) or made (``output``) an artifact; returns its version.

        The same name and digest in the run's project is the same version
        (whichever run recorded it first made it); new content under a name
        is the next version. Recording the same edge again changes nothing.

        Raises:
            NotFoundError: no such run.
            UsageError: ``direction`` is neither ``input`` nor ``output``.
        """

    @abc.abstractmethod
    def run_artifacts(self, run_id: str) -> list[ArtifactUse]:
        """A run's inputs and outputs, in the order it recorded them.

        Raises:
            NotFoundError: no such run.
        """

    @abc.abstractmethod
    def artifact_versions(self, project: str | None, name: str) -> list[Artifact]:
        """Every version of a named artifact, oldest first (in every project when ``project`` is None)."""

    @abc.abstractmethod
    def artifacts_by_digest(self, prefix: str) -> list[Artifact]:
        """Artifact versions whose digest starts with ``prefix`` (``sha256:ab12...`` or ``ab12...``)."""

    @abc.abstractmethod
    def artifact_users(self, artifact: Artifact) -> list[tuple[str, str]]:
        """``(run ID, direction)`` of every run that used or made this artifact version."""

    @abc.abstractmethod
    def delete_artifact(self, artifact: Artifact, run_id: str) -> bool:
        """Forget an artifact version that ``run_id`` made, unless another run uses it.

        Removes the version and its edge to ``run_id``; its objects stay until
        ``gc``. Returns False (and changes nothing) when another run records
        it as an input or output, or when ``run_id`` did not make it.
        """

    @abc.abstractmethod
    def referenced_objects(self) -> dict[str, bool]:
        """Every object digest the store refers to (stored artifacts, code records): is it a directory."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""

    # --- helpers built on the primitives -------------------------------------

    def resolve_run_id(self, text: str) -> str:
        """The full ID of the one run whose ID starts with ``text``.

        Raises:
            UsageError: ``text`` is not a hex ID or prefix.
            NotFoundError: no run matches.
            AmbiguousError: several runs match (the message lists some).
        """
        prefix = normalize_id_prefix(text)
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            raise UsageError(f"{text!r} is not a run ID: IDs are hex digits, e.g. 0194f3a2c1")
        matches = self.match_run_ids(prefix, limit=101)
        if not matches:
            raise NotFoundError(f"No run in {self.uri} has an ID starting with {text!r}")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            count = str(len(matches)) if len(matches) <= 100 else "more than 100"
            raise AmbiguousError(
                f"Run ID prefix {text!r} matches {count} runs ({shown}); give more digits",
                candidates=tuple(matches[:5]),
            )
        return matches[0]

    def resolve_artifact(self, ref: str, *, project: str | None = None) -> Artifact:
        """The artifact version a reference names.

        ``name`` or ``name@latest`` (the newest version), ``name@v3`` (or
        ``name@3``), ``name@<digest prefix>``, or a digest (``sha256:...``, or a
        prefix of one with ``sha256:``). ``project`` narrows names to one project.

        Raises:
            NotFoundError: nothing matches (the message lists the versions there are).
            AmbiguousError: a digest prefix or a name in several projects matches more than one.
        """
        text = ref.strip()
        if text.startswith("sha256:"):
            found = self.artifacts_by_digest(text)
            if project is not None:
                found = [a for a in found if a.project == project]
            return _one_artifact(found, ref)
        name, _, version = text.rpartition("@") if "@" in text else (text, "", "latest")
        versions = self.artifact_versions(project, name)
        if not versions:
            where = f" in project {project!r}" if project else ""
            raise NotFoundError(f"No artifact named {name!r}{where} in {self.uri}")
        if project is None and len({a.project for a in versions}) > 1:
            projects = ", ".join(sorted({a.project for a in versions}))
            raise AmbiguousError(
                f"Artifact {name!r} exists in several projects ({projects}); name the project"
            )
        listed = ", ".join(a.ref for a in versions[-5:])
        if version == "latest":
            return versions[-1]
        number = version[1:] if version[:1] in "vV" else version
        if number.isdigit():
            for artifact in versions:
                if artifact.version == int(number):
                    return artifact
            raise NotFoundError(f"Artifact {name!r} has no version {version} (versions: {listed})")
        matches = [a for a in versions if a.digest.partition(":")[2].startswith(version.lower())]
        if not matches:
            raise NotFoundError(f"Artifact {name!r} has no version {version!r} (versions: {listed})")
        return _one_artifact(matches, ref)

    def unique_prefix_length(self, minimum: int = 8) -> int:
        """The shortest prefix length (at least ``minimum``) unique across all run IDs.

        Run IDs start with their creation time, so runs created close together
        share long prefixes; this says how many digits tell them all apart.
        """
        ids = self.run_ids()
        longest = minimum
        for a, b in itertools.pairwise(ids):
            common = len(os.path.commonprefix((a, b)))
            longest = max(longest, common + 1)
        return longest

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_artifact(found: list[Artifact], ref: str) -> Artifact:
    if not found:
        raise NotFoundError(f"No artifact matches {ref!r}")
    distinct = {(a.project, a.name, a.version): a for a in found}
    if len(distinct) > 1:
        shown = ", ".join(f"{a.project}/{a.ref}" for a in list(distinct.values())[:5])
        raise AmbiguousError(f"{ref!r} matches several artifacts: {shown}; give more of the digest or a name")
    return found[0]
