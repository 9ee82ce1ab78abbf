"""The SQLite store: the contract suite, plus what only a file-backed store has."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstone.errors import NotFoundError, StoreError, StoreVersionError, UsageError
from runstone.store.base import Store
from runstone.store.factory import open_store, redact_uri
from runstone.store.sql.schema import SCHEMA_VERSION
from runstone.store.testing import StoreContract, make_batch, make_spec

DATA = Path(__file__).resolve().parent.parent / "data"


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        with open_store(f"sqlite:///{tmp_path / 'store' / 'runstone.db'}") as s:
            yield s


def test_new_store_uses_wal_and_is_versioned(tmp_path: Path) -> None:
    path = tmp_path / ".runstone" / "runstone.db"
    open_store(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_info").fetchone()[0] == SCHEMA_VERSION
    # a store directory named .runstone keeps itself out of git
    assert (path.parent / ".gitignore").read_text().strip().endswith("*")


def test_readers_never_create_a_store(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "runstone.db"
    with pytest.raises(NotFoundError, match="No runstone store"):
        open_store(f"sqlite:///{path}", create=False)
    assert not path.parent.exists()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_stores_written_by_released_versions_open(tmp_path: Path, version: int) -> None:
    """tests/data/store-vN.sql is a store as runstone wrote it at schema version N (frozen)."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript((DATA / f"store-v{version}.sql").read_text())
    conn.close()
    with open_store(f"sqlite:///{path}") as store:
        [run] = [store.get_run(i) for i in store.run_ids()]
        assert run.name == f"frozen-v{version}"
        assert run.params == {"lr": 0.1, "model.depth": 3}
        assert store.metric_history(run.id, "loss").values.tolist() == [1.0, 0.5, 0.25]
        store.create_run(make_spec("f" * 32))  # and it takes new writes
        store.apply_batch(make_batch("f" * 32, loss=([0], [1.0])))
        if version >= 2:
            assert store.get_records(run.id)["seeds"]["seed"] == 0
        if version >= 3:
            [use] = store.run_artifacts(run.id)
            assert (use.artifact.ref, use.direction, use.artifact.kind) == ("model.bin@v1", "output", "model")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_info").fetchone()[0] == SCHEMA_VERSION


def test_store_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_store(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_info SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreVersionError, match=r"newer runstone .*pip install -U runstone"):
        open_store(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "runstone.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="Cannot open the store"):
        open_store(f"sqlite:///{path}")
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_uri_errors_and_redaction() -> None:
    with pytest.raises(UsageError, match="Unknown store URI"):
        open_store("mysql://x")
    with pytest.raises(UsageError, match="sqlite:////ABSOLUTE"):
        open_store("sqlite://relative")
    assert redact_uri("postgresql://bob:s3cret@db:5432/runs") == "postgresql://bob@db:5432/runs"
    assert redact_uri("sqlite:////a/b.db") == "sqlite:////a/b.db"


def test_relative_sqlite_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///rel/runstone.db") as store:
        assert store.uri == f"sqlite:///{tmp_path / 'rel' / 'runstone.db'}"


def test_a_foreign_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (x INTEGER)")
    conn.commit()
    conn.close()
    for create in (False, True):
        with pytest.raises(StoreError, match=r"is not a runstone store: it holds other tables \(runs\)"):
            open_store(f"sqlite:///{path}", create=create)
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("runs",)]


def test_a_reader_never_writes_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # an empty SQLite file
    with pytest.raises(NotFoundError, match="holds no runstone schema"):
        open_store(f"sqlite:///{path}", create=False)
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_read_only_store_can_be_read(tmp_path: Path) -> None:
    """A store the reader may not write (a shared copy): it reads, and writes fail cleanly."""
    import os
    import subprocess

    home = tmp_path / "shared"
    path = home / "runstone.db"
    with open_store(f"sqlite:///{path}") as store:
        store.create_run(make_spec("c" * 32))
        store.apply_batch(make_batch("c" * 32, loss=([0, 1], [1.0, 0.5])))
    # Root ignores file modes; the immutable attribute stops root too.
    lock = ["chattr", "+i"] if os.geteuid() == 0 else ["chmod", "a-w"]
    unlock = ["chattr", "-i"] if os.geteuid() == 0 else ["chmod", "u+w"]
    subprocess.run([*lock, str(path), str(home)], check=True)
    try:
        assert not os.access(path, os.W_OK)
        with open_store(f"sqlite:///{path}", create=False) as store:
            assert store.metric_history("c" * 32, "loss").values.tolist() == [1.0, 0.5]
            with pytest.raises(StoreError):
                store.mark_crashed("c" * 32, end_time_ms=1)
        before = sorted(p.name for p in home.iterdir())
        assert before == ["runstone.db"]  # no -wal/-shm files appeared
    finally:
        subprocess.run([*unlock, str(home), str(path)], check=True)
