"""The SQL schema and its migrations, written once for every dialect.

Layer 4. ``MIGRATIONS[n]`` takes a store from schema version ``n - 1`` to
``n``; a store records its version in ``schema_info``. Opening a store runs
the missing migrations under a write lock (so processes opening a new store
at once don't race), and refuses a store whose version is newer than
``SCHEMA_VERSION``. Never edit a released migration: add the next one. The
tests keep a store made by each released version and open it.

Metric points are not stored one row per point: each background flush writes
one ``metric_chunks`` row per metric key holding the steps, values and times
as little-endian int64/float64 arrays. Values keep their exact bits (NaN,
infinities, -0.0), writes cost one row per key per flush, and a
million-point history reads as a few blobs. ``steps`` is NULL when the
chunk's steps are consecutive (the common case). ``metric_summary`` keeps
each key's last value (by step), min, max and count for filtering and
sorting; a NULL ``last_value`` there is a NaN.
"""

from __future__ import annotations

from typing import Any

from runstone._version import __version__
from runstone.errors import NotFoundError, StoreError, StoreVersionError
from runstone.store.sql.dialect import Dialect

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

_V1 = [
    """CREATE TABLE runs (
        pk {pk},
        id TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        start_time_ms {bigint} NOT NULL,
        end_time_ms {bigint},
        heartbeat_ms {bigint},
        exit_code INTEGER,
        error TEXT,
        command_json TEXT NOT NULL,
        cwd TEXT NOT NULL,
        host TEXT NOT NULL,
        username TEXT NOT NULL,
        pid {bigint} NOT NULL,
        runstone_version TEXT NOT NULL,
        config_json TEXT NOT NULL,
        config_digest TEXT NOT NULL,
        output_bytes {bigint} NOT NULL
    )""",
    "CREATE INDEX runs_project_id ON runs (project, id)",
    "CREATE INDEX runs_status ON runs (status)",
    """CREATE TABLE params (
        run_pk {bigint} NOT NULL,
        key TEXT NOT NULL,
        value_json TEXT NOT NULL,
        value_num {double},
        value_text TEXT NOT NULL,
        PRIMARY KEY (run_pk, key)
    )""",
    "CREATE INDEX params_key_num ON params (key, value_num)",
    "CREATE INDEX params_key_text ON params (key, value_text)",
    """CREATE TABLE tags (
        run_pk {bigint} NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_pk, key)
    )""",
    """CREATE TABLE metric_summary (
        run_pk {bigint} NOT NULL,
        key TEXT NOT NULL,
        last_step {bigint} NOT NULL,
        last_value {double},
        last_timestamp_ms {bigint} NOT NULL,
        min_value {double},
        max_value {double},
        count {bigint} NOT NULL,
        PRIMARY KEY (run_pk, key)
    )""",
    "CREATE INDEX metric_summary_key ON metric_summary (key, last_value)",
    """CREATE TABLE metric_chunks (
        pk {pk},
        run_pk {bigint} NOT NULL,
        key TEXT NOT NULL,
        n INTEGER NOT NULL,
        min_step {bigint} NOT NULL,
        max_step {bigint} NOT NULL,
        steps {blob},
        vals {blob} NOT NULL,
        stamps {blob} NOT NULL
    )""",
    "CREATE INDEX metric_chunks_run_key ON metric_chunks (run_pk, key, pk)",
    """CREATE TABLE output_chunks (
        run_pk {bigint} NOT NULL,
        byte_offset {bigint} NOT NULL,
        data {blob} NOT NULL,
        PRIMARY KEY (run_pk, byte_offset)
    )""",
    """CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY,
        run_pk {bigint} NOT NULL,
        applied_ms {bigint} NOT NULL
    )""",
]

_V2 = [
    # What a run depends on (code, environment, system, seeds): one JSON object per part.
    """CREATE TABLE run_records (
        run_pk {bigint} NOT NULL,
        part TEXT NOT NULL,
        record_json TEXT NOT NULL,
        PRIMARY KEY (run_pk, part)
    )""",
]

_V3 = [
    # Artifacts: versions of named content, by digest; and which run used or made which.
    """CREATE TABLE artifacts (
        pk {pk},
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        size_bytes {bigint} NOT NULL,
        file_count {bigint} NOT NULL,
        is_dir INTEGER NOT NULL,
        stored INTEGER NOT NULL,
        metadata_json TEXT NOT NULL,
        created_ms {bigint} NOT NULL,
        run_pk {bigint},
        UNIQUE (project, name, version),
        UNIQUE (project, name, digest)
    )""",
    "CREATE INDEX artifacts_digest ON artifacts (digest)",
    """CREATE TABLE run_artifacts (
        run_pk {bigint} NOT NULL,
        artifact_pk {bigint} NOT NULL,
        direction TEXT NOT NULL,
        path TEXT NOT NULL,
        time_ms {bigint} NOT NULL,
        PRIMARY KEY (run_pk, artifact_pk, direction)
    )""",
    "CREATE INDEX run_artifacts_artifact ON run_artifacts (artifact_pk)",
]

_V4 = [
    # Runs by tag value (tags.reproduction_of in (...): the UI's reproduction badges) without a scan.
    "CREATE INDEX tags_key_value ON tags (key, value)",
]

_V5 = [
    # API tokens of a runstone server: the secret is kept only as its SHA-256.
    """CREATE TABLE tokens (
        pk {pk},
        token_id TEXT NOT NULL UNIQUE,
        secret_sha256 TEXT NOT NULL,
        project TEXT NOT NULL,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        created_ms {bigint} NOT NULL,
        revoked_ms {bigint}
    )""",
]

#: version -> DDL statements taking the store there from version - 1
MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5}
SCHEMA_VERSION = max(MIGRATIONS)

_INFO_DDL = "CREATE TABLE IF NOT EXISTS schema_info (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)"


def _read_version(cur: Any, dialect: Dialect) -> int:
    cur.execute(dialect.sql("SELECT version FROM schema_info WHERE id = 1"))
    row = cur.fetchone()
    return 0 if row is None else int(row[0])


def _check_not_newer(version: int, dialect: Dialect) -> None:
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"The store {dialect.uri} was written by a newer runstone (schema version "
            f"{version}; runstone {__version__} reads up to {SCHEMA_VERSION}). Upgrade: "
            "pip install -U runstone. The store was not changed."
        )


def _refuse_foreign(cur: Any, dialect: Dialect) -> None:
    foreign = [t for t in dialect.tables(cur) if t != "schema_info"]
    if foreign:
        shown = ", ".join(sorted(foreign)[:5])
        raise StoreError(
            f"{dialect.uri} is not a runstone store: it holds other tables ({shown}). "
            "Point RUNSTONE_HOME or RUNSTONE_URI at a new or runstone-made store; it was not changed"
        )


def migrate(conn: Any, dialect: Dialect, *, upgrade: bool = True) -> int:
    """Bring the store's schema to ``SCHEMA_VERSION``; returns the version found.

    Args:
        upgrade: upgrade a store an older runstone made; when False, such a
            store is refused (a new, empty one is still created).

    Raises:
        StoreVersionError: the store is newer than this runstone, or older and
            ``upgrade`` is False (it is left untouched).
    """
    cur = conn.cursor()
    try:
        version = _read_version(cur, dialect)
    except Exception:  # no schema_info yet: a new store (error types differ by driver)
        version = 0
    _check_not_newer(version, dialect)
    if version == SCHEMA_VERSION:
        return version
    if version and not upgrade:
        raise StoreVersionError(
            f"The store {dialect.uri} has schema version {version}; runstone {__version__} needs "
            f"{SCHEMA_VERSION}. Back it up, then upgrade it once: runstone server migrate --store URI "
            "(or start the server with --migrate). The store was not changed."
        )
    if version == 0 and not dialect.create:
        _refuse_foreign(cur, dialect)
        raise NotFoundError(f"No runstone store at {dialect.uri} (it holds no runstone schema yet)")
    if dialect.read_only:
        raise StoreError(
            f"The store {dialect.uri} was written by an older runstone and must be upgraded, "
            "but it is read-only here; open it once where it can be written"
        )
    with dialect.write_transaction(conn) as wcur:
        dialect.migration_lock(wcur)
        wcur.execute(_INFO_DDL)
        found = _read_version(wcur, dialect)  # another process may have migrated meanwhile
        _check_not_newer(found, dialect)
        if found == 0:
            # Checked under the lock: a store another process is creating right now
            # is either complete or absent here, never half-made.
            _refuse_foreign(wcur, dialect)
        for target in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                wcur.execute(dialect.ddl(statement))
        if found == 0:
            wcur.execute(
                dialect.sql("INSERT INTO schema_info (id, version) VALUES (1, ?)"), (SCHEMA_VERSION,)
            )
        elif found < SCHEMA_VERSION:
            wcur.execute(dialect.sql("UPDATE schema_info SET version = ? WHERE id = 1"), (SCHEMA_VERSION,))
    return found  # as found under the lock (another process may have migrated it meanwhile)
