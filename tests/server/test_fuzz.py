"""Fuzzing the HTTP API: any body, to any endpoint, never gets a 5xx (bad input is the caller's error)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstone.server.api import openapi_document
from runstone.store import wire
from tests.conftest import AppServer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# values shaped like the wire schema's tagged objects, with wrong or random fields
tagged = (
    st.fixed_dictionaries(
        {
            "$type": st.sampled_from(
                ["RunSpec", "Batch", "RunQuery", "Field", "Compare", "Artifact", "Nope", "MetricSeries"]
            )
        },
        optional={
            "id": json_values,
            "run_id": json_values,
            "filter": json_values,
            "metrics": json_values,
            "name": json_values,
        },
    )
    | st.fixed_dictionaries({"$array": st.sampled_from(["d", "q", "x", ""]), "data": st.text(max_size=12)})
    | st.fixed_dictionaries(
        {"$ndarray": st.sampled_from(["<f8", "<i8", "O", "<U3"]), "data": st.text(max_size=12)}
    )
    | st.fixed_dictionaries({"$enum": st.sampled_from(["RunStatus", "Nope"]), "value": json_values})
)
arguments = st.lists(json_values | tagged, max_size=4)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "args": arguments | json_values,
        "kwargs": st.dictionaries(st.text(max_size=12), json_values | tagged, max_size=3) | json_values,
    },
)


#: the store methods, as the server's OpenAPI description lists them
STORE_PATHS = sorted(
    path.rsplit("/", 1)[1] for path in openapi_document()["paths"] if path.startswith("/api/v1/store/")
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    from runstone.server.app import create_app
    from runstone.store.factory import open_store
    from runstone.store.testing import make_batch, make_spec

    uri = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/server.db"
    with open_store(uri) as store:
        store.create_run(make_spec("a" * 32))
        store.apply_batch(make_batch("a" * 32, loss=([0, 1], [1.0, 0.5])))
    with AppServer(create_app(uri, api=True)) as s:
        yield s


def _post(server: AppServer, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(method=st.sampled_from(STORE_PATHS), body=bodies)
def test_no_5xx_on_any_json_body(server: AppServer, method: str, body: dict[str, Any]) -> None:
    status, answer = _post(server, f"/api/v1/store/{method}", json.dumps(body).encode())
    assert status < 500, (method, body, answer[:500])
    if status >= 400:
        assert json.loads(answer)["error"]["message"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(max_size=30), body=st.binary(max_size=200))
def test_no_5xx_on_any_path_or_bytes(server: AppServer, path: str, body: bytes) -> None:
    from urllib.parse import quote

    status, _ = _post(server, "/api/v1/store/" + quote(path, safe=""), body)
    assert status < 500
    status, _ = _post(server, "/api/v1/store/get_run", body)
    assert status < 500


def test_fuzz_reaches_real_calls(server: AppServer, tmp_path: Path) -> None:
    """The fuzzer's targets answer well-formed calls too (so the 4xx above are about the input)."""
    status, answer = _post(server, "/api/v1/store/get_run", wire.dumps({"args": ["a" * 32]}))
    assert status == 200 and wire.loads(answer).id == "a" * 32


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "HEAD", "PUT"]),
    name=st.text(max_size=80) | st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True),
    body=st.binary(max_size=300),
    kind=st.sampled_from(["application/octet-stream", "application/json", "text/plain", ""]),
)
def test_no_5xx_on_any_object_request(
    server: AppServer, method: str, name: str, body: bytes, kind: str
) -> None:
    """The object endpoints of the OpenAPI description, with any name, bytes and content type."""
    from urllib.parse import quote

    assert set(openapi_document()["paths"]["/api/v1/objects/{digest}"]) >= {"get", "head", "put"}
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    try:
        headers = {"content-type": kind} if kind else {}
        conn.request(method, "/api/v1/objects/" + quote(name, safe=":"), body=body or None, headers=headers)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status < 500, (method, name, response.status)


def test_the_fuzzed_paths_are_every_store_method() -> None:
    assert set(STORE_PATHS) == set(wire.STORE_METHODS)
