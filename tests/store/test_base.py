"""The Store interface is a real ABC: a backend that misses a primitive cannot be built."""

from __future__ import annotations

import pytest

from runstone.store.base import Store
from runstone.store.sql.store import SqlStore


def test_a_backend_missing_a_method_cannot_be_built() -> None:
    class Incomplete(Store):
        def create_run(self, spec):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(TypeError, match="abstract method"):
        Incomplete()  # type: ignore[abstract]


def test_the_sql_store_implements_every_primitive() -> None:
    assert not getattr(SqlStore, "__abstractmethods__", set())
    assert {"apply_batch", "create_run", "finish_run", "metric_history"} <= set(Store.__abstractmethods__)
