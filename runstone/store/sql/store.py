"""The SQL store: one implementation for SQLite and PostgreSQL.

Layer 4. Every statement is written once; the dialect object fills in the
few differences. Connections are per thread (and re-opened after a fork);
write transactions take the write lock up front and are retried when the
database reports a transient lock or serialization failure. Over 1,000
lines: it is the one place SQL is written, and splitting it would split the
transactions it holds together.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import struct
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from runstone._json import canonical_json, digest, flatten, merge, normalize, param_columns
from runstone.artifacts.base import DIGEST
from runstone.entities import (
    Artifact,
    ArtifactSpec,
    ArtifactUse,
    Batch,
    MetricHistory,
    MetricSeries,
    MetricSummary,
    Run,
    RunSpec,
    RunStatus,
)
from runstone.errors import NotFoundError, RunstoneError, StateError, UsageError
from runstone.store.base import LiveRun, RunQuery, Store
from runstone.store.sql.compile import compile_filter, compile_order
from runstone.store.sql.dialect import Dialect
from runstone.store.sql.schema import migrate

__all__ = ["SqlStore"]

T = TypeVar("T")

_ARTIFACT_COLUMNS = (
    "a.project, a.name, a.version, a.kind, a.digest, a.size_bytes, a.file_count, a.is_dir, a.stored, "
    "a.metadata_json, a.created_ms, r.id"
)

_RUN_COLUMNS = (
    "runs.pk, runs.id, runs.project, runs.name, runs.status, runs.start_time_ms, "
    "runs.end_time_ms, runs.heartbeat_ms, runs.exit_code, runs.error, runs.command_json, "
    "runs.cwd, runs.host, runs.username, runs.pid, runs.runstone_version, runs.config_json, "
    "runs.config_digest, runs.output_bytes"
)
_ENDED = (RunStatus.FINISHED.value, RunStatus.FAILED.value, RunStatus.KILLED.value)
_CHUNK_POINTS = 65536  # points per stored chunk: bounded blobs, cheap partial reads later
_IN_BATCH = 500
_BIG_ENDIAN = sys.byteorder == "big"
_RETRIES = 8


def _le_bytes(values: array[Any]) -> bytes:
    if _BIG_ENDIAN:  # stored little-endian everywhere
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _from_le(typecode: str, raw: Any) -> array[Any]:
    values = array(typecode, bytes(raw))
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def _increasing(steps: array[int]) -> bool:
    """Whether steps strictly increase (consecutive steps, the usual case, are checked in C)."""
    first, count = steps[0], len(steps)
    if steps[-1] - first == count - 1 and steps == array("q", range(first, first + count)):
        return True
    return all(a < b for a, b in itertools.pairwise(steps))


def _summary(series: MetricSeries) -> tuple[int, float | None, int, float | None, float | None]:
    """(last step, last value, its time, min, max) of one batch's points for a key."""
    steps, values = series.steps, series.values
    top = max(steps)
    # the last-logged point of the highest step
    last = len(steps) - 1 if steps[-1] == top else len(steps) - 1 - steps[::-1].index(top)
    # NaN != NaN, so an array equals itself only when it holds no NaN (a C loop)
    has_nan = values != values  # noqa: PLR0124
    finite = [v for v in values if not math.isnan(v)] if has_nan else values
    last_value = values[last]
    return (
        top,
        None if math.isnan(last_value) else last_value,
        series.timestamps_ms[last],
        min(finite) if finite else None,
        max(finite) if finite else None,
    )


def _decode(rows: Sequence[Sequence[Any]]) -> tuple[Any, Any, Any]:
    """Chunks (n, min_step, steps, vals, stamps) in write order -> numpy arrays by step.

    When a step was written more than once, the last-written point wins.
    """
    import numpy as np

    steps = np.concatenate(
        [
            np.arange(first, first + n, dtype=np.int64) if raw is None else np.frombuffer(raw, dtype="<i8")
            for n, first, raw, _, _ in rows
        ]
    ).astype(np.int64, copy=False)
    values = np.concatenate([np.frombuffer(r[3], dtype="<f8") for r in rows]).astype(np.float64, copy=False)
    stamps = np.concatenate([np.frombuffer(r[4], dtype="<i8") for r in rows]).astype(np.int64, copy=False)
    if len(steps) > 1 and not bool(np.all(steps[1:] > steps[:-1])):
        order = np.argsort(steps, kind="stable")
        sorted_steps = steps[order]
        keep = np.append(sorted_steps[1:] != sorted_steps[:-1], True)
        index = order[keep]
        steps, values, stamps = steps[index], values[index], stamps[index]
    return steps, values, stamps


def _array(code: str, blob: Any) -> array[Any]:
    """A stored little-endian blob as an ``array``."""
    out = array(code)
    out.frombytes(bytes(blob))
    if sys.byteorder != "little":
        out.byteswap()
    return out


_INSERT_CHUNK = (
    "INSERT INTO metric_chunks (run_pk, key, n, min_step, max_step, steps, vals, stamps) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: a batch's summary of a key merged into the stored one (the batch's steps all come after it)
_UPSERT_SUMMARY = (
    "INSERT INTO metric_summary (run_pk, key, last_step, last_value, last_timestamp_ms, "
    "min_value, max_value, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_pk, key) DO UPDATE SET "
    "last_value = CASE WHEN excluded.last_step >= metric_summary.last_step "
    "THEN excluded.last_value ELSE metric_summary.last_value END, "
    "last_timestamp_ms = CASE WHEN excluded.last_step >= metric_summary.last_step "
    "THEN excluded.last_timestamp_ms ELSE metric_summary.last_timestamp_ms END, "
    "last_step = CASE WHEN excluded.last_step >= metric_summary.last_step "
    "THEN excluded.last_step ELSE metric_summary.last_step END, "
    "min_value = CASE WHEN excluded.min_value IS NULL THEN metric_summary.min_value "
    "WHEN metric_summary.min_value IS NULL OR excluded.min_value < metric_summary.min_value "
    "THEN excluded.min_value ELSE metric_summary.min_value END, "
    "max_value = CASE WHEN excluded.max_value IS NULL THEN metric_summary.max_value "
    "WHEN metric_summary.max_value IS NULL OR excluded.max_value > metric_summary.max_value "
    "THEN excluded.max_value ELSE metric_summary.max_value END, "
    "count = metric_summary.count + excluded.count"
)
_CHUNK_COLUMNS = (
    "SELECT n, min_step, steps, vals, stamps FROM metric_chunks WHERE run_pk = ? AND key = ? ORDER BY pk"
)


class SqlStore(Store):
    """A store in a SQL database (see the module docstring)."""

    def __init__(self, dialect: Dialect, *, upgrade: bool = True) -> None:
        self.dialect = dialect
        self.uri = dialect.uri
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._pid = os.getpid()
        self._closed = False
        try:
            #: the schema version the store had when opened (0: made now)
            self.found_version = migrate(self._conn(), dialect, upgrade=upgrade)
        except BaseException:
            self.close()
            raise

    # --- plumbing -----------------------------------------------------------

    def _conn(self) -> Any:
        if os.getpid() != self._pid:
            # A forked child must never share its parent's connections.
            self._local = threading.local()
            self._connections = []
            self._lock = threading.Lock()
            self._pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StateError(f"The store {self.uri} was closed; open it again")
            conn = self.dialect.connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _sql(self, text: str) -> str:
        return self.dialect.sql(text)

    def _drop_connection(self, conn: Any) -> None:
        """Forget this thread's broken connection; the next use opens a new one."""
        with contextlib.suppress(Exception):
            conn.close()
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def _write(self, doing: str, body: Callable[[Any], T]) -> T:
        delay = 0.01
        for attempt in range(_RETRIES):
            conn = self._conn()
            try:
                with self.dialect.write_transaction(conn) as cur:
                    return body(cur)
            except RunstoneError:
                raise
            except Exception as e:
                last = attempt == _RETRIES - 1
                if self.dialect.is_disconnect(e, conn):
                    self._drop_connection(conn)
                    if not last:
                        time.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                if self.dialect.is_transient(e) and not last:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                raise self.dialect.wrap(e, doing) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, doing: str, body: Callable[[Any], T]) -> T:
        for attempt in range(2):
            conn = self._conn()
            try:
                cur = conn.cursor()
                try:
                    return body(cur)
                finally:
                    cur.close()
            except RunstoneError:
                raise
            except Exception as e:
                if self.dialect.is_disconnect(e, conn) and attempt == 0:
                    self._drop_connection(conn)
                    continue
                raise self.dialect.wrap(e, doing) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_row(self, cur: Any, run_id: str, lock: bool = False) -> tuple[Any, ...]:
        suffix = self.dialect.for_update if lock else ""
        cur.execute(self._sql(f"SELECT pk, status, config_json FROM runs WHERE id = ?{suffix}"), (run_id,))
        row = cur.fetchone()
        if row is None:
            raise NotFoundError(f"No run with ID {run_id} in {self.uri}")
        return tuple(row)

    # --- writes -------------------------------------------------------------

    def create_run(self, spec: RunSpec) -> None:
        empty = normalize({})

        def body(cur: Any) -> None:
            cur.execute(
                self._sql(
                    "INSERT INTO runs (id, project, name, status, start_time_ms, end_time_ms, "
                    "heartbeat_ms, exit_code, error, command_json, cwd, host, username, pid, "
                    "runstone_version, config_json, config_digest, output_bytes) "
                    "VALUES (?, ?, ?, ?, ?, NULL, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, ?, ?, 0) "
                    "ON CONFLICT (id) DO NOTHING"
                ),
                (
                    spec.id,
                    spec.project,
                    spec.name,
                    RunStatus.RUNNING.value,
                    spec.start_time_ms,
                    spec.start_time_ms,
                    json.dumps(list(spec.command)),
                    spec.cwd,
                    spec.host,
                    spec.user,
                    spec.pid,
                    spec.runstone_version,
                    canonical_json(empty),
                    digest(empty),
                ),
            )

        self._write(f"creating run {spec.id}", body)

    def apply_batch(self, batch: Batch) -> bool:
        def body(cur: Any) -> bool:
            pk, status, config_json = self._run_row(cur, batch.run_id, lock=True)
            cur.execute(
                self._sql(
                    "INSERT INTO batches (batch_id, run_pk, applied_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (batch_id) DO NOTHING"
                ),
                (batch.batch_id, pk, int(time.time() * 1000)),
            )
            if cur.rowcount == 0:
                return False
            if status in _ENDED and (
                batch.metrics or batch.params or batch.output or batch.records or batch.records_if_absent
            ):
                raise StateError(f"Run {batch.run_id} has ended ({status}); only its tags can change")
            if batch.metrics:
                self._write_metrics(cur, pk, batch.metrics)
            if batch.params:
                self._merge_params(cur, pk, json.loads(config_json), batch.params)
            for key, value in batch.tags.items():
                cur.execute(
                    self._sql(
                        "INSERT INTO tags (run_pk, key, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (run_pk, key) DO UPDATE SET value = excluded.value"
                    ),
                    (pk, key, value),
                )
            if batch.output:
                end = 0
                for chunk in batch.output:
                    cur.execute(
                        self._sql(
                            "INSERT INTO output_chunks (run_pk, byte_offset, data) VALUES (?, ?, ?) "
                            "ON CONFLICT (run_pk, byte_offset) DO NOTHING"
                        ),
                        (pk, chunk.offset, chunk.data),
                    )
                    end = max(end, chunk.offset + len(chunk.data))
                cur.execute(
                    self._sql(
                        "UPDATE runs SET output_bytes = CASE WHEN output_bytes < ? THEN ? "
                        "ELSE output_bytes END WHERE pk = ?"
                    ),
                    (end, end, pk),
                )
            for records, on_conflict in (
                (batch.records_if_absent, "DO NOTHING"),
                (batch.records, "DO UPDATE SET record_json = excluded.record_json"),
            ):
                for part, record in records.items():
                    cur.execute(
                        self._sql(
                            "INSERT INTO run_records (run_pk, part, record_json) VALUES (?, ?, ?) "
                            f"ON CONFLICT (run_pk, part) {on_conflict}"
                        ),
                        (pk, part, canonical_json(normalize(record, part))),
                    )
            if batch.error:
                cur.execute(self._sql("UPDATE runs SET error = ? WHERE pk = ?"), (batch.error, pk))
            if batch.heartbeat_ms is not None and status not in _ENDED:
                self._beat(cur, pk, batch.heartbeat_ms)
            return True

        return self._write(f"writing to run {batch.run_id}", body)

    def _write_metrics(self, cur: Any, pk: int, metrics: Sequence[MetricSeries]) -> None:
        """A batch's series in a few statements, whatever its number of keys: one read of the keys'
        last steps, one insert of every chunk, one upsert of every summary."""
        live = [series for series in metrics if len(series)]
        keys = [series.key for series in live]
        if len(set(keys)) != len(keys):  # a key twice in one batch: in order, one at a time
            for series in live:
                self._write_metrics(cur, pk, [series])
            return
        stored: dict[str, int] = {}
        for part in _chunks(keys, 500):
            marks = ", ".join("?" * len(part))
            cur.execute(
                self._sql(f"SELECT key, last_step FROM metric_summary WHERE run_pk = ? AND key IN ({marks})"),
                (pk, *part),
            )
            stored.update((str(key), int(step)) for key, step in cur.fetchall())
        chunks: list[tuple[Any, ...]] = []
        summaries: list[tuple[Any, ...]] = []
        recompute: list[str] = []
        for series in live:
            last = stored.get(series.key)
            # Steps at or below ones already stored (or repeated within the batch) replace
            # points: then the summary is recomputed from the stored series.
            if (last is not None and min(series.steps) <= last) or not _increasing(series.steps):
                recompute.append(series.key)
            else:
                summaries.append((pk, series.key, *_summary(series), len(series)))
            for start in range(0, len(series), _CHUNK_POINTS):
                steps = series.steps[start : start + _CHUNK_POINTS]
                first, count = steps[0], len(steps)
                consecutive = steps[-1] - first == count - 1 and steps == array(
                    "q", range(first, first + count)
                )
                chunks.append(
                    (
                        pk,
                        series.key,
                        count,
                        min(steps),
                        max(steps),
                        None if consecutive else _le_bytes(steps),
                        _le_bytes(series.values[start : start + _CHUNK_POINTS]),
                        _le_bytes(series.timestamps_ms[start : start + _CHUNK_POINTS]),
                    )
                )
        if chunks:
            cur.executemany(self._sql(_INSERT_CHUNK), chunks)
        if summaries:
            cur.executemany(self._sql(_UPSERT_SUMMARY), summaries)
        for key in recompute:
            self._recompute_summary(cur, pk, key)

    def _recompute_summary(self, cur: Any, pk: int, key: str) -> None:
        import numpy as np

        cur.execute(self._sql(_CHUNK_COLUMNS), (pk, key))
        steps, values, stamps = _decode([tuple(r) for r in cur.fetchall()])
        finite = values[~np.isnan(values)]
        last = float(values[-1])
        cur.execute(self._sql("DELETE FROM metric_summary WHERE run_pk = ? AND key = ?"), (pk, key))
        cur.execute(
            self._sql(
                "INSERT INTO metric_summary (run_pk, key, last_step, last_value, last_timestamp_ms, "
                "min_value, max_value, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                pk,
                key,
                int(steps[-1]),
                None if math.isnan(last) else last,
                int(stamps[-1]),
                float(finite.min()) if len(finite) else None,
                float(finite.max()) if len(finite) else None,
                len(steps),
            ),
        )

    def _merge_params(self, cur: Any, pk: int, config: Any, update: Any) -> None:
        merged = merge(config, normalize(update))
        cur.execute(self._sql("DELETE FROM params WHERE run_pk = ?"), (pk,))
        # dict(): keys that flatten alike ("a.b" and a -> b) keep one row, the API refuses them first
        rows = [(pk, key, *param_columns(value)) for key, value in dict(flatten(merged)).items()]
        if rows:
            cur.executemany(
                self._sql(
                    "INSERT INTO params (run_pk, key, value_json, value_num, value_text) "
                    "VALUES (?, ?, ?, ?, ?)"
                ),
                rows,
            )
        cur.execute(
            self._sql("UPDATE runs SET config_json = ?, config_digest = ? WHERE pk = ?"),
            (canonical_json(merged), digest(merged), pk),
        )

    def _beat(self, cur: Any, pk: int, time_ms: int) -> None:
        cur.execute(
            self._sql(
                "UPDATE runs SET heartbeat_ms = ?, status = ?, end_time_ms = NULL "
                "WHERE pk = ? AND status IN (?, ?)"
            ),
            (time_ms, RunStatus.RUNNING.value, pk, RunStatus.RUNNING.value, RunStatus.CRASHED.value),
        )

    def heartbeat(self, run_id: str, time_ms: int) -> None:
        def body(cur: Any) -> None:
            pk, _, _ = self._run_row(cur, run_id)
            self._beat(cur, pk, time_ms)

        self._write(f"recording a heartbeat of run {run_id}", body)

    def finish_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        end_time_ms: int,
        exit_code: int | None = None,
        error: str | None = None,
    ) -> None:
        def body(cur: Any) -> None:
            pk, current, _ = self._run_row(cur, run_id, lock=True)
            if current in _ENDED:
                if current == status.value:
                    return  # a retried finish
                raise StateError(f"Run {run_id} already ended as {current}; it cannot become {status.value}")
            cur.execute(
                self._sql(
                    "UPDATE runs SET status = ?, end_time_ms = ?, exit_code = ?, "
                    "error = COALESCE(error, ?) WHERE pk = ?"
                ),
                (status.value, end_time_ms, exit_code, error, pk),
            )

        self._write(f"finishing run {run_id}", body)

    def metric_digests(self, run_id: str) -> dict[str, dict[str, Any]]:
        def body(cur: Any) -> dict[str, dict[str, Any]]:
            pk, _, _ = self._run_row(cur, run_id)
            cur.execute(
                self._sql(
                    "SELECT key, n, min_step, steps, vals, stamps FROM metric_chunks WHERE run_pk = ? "
                    "ORDER BY key, pk"
                ),
                (pk,),
            )
            out: dict[str, dict[str, Any]] = {}
            hashes: dict[str, Any] = {}
            for key, n, min_step, steps, vals, stamps in cur.fetchall():
                sha = hashes.setdefault(key, hashlib.sha256())
                sha.update(struct.pack("<qq", int(n), int(min_step)))
                for blob in (steps, vals, stamps):
                    data = b"" if blob is None else bytes(blob)
                    sha.update(struct.pack("<q", len(data)))
                    sha.update(data)
                entry = out.setdefault(key, {"count": 0})
                entry["count"] += int(n)
            for key, sha in hashes.items():
                out[key]["digest"] = "sha256:" + sha.hexdigest()
            return out

        return self._read(f"digesting the metrics of run {run_id}", body)

    def metric_chunks(self, run_id: str) -> list[MetricSeries]:
        def body(cur: Any) -> list[tuple[Any, ...]]:
            pk, _, _ = self._run_row(cur, run_id)
            cur.execute(
                self._sql(
                    "SELECT key, n, min_step, steps, vals, stamps FROM metric_chunks "
                    "WHERE run_pk = ? ORDER BY pk"
                ),
                (pk,),
            )
            return [tuple(r) for r in cur.fetchall()]

        out = []
        for key, n, first, steps, vals, stamps in self._read(
            f"reading the metric chunks of run {run_id}", body
        ):
            out.append(
                MetricSeries(
                    key,
                    array("q", range(int(first), int(first) + int(n)))
                    if steps is None
                    else _array("q", steps),
                    _array("d", vals),
                    _array("q", stamps),
                )
            )
        return out

    def seal_run(self, run_id: str, manifest: dict[str, Any]) -> bool:
        text = canonical_json(normalize(manifest, "manifest"))

        def body(cur: Any) -> bool:
            pk, status, _ = self._run_row(cur, run_id, lock=True)
            if status not in _ENDED:
                raise StateError(f"Run {run_id} is still {status}; a manifest is kept when it ends")
            cur.execute(
                self._sql(
                    "INSERT INTO run_records (run_pk, part, record_json) VALUES (?, 'manifest', ?) "
                    "ON CONFLICT (run_pk, part) DO NOTHING"
                ),
                (pk, text),
            )
            return bool(cur.rowcount)

        return self._write(f"sealing run {run_id}", body)

    def mark_crashed(self, run_id: str, *, end_time_ms: int) -> bool:
        def body(cur: Any) -> bool:
            cur.execute(
                self._sql("UPDATE runs SET status = ?, end_time_ms = ? WHERE id = ? AND status = ?"),
                (RunStatus.CRASHED.value, end_time_ms, run_id, RunStatus.RUNNING.value),
            )
            return bool(cur.rowcount)

        return self._write(f"marking run {run_id} crashed", body)

    def reopen_run(self, run_id: str, *, time_ms: int, host: str, pid: int, entry: dict[str, Any]) -> Run:
        def body(cur: Any) -> Run:
            pk, status, _ = self._run_row(cur, run_id, lock=True)
            if status == RunStatus.RUNNING.value:
                raise StateError(
                    f"Run {run_id} is still running; a run is resumed after its process has ended"
                )
            cur.execute(self._sql(f"SELECT {_RUN_COLUMNS} FROM runs WHERE runs.pk = ?"), (pk,))
            before = self._runs_from_rows(cur, cur.fetchall())[0]
            cur.execute(
                self._sql("SELECT record_json FROM run_records WHERE run_pk = ? AND part = 'resumes'"), (pk,)
            )
            row = cur.fetchone()
            resumes = json.loads(row[0])["resumes"] if row is not None else []
            previous = {
                "status": before.status.value,
                "end_time_ms": before.end_time_ms,
                "exit_code": before.exit_code,
                "error": before.error,
            }
            resumes.append({**entry, "previous": previous})
            cur.execute(
                self._sql(
                    "INSERT INTO run_records (run_pk, part, record_json) VALUES (?, 'resumes', ?) "
                    "ON CONFLICT (run_pk, part) DO UPDATE SET record_json = excluded.record_json"
                ),
                (pk, canonical_json(normalize({"resumes": resumes}, "resumes"))),
            )
            cur.execute(self._sql("DELETE FROM run_records WHERE run_pk = ? AND part = 'manifest'"), (pk,))
            cur.execute(
                self._sql(
                    "UPDATE runs SET status = ?, end_time_ms = NULL, exit_code = NULL, error = NULL, "
                    "heartbeat_ms = ?, host = ?, pid = ? WHERE pk = ?"
                ),
                (RunStatus.RUNNING.value, time_ms, host, pid, pk),
            )
            return before

        return self._write(f"reopening run {run_id}", body)

    def supersede_metrics(self, run_id: str, after_step: int) -> dict[str, int]:
        def body(cur: Any) -> dict[str, int]:
            pk, _, _ = self._run_row(cur, run_id, lock=True)
            cur.execute(
                self._sql(
                    "SELECT pk, key, n, min_step, steps, vals, stamps FROM metric_chunks "
                    "WHERE run_pk = ? AND max_step > ? ORDER BY pk"
                ),
                (pk, after_step),
            )
            dropped: dict[str, int] = {}
            for chunk_pk, key, n, first, raw, vals, stamps in [tuple(r) for r in cur.fetchall()]:
                steps = array("q", range(first, first + n)) if raw is None else _from_le("q", raw)
                keep = [i for i, step in enumerate(steps) if step <= after_step]
                dropped[key] = dropped.get(key, 0) + n - len(keep)
                cur.execute(self._sql("DELETE FROM metric_chunks WHERE pk = ?"), (chunk_pk,))
                if not keep:
                    continue
                # the kept points stay in the chunk's place in write order (a later write still wins)
                values, times = _from_le("d", vals), _from_le("q", stamps)
                kept = array("q", (steps[i] for i in keep))
                consecutive = kept == array("q", range(kept[0], kept[0] + len(kept)))
                cur.execute(
                    self._sql(
                        "INSERT INTO metric_chunks (pk, run_pk, key, n, min_step, max_step, steps, vals, "
                        "stamps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    (
                        chunk_pk,
                        pk,
                        key,
                        len(kept),
                        min(kept),
                        max(kept),
                        None if consecutive else _le_bytes(kept),
                        _le_bytes(array("d", (values[i] for i in keep))),
                        _le_bytes(array("q", (times[i] for i in keep))),
                    ),
                )
            for key in dropped:
                cur.execute(
                    self._sql("SELECT COUNT(*) FROM metric_chunks WHERE run_pk = ? AND key = ?"), (pk, key)
                )
                if cur.fetchone()[0]:
                    self._recompute_summary(cur, pk, key)
                else:
                    cur.execute(
                        self._sql("DELETE FROM metric_summary WHERE run_pk = ? AND key = ?"), (pk, key)
                    )
            return dropped

        return self._write(f"superseding the metrics of run {run_id} after step {after_step}", body)

    # --- reads --------------------------------------------------------------

    def _runs_from_rows(self, cur: Any, rows: Sequence[Sequence[Any]]) -> list[Run]:
        if not rows:
            return []
        pks = [row[0] for row in rows]
        params: dict[int, dict[str, Any]] = {pk: {} for pk in pks}
        tags: dict[int, dict[str, str]] = {pk: {} for pk in pks}
        metrics: dict[int, dict[str, MetricSummary]] = {pk: {} for pk in pks}
        for part in _chunks(pks, _IN_BATCH):
            marks = ", ".join("?" * len(part))
            cur.execute(
                self._sql(
                    f"SELECT run_pk, key, value_json FROM params WHERE run_pk IN ({marks}) ORDER BY key"
                ),
                part,
            )
            for run_pk, key, value_json in cur.fetchall():
                params[run_pk][key] = json.loads(value_json)
            cur.execute(
                self._sql(f"SELECT run_pk, key, value FROM tags WHERE run_pk IN ({marks}) ORDER BY key"),
                part,
            )
            for run_pk, key, value in cur.fetchall():
                tags[run_pk][key] = value
            cur.execute(
                self._sql(
                    "SELECT run_pk, key, last_step, last_value, last_timestamp_ms, min_value, "
                    f"max_value, count FROM metric_summary WHERE run_pk IN ({marks}) ORDER BY key"
                ),
                part,
            )
            for run_pk, key, step, last, ts, low, high, count in cur.fetchall():
                metrics[run_pk][key] = MetricSummary(
                    key=key,
                    last_value=math.nan if last is None else float(last),
                    last_step=int(step),
                    last_timestamp_ms=int(ts),
                    min_value=None if low is None else float(low),
                    max_value=None if high is None else float(high),
                    count=int(count),
                )
        return [
            Run(
                id=row[1],
                project=row[2],
                name=row[3],
                status=RunStatus(row[4]),
                start_time_ms=int(row[5]),
                end_time_ms=None if row[6] is None else int(row[6]),
                heartbeat_ms=None if row[7] is None else int(row[7]),
                exit_code=row[8],
                error=row[9],
                command=tuple(json.loads(row[10])),
                cwd=row[11],
                host=row[12],
                user=row[13],
                pid=int(row[14]),
                runstone_version=row[15],
                config=json.loads(row[16]),
                config_digest=row[17],
                params=params[row[0]],
                tags=tags[row[0]],
                metrics=metrics[row[0]],
                output_size_bytes=int(row[18]),
            )
            for row in rows
        ]

    def get_run(self, run_id: str) -> Run:
        def body(cur: Any) -> Run:
            cur.execute(self._sql(f"SELECT {_RUN_COLUMNS} FROM runs WHERE runs.id = ?"), (run_id,))
            rows = cur.fetchall()
            if not rows:
                raise NotFoundError(f"No run with ID {run_id} in {self.uri}")
            return self._runs_from_rows(cur, rows)[0]

        return self._read(f"reading run {run_id}", body)

    def match_run_ids(self, prefix: str, *, limit: int) -> list[str]:
        def body(cur: Any) -> list[str]:
            cur.execute(
                self._sql("SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"),
                (prefix, prefix + "~", limit),
            )
            return [row[0] for row in cur.fetchall()]

        return self._read("looking up run IDs", body)

    def run_ids(self) -> list[str]:
        def body(cur: Any) -> list[str]:
            cur.execute("SELECT id FROM runs ORDER BY id")
            return [row[0] for row in cur.fetchall()]

        return self._read("listing run IDs", body)

    def _where(self, query: RunQuery) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if query.project is not None:
            clauses.append("runs.project = ?")
            params.append(query.project)
        if query.filter is not None:
            sql, args = compile_filter(query.filter, self.dialect)
            clauses.append(f"({sql})")
            params.extend(args)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def find_runs(self, query: RunQuery) -> list[Run]:
        where, params = self._where(query)
        order, order_params = compile_order(query.order_by)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY {order}"
        params.extend(order_params)
        if query.limit is not None or query.offset:
            sql += f" LIMIT {int(query.limit) if query.limit is not None else self.dialect.limit_all}"
            sql += f" OFFSET {int(query.offset)}"

        def body(cur: Any) -> list[Run]:
            cur.execute(self._sql(sql), params)
            return self._runs_from_rows(cur, cur.fetchall())

        return self._read("searching runs", body)

    def count_runs(self, query: RunQuery) -> int:
        where, params = self._where(query)

        def body(cur: Any) -> int:
            cur.execute(self._sql(f"SELECT COUNT(*) FROM runs{where}"), params)
            return int(cur.fetchone()[0])

        return self._read("counting runs", body)

    def live_runs(self) -> list[LiveRun]:
        def body(cur: Any) -> list[LiveRun]:
            cur.execute(
                self._sql("SELECT id, host, pid, heartbeat_ms FROM runs WHERE status = ?"),
                (RunStatus.RUNNING.value,),
            )
            return [LiveRun(r[0], r[1], int(r[2]), r[3]) for r in cur.fetchall()]

        return self._read("listing running runs", body)

    def metric_history(self, run_id: str, key: str) -> MetricHistory:

        def body(cur: Any) -> list[tuple[Any, ...]]:
            pk, _, _ = self._run_row(cur, run_id)
            cur.execute(self._sql(_CHUNK_COLUMNS), (pk, key))
            rows = [tuple(r) for r in cur.fetchall()]
            if not rows:
                cur.execute(self._sql("SELECT key FROM metric_summary WHERE run_pk = ? ORDER BY key"), (pk,))
                keys = [r[0] for r in cur.fetchall()]
                known = ", ".join(repr(k) for k in keys[:20]) if keys else "none"
                raise NotFoundError(f"Run {run_id} has no metric {key!r}; its metrics: {known}")
            return rows

        rows = self._read(f"reading metric {key!r} of run {run_id}", body)
        steps, values, stamps = _decode(rows)
        return MetricHistory(run_id=run_id, key=key, steps=steps, values=values, timestamps_ms=stamps)

    def get_records(self, run_id: str) -> dict[str, dict[str, Any]]:
        def body(cur: Any) -> dict[str, dict[str, Any]]:
            pk, _, _ = self._run_row(cur, run_id)
            cur.execute(
                self._sql("SELECT part, record_json FROM run_records WHERE run_pk = ? ORDER BY part"), (pk,)
            )
            return {part: json.loads(text) for part, text in cur.fetchall()}

        return self._read(f"reading the record of run {run_id}", body)

    def read_output(self, run_id: str) -> bytes:
        def body(cur: Any) -> bytes:
            pk, _, _ = self._run_row(cur, run_id)
            cur.execute(
                self._sql("SELECT data FROM output_chunks WHERE run_pk = ? ORDER BY byte_offset"),
                (pk,),
            )
            return b"".join(bytes(r[0]) for r in cur.fetchall())

        return self._read(f"reading the output of run {run_id}", body)

    # --- artifacts ----------------------------------------------------------------

    def _artifact(self, row: Sequence[Any]) -> Artifact:
        return Artifact(
            project=row[0],
            name=row[1],
            version=int(row[2]),
            kind=row[3],
            digest=row[4],
            size_bytes=int(row[5]),
            file_count=int(row[6]),
            is_dir=bool(row[7]),
            stored=bool(row[8]),
            metadata=json.loads(row[9]),
            created_ms=int(row[10]),
            run_id=row[11],
        )

    def record_artifact(
        self, run_id: str, spec: ArtifactSpec, *, direction: str, path: str, time_ms: int
    ) -> Artifact:
        if direction not in ("input", "output"):
            raise UsageError(f"An artifact is an input or an output of a run, not {direction!r}")
        metadata = canonical_json(normalize(dict(spec.metadata), "metadata"))

        def body(cur: Any) -> Artifact:
            pk, _, _ = self._run_row(cur, run_id, lock=True)
            cur.execute(self._sql("SELECT project FROM runs WHERE pk = ?"), (pk,))
            project = cur.fetchone()[0]
            find = self._sql(
                f"SELECT a.pk, {_ARTIFACT_COLUMNS} FROM artifacts a LEFT JOIN runs r ON r.pk = a.run_pk "
                "WHERE a.project = ? AND a.name = ? AND a.digest = ?"
            )
            for _ in range(100):  # a concurrent writer may take the version number first
                cur.execute(find, (project, spec.name, spec.digest))
                row = cur.fetchone()
                if row is not None:
                    break
                cur.execute(
                    self._sql(
                        "SELECT COALESCE(MAX(version), 0) FROM artifacts WHERE project = ? AND name = ?"
                    ),
                    (project, spec.name),
                )
                version = int(cur.fetchone()[0]) + 1
                cur.execute(
                    self._sql(
                        "INSERT INTO artifacts (project, name, version, kind, digest, size_bytes, "
                        "file_count, "
                        "is_dir, stored, metadata_json, created_ms, run_pk) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
                    ),
                    (
                        project,
                        spec.name,
                        version,
                        spec.kind,
                        spec.digest,
                        spec.size_bytes,
                        spec.file_count,
                        int(spec.is_dir),
                        int(spec.stored),
                        metadata,
                        time_ms,
                        pk if direction == "output" else None,
                    ),
                )
            else:  # pragma: no cover
                raise StateError(f"Could not give artifact {spec.name!r} a version number")
            artifact_pk = row[0]
            if (spec.stored and not row[9]) or (direction == "output" and row[12] is None):
                greatest = "MAX" if self.dialect.name == "sqlite" else "GREATEST"
                cur.execute(
                    self._sql(
                        f"UPDATE artifacts SET stored = {greatest}(stored, ?), run_pk = COALESCE(run_pk, ?) "
                        "WHERE pk = ?"
                    ),
                    (int(spec.stored), pk if direction == "output" else None, artifact_pk),
                )
                cur.execute(find, (project, spec.name, spec.digest))
                row = cur.fetchone()
            cur.execute(
                self._sql(
                    "INSERT INTO run_artifacts (run_pk, artifact_pk, direction, path, time_ms) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
                ),
                (pk, artifact_pk, direction, path, time_ms),
            )
            return self._artifact(row[1:])

        return self._write(f"recording artifact {spec.name!r} of run {run_id}", body)

    def run_artifacts(self, run_id: str) -> list[ArtifactUse]:
        def body(cur: Any) -> list[ArtifactUse]:
            pk, _, _ = self._run_row(cur, run_id)
            cur.execute(
                self._sql(
                    f"SELECT {_ARTIFACT_COLUMNS}, ra.direction, ra.path, ra.time_ms FROM run_artifacts ra "
                    "JOIN artifacts a ON a.pk = ra.artifact_pk LEFT JOIN runs r ON r.pk = a.run_pk "
                    "WHERE ra.run_pk = ? ORDER BY ra.time_ms, a.pk"
                ),
                (pk,),
            )
            return [
                ArtifactUse(self._artifact(row[:12]), row[12], row[13], int(row[14]))
                for row in cur.fetchall()
            ]

        return self._read(f"reading the artifacts of run {run_id}", body)

    def _artifacts_where(self, where: str, args: Sequence[Any], doing: str) -> list[Artifact]:
        def body(cur: Any) -> list[Artifact]:
            cur.execute(
                self._sql(
                    f"SELECT {_ARTIFACT_COLUMNS} FROM artifacts a LEFT JOIN runs r ON r.pk = a.run_pk "
                    f"WHERE {where} ORDER BY a.project, a.name, a.version"
                ),
                tuple(args),
            )
            return [self._artifact(row) for row in cur.fetchall()]

        return self._read(doing, body)

    def artifact_versions(self, project: str | None, name: str) -> list[Artifact]:
        if project is None:
            return self._artifacts_where("a.name = ?", (name,), f"reading artifact {name!r}")
        return self._artifacts_where(
            "a.project = ? AND a.name = ?", (project, name), f"reading artifact {name!r}"
        )

    def artifacts_by_digest(self, prefix: str) -> list[Artifact]:
        text = prefix.lower()
        text = text if text.startswith("sha256:") else "sha256:" + text
        if not all(c in "0123456789abcdef" for c in text[7:]):
            return []
        return self._artifacts_where(
            "a.digest LIKE ?", (text + "%",), f"finding artifacts by digest {prefix}"
        )

    def artifact_users(self, artifact: Artifact) -> list[tuple[str, str]]:
        def body(cur: Any) -> list[tuple[str, str]]:
            cur.execute(
                self._sql(
                    "SELECT r.id, ra.direction FROM artifacts a "
                    "JOIN run_artifacts ra ON ra.artifact_pk = a.pk "
                    "JOIN runs r ON r.pk = ra.run_pk WHERE a.project = ? AND a.name = ? AND a.version = ? "
                    "ORDER BY ra.time_ms, r.id"
                ),
                (artifact.project, artifact.name, artifact.version),
            )
            return [(row[0], row[1]) for row in cur.fetchall()]

        return self._read(f"reading the runs of artifact {artifact.ref}", body)

    def delete_artifact(self, artifact: Artifact, run_id: str) -> bool:
        def body(cur: Any) -> bool:
            pk, _, _ = self._run_row(cur, run_id, lock=True)
            cur.execute(
                self._sql("SELECT pk, run_pk FROM artifacts WHERE project = ? AND name = ? AND version = ?"),
                (artifact.project, artifact.name, artifact.version),
            )
            row = cur.fetchone()
            if row is None:
                return False
            artifact_pk, maker = row
            cur.execute(
                self._sql("SELECT run_pk, direction FROM run_artifacts WHERE artifact_pk = ?"), (artifact_pk,)
            )
            edges = {(int(r[0]), r[1]) for r in cur.fetchall()}
            if maker != pk or edges - {(pk, "output")}:
                return False
            cur.execute(self._sql("DELETE FROM run_artifacts WHERE artifact_pk = ?"), (artifact_pk,))
            cur.execute(self._sql("DELETE FROM artifacts WHERE pk = ?"), (artifact_pk,))
            return True

        return self._write(f"removing artifact {artifact.ref}", body)

    def referenced_objects(self) -> dict[str, bool]:
        def body(cur: Any) -> dict[str, bool]:
            refs: dict[str, bool] = {}
            # The code record keeps its bytes as objects (diff, untracked files, snapshot); other
            # parts hold digests that name no object (a config's, a manifest's).
            cur.execute(self._sql("SELECT record_json FROM run_records WHERE part = 'code'"))
            for (text,) in cur.fetchall():
                for found in DIGEST.findall(text):
                    refs.setdefault(found, False)
            cur.execute(self._sql("SELECT digest, is_dir FROM artifacts WHERE stored = 1"))
            for found, is_dir in cur.fetchall():
                refs[found] = bool(is_dir) or refs.get(found, False)
            return refs

        return self._read("listing the objects the store refers to", body)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except Exception:  # closing is best effort; a broken connection is gone anyway
                pass
        self._local = threading.local()


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
