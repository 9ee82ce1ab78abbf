"""Client: read runs back (and change what may change after a run ends: tags).

Layer 5. Before answering, a client settles runs that claim to be
``running`` but whose process is gone: on the same host a dead process ID
decides at once; anywhere, a heartbeat older than the timeout
(``RUNSTONE_HEARTBEAT_TIMEOUT_S``) does. Such runs become ``crashed``; a run
that was only suspended becomes ``running`` again at its next heartbeat.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from runstone import settings as settings_mod
from runstone.api.run import _clean_tags
from runstone.capture.process import pid_alive, this_host
from runstone.entities import Artifact, ArtifactUse, Batch, MetricHistory, Run
from runstone.errors import AmbiguousError, MissingDependencyError, NotFoundError, StoreError, UsageError
from runstone.store.base import RunQuery, Store
from runstone.store.factory import open_store
from runstone.store.query import Compare, Expr, Field, OrderKey, parse_filter, parse_order

__all__ = ["Client"]


def reap(store: Store, settings: settings_mod.Settings, *, now_ms: int | None = None) -> list[str]:
    """Mark the store's runs whose process is gone as crashed; returns their IDs (see ``Client.reap``)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    timeout_ms = int(settings.heartbeat_timeout_s * 1000)
    host = this_host()
    crashed = []
    for live in store.live_runs():
        beat = live.heartbeat_ms or 0
        dead = (live.host == host and not pid_alive(live.pid)) or now - beat > timeout_ms
        if not dead:
            continue
        try:
            if store.mark_crashed(live.id, end_time_ms=beat or now):
                crashed.append(live.id)
        except StoreError:
            break  # a read-only store: report what it says
    return crashed


class Client:
    """Reads a store: runs, their metric histories and captured output.

    Args:
        uri: the store; default ``RUNSTONE_URI``, else the embedded store of
            the repository holding the working directory.
        artifacts: where the store's objects are (default: ``RUNSTONE_ARTIFACTS``,
            else beside an embedded store, else through a server).

    A client never creates a store: with none there, ``find_runs`` returns
    an empty list and ``get_run`` raises ``NotFoundError``.
    """

    def __init__(self, uri: str | None = None, *, artifacts: str | None = None) -> None:
        settings = settings_mod.current()
        self._uri = uri or settings.uri
        self._settings = settings_mod.for_store(settings, self._uri)
        if artifacts:
            self._settings = dataclasses.replace(self._settings, artifacts=artifacts)
        self._store: Store | None = None
        self._reaped = False
        self._opening = threading.Lock()  # a web app's threads may ask at once

    @property
    def uri(self) -> str:
        return self._store.uri if self._store is not None else self._uri

    @property
    def artifacts_location(self) -> str:
        """Where the store's objects are: a directory, an object store's URL, or a server's."""
        return self._settings.artifacts

    def _connect(self) -> Store:
        with self._opening:
            if self._store is None:
                self._store = open_store(self._uri, create=False)
            return self._store

    def _open(self) -> Store:
        store = self._connect()
        if not self._reaped:
            self._reaped = True
            self.reap()
        return store

    def _open_or_none(self) -> Store | None:
        try:
            return self._open()
        except NotFoundError:
            return None

    def has_store(self) -> bool:
        """Whether there is a store at the client's URI (looking never creates one)."""
        return self._open_or_none() is not None

    def reap(self, *, now_ms: int | None = None) -> list[str]:
        """Mark runs whose process is gone as crashed; returns their IDs.

        Clients do this once before their first answer; call it again to
        refresh a long-lived client.
        """
        store = self._connect()
        self._reaped = True
        return reap(store, self._settings, now_ms=now_ms)

    def resolve_run_id(self, run_id: str) -> str:
        """The full ID of the run with this ID, unique ID prefix, or unique name.

        Raises:
            NotFoundError: no run matches (or there is no store).
            AmbiguousError: the prefix or name matches several runs (the message lists some).
        """
        store = self._open()
        try:
            return store.resolve_run_id(run_id)
        except AmbiguousError:
            raise
        except (UsageError, NotFoundError) as e:
            named = store.find_runs(RunQuery(filter=Compare(Field("attr", "name"), "=", run_id), limit=6))
            if len(named) == 1:
                return named[0].id
            if named:
                ids = ", ".join(r.id for r in named[:5])
                raise AmbiguousError(
                    f"{len(named) if len(named) < 6 else 'More than 5'} runs are named {run_id!r} "
                    f"({ids}); give an ID",
                    candidates=tuple(r.id for r in named[:5]),
                ) from None
            raise NotFoundError(
                f"No run in {store.uri} has an ID starting with, or the name, {run_id!r}"
            ) from e

    def get_run(self, run_id: str) -> Run:
        """The run with this ID, unique ID prefix or unique name.

        Raises:
            NotFoundError: no run matches (or there is no store).
            AmbiguousError: the prefix or name matches several runs.
        """
        return self._open().get_run(self.resolve_run_id(run_id))

    def find_runs(
        self,
        filter: str | Expr | None = None,
        *,
        order_by: str | Sequence[str | OrderKey] | None = None,
        limit: int | None = None,
        offset: int = 0,
        project: str | None = None,
    ) -> list[Run]:
        """Runs matching a filter, e.g. ``"metrics.acc > 0.9 and params.lr = 0.01"``.

        Args:
            filter: the filter language of ``runstone ls`` (see
                ``runstone.store.query``), or a parsed expression.
            order_by: e.g. ``"-metrics.acc"`` (descending), ``"started"``, or
                a list of such keys; default newest first.
            limit: at most this many runs.
            offset: skip this many first.
            project: only this project's runs.

        Raises:
            FilterError: the filter or sort text is malformed (with the position).
        """
        query = self._query(filter, order_by, limit, offset, project)
        store = self._open_or_none()
        return [] if store is None else store.find_runs(query)

    def count_runs(self, filter: str | Expr | None = None, *, project: str | None = None) -> int:
        """How many runs match the filter."""
        query = self._query(filter, None, None, 0, project)
        store = self._open_or_none()
        return 0 if store is None else store.count_runs(query)

    @staticmethod
    def _query(
        filter: str | Expr | None,
        order_by: str | Sequence[str | OrderKey] | None,
        limit: int | None,
        offset: int,
        project: str | None,
    ) -> RunQuery:
        expr = parse_filter(filter) if isinstance(filter, str) and filter.strip() else filter
        order: tuple[OrderKey, ...] = ()
        for item in [order_by] if isinstance(order_by, str) else (order_by or ()):
            order += parse_order(item) if isinstance(item, str) else (item,)
        if limit is not None and limit < 0:
            raise UsageError(f"limit must be 0 or more, got {limit}")
        if offset < 0:
            raise UsageError(f"offset must be 0 or more, got {offset}")
        return RunQuery(
            filter=expr if not isinstance(expr, str) else None,
            order_by=order,
            limit=limit,
            offset=offset,
            project=project,
        )

    def unique_prefix_length(self, minimum: int = 8) -> int:
        """How many leading digits tell every run ID in the store apart (at least ``minimum``)."""
        store = self._open_or_none()
        return minimum if store is None else store.unique_prefix_length(minimum)

    def metric_history(self, run_id: str, key: str) -> MetricHistory:
        """One metric's whole series as numpy arrays (``steps``, ``values``, ``timestamps_ms``).

        ``metric_frame`` gives the same as a pandas DataFrame.

        Raises:
            NotFoundError: no such run or metric (the message lists the run's metrics).
        """
        return self._open().metric_history(self.resolve_run_id(run_id), key)

    def metric_frame(self, run_id: str, key: str) -> Any:
        """One metric's series as a pandas DataFrame: columns step, value, timestamp (UTC).

        Raises:
            MissingDependencyError: pandas is not installed (``pip install 'runstone[pandas]'``).
            NotFoundError: no such run or metric.
        """
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependencyError("Client.metric_frame()", package="pandas", extra="pandas") from None
        history = self.metric_history(run_id, key)
        return pd.DataFrame(
            {
                "step": history.steps,
                "value": history.values,
                "timestamp": pd.to_datetime(history.timestamps_ms, unit="ms", utc=True),
            }
        )

    def get_records(self, run_id: str) -> dict[str, dict[str, Any]]:
        """What the run depends on: its ``code``, ``environment``, ``system`` and ``seeds`` records.

        A part that could not be captured says ``"status": "failed"`` and why.
        """
        return self._open().get_records(self.resolve_run_id(run_id))

    def read_object(self, digest: str) -> bytes:
        """Bytes a record refers to by digest (a diff, an untracked file), checked on read.

        Raises:
            NotFoundError: the object is not in this machine's object store.
            StoreError: the stored bytes no longer match the digest.
        """
        from runstone.api.capture import object_store

        return object_store(self._settings).get_bytes(digest)

    def iter_object(self, digest: str) -> Iterator[bytes]:
        """An object's bytes in chunks, for passing on without holding it whole.

        The digest is checked as it streams: after the last chunk a mismatch
        raises ``StoreError``, so treat what was received as incomplete then.

        Raises:
            NotFoundError: the object is not in this machine's object store.
        """
        from runstone.api.capture import object_store

        return object_store(self._settings).iter_bytes(digest)

    def artifacts(self, run_id: str) -> list[ArtifactUse]:
        """A run's inputs and outputs (``ArtifactUse``: the artifact version, direction, path)."""
        return self._open().run_artifacts(self.resolve_run_id(run_id))

    def checkpoints(self, run_id: str) -> list[Any]:
        """A run's checkpoints (``Checkpoint``: ref, step, epoch, digest, size, metrics), oldest first."""
        from runstone.api.checkpoints import list_checkpoints

        return list_checkpoints(self._open(), self.resolve_run_id(run_id))

    def fingerprints(self, run_id: str, name: str = "model") -> dict[int, str]:
        """A run's fingerprint series (``run.fingerprint``): step -> 12 hex digits.

        Raises:
            NotFoundError: the run recorded no fingerprints under ``name``.
        """
        from runstone.api.fingerprint import FINGERPRINT_PREFIX, from_value

        run_id = self.resolve_run_id(run_id)
        try:
            history = self._open().metric_history(run_id, FINGERPRINT_PREFIX + name)
        except NotFoundError:
            names = [
                k.removeprefix(FINGERPRINT_PREFIX)
                for k in self._open().get_run(run_id).metrics
                if k.startswith(FINGERPRINT_PREFIX)
            ]
            raise NotFoundError(
                f"Run {run_id} recorded no fingerprints named {name!r}"
                + (f"; it has: {', '.join(names)}" if names else "; record them with run.fingerprint(model)")
            ) from None
        return {int(s): from_value(float(v)) for s, v in zip(history.steps, history.values, strict=True)}

    def load_checkpoint(
        self,
        run_id: str,
        *,
        model: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        scaler: Any = None,
        extra: dict[str, Any] | None = None,
        step: int | None = None,
        rng: bool = False,
        map_location: Any = None,
        allow_pickle: bool = False,
    ) -> int:
        """Restore a run's checkpoint (its newest, or the one of ``step``) into objects, outside any run.

        For evaluating or inspecting a checkpoint; the global generators are
        left alone unless ``rng=True``. Returns the step after the checkpoint's.
        """
        from runstone.api import checkpoints
        from runstone.api.capture import object_store

        found = checkpoints.find_checkpoint(self._open(), self.resolve_run_id(run_id), step=step)
        loaded, _ = checkpoints.load(
            object_store(self._settings),
            found,
            parts={"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler},
            extra=extra,
            rng=rng,
            map_location=map_location,
            allow_pickle=allow_pickle,
        )
        return loaded.step + 1

    def get_artifact(self, ref: str, *, project: str | None = None) -> Artifact:
        """An artifact version by ``name``, ``name@v3``, ``name@latest``, ``name@<digest prefix>`` or digest.

        Raises:
            NotFoundError: nothing matches.
            AmbiguousError: several match (a name in several projects: pass ``project``).
        """
        return self._open().resolve_artifact(ref, project=project)

    def artifact_runs(self, artifact: Artifact) -> list[tuple[str, str]]:
        """``(run ID, "input" | "output")`` of every run that used or made an artifact version."""
        return self._open().artifact_users(artifact)

    def artifact_entries(self, artifact: Artifact, path: str = "") -> list[dict[str, Any]]:
        """What a stored folder artifact holds at ``path`` (``""``: its top), sorted by name.

        Each entry: ``name``, ``path`` (from the artifact's top), ``type``
        (``file``, ``tree`` or ``symlink``), ``size`` and, for files and
        folders, ``digest``.

        Raises:
            StateError: the artifact was recorded by digest only.
            NotFoundError: ``path`` is not a folder in it.
        """
        digest, kind = self.artifact_object(artifact, path)
        if kind != "tree":
            raise NotFoundError(f"{artifact.ref}: {path or '.'} is a file, not a folder")
        from runstone.api.capture import object_store
        from runstone.artifacts.tree import read_manifest

        entries = read_manifest(object_store(self._settings), digest)
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        return [{"name": name, "path": prefix + name, **entry} for name, entry in sorted(entries.items())]

    def artifact_file(self, artifact: Artifact, path: str = "") -> tuple[str, int]:
        """The digest and size of the file at ``path`` in an artifact (``""``: a file artifact itself).

        Read it with ``read_object``. Raises ``NotFoundError`` when ``path`` is not a file in it.
        """
        digest, kind = self.artifact_object(artifact, path)
        if kind != "file":
            raise NotFoundError(f"{artifact.ref}: {path or '.'} is a folder, not a file")
        if not path.strip("/"):
            return digest, artifact.size_bytes
        from runstone.api.capture import object_store
        from runstone.artifacts.tree import read_manifest

        parent, _, name = path.strip("/").rpartition("/")
        parent_digest, _ = self.artifact_object(artifact, parent)
        return digest, int(read_manifest(object_store(self._settings), parent_digest)[name].get("size", 0))

    def artifact_object(self, artifact: Artifact, path: str = "") -> tuple[str, str]:
        """The digest at ``path`` in a stored artifact, and whether it is a ``file`` or a ``tree`` (folder).

        Raises:
            StateError: the artifact was recorded by digest only.
            NotFoundError: nothing is at ``path``.
        """
        from runstone.api.artifacts import check_stored
        from runstone.api.capture import object_store
        from runstone.artifacts.tree import read_manifest

        check_stored(artifact)
        digest, kind = artifact.digest, ("tree" if artifact.is_dir else "file")
        for part in [p for p in path.strip("/").split("/") if p]:
            entry = read_manifest(object_store(self._settings), digest).get(part) if kind == "tree" else None
            if entry is None or entry.get("type") not in ("file", "tree") or part in (".", ".."):
                raise NotFoundError(f"{artifact.ref} holds no {path!r}")
            digest, kind = entry["digest"], entry["type"]
        return digest, kind

    def download(
        self, artifact: Artifact | str, dest: str | os.PathLike[str], *, project: str | None = None
    ) -> Path:
        """Copy an artifact version (or a reference to one) to ``dest``, every object's digest checked.

        Raises:
            StateError: it was recorded by digest only.
            UsageError: ``dest`` is an existing directory for a directory artifact.
        """
        from runstone.api.artifacts import fetch
        from runstone.api.capture import object_store

        if isinstance(artifact, str):
            artifact = self.get_artifact(artifact, project=project)
        return fetch(object_store(self._settings), artifact, Path(dest))

    def lineage(self, target: str, *, direction: str = "up", depth: int | None = None) -> Any:
        """The lineage graph of a run or artifact version (``api.lineage.LineageGraph``).

        ``direction``: ``up`` (what it came from: inputs, the runs that made
        them, their inputs, ..., with each run's code and environment),
        ``down`` (what came of it) or ``both``. The graph's ``to_text()``,
        ``to_dot()``, ``to_mermaid()`` and ``to_dict()`` render it.
        """
        from runstone.api.lineage import lineage

        return lineage(
            self._open(), target, direction=direction, depth=depth, resolve_run=self.resolve_run_id
        )

    def export(self, run_id: str, fmt: str, dest: str | os.PathLike[str] | None = None) -> str | None:
        """A run's provenance as ``openlineage`` (RunEvents, one JSON per line), ``prov`` (PROV-JSON)
        or ``ro-crate`` (a folder at ``dest``). Returns the text when ``dest`` is None.
        """
        from runstone.api.capture import object_store
        from runstone.api.export import export_run

        return export_run(
            self._open(),
            object_store(self._settings),
            self.resolve_run_id(run_id),
            fmt,
            None if dest is None else Path(dest),
        )

    def fsck(self) -> Any:
        """Verify every stored object and every reference to one (``api.maintenance.FsckReport``)."""
        from runstone.api.capture import object_store
        from runstone.api.maintenance import fsck

        return fsck(self._open(), object_store(self._settings))

    def gc(self, *, grace_s: float = 3600.0, dry_run: bool = False) -> Any:
        """Delete unreferenced objects older than ``grace_s`` (``api.maintenance.GcReport``)."""
        from runstone.api.capture import object_store
        from runstone.api.maintenance import gc

        return gc(self._open(), object_store(self._settings), grace_s=grace_s, dry_run=dry_run)

    def requirements(self, run_id: str) -> str:
        """The run's Python distributions as a pinned requirements file (``pip install -r``).

        Raises:
            NotFoundError: the run has no environment record.
        """
        from runstone.capture.env import requirements_txt

        record = self.get_records(run_id).get("environment")
        if not record or record.get("status") != "ok":
            reason = (record or {}).get("error", "it was not captured")
            raise NotFoundError(f"Run {run_id} has no environment record to export ({reason})")
        return requirements_txt(record)

    def read_output(self, run_id: str) -> bytes:
        """The stdout/stderr captured for a run started with ``runstone run``."""
        return self._open().read_output(self.resolve_run_id(run_id))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags on any run, finished or not."""
        full = self.resolve_run_id(run_id)
        self._open().apply_batch(Batch(uuid.uuid4().hex, full, tags=_clean_tags(tags)))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
