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


def test_sqlalchemy_style_driver_suffix_is_accepted(postgres_uri: str) -> None:
    uri = postgres_uri.replace("postgresql://", "postgresql+psycopg://")
    with open_store(uri) as store:
        assert store.run_ids() == []


def test_unreachable_server_is_a_clear_store_error() -> None:
    with pytest.raises(StoreError, match="Cannot connect to the store postgresql://u@127.0.0.1:1/x"):
        open_store("postgresql://u:pw@127.0.0.1:1/x")
