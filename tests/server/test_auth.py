"""Tokens and permissions: every API endpoint, as anonymous, reader, writer, admin and another project's writer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runstone.entities import ArtifactSpec, RunStatus
from runstone.errors import AccessError, AuthenticationError, NotFoundError
from runstone.server.api import ADMIN, WRITES
from runstone.store import wire
from runstone.store.base import RunQuery
from runstone.store.factory import open_store
from runstone.store.sql import tokens
from runstone.store.testing import make_batch, make_spec
from tests.conftest import AppServer

R, R2, B_RUN = "a" * 32, "b" * 32, "c" * 32
SPEC = ArtifactSpec(
    name="model",
    kind="model",
    digest="sha256:" + "1" * 64,
    size_bytes=3,
    file_count=1,
    is_dir=False,
    stored=False,
)
SPEC2 = ArtifactSpec(
    name="model",
    kind="model",
    digest="sha256:" + "2" * 64,
    size_bytes=3,
    file_count=1,
    is_dir=False,
    stored=False,
)


def _seed(uri: str) -> dict[str, Any]:
    with open_store(uri) as store:
        store.create_run(make_spec(R, project="A", name="secret-a"))
        store.apply_batch(make_batch(R, loss=([0, 1], [1.0, 0.5])))
        artifact = store.record_artifact(R, SPEC, direction="output", path="m.bin", time_ms=1)
        store.create_run(make_spec(B_RUN, project="B", name="secret-b"))
        grants = {
            "reader": tokens.create_token(store, project="A", role="reader")[0],
            "writer": tokens.create_token(store, project="A", role="writer")[0],
            "admin": tokens.create_token(store, project="A", role="admin")[0],
            "other": tokens.create_token(store, project="B", role="admin")[0],
            "root": tokens.create_token(store, project="*", role="admin")[0],
        }
        revoked = tokens.create_token(store, project="A", role="admin")
        tokens.revoke_token(store, revoked[1].id)
        grants["revoked"] = revoked[0]
    return {"artifact": artifact, "tokens": grants}


def _calls(artifact: Any) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """Every store method once, in an order that succeeds for a token allowed everything."""
    return [
        ("get_run", [R], {}),
        ("match_run_ids", [R[:8]], {"limit": 10}),
        ("run_ids", [], {}),
        ("find_runs", [RunQuery()], {}),
        ("count_runs", [RunQuery()], {}),
        ("live_runs", [], {}),
        ("metric_history", [R, "loss"], {}),
        ("metric_digests", [R], {}),
        ("metric_chunks", [R], {}),
        ("get_records", [R], {}),
        ("read_output", [R], {}),
        ("run_artifacts", [R], {}),
        ("artifact_versions", [None, "model"], {}),
        ("artifacts_by_digest", ["sha256:1111"], {}),
        ("artifact_users", [artifact], {}),
        ("create_run", [make_spec(R2, project="A")], {}),
        ("apply_batch", [make_batch(R, acc=([0], [0.9]))], {}),
        ("heartbeat", [R, 5_000], {}),
        ("supersede_metrics", [R, 100], {}),
        ("record_artifact", [R, SPEC2], {"direction": "output", "path": "m2.bin", "time_ms": 2}),
        ("finish_run", [R2], {"status": RunStatus.FINISHED, "end_time_ms": 9_000}),
        ("seal_run", [R2, {"x": 1}], {}),
        ("reopen_run", [R2], {"time_ms": 10_000, "host": "h", "pid": 1, "entry": {}}),
        ("mark_crashed", [R2], {"end_time_ms": 11_000}),
        ("delete_artifact", [artifact, R], {}),
        ("referenced_objects", [], {}),
    ]


def _post(
    url: str, method: str, args: list[Any], kwargs: dict[str, Any], token: str | None
) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{url}/api/v1/store/{method}", data=wire.dumps({"args": args, "kwargs": kwargs}), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[AppServer, dict[str, Any], str]]:
    from runstone.server.app import create_app

    uri = f"sqlite:///{tmp_path}/server.db"
    seeded = _seed(uri)
    with AppServer(create_app(uri, api=True, auth=True)) as server:
        yield server, seeded, uri


EXPECT = {
    "anonymous": lambda m: 401,
    "revoked": lambda m: 401,
    "reader": lambda m: 403 if m in WRITES | ADMIN else 200,
    "writer": lambda m: 403 if m in ADMIN else 200,
    "admin": lambda m: 403 if m == "referenced_objects" else 200,
    "root": lambda m: 200,
}


@pytest.mark.parametrize("who", list(EXPECT))
def test_auth_matrix(served: tuple[AppServer, dict[str, Any], str], who: str) -> None:
    server, seeded, _ = served
    token = None if who == "anonymous" else seeded["tokens"][who]
    for method, args, kwargs in _calls(seeded["artifact"]):
        status, body = _post(server.url, method, args, kwargs, token)
        assert status == EXPECT[who](method), (who, method, status, body)
        if who != "root":  # project B never shows to A's tokens
            assert "secret-b" not in body and B_RUN not in body
    assert {m for m, _, _ in _calls(seeded["artifact"])} == set(wire.STORE_METHODS)  # every endpoint


def test_another_projects_token_sees_nothing_of_it(served: tuple[AppServer, dict[str, Any], str]) -> None:
    server, seeded, _ = served
    token = seeded["tokens"]["other"]  # an admin of project B
    for method, args, kwargs in _calls(seeded["artifact"]):
        status, body = _post(server.url, method, args, kwargs, token)
        if method == "create_run":
            assert status == 403 and "project 'B'" in body
        elif method == "referenced_objects":
            assert status == 403
        elif method in (
            "run_ids",
            "find_runs",
            "count_runs",
            "live_runs",
            "artifact_versions",
            "artifacts_by_digest",
            "match_run_ids",
        ):
            assert status == 200, (method, body)
        else:  # named by run ID or artifact: not found, as if it did not exist
            assert status == 404, (method, status, body)
        assert "secret-a" not in body, (method, body)
        if status == 200:  # (a 404 repeats the ID the caller sent)
            assert R not in body, (method, body)
    status, body = _post(server.url, "find_runs", [RunQuery(project="A")], {}, token)
    assert status == 403 and "project 'B', not 'A'" in body


def test_remote_store_with_tokens(
    served: tuple[AppServer, dict[str, Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, seeded, _ = served
    monkeypatch.delenv("RUNSTONE_TOKEN", raising=False)
    with open_store(server.url) as anonymous, pytest.raises(AuthenticationError, match="RUNSTONE_TOKEN"):
        anonymous.get_run(R)
    monkeypatch.setenv("RUNSTONE_TOKEN", seeded["tokens"]["reader"])
    with open_store(server.url) as store:
        assert store.get_run(R).name == "secret-a"
        assert [r.project for r in store.find_runs(RunQuery())] == ["A"]
        with pytest.raises(AccessError, match="needs a writer's"):
            store.heartbeat(R, 1)
        with pytest.raises(NotFoundError):
            store.get_run(B_RUN)
    # pages are not served when tokens are required (a browser sends none)
    with urllib.request.urlopen(server.url + "/", timeout=10) as response:
        assert b"runstone ui --uri" in response.read()


def test_token_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = f"sqlite:///{tmp_path}/s.db"

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "runstone", "token", *args, "--store", store]
        return subprocess.run(command, capture_output=True, text=True, check=check)

    token = json.loads(cli("create", "--project", "A", "--role", "writer", "--json").stdout)
    assert token["token"].startswith(f"rs_{token['id']}_") and token["role"] == "writer"
    with open_store(store) as s:
        assert tokens.lookup_token(s, token["token"]).project == "A"
        assert tokens.lookup_token(s, token["token"][:-1] + "x") is None
    listed = cli("ls")
    assert token["id"] in listed.stdout and token["token"] not in listed.stdout
    assert "revoked" in cli("revoke", token["id"]).stdout
    with open_store(store) as s:
        assert tokens.lookup_token(s, token["token"]) is None
    bad = cli("create", "--project", "A", "--role", "king", check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_forged_queries_are_refused_not_run(served: tuple[AppServer, dict[str, Any], str]) -> None:
    """Well-typed queries the filter language cannot say (an operator smuggling SQL, an unknown field)."""
    from runstone.store.query import Compare, Field, OrderKey

    server, seeded, _ = served
    token = seeded["tokens"]["reader"]
    forged = [
        RunQuery(filter=Compare(Field("attr", "id"), "= 'x') OR (1=1 OR runs.id =", "y")),
        RunQuery(filter=Compare(Field("attr", "bogus"), "=", "y")),
        RunQuery(filter=Compare(Field("attr", "started"), "=", 5)),
        RunQuery(order_by=(OrderKey(Field("attr", "pk) --")),)),
    ]
    for query in forged:
        for method in ("find_runs", "count_runs"):
            status, body = _post(server.url, method, [query], {}, token)
            assert status == 400 and "filter language" in body, (method, query, status, body)
            assert "secret-b" not in body


def test_another_projects_run_and_a_missing_run_look_alike(
    served: tuple[AppServer, dict[str, Any], str],
) -> None:
    server, seeded, _ = served
    token = seeded["tokens"]["reader"]
    _, theirs = _post(server.url, "get_run", [B_RUN], {}, token)
    _, missing = _post(server.url, "get_run", ["d" * 32], {}, token)
    assert theirs.replace(B_RUN, "X") == missing.replace("d" * 32, "X")
    status, body = _post(server.url, "match_run_ids", [R[:4]], {"limit": 5}, token)
    assert status == 200 and R in body and B_RUN not in body
