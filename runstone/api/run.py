"""ActiveRun: a run being recorded by this process, and its background writer.

Layer 5. ``log`` only appends to an in-memory list and returns: it never
waits on disk or network. A writer thread drains the list every flush
interval (about a second, sooner when much is waiting), groups the points
per metric key into columnar arrays and applies them to the store as one
idempotent batch. A batch is kept until the store has applied it, so a
failed or interrupted write is retried, never lost and never doubled.

Data is durable at ``finish()``, at every flush interval, at normal exit
and at SIGTERM/SIGINT (see ``api/lifecycle.py``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Mapping
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Any

from runstone import settings as settings_mod
from runstone._json import canonical_json, check_flat_keys, check_text, merge, normalize
from runstone.api import lifecycle
from runstone.entities import Artifact, Batch, MetricSeries, OutputChunk, RunStatus
from runstone.errors import NotFoundError, StateError, StoreError, UsageError
from runstone.store.base import Store

__all__ = ["ActiveRun"]

log = logging.getLogger("runstone")

_MAX_STEP = (1 << 63) - 1
_WAKE_AT_POINTS = 200_000  # flush early when this many points wait, to bound memory
_FINAL_FLUSH_DEADLINE_S = 60.0
_SPOOLED_FLUSH_DEADLINE_S = 15.0
#: the longest a live run goes without a heartbeat (readers' timeout defaults to 120 s)
HEARTBEAT_S = 30.0
#: captured output stored per run from the start; of the rest, the last OUTPUT_TAIL_BYTES
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
OUTPUT_TAIL_BYTES = 1024 * 1024
_now = time.time
_now_ns = time.time_ns


def _to_float(key: object, value: object) -> float:
    if isinstance(value, (str, bytes, bytearray)) or value is None:
        raise UsageError(
            f"Metric {key!r}: expected a number, got {type(value).__name__} {value!r:.40}; "
            "log text with set_tag() or log_params()"
        )
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as e:
        raise UsageError(
            f"Metric {key!r}: a {type(value).__name__} is not a number ({e}); log a scalar, e.g. loss.item()"
        ) from None


def _check_step(step: object) -> int:
    if isinstance(step, bool):
        raise UsageError(f"step must be an integer, got bool {step!r}")
    if not isinstance(step, int):
        index = getattr(step, "__index__", None)
        if index is None:
            raise UsageError(f"step must be an integer, got {type(step).__name__} {step!r:.40}")
        step = index()
    assert isinstance(step, int)
    if not 0 <= step <= _MAX_STEP:
        raise UsageError(f"step must be between 0 and 2**63-1, got {step}")
    return step


MAX_KEY_LENGTH = 250
#: metric names runstone keeps for its own series (``runstone.fingerprint/model``)
RESERVED_PREFIX = "runstone."


def check_metric_key(key: object) -> str:
    """A metric name as given, or a UsageError saying what is wrong with it."""
    if not isinstance(key, str):
        raise UsageError(f"Metric names must be strings, got {type(key).__name__} {key!r:.40}")
    if not key or key != key.strip():
        raise UsageError(f"Metric name {key!r} is empty or starts or ends with whitespace")
    if len(key) > MAX_KEY_LENGTH:
        raise UsageError(f"Metric name {key[:40]!r}... is {len(key)} characters; at most {MAX_KEY_LENGTH}")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise UsageError(f"Metric name {key!r} contains a control character (a newline or tab?)")
    if key.startswith(RESERVED_PREFIX):
        raise UsageError(
            f"Metric name {key!r} starts with {RESERVED_PREFIX!r}, which runstone keeps for its own "
            "series (fingerprints); choose another name"
        )
    return check_text(key, f"Metric name {key!r}")


class ActiveRun:
    """A run this process is recording. Use it as a context manager.

    Created by ``runstone.init()``; not meant to be constructed directly.
    """

    def __init__(
        self,
        store: Store,
        *,
        run_id: str,
        project: str,
        name: str,
        owned: bool,
        flush_interval_s: float,
        config: Mapping[str, Any] | None = None,
        output_offset: int = 0,
        spool: Any = None,
    ) -> None:
        self._store = store
        self._spool = spool  # api.spool.Spool: batches on disk until the store has them
        self._id = run_id
        self._project = project
        self._name = name
        self._owned = owned
        self._interval = flush_interval_s
        self._config: dict[str, Any] = dict(config or {})
        self._points: list[tuple[str, int, float, int]] = []
        self._extend = self._points.extend
        self._next_step = 0
        self._keys: set[str] = set()
        self._fingerprint_keys: set[str] = set()
        self._pending_lock = threading.Lock()
        self._pending_params: list[Mapping[str, Any]] = []
        self._pending_tags: dict[str, str] = {}
        self._pending_error: str | None = None
        self._pending_records: dict[str, dict[str, Any]] = {}
        self._pending_records_if_absent: dict[str, dict[str, Any]] = {}
        self._capture_thread: threading.Thread | None = None
        #: called as the run ends, before the last flush (capture completes its records)
        self._finish_hooks: list[Callable[[], None]] = []
        self._output = bytearray()
        self._output_offset = output_offset
        self._checkpoints: Any = None  # the CheckpointWriter, made at the first save
        self._output_dropped = 0
        self._output_tail = bytearray()
        self._unsent: list[_Pending] = []
        self._flush_lock = threading.Lock()
        self._finish_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._open = True
        self._finished = False
        self._exit_status: tuple[RunStatus, str | None] | None = None
        self._warned = False
        self._final_failed = False
        self._writer = self._start_writer()
        lifecycle.register(self)

    # --- identity -----------------------------------------------------------

    @property
    def id(self) -> str:
        """The run's ID (32 hex digits; any unique prefix finds it)."""
        return self._id

    @property
    def name(self) -> str:
        return self._name

    @property
    def project(self) -> str:
        return self._project

    @property
    def config(self) -> dict[str, Any]:
        """The configuration as this process has given it so far (a copy)."""
        with self._pending_lock:
            return dict(self._config)

    @property
    def store_uri(self) -> str:
        return self._store.uri

    @property
    def is_open(self) -> bool:
        """True until the run is finished."""
        return self._open

    def __repr__(self) -> str:
        state = "open" if self._open else "finished"
        return f"<ActiveRun {self._id} {self._name!r} project={self._project!r} {state}>"

    # --- the hot path -------------------------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Record metric values at a step. Returns at once; never waits on I/O.

        Args:
            data: metric name -> number (float, int, numpy or torch scalar).
                NaN and infinities are stored as such.
            step: the step these values belong to; by default the step after
                the previous ``log`` call (starting at 0).

        Raises:
            UsageError: a value is not a number, a name is not a string, or
                the step is not a non-negative integer. Nothing of that call
                is recorded.
            StateError: the run has finished.
        """
        if not self._open:
            raise self._closed_error()
        if step is None:
            step = self._next_step
        elif type(step) is not int or step < 0 or step > _MAX_STEP:
            step = _check_step(step)
        t = _now_ns() // 1_000_000
        try:
            items = data.items()
        except AttributeError:
            raise UsageError(
                f"log() takes a mapping of metric name to value, got {type(data).__name__}"
            ) from None
        points: list[tuple[str, int, float, int]] = []
        add = points.append
        seen = self._keys
        for key, value in items:
            if type(value) is not float:
                value = _to_float(key, value)
            if key not in seen:  # a name new to this run: check it once
                seen.add(check_metric_key(key))
            add((key, step, value, t))
        self._extend(points)
        self._next_step = step + 1
        if len(self._points) > _WAKE_AT_POINTS:
            self._wake.set()

    # --- params, tags, output -----------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Merge parameters into the run's config (nested keys become dotted params).

        Raises:
            UsageError: a value cannot be stored as JSON (the message names its key).
            StateError: the run has finished.
        """
        if not self._open:
            raise self._closed_error()
        if not isinstance(params, Mapping):
            raise UsageError(f"log_params() takes a mapping, got {type(params).__name__}")
        tree = normalize(params)
        with self._pending_lock:
            merged = merge(self._config, tree)
            check_flat_keys(merged)
            self._pending_params.append(tree)
            self._config = merged

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (string labels; other values are turned into strings).

        Tags may still change after the run has finished, through ``Client``.
        """
        if not self._open:
            raise self._closed_error()
        clean = _clean_tags(tags)
        with self._pending_lock:
            self._pending_tags.update(clean)

    def set_tag(self, key: str, value: Any) -> None:
        """Set one tag."""
        self.set_tags({key: value})

    # --- artifacts ---------------------------------------------------------------

    def _artifact_context(self) -> tuple[Store, Any, Any, str]:
        """The store, object store, settings and run ID the artifact functions take."""
        from runstone.api.capture import object_store

        settings = settings_mod.for_store(settings_mod.current(), self._store.uri)
        return self._store, object_store(settings), settings, self._id

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        kind: str = "file",
        metadata: Mapping[str, Any] | None = None,
        verify: bool = False,
    ) -> Artifact:
        """Store a file or directory as an output of this run; returns its version.

        Content-addressed: identical content is stored once, a directory as a
        Merkle tree (a changed file costs one object). Digests are cached by
        path, size, mtime and inode, so logging an unchanged dataset again
        costs a stat walk; ``verify=True`` hashes everything again. The same
        ``name`` with new content is its next version (``name@v2``).

        Args:
            path: the file or directory.
            name: default: the file or directory's name.
            kind: ``file``, ``model``, ``dataset``, ``checkpoint``, ... (a short label).
            metadata: JSON-able facts to keep with it (``{"acc": 0.93}``).

        Raises:
            NotFoundError: ``path`` does not exist.
            UsageError: a bad name, kind or metadata.
            StoreError: the object store or the store cannot be written.
        """
        from runstone.api.artifacts import log_artifact

        if self._spool is not None and self._spool.waiting_artifacts:
            self._send_spooled_artifacts()  # the ones logged before it first: versions keep their order
        return log_artifact(
            *self._artifact_context(),
            path,
            name=name,
            kind=kind,
            metadata=metadata,
            verify=verify,
            spool=self._spool,  # a server away: kept in the spool, sent later
            project=self._project,
            queue=self._spool is not None and self._spool.waiting_artifacts > 0,
        )

    def use_dataset(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        kind: str = "dataset",
        metadata: Mapping[str, Any] | None = None,
        verify: bool = False,
        upload: bool = False,
    ) -> Artifact:
        """Record a file or directory as an input of this run, by content digest.

        ``path`` may also be a file's URL (``s3://bucket/data.csv``, any
        fsspec URL), hashed by streaming it. The bytes stay where they are
        unless ``upload=True`` stores them too (local paths only), so a
        reproduction can restore them. Digests of local files are cached as
        for ``log_artifact``; ``verify=True`` hashes again.

        Raises:
            NotFoundError: ``path`` does not exist.
        """
        from runstone.api.artifacts import use_dataset

        return use_dataset(
            *self._artifact_context(),
            path,
            name=name,
            kind=kind,
            metadata=metadata,
            verify=verify,
            upload=upload,
        )

    def use_artifact(
        self, ref: str, *, project: str | None = None, dest: str | os.PathLike[str] | None = None
    ) -> Path:
        """Consume an earlier run's output: returns a local path to it, fetched (and checked) if needed.

        ``ref`` is ``name`` or ``name@latest``, ``name@v3``, ``name@<digest
        prefix>`` or a digest (``sha256:...``), looked up in this run's
        project first, else in the one project that has it (``project``
        names another). Without ``dest`` the copy is kept, read-only, in
        ``.runstone/cache`` by digest and reused.

        Raises:
            NotFoundError: no such artifact or version.
            StateError: it was recorded by digest only (its bytes are not stored).
        """
        from runstone.api.artifacts import use_artifact

        _, local = use_artifact(
            *self._artifact_context(),
            ref,
            project=self._project,
            from_project=project,
            dest=None if dest is None else Path(dest),
        )
        return local

    # --- checkpoints and fingerprints -------------------------------------------------

    def save_checkpoint(
        self,
        step: int,
        *,
        model: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        scaler: Any = None,
        extra: Mapping[str, Any] | None = None,
        epoch: int | None = None,
        keep_last: int | None = None,
        keep_best: tuple[str, str, int] | None = None,
        asynchronous: bool = False,
        allow_pickle: bool = False,
    ) -> Any:
        """Store the whole training state at ``step`` as a checkpoint of this run.

        Stores the state dicts of what is given, the states of Python's,
        numpy's, PyTorch's CPU and every initialized CUDA device's global
        generators, and ``extra``: numbers, strings, lists, dicts, tensors,
        arrays, and ``torch.Generator``/``numpy.random.Generator`` objects
        (a DataLoader's or sampler's), each restored in place on load.
        Tensors go to safetensors and arrays to ``.npz``: loading them runs no
        code. Other objects are refused unless ``allow_pickle=True``.

        The checkpoint of step S holds the state after step S; a resume goes
        on at S + 1. Log the step's metrics first: their values at S are
        kept with the checkpoint (``keep_best`` ranks by them).

        Args:
            step: the step just completed.
            model, optimizer, scheduler, scaler: objects with ``state_dict()``
                (PyTorch), scikit-learn estimators, or dicts of arrays.
            extra: anything else to keep; ``load_checkpoint(extra=d)`` fills ``d``.
            epoch: the epoch, kept for display and returned on load.
            keep_last: keep only the newest N checkpoints of this run...
            keep_best: ...and/or the best K by a metric, ``("val_loss", "min", 2)``.
                The newest is always kept; removed ones are forgotten at once
                (their bytes stay until ``runstone gc``).
            asynchronous: copy the state now, write it in a background thread
                and return a ``Future``; the next save, ``wait_for_checkpoints()``
                and ``finish()`` wait for it.
            allow_pickle: pickle values with no safe stored form.

        Returns:
            The stored ``Checkpoint`` (``ref``, ``step``, ``digest``, ``size_bytes``,
            ``metrics``), or with ``asynchronous=True`` a ``Future`` of it.

        Raises:
            UsageError: a bad argument, or a value that needs ``allow_pickle``.
            StoreError: it could not be stored (a background save's error is
                raised by the next save or wait).
        """
        from runstone.api import checkpoints

        if not self._open:
            raise self._closed_error()
        step = _check_step(step)
        if epoch is not None:
            epoch = _check_step(epoch)
        last = checkpoints.check_keep_last(keep_last)
        best = checkpoints.check_keep_best(keep_best)
        parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
        snap = checkpoints.snapshot(step, epoch=epoch, parts=parts, extra=extra, allow_pickle=allow_pickle)
        snap.metrics = self._metrics_at(step)  # now: the loop goes on logging later steps
        writer = self._checkpoint_writer()
        future = writer.save(snap, keep_last=last, keep_best=best, asynchronous=asynchronous)
        return future if asynchronous else future.result()

    def wait_for_checkpoints(self, timeout: float | None = None) -> Any:
        """Wait for a background checkpoint save: its ``Checkpoint`` (or None); raises its error."""
        if self._checkpoints is None:
            return None
        return self._checkpoints.wait(timeout)

    def _checkpoint_writer(self) -> Any:
        if self._checkpoints is None:
            from runstone.api.checkpoints import CheckpointWriter

            store, objects, settings, run_id = self._artifact_context()

            def store_folder(folder: Path, name: str, metadata: dict[str, Any]) -> Artifact:
                from runstone.api.artifacts import log_artifact

                return log_artifact(
                    store, objects, settings, run_id, folder, name=name, kind="checkpoint", metadata=metadata
                )

            self._checkpoints = CheckpointWriter(
                run_id=run_id,
                store=store,
                scratch=lambda: settings.home / "tmp",
                store_folder=store_folder,
            )
        return self._checkpoints

    def _metrics_at(self, step: int) -> dict[str, float]:
        """The values of the metrics logged at ``step`` (after writing what is queued)."""
        from runstone.api.fingerprint import FINGERPRINT_PREFIX

        try:
            self._flush(heartbeat=False)
            summaries = self._store.get_run(self._id).metrics
        except StoreError as e:
            log.warning("runstone: run %s: metric values for the checkpoint unavailable: %s", self._id, e)
            return {}
        return {
            key: s.last_value
            for key, s in summaries.items()
            if s.last_step == step and not key.startswith(FINGERPRINT_PREFIX)
        }

    def checkpoints(self) -> list[Any]:
        """This run's stored checkpoints (``Checkpoint``), oldest first."""
        from runstone.api.checkpoints import list_checkpoints

        return list_checkpoints(self._store, self._id)

    @property
    def resumed(self) -> bool:
        """Whether this run was resumed (``init(resume=...)`` or ``runstone run --resume``)."""
        return "resumes" in self._store.get_records(self._id)

    def load_checkpoint(
        self,
        *,
        model: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        scaler: Any = None,
        extra: dict[str, Any] | None = None,
        step: int | None = None,
        ref: str | None = None,
        rng: bool | Any = True,
        map_location: Any = None,
        allow_pickle: bool = False,
        missing_ok: bool = False,
    ) -> int:
        """Restore a checkpoint into the given objects; returns the step to continue from.

        By default the run's newest checkpoint (``step`` picks the one of a
        step, ``ref`` any run's, e.g. ``checkpoint-<run id>@v3``). Restores
        the state dicts, the global generators (``rng=False`` or a set such
        as ``{"python", "numpy"}`` restores fewer), and fills ``extra``:
        generators and same-shaped arrays in it are set in place, other
        values replaced.

        Loading this run's own checkpoint of step S resumes it: metric points
        logged at steps above S are superseded (the resumed run logs them
        again), ``log()`` continues at S + 1, and the run's ``resumes``
        record names the checkpoint. Another run's checkpoint is recorded as
        an input and changes no metrics.

        Returns:
            S + 1 for the checkpoint of step S; with ``missing_ok`` and no
            checkpoint, 0 (a resumed run starts over: its points are superseded).

        Raises:
            NotFoundError: no such checkpoint (and not ``missing_ok``).
            UsageError: the checkpoint holds pickled values and ``allow_pickle`` is off,
                or lacks a part asked for.
        """
        from runstone.api import checkpoints

        if not self._open:
            raise self._closed_error()
        self.wait_for_checkpoints()
        store, objects, _settings, run_id = self._artifact_context()
        try:
            found = checkpoints.find_checkpoint(store, run_id, step=step, ref=ref, project=self._project)
        except NotFoundError:
            if not missing_ok or ref is not None or step is not None:
                raise
            if self.resumed:  # a resumed run with no checkpoint starts over
                self._after_restore(None, -1)
            self._next_step = 0
            return 0
        loaded, restored = checkpoints.load(
            objects,
            found,
            parts={"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler},
            extra=extra,
            rng=rng if isinstance(rng, bool) else frozenset([rng] if isinstance(rng, str) else rng),
            map_location=map_location,
            allow_pickle=allow_pickle,
        )
        if found.artifact.run_id == run_id:
            self._after_restore(found, loaded.step, restored)
        else:  # starting from another run's checkpoint: an input of this one
            from runstone.api.artifacts import record_input

            record_input(store, run_id, found.artifact, project=self._project, path=found.ref)
        self._next_step = loaded.step + 1
        return loaded.step + 1

    def _after_restore(self, found: Any, step: int, restored: list[str] | None = None) -> None:
        """Supersede the points logged after ``step`` and say in the record what was resumed from."""
        from runstone.api.checkpoints import list_checkpoints

        self.flush()
        superseded = self._store.supersede_metrics(self._id, step)
        # checkpoints saved after it belong to the abandoned continuation: forgotten too
        dropped = [
            c.ref
            for c in list_checkpoints(self._store, self._id)
            if c.step > step and self._store.delete_artifact(c.artifact, self._id)
        ]
        records = self._store.get_records(self._id).get("resumes")
        entry: dict[str, Any] = {
            "checkpoint": None if found is None else found.ref,
            "digest": None if found is None else found.digest,
            "step": None if found is None else step,
            "rng_restored": restored or [],
            "superseded_points": superseded,
            "superseded_checkpoints": dropped,
        }
        if records is None:  # a run loading its own checkpoint without a resume: say so too
            records = {"resumes": [{"time_ms": int(_now() * 1000), "previous": None}]}
        resumes = list(records["resumes"])
        resumes[-1] = {**resumes[-1], **entry}
        self._add_record("resumes", {"resumes": resumes})
        self.flush()

    def fingerprint(self, obj: Any, step: int | None = None, *, name: str = "model") -> str:
        """Record a short digest of a model's state at a step; returns it (12 hex digits).

        ``obj``: a ``torch.nn.Module``, a state dict, tensors, numpy arrays or
        a fitted scikit-learn estimator. On a GPU the bits are reduced on the
        device in a few kernels; only two integers per dtype width reach the
        host. Fingerprints form a per-step series (``Client.fingerprints``)
        so two runs can be compared step by step even where their metrics agree.

        Args:
            step: default: the step of the latest ``log`` call.
            name: which series (one per model: ``"model"``, ``"ema"``, ...).
        """
        from runstone.api.fingerprint import FINGERPRINT_PREFIX, fingerprint, fingerprint_value

        if not self._open:
            raise self._closed_error()
        key = FINGERPRINT_PREFIX + name
        if key not in self._fingerprint_keys:  # apart from _keys: log() still refuses these names
            check_metric_key(name)
            self._fingerprint_keys.add(key)
        step = max(self._next_step - 1, 0) if step is None else _check_step(step)
        digest = fingerprint(obj)
        self._extend(((key, step, fingerprint_value(digest), _now_ns() // 1_000_000),))
        return digest

    def _add_record(self, part: str, record: dict[str, Any], *, if_absent: bool = False) -> None:
        """A part of the run's record (code, environment, system, seeds).

        It replaces an earlier one, or with ``if_absent`` is kept only where the
        run has none. Text no store can hold (undecodable file names, NUL
        characters) is escaped here, so a record can never block the writes
        queued behind it.
        """
        clean = _storable(record)
        with self._pending_lock:
            (self._pending_records_if_absent if if_absent else self._pending_records)[part] = clean

    def _add_output(self, data: bytes) -> None:
        """Captured stdout/stderr of the run (used by the command wrapper).

        Past MAX_OUTPUT_BYTES only the last OUTPUT_TAIL_BYTES are kept (where
        a traceback would be); they are stored when the run finishes.
        """
        with self._pending_lock:
            room = MAX_OUTPUT_BYTES - self._output_offset - len(self._output)
            if room > 0:
                self._output += data[:room]
                data = data[room:]
            if data:
                self._output_dropped += len(data)
                self._output_tail += data
                del self._output_tail[:-OUTPUT_TAIL_BYTES]

    def _close_output(self) -> None:
        with self._pending_lock:
            if self._output_dropped:
                skipped = self._output_dropped - len(self._output_tail)
                self._output += (
                    f"\n[runstone: {skipped:,} bytes of output not stored; the last "
                    f"{len(self._output_tail):,} bytes follow]\n"
                ).encode()
                self._output += self._output_tail
                self._output_tail.clear()
                self._output_dropped = 0

    # --- writing ------------------------------------------------------------

    def _drain(self) -> Batch | None:
        points = self._points
        n = len(points)
        taken = points[:n]
        del points[:n]  # appends racing with us land after index n: untouched
        with self._pending_lock:
            params_list, self._pending_params = self._pending_params, []
            tags, self._pending_tags = self._pending_tags, {}
            error, self._pending_error = self._pending_error, None
            records, self._pending_records = self._pending_records, {}
            if_absent, self._pending_records_if_absent = self._pending_records_if_absent, {}
            output = bytes(self._output)
            self._output.clear()
            offset = self._output_offset
            self._output_offset += len(output)
        params: dict[str, Any] = {}
        for tree in params_list:
            params = merge(params, tree)
        batch = Batch(
            batch_id=uuid.uuid4().hex,
            run_id=self._id,
            metrics=_columns(taken) if taken else (),
            params=params,
            tags=tags,
            output=(OutputChunk(offset, output),) if output else (),
            heartbeat_ms=int(_now() * 1000),
            error=error,
            records=records,
            records_if_absent=if_absent,
        )
        return None if batch.is_empty else batch

    def _flush(self, *, heartbeat: bool) -> None:
        """Apply everything waiting; raises the store's error if it fails."""
        with self._flush_lock:
            with lifecycle.signals_deferred():  # no Ctrl-C between draining and keeping
                batch = self._drain()
                if batch is not None:
                    # Kept until applied: an interrupted flush is retried, and
                    # applying the same batch twice changes nothing.
                    self._unsent.append(self._keep(batch))
            if not self._unsent:
                if heartbeat:
                    self._store.heartbeat(self._id, int(_now() * 1000))
                return
            while self._unsent:
                pending = self._unsent[0]
                try:
                    batch = pending.load()
                except (OSError, ValueError) as e:  # its spool file is gone or broken: nothing to send
                    self._unsent.pop(0)
                    log.warning("runstone: dropped %d points for run %s: %s", pending.points, self._id, e)
                    continue
                try:
                    self._store.apply_batch(batch)
                except (StateError, NotFoundError) as e:
                    # Retrying cannot help: the run ended or vanished.
                    self._unsent.pop(0)
                    pending.forget()
                    log.warning("runstone: dropped %d points for run %s: %s", pending.points, self._id, e)
                    continue
                except BaseException:
                    for waiting in self._unsent:  # on disk: memory holds only what is not
                        waiting.spill()
                    raise
                self._unsent.pop(0)
                pending.forget()
            if self._warned:
                self._warned = False
                log.warning("runstone: writing to %s works again; nothing was lost", self._store.uri)

    def _keep(self, batch: Batch) -> _Pending:
        path = None
        if self._spool is not None:
            try:
                path = self._spool.add(batch)
            except OSError as e:  # a full disk: the batch is still held in memory
                log.warning(
                    "runstone: run %s: cannot write its spool (%s); keeping it in memory", self._id, e
                )
        return _Pending(batch, path, batch.point_count)

    def flush(self) -> None:
        """Make everything logged so far durable now (normally the writer does this).

        Raises:
            StoreError: the store could not be written; the data stays queued.
        """
        self._flush(heartbeat=False)

    def _start_writer(self) -> threading.Thread:
        thread = threading.Thread(
            target=self._writer_loop, name=f"runstone-writer-{self._id[:8]}", daemon=True
        )
        thread.start()
        return thread

    def _writer_loop(self) -> None:
        # Beat at least every HEARTBEAT_S even with a long flush interval, so
        # readers never take a live run for a crashed one.
        beat_s = min(self._interval, HEARTBEAT_S)
        last_flush = time.monotonic()
        while True:
            woken = self._wake.wait(beat_s)
            self._wake.clear()
            if self._stopping:
                break
            try:
                now = time.monotonic()
                if woken or now - last_flush >= self._interval - 0.001:
                    last_flush = now
                    self._flush(heartbeat=True)
                else:
                    self._store.heartbeat(self._id, int(_now() * 1000))
            except Exception as e:  # keep the thread alive: the data stays queued
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "runstone: could not write run %s to %s (%s); retrying every %.1f s, %s",
                        self._id,
                        self._store.uri,
                        e,
                        self._interval,
                        f"kept on disk meanwhile ({self._spool.path}): nothing is lost even if this "
                        "process dies"
                        if self._spool is not None
                        else "nothing is lost while this process lives",
                    )

    # --- ending -------------------------------------------------------------

    def _closed_error(self) -> StateError:
        return StateError(f"Run {self._id} ({self._name}) has finished; start a new one with runstone.init()")

    def _set_exit_status(self, status: RunStatus, error: str | None) -> None:
        if self._exit_status is None:
            self._exit_status = (status, error)

    def _finish_at_exit(self) -> None:
        status, error = self._exit_status or (RunStatus.FINISHED, None)
        try:
            self.finish(status, error=error)
        except Exception as e:  # at exit there is no caller left to raise to
            log.error("runstone: could not finish run %s: %s", self._id, e)

    def finish(
        self,
        status: RunStatus | str = RunStatus.FINISHED,
        *,
        exit_code: int | None = None,
        error: str | None = None,
    ) -> None:
        """End the run: flush everything, then record its final status.

        Calling it again does nothing. A run joined from a wrapped command
        (``runstone run``) is only flushed: the wrapper records how it ended.

        Raises:
            UsageError: ``status`` is not a final status.
            StoreError: the data could not be written within a minute of
                retries (the message says how many points are affected).
        """
        try:
            status = RunStatus(status)
        except ValueError:
            raise UsageError(
                f"Unknown run status {status!r}; finish() takes finished, failed, killed or crashed"
            ) from None
        if status is RunStatus.RUNNING:
            raise UsageError("finish() needs a final status: finished, failed, killed or crashed")
        with self._finish_lock:
            if self._finished:
                return
            self._open = False
            self._stopping = True
            self._wake.set()
            capture = self._capture_thread
            if capture is not None and capture is not threading.current_thread():
                capture.join(timeout=30.0)  # the environment record belongs to the run
            for hook in self._finish_hooks:
                try:
                    hook()
                except Exception as e:  # capture never fails the run
                    log.warning("runstone: run %s: %s: %s", self._id, type(e).__name__, e)
            self._wait_for_checkpoints_at_end()
            if self._writer is not threading.current_thread():
                self._writer.join(timeout=max(10.0, 5 * self._interval))
            self._close_output()
            if error and not self._owned:
                # A joined process tells the owner what went wrong; the owner records the status.
                with self._pending_lock:
                    self._pending_error = error
            # If this raises (or a signal interrupts it), the run stays registered
            # and the exit hook tries again; queued batches are kept until applied.
            end_ms = int(_now() * 1000)
            self._send_spooled_artifacts()
            try:
                self._final_flush()
                if self._spool is not None and self._spool.waiting_artifacts:
                    # they must reach the server before the run ends and its manifest is sealed
                    raise StoreError(f"{self._spool.waiting_artifacts} artifacts could not be sent yet")
                if self._owned:
                    self._store.finish_run(
                        self._id, status=status, end_time_ms=end_ms, exit_code=exit_code, error=error
                    )
            except StoreError as e:
                if not self._spool_ending(e, status, end_ms, exit_code, error):
                    raise
            else:
                if self._owned and status is not RunStatus.CRASHED:  # a crashed run may still be resumed
                    self._seal()
            self._finished = True
            lifecycle.unregister(self)
            if self._spool is not None:
                self._spool.close()
            self._store.close()

    def _send_spooled_artifacts(self) -> None:
        """Artifacts kept in the spool while the server was away go now, if it is back (before the
        run ends, so its manifest holds them); else they wait there with the rest."""
        if self._spool is None or not self._spool.waiting_artifacts:
            return
        from runstone.api.spool import send_artifacts

        try:
            done = send_artifacts(self._spool, self._store, self._artifact_context()[1])
        except Exception as e:  # they stay in the spool
            log.warning("runstone: run %s: spooled artifacts wait for the server: %s", self._id, e)
            return
        if done.artifacts:
            log.warning(
                "runstone: run %s: sent %d artifacts kept while the server was away", self._id, done.artifacts
            )

    def _spool_ending(
        self, error: StoreError, status: RunStatus, end_ms: int, exit_code: int | None, message: str | None
    ) -> bool:
        """The store is away at the end: keep the run's ending in its spool with its unsent batches."""
        if self._spool is None or any(p.path is None for p in self._unsent):
            return False
        try:
            if self._owned:
                self._spool.add(
                    {
                        "run_id": self._id,
                        "status": status.value,
                        "end_time_ms": end_ms,
                        "exit_code": exit_code,
                        "error": message,
                    }
                )
        except OSError:
            return False
        points = sum(p.points for p in self._unsent)
        log.warning(
            "runstone: run %s could not be ended on %s (%s); its last %d points%s are kept in %s and sent "
            "when a run next starts here, or by runstone sync",
            self._id,
            self._store.uri,
            error,
            points,
            " and its ending" if self._owned else "",
            self._spool.path,
        )
        return True

    def _wait_for_checkpoints_at_end(self) -> None:
        try:
            self.wait_for_checkpoints()
        except Exception as e:  # the run still ends; its last checkpoint is missing
            log.error("runstone: run %s: the last checkpoint could not be stored: %s", self._id, e)

    def _seal(self) -> None:
        """Keep the ended run's manifest; a failure is a warning (the run itself has ended)."""
        from runstone.api.manifest import seal

        try:
            seal(self._store, self._id)
        except Exception as e:
            log.warning(
                "runstone: run %s: its manifest could not be written: %s: %s", self._id, type(e).__name__, e
            )

    def _final_flush(self) -> None:
        # One long wait for a busy store; a second attempt (at exit) tries briefly.
        patience = 2.0 if self._final_failed else _FINAL_FLUSH_DEADLINE_S
        if self._spool is not None:  # what is not sent waits on disk: a shorter wait will do
            patience = min(patience, _SPOOLED_FLUSH_DEADLINE_S)
        deadline = time.monotonic() + patience
        delay = 0.1
        while True:
            try:
                self._flush(heartbeat=False)
                return
            except StoreError as e:
                if time.monotonic() + delay > deadline:
                    self._final_failed = True
                    points = sum(p.points for p in self._unsent)
                    raise StoreError(
                        f"Run {self._id}: {points} metric points and other pending writes could "
                        f"not be stored in {self._store.uri}: {e}"
                    ) from e
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _flush_at_worker_exit(self) -> None:
        import multiprocessing.util

        multiprocessing.util.Finalize(self, ActiveRun._flush_quietly, args=(self,), exitpriority=100)

    def _flush_quietly(self) -> None:
        try:
            self._flush(heartbeat=False)
        except Exception as e:  # at a worker's exit there is no caller to raise to
            log.error("runstone: could not flush run %s: %s", self._id, e)

    def _after_fork(self) -> None:
        """In a forked child: the parent flushes what was buffered before the fork."""
        del self._points[:]
        self._pending_params, self._pending_tags = [], {}
        self._output = bytearray()
        self._unsent = []
        self._spool = None  # the parent's: a child sends its own writes directly
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._finish_lock = threading.Lock()
        self._wake = threading.Event()
        self._owned = False
        self._checkpoints = None
        if self._open:
            self._writer = self._start_writer()
            mp_util = sys.modules.get("multiprocessing.util")
            if mp_util is not None:
                # multiprocessing workers leave through os._exit, skipping atexit; their
                # finalizers still run. A worker clears finalizers as it starts, then runs
                # its after-fork callbacks: register the flush from one of those.
                mp_util.register_after_fork(self, ActiveRun._flush_at_worker_exit)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish(RunStatus.FINISHED)
        elif issubclass(exc_type, (KeyboardInterrupt, lifecycle.Terminated)):
            self.finish(RunStatus.KILLED, error=_describe(exc_type, exc))
        elif issubclass(exc_type, SystemExit):
            code = exc.code if isinstance(exc, SystemExit) else None
            if code in (None, 0):
                self.finish(RunStatus.FINISHED, exit_code=0)
            else:
                self.finish(
                    RunStatus.FAILED,
                    exit_code=code if isinstance(code, int) else 1,
                    error=_describe(exc_type, exc),
                )
        else:
            self.finish(RunStatus.FAILED, error=_describe(exc_type, exc))


class _Pending:
    """A batch not yet applied: in memory, on disk in the run's spool, or both."""

    __slots__ = ("batch", "path", "points")

    def __init__(self, batch: Batch, path: Path | None, points: int) -> None:
        self.batch: Batch | None = batch
        self.path = path
        self.points = points

    def load(self) -> Batch:
        if self.batch is not None:
            return self.batch
        from runstone.api.spool import Spool

        assert self.path is not None
        return Spool.load(self.path)

    def spill(self) -> None:
        if self.path is not None:
            self.batch = None

    def forget(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


_STEP, _VALUE, _STAMP = itemgetter(1), itemgetter(2), itemgetter(3)


def _series(key: str, points: list[tuple[str, int, float, int]]) -> MetricSeries:
    return MetricSeries(
        key,
        array("q", map(_STEP, points)),
        array("d", map(_VALUE, points)),
        array("q", map(_STAMP, points)),
    )


def _columns(points: list[tuple[str, int, float, int]]) -> tuple[MetricSeries, ...]:
    """Points as one columnar series per key, in logged order.

    Slicing and ``map(itemgetter)`` run as C loops; the per-point Python loop
    is only needed when calls log different sets of keys.
    """
    keys = list(map(itemgetter(0), points))
    width = len(set(keys))
    if len(keys) % width == 0 and all(len(set(keys[j::width])) == 1 for j in range(width)):
        # Every call logged the same keys in the same order (the usual case).
        if width == 1:
            return (_series(keys[0], points),)
        return tuple(_series(keys[j], points[j::width]) for j in range(width))
    groups: dict[str, list[tuple[str, int, float, int]]] = {}
    for point in points:
        group = groups.get(point[0])
        if group is None:
            group = groups[point[0]] = []
        group.append(point)
    return tuple(_series(key, group) for key, group in groups.items())


def _storable(value: Any) -> Any:
    """``value`` with every string made valid, NUL-free UTF-8 (escaped, not dropped)."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\\x00")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, Mapping):
        return {str(_storable(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _storable(str(value))


def _describe(exc_type: type[BaseException], exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else ""
    return f"{exc_type.__name__}: {text}" if text else exc_type.__name__


def _clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(tags, Mapping):
        raise UsageError(f"tags must be a mapping of name to value, got {type(tags).__name__}")
    clean = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key:
            raise UsageError(f"Tag names must be non-empty strings, got {key!r}")
        check_text(key, f"Tag name {key!r}")
        if not isinstance(value, str):
            # numbers, bools, None, lists: their JSON text (True -> "true", None -> "null")
            value = canonical_json(normalize(value, f"tags.{key}"))
        check_text(value, f"The value of tag {key!r}")
        clean[key] = value
    return clean
