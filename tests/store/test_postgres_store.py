"""The PostgreSQL store: the same contract suite against a real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runstone.errors import StoreError, StoreVersionError
from runstone.store.base import Store
from runstone.store.factory import open_store
from runstone.store.sql.schema import SCHEMA_VERSION
from runstone.store.testing import StoreContract

pytestmark = pytest.mark.postgres


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, postgres_uri: str) -> Iterator[Store]:
        with open_store(postgres_uri) as s:
            yield s


def test_newer_schema_is_refused(postgres_uri: str) -> None:
    import psycopg

    open_store(postgres_uri).close()
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute("UPDATE schema_info SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreVersionError, match="newer runstone"):
        open_store(postgres_uri)


def test_an_older_schema_is_upgraded_only_when_asked(postgres_uri: str) -> None:
    """Servers and clients of the older runstone may still use a shared store: a reader never upgrades it."""
    import psycopg

    open_store(postgres_uri).close()
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        conn.execute("DROP TABLE tokens")
        conn.execute("UPDATE schema_info SET version = %s", (SCHEMA_VERSION - 1,))
    with pytest.raises(StoreVersionError, match="runstone server migrate"):
        open_store(postgres_uri)
    with psycopg.connect(postgres_uri, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_info").fetchone() == (SCHEMA_VERSION - 1,)
    with open_store(postgres_uri, upgrade=True) as store:
        assert store.found_version == SCHEMA_VERSION - 1  # type: ignore[attr-defined]
    open_store(postgres_uri).close()  # now current


def test_sqlalchemy_style_driver_suffix_is_accepted(postgres_uri: str) -> None:
    uri = postgres_uri.replace("postgresql://", "postgresql+psycopg://")
    with open_store(uri) as store:
        assert store.run_ids() == []


def test_unreachable_server_is_a_clear_store_error() -> None:
    with pytest.raises(StoreError, match="Cannot connect to the store postgresql://u@127.0.0.1:1/x"):
        open_store("postgresql://u:pw@127.0.0.1:1/x")


def test_a_dropped_connection_is_reopened(postgres_uri: str) -> None:
    """A server restart or failover cuts connections: the store reconnects and nothing is lost."""
    import psycopg

    from runstone.store.testing import make_batch, make_spec

    with open_store(postgres_uri) as store:
        store.create_run(make_spec("d" * 32))
        store.apply_batch(make_batch("d" * 32, x=([0], [1.0])))
        with psycopg.connect(postgres_uri, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        store.apply_batch(make_batch("d" * 32, x=([1], [2.0])))  # a write after the cut
        assert store.metric_history("d" * 32, "x").values.tolist() == [1.0, 2.0]
        admin = psycopg.connect(postgres_uri, autocommit=True)
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        admin.close()
        assert store.get_run("d" * 32).metrics["x"].count == 2  # and a read after another
