"""What differs between SQLite and PostgreSQL: a small dialect object.

Layer 4. The SQL store writes every statement once, with ``?`` placeholders
and ``{type}`` slots in its DDL; a dialect connects, fills the slots, converts
placeholders, opens write transactions and says which errors are worth a retry.
Third-party driver errors are wrapped here, at the backend edge.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from runstone.errors import MissingDependencyError, NotFoundError, StoreError, UsageError

__all__ = ["Dialect", "PostgresDialect", "SqliteDialect", "dialect_for"]


class Dialect(abc.ABC):
    """How to talk to one kind of SQL database."""

    name: str
    #: DDL slot values: pk (auto-increment integer key), blob, double, bigint
    types: ClassVar[dict[str, str]]
    #: case-insensitive LIKE operator
    ilike: str
    #: suffix that locks a selected row until the transaction ends
    for_update: str
    #: the URI without credentials, for messages
    uri: str
    #: what LIMIT takes to mean "no limit" (needed before OFFSET)
    limit_all: str

    @abc.abstractmethod
    def connect(self) -> Any:
        """A new DB-API connection in autocommit mode."""

    @abc.abstractmethod
    @contextlib.contextmanager
    def write_transaction(self, conn: Any) -> Iterator[Any]:
        """A cursor inside a transaction that holds the write lock; commits on success."""

    @abc.abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """True when retrying the whole transaction may succeed (locks, serialization)."""

    def is_disconnect(self, exc: BaseException, conn: Any) -> bool:
        """True when the connection itself is gone (a restarted server): reconnect and retry."""
        return False

    @abc.abstractmethod
    def migration_lock(self, cur: Any) -> None:
        """Serialize schema migrations between processes (inside a write transaction)."""

    @abc.abstractmethod
    def tables(self, cur: Any) -> list[str]:
        """Names of the tables in the database (to tell a foreign database from a new one)."""

    #: whether opening may create the store's schema (readers pass False)
    create: bool = True
    #: opened read-only: every write fails
    read_only: bool = False

    def sql(self, text: str) -> str:
        """A statement in this driver's placeholder style."""
        return text

    def ddl(self, text: str) -> str:
        return text.format(**self.types)

    def wrap(self, exc: BaseException, doing: str) -> StoreError:
        return StoreError(f"Store {self.uri}: {doing} failed: {exc}")


class SqliteDialect(Dialect):
    """The embedded store: one SQLite file in WAL mode.

    WAL lets readers proceed while one writer commits; ``synchronous=NORMAL``
    makes a commit durable against a killed process (not against power loss)
    without an fsync per commit. Writers take the lock up front (``BEGIN
    IMMEDIATE``) so two writers never deadlock upgrading a read lock, and wait
    for it through SQLite's busy timeout.
    """

    name = "sqlite"
    types: ClassVar[dict[str, str]] = {
        "pk": "INTEGER PRIMARY KEY",
        "blob": "BLOB",
        "double": "REAL",
        "bigint": "INTEGER",
    }
    ilike = "LIKE"
    for_update = ""
    limit_all = "-1"
    busy_timeout_s = 30.0

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = path
        self.uri = f"sqlite:///{path}"
        self.create = create
        if path.is_dir():
            raise StoreError(f"The store path {path} is a directory; a SQLite store is a file")
        if path.parent.exists() and not path.parent.is_dir():
            raise StoreError(
                f"Cannot use {path}: {path.parent} is a file, not a directory "
                "(check RUNSTONE_HOME / RUNSTONE_URI)"
            )
        if not path.exists():
            if not create:
                raise NotFoundError(f"No runstone store at {path} (nothing has been tracked there yet)")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                ignore = path.parent / ".gitignore"
                if path.parent.name == ".runstone" and not ignore.exists():
                    # Keep a store out of the user's commits, as virtualenvs do.
                    ignore.write_text("# created by runstone\n*\n")
            except OSError as e:
                raise StoreError(f"Cannot create the store directory {path.parent}: {e.strerror or e}") from e
        # A reader that may not write (a shared, read-only copy) opens the file read-only.
        self.read_only = not create and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))

    def connect(self) -> sqlite3.Connection:
        try:
            if self.read_only:
                return self._connect_read_only()
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            for attempt in range(50):
                try:
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError as e:
                    if not self.is_transient(e) or attempt == 49:
                        raise
                    time.sleep(0.05)
            if str(mode).lower() != "wal":
                # Some filesystems (network mounts) refuse WAL; rollback journal still works.
                conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as e:
            raise self._open_error(e) from e
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        target = urllib.parse.quote(str(self.path))
        try:
            conn = sqlite3.connect(
                f"file:{target}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            # A WAL store in a directory we cannot write: read it as an immutable snapshot.
            conn = sqlite3.connect(
                f"file:{target}?immutable=1", uri=True, isolation_level=None, check_same_thread=False
            )
        return conn

    def _open_error(self, e: sqlite3.DatabaseError) -> StoreError:
        text = str(e)
        if "not a database" in text or "malformed" in text:
            return StoreError(
                f"Cannot open the store {self.path}: {text}. It is not a runstone store (or it is "
                "damaged); point RUNSTONE_HOME or RUNSTONE_URI elsewhere"
            )
        if "unable to open" in text or "readonly" in text:
            return StoreError(
                f"Cannot open the store {self.path} for writing: {text}. Check that you may "
                f"write to the file and to {self.path.parent}"
            )
        return StoreError(f"Cannot open the store {self.path}: {text}")

    @contextlib.contextmanager
    def write_transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT (a busy lock), or the connection stays in the
            # transaction and every later BEGIN fails.
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
            raise

    def is_transient(self, exc: BaseException) -> bool:
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        text = str(exc).lower()
        return "locked" in text or "busy" in text

    def migration_lock(self, cur: Any) -> None:
        """BEGIN IMMEDIATE already excludes every other writer."""

    def tables(self, cur: Any) -> list[str]:
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return [row[0] for row in cur.fetchall()]


class PostgresDialect(Dialect):
    """A PostgreSQL database through psycopg 3 (the ``postgres`` extra)."""

    name = "postgresql"
    types: ClassVar[dict[str, str]] = {
        "pk": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "blob": "BYTEA",
        "double": "DOUBLE PRECISION",
        "bigint": "BIGINT",
    }
    ilike = "ILIKE"
    for_update = " FOR UPDATE"
    limit_all = "ALL"
    _placeholder = re.compile(r"\?")

    def __init__(self, uri: str, *, create: bool = True) -> None:
        from runstone.store.factory import redact_uri

        self.create = create
        try:
            import psycopg
        except ImportError:
            raise MissingDependencyError(
                "The PostgreSQL store", package="psycopg", extra="postgres"
            ) from None
        self._psycopg = psycopg
        scheme, _, rest = uri.partition("://")
        # SQLAlchemy-style driver suffixes (postgresql+psycopg://) are accepted.
        self.conninfo = f"postgresql://{rest}"
        self.uri = redact_uri(f"postgresql://{rest}")
        self._sql_cache: dict[str, str] = {}
        del scheme

    def connect(self) -> Any:
        try:
            return self._psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as e:
            raise StoreError(f"Cannot connect to the store {self.uri}: {e}".strip()) from e

    def sql(self, text: str) -> str:
        cached = self._sql_cache.get(text)
        if cached is None:
            cached = self._placeholder.sub("%s", text.replace("%", "%%"))
            self._sql_cache[text] = cached
        return cached

    @contextlib.contextmanager
    def write_transaction(self, conn: Any) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def is_transient(self, exc: BaseException) -> bool:
        errors = self._psycopg.errors
        return isinstance(
            exc, (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable)
        )

    def is_disconnect(self, exc: BaseException, conn: Any) -> bool:
        return bool(getattr(conn, "broken", False) or getattr(conn, "closed", False))

    def migration_lock(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(4711002)")

    def tables(self, cur: Any) -> list[str]:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return [row[0] for row in cur.fetchall()]


def dialect_for(uri: str, *, create: bool) -> Dialect:
    """The dialect for a store URI (see ``runstone.store.factory.open_store``)."""
    scheme, _, rest = uri.partition("://")
    if scheme.lower() == "sqlite":
        # As in SQLAlchemy: sqlite:///relative.db, sqlite:////absolute/path.db
        if not rest.startswith("/") or not rest[1:]:
            raise UsageError(
                f"Invalid store URI {uri!r}: write sqlite:////ABSOLUTE/PATH.db or sqlite:///RELATIVE.db"
            )
        path = Path(rest[1:]).expanduser()
        return SqliteDialect(path.resolve(), create=create)
    return PostgresDialect(uri, create=create)
