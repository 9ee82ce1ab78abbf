"""The remote store: the same contract suite, through a real runstone server on loopback.

The server runs in this process (uvicorn in a thread) over a fresh SQLite
store, or over a fresh PostgreSQL database; the client speaks HTTP to it.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from runstone.entities import Batch, MetricSeries
from runstone.errors import NotFoundError, StateError, StoreError, UsageError
from runstone.store import wire
from runstone.store.base import RunQuery, Store
from runstone.store.factory import open_store
from runstone.store.query import parse_filter
from runstone.store.testing import StoreContract, make_batch, make_spec
from tests.conftest import AppServer


def _server(uri: str) -> AppServer:
    from runstone.server.app import create_app

    return AppServer(create_app(uri, api=True))


class TestRemoteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        with _server(f"sqlite:///{tmp_path}/server.db") as server, open_store(server.url) as s:
            yield s


@pytest.mark.postgres
class TestRemotePostgresStore(StoreContract):
    @pytest.fixture
    def store(self, postgres_uri: str) -> Iterator[Store]:
        with _server(postgres_uri) as server, open_store(server.url) as s:
            yield s


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AppServer]:
    with _server(f"sqlite:///{tmp_path}/server.db") as s:
        yield s


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def test_errors_cross_as_their_own_class(server: AppServer) -> None:
    with open_store(server.url) as store:
        with pytest.raises(NotFoundError, match="f" * 32):
            store.get_run("f" * 32)
        store.create_run(make_spec("a" * 32))
        store.apply_batch(make_batch("a" * 32, loss=([0], [1.0])))
        from runstone.entities import RunStatus

        store.finish_run("a" * 32, status=RunStatus.FINISHED, end_time_ms=2_000)
        with pytest.raises(StateError, match="already ended as finished"):
            store.finish_run("a" * 32, status=RunStatus.KILLED, end_time_ms=3_000)
        # values cross bit for bit, NaN payloads included
        store.create_run(make_spec("b" * 32))
        odd = [math.nan, -0.0, math.inf, 5e-324]
        store.apply_batch(
            Batch(
                "x" * 32,
                "b" * 32,
                metrics=(
                    MetricSeries("m", array("q", [0, 1, 2, 3]), array("d", odd), array("q", [1, 2, 3, 4])),
                ),
            )
        )
        values = store.metric_history("b" * 32, "m").values
        assert array("d", values.tolist()).tobytes() == array("d", odd).tobytes()
        assert store.count_runs(RunQuery(filter=parse_filter("metrics.loss = 1"))) == 1


def test_malformed_requests_get_4xx_not_5xx(server: AppServer) -> None:
    base = server.url + "/api/v1/store/"
    cases = [
        ("get_run", b"not json"),
        ("get_run", b'{"args": 5}'),
        ("get_run", b'{"args": [], "kwargs": {}}'),
        ("get_run", b'{"args": ["x", "y", "z"]}'),
        ("get_run", b'{"args": [{"$type": "os.system"}]}'),
        ("find_runs", b'{"args": [{"$type": "RunQuery", "nope": 1}]}'),
        ("find_runs", b'{"args": [{"$type": "RunQuery", "filter": 7}]}'),
        ("apply_batch", b'{"args": [{"$bytes": "!!!"}]}'),
        ("close", b"{}"),
        ("__init__", b"{}"),
    ]
    for method, body in cases:
        status, answer = post(base + method, body)
        assert 400 <= status < 500, (method, body, status, answer)
        assert answer["error"]["message"]
    # a web page may POST text/plain to loopback without a preflight: refused, the store untouched
    status, answer = post(
        base + "create_run", wire.dumps({"args": [make_spec("e" * 32)]}), {"content-type": "text/plain"}
    )
    assert status == 415 and "application/json" in answer["error"]["message"]
    with open_store(server.url) as store:
        assert store.run_ids() == []
    # an oversized body is refused from its declared length, before it is sent
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
    conn.putrequest("POST", "/api/v1/store/get_run")
    conn.putheader("content-type", "application/json")
    conn.putheader("content-length", str(129 << 20))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and b"MiB" in response.read()
    conn.close()


def test_openapi_lists_every_store_method(server: AppServer) -> None:
    with urllib.request.urlopen(server.url + "/api/v1/openapi.json", timeout=10) as response:
        document = json.loads(response.read())
    assert document["openapi"].startswith("3.")
    assert {p.rsplit("/", 1)[1] for p in document["paths"] if "/store/" in p} == set(wire.STORE_METHODS)


def test_unreachable_server_and_non_runstone_server_are_named(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match=f"Cannot reach the runstone server at http://127.0.0.1:{port}"):
        open_store(f"http://127.0.0.1:{port}")
    with pytest.raises(UsageError, match="Not a server URL"):
        from runstone.store.remote import RemoteStore

        RemoteStore("http://")


def test_wire_refuses_types_outside_the_schema() -> None:
    with pytest.raises(UsageError, match="not part of the wire schema"):
        wire.loads(b'{"$type": "Path", "x": 1}')
    with pytest.raises(TypeError, match="cannot cross the wire"):
        wire.dumps(object())
    # user keys that look like tags survive
    assert wire.loads(wire.dumps({"$type": 1, "$$x": [1, (2, 3)]})) == {"$type": 1, "$$x": [1, (2, 3)]}
