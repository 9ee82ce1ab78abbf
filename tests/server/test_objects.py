"""Artifact bytes through the server: streamed both ways, digests checked on both sides, tokens enforced."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runstone.artifacts.base import digest_bytes, digest_file
from runstone.artifacts.local import LocalObjectStore
from runstone.errors import AccessError, AuthenticationError, NotFoundError, StoreError, UsageError
from runstone.store.factory import open_store
from runstone.store.remote import RemoteObjectStore
from runstone.store.sql import tokens
from tests.conftest import AppServer
from tests.server.test_faults import _start_server
from tests.server.test_server_cli import _free_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[AppServer, dict[str, str], LocalObjectStore]]:
    from runstone.server.app import create_app

    uri = f"sqlite:///{tmp_path}/server.db"
    with open_store(uri) as store:
        grants = {
            role: tokens.create_token(store, project="A", role=role)[0] for role in ("reader", "writer")
        }
        revoked = tokens.create_token(store, project="A", role="admin")
        tokens.revoke_token(store, revoked[1].id)
        grants["revoked"] = revoked[0]
    objects = tmp_path / "server-objects"
    with AppServer(create_app(uri, api=True, auth=True, artifacts=str(objects))) as server:
        yield server, grants, LocalObjectStore(objects)


def _raw(server: AppServer, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def fetch_elsewhere(tmp_path: Path, env: dict[str, str], run_id: str, name: str, dest: str) -> Path:
    """``runstone artifacts get RUN NAME -o DEST`` from a fresh directory with no store of its own."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    got = subprocess.run(
        [sys.executable, "-m", "runstone", "artifacts", "get", run_id, name, "-o", dest],
        cwd=elsewhere,
        env={k: v for k, v in env.items() if k != "RUNSTONE_HOME"},
        capture_output=True,
        text=True,
    )
    assert got.returncode == 0, got.stderr
    return elsewhere / dest


def test_a_large_object_goes_up_and_down_streamed_and_checked(
    served: tuple[AppServer, dict[str, str], LocalObjectStore], tmp_path: Path
) -> None:
    server, grants, kept = served
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))
    writer = RemoteObjectStore(server.url, token=grants["writer"])
    tracemalloc.start()
    try:
        digest = writer.put_file(big)
        out = tmp_path / "back.bin"
        reader = RemoteObjectStore(server.url, token=grants["reader"])
        reader.get_file(digest, out)
        reader.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # client and server share this process: neither held the 48 MiB whole
    assert peak < 16 << 20, peak
    assert digest == digest_file(big)[0] == digest_file(out)[0]
    assert kept.has(digest) and kept.verify(digest)  # stored under its digest on the server's side
    assert writer.has(digest) and not writer.has(digest_bytes(b"never stored"))
    assert (
        writer.put_bytes(b"small") == digest_bytes(b"small")
        and writer.get_bytes(digest_bytes(b"small")) == b"small"
    )
    assert writer.read_head(digest, 4) == big.read_bytes()[:4]
    assert writer.get_bytes(digest_bytes(b"small")) == b"small"  # the pooled connection still works
    writer.close()


def test_a_corrupt_or_missing_object_never_reaches_the_file(
    served: tuple[AppServer, dict[str, str], LocalObjectStore], tmp_path: Path
) -> None:
    server, grants, kept = served
    reader = RemoteObjectStore(server.url, token=grants["reader"])
    digest = kept.put_bytes(b"the true content" * 1000)
    path = kept._path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"the false content" * 1000)
    with pytest.raises(StoreError, match="corrupt|broke off"):
        reader.get_file(digest, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    with pytest.raises(NotFoundError):
        reader.get_file(digest_bytes(b"nothing"), tmp_path / "none.bin")
    with pytest.raises(UsageError):  # a client cannot delete or list the server's objects
        reader.delete(digest)
    reader.close()


def test_objects_need_the_right_token(
    served: tuple[AppServer, dict[str, str], LocalObjectStore], tmp_path: Path
) -> None:
    server, grants, kept = served
    digest = kept.put_bytes(b"stored")
    path = f"/api/v1/objects/{digest}"
    octets = {"content-type": "application/octet-stream"}
    bearer = {name: {"authorization": f"Bearer {text}"} for name, text in grants.items()}
    assert _raw(server, "GET", path)[0] == 401
    assert _raw(server, "GET", path, **bearer["revoked"])[0] == 401
    assert _raw(server, "GET", path, **bearer["reader"]) == (200, b"stored")
    assert _raw(server, "HEAD", path, **bearer["reader"])[0] == 403
    new = b"new bytes"
    put = f"/api/v1/objects/{digest_bytes(new)}"
    assert _raw(server, "PUT", put, new, **octets, **bearer["reader"])[0] == 403
    assert not kept.has(digest_bytes(new))
    status, body = _raw(server, "PUT", put, new, **octets, **bearer["writer"])
    assert status == 201 and json.loads(body) == {"digest": digest_bytes(new), "size": len(new)}
    assert kept.get_bytes(digest_bytes(new)) == new
    # bytes that do not have the digest they are sent under are refused, and not stored
    lie = digest_bytes(b"something else")
    status, body = _raw(server, "PUT", f"/api/v1/objects/{lie}", new, **octets, **bearer["writer"])
    assert status == 400 and b"digest" in body and not kept.has(lie)
    assert _raw(server, "PUT", put, new, **{"content-type": "text/plain"}, **bearer["writer"])[0] == 415
    for token, error, said in (
        (grants["reader"], AccessError, "writer"),
        ("", AuthenticationError, "RUNSTONE_TOKEN"),
    ):
        client = RemoteObjectStore(server.url, token=token)
        with pytest.raises(error, match=said):
            client.put_bytes(b"a reader cannot store")
        client.close()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/objects/..%2F..%2Fserver.db",
        "/api/v1/objects/sha256:..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/v1/objects/../../store/get_run",
        "/api/v1/objects/sha256:" + "A" * 64,
        "/api/v1/objects/sha256:" + "0" * 63,
        "/api/v1/objects/%2e%2e",
        "/api/v1/objects/sha256:" + "0" * 64 + "%2F..",
    ],
)
def test_path_traversal_in_an_object_name_is_refused(
    served: tuple[AppServer, dict[str, str], LocalObjectStore], path: str
) -> None:
    server, grants, _ = served
    auth = {"authorization": f"Bearer {grants['writer']}", "content-type": "application/octet-stream"}
    for method in ("GET", "HEAD", "PUT"):
        status, body = _raw(server, method, path, b"x", **auth)
        assert status in (400, 404, 405), (method, path, status, body)
        assert b"SQLite" not in body and b"root:" not in body


TRAIN = """
import pathlib, runstone
pathlib.Path("data").mkdir(exist_ok=True)
pathlib.Path("data/a.txt").write_text("alpha")
pathlib.Path("data/b.bin").write_bytes(bytes(range(256)) * 4096)
with runstone.init("objects", name="with-files") as run:
    run.log({"loss": 0.5}, step=0)
    run.log_artifact("data", name="data")
    print(run.id)
"""


def test_a_client_records_and_another_fetches_artifacts_through_the_server(tmp_path: Path) -> None:
    port = _free_port()
    server = _start_server(f"sqlite:///{tmp_path}/srv/server.db", port)
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RUNSTONE_")},
            "RUNSTONE_URI": f"http://127.0.0.1:{port}",
        }
        maker = tmp_path / "maker"
        maker.mkdir()
        (maker / "train.py").write_text(TRAIN)
        done = subprocess.run(
            [sys.executable, "train.py"], cwd=maker, env=env, capture_output=True, text=True, check=True
        )
        run_id = done.stdout.strip()
        # the bytes went to the server's objects, not to a directory beside the client
        assert not (maker / ".runstone" / "objects").exists()
        assert list((tmp_path / "srv" / "objects" / "sha256").rglob("*"))
        copy = fetch_elsewhere(tmp_path, env, run_id, "data", "copy")
        assert (copy / "a.txt").read_text() == "alpha"
        assert (copy / "b.bin").read_bytes() == bytes(range(256)) * 4096
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def test_server_migrate_is_explicit(tmp_path: Path) -> None:
    import sqlite3

    from runstone.store.sql.schema import SCHEMA_VERSION

    db = tmp_path / "old.db"
    with open_store(str(db)):
        pass
    conn = sqlite3.connect(db)  # as the previous schema left it
    conn.execute("DROP TABLE tokens")
    conn.execute("UPDATE schema_info SET version = ?", (SCHEMA_VERSION - 1,))
    conn.commit()
    conn.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "runstone", "server", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    refused = cli("--store", f"sqlite:///{db}", "--port", str(_free_port()))
    assert refused.returncode == 6 and "runstone server migrate" in refused.stderr
    done: Any = json.loads(cli("migrate", "--store", f"sqlite:///{db}", "--json").stdout)
    assert done == {
        "store": f"sqlite:///{db}",
        "from": SCHEMA_VERSION - 1,
        "to": SCHEMA_VERSION,
        "changed": True,
    }
    again = cli("--store", f"sqlite:///{db}", "migrate")  # --store before the action names it too
    assert again.returncode == 0 and "nothing to do" in again.stdout and str(db) in again.stdout
    with open_store(str(db), upgrade=False) as store:  # the tokens table is back
        assert tokens.list_tokens(store) == []


@pytest.mark.postgres
def test_a_server_over_postgresql_and_s3_takes_and_gives_artifacts(
    postgres_uri: str, s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runstone
    from runstone.artifacts.remote import FsspecObjectStore
    from runstone.server.app import create_app

    monkeypatch.delenv("RUNSTONE_ARTIFACTS", raising=False)
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.bin").write_bytes(os.urandom(3 << 20))
    (data / "y.txt").write_text("why")
    with AppServer(create_app(postgres_uri, api=True, artifacts=s3_url)) as server:
        with runstone.init("s3", uri=server.url, capture=False) as run:
            artifact = run.log_artifact(data, name="data")
        with runstone.Client(server.url) as client:
            assert client.artifacts_location == server.url  # the bytes go through the server
            client.download(artifact, tmp_path / "back")
    assert (tmp_path / "back" / "x.bin").read_bytes() == (data / "x.bin").read_bytes()
    assert (tmp_path / "back" / "y.txt").read_text() == "why"
    in_s3 = FsspecObjectStore(s3_url)
    assert in_s3.has(artifact.digest) and in_s3.has(digest_file(data / "x.bin")[0])
    assert not (tmp_path / ".runstone" / "objects").exists()


def test_uploads_need_a_length_and_room(
    served: tuple[AppServer, dict[str, str], LocalObjectStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    import runstone.server.api as api

    server, grants, kept = served
    data = b"some bytes"
    path = f"/api/v1/objects/{digest_bytes(data)}"
    auth = {"authorization": f"Bearer {grants['writer']}"}
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    try:  # chunked: no declared length
        conn.request(
            "PUT", path, body=iter([data]), headers={**auth, "content-type": "application/octet-stream"}
        )
        response = conn.getresponse()
        assert response.status == 411 and b"Content-Length" in response.read()
    finally:
        conn.close()
    monkeypatch.setattr(api, "_HEADROOM_BYTES", 1 << 62)  # as if the disk were full
    status, body = _raw(server, "PUT", path, data, **auth, **{"content-type": "application/octet-stream"})
    assert status == 507 and b"free for uploads" in body and not kept.has(digest_bytes(data))
    monkeypatch.undo()
    assert _raw(server, "PUT", path, data, **auth, **{"content-type": "application/octet-stream"})[0] == 201
    assert list((kept.root / "tmp").iterdir()) == []  # staged in the objects' tmp/, and gone


def test_a_folder_is_copied_files_first_so_a_manifest_means_a_whole_tree(tmp_path: Path) -> None:
    import runstone
    from runstone.api.sync import copy_run_objects

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    (tmp_path / "d" / "b.txt").write_text("b")
    uri = str(tmp_path / "src" / "runstone.db")
    with runstone.init("p", uri=uri, capture=False) as run:
        artifact = run.log_artifact(tmp_path / "d", name="d")
    have, want = LocalObjectStore(tmp_path / "src" / "objects"), LocalObjectStore(tmp_path / "dst")
    lost = digest_bytes(b"b")
    os.chmod(have._path(lost), 0o644)
    have._path(lost).unlink()
    with open_store(uri) as source:
        problems = copy_run_objects(source, run.id, (have, want))
    assert (problems and lost in problems[0]) or "No object" in problems[0]
    assert not want.has(artifact.digest)  # no manifest for a tree the target lacks part of
    have.put_bytes(b"b")
    with open_store(uri) as source:
        assert copy_run_objects(source, run.id, (have, want)) == []
    assert want.has(artifact.digest) and want.has(lost)


def test_a_forked_child_opens_its_own_connections(
    served: tuple[AppServer, dict[str, str], LocalObjectStore],
) -> None:
    server, grants, _ = served
    objects = RemoteObjectStore(server.url, token=grants["writer"])
    digest = objects.put_bytes(b"pooled")
    assert objects._idle  # a connection waits in the pool
    parent = objects._idle[0]
    objects._pid = -1  # as seen from a forked child
    assert objects.get_bytes(digest) == b"pooled"
    assert parent not in objects._idle  # the parent's connection was left to the parent
    parent.close()
    objects.close()


def test_settings_for_a_database_never_name_it_as_the_objects(tmp_path: Path) -> None:
    from runstone import settings

    env = {"RUNSTONE_URI": "http://runs.example.com:8765", "RUNSTONE_HOME": str(tmp_path)}
    client = settings.current(env)
    assert client.artifacts == "http://runs.example.com:8765"  # a server's clients: through it
    database = settings.for_store(client, "postgresql://u:secret@db/runstone", env)
    assert database.artifacts == str(tmp_path / "objects")
    assert settings.for_store(
        client, "postgresql://db/x", {**env, "RUNSTONE_ARTIFACTS": "s3://b/p"}
    ).artifacts == ("s3://b/p")


@contextlib.contextmanager
def _fake_server(answer: Callable[[bytes, Any], None]) -> Iterator[str]:
    """A loopback HTTP server, one connection at a time: ``answer(request head, connection)``; its URL."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    got = conn.recv(65536)
                    if not got:
                        break
                    head += got
                answer(head.split(b"\r\n\r\n")[0], conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept() (close alone does not)
        listener.close()


def test_an_answer_sent_before_the_upload_was_read_reaches_the_user(tmp_path: Path) -> None:
    """A proxy that refuses a large body answers at once and closes: that answer is the error shown."""
    import time

    def proxy(head: bytes, conn: Any) -> None:
        if head.startswith(b"HEAD"):  # not stored yet
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        conn.sendall(
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: text/plain\r\ncontent-length: 26\r\n"
            b"connection: close\r\n\r\nclient_max_body_size: 1m\n\n"
        )
        time.sleep(0.05)

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(32 << 20))
    with _fake_server(proxy) as url:
        objects = RemoteObjectStore(url)
        try:
            with pytest.raises(StoreError, match="client_max_body_size"):
                objects.put_file(big)
        finally:
            objects.close()


def test_an_upload_a_killed_process_left_half_done_goes_on_from_what_the_server_holds(
    served: tuple[AppServer, dict[str, str], LocalObjectStore], tmp_path: Path
) -> None:
    import socket
    import time

    server, grants, kept = served
    data = os.urandom(24 << 20)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    digest = digest_bytes(data)
    # a client sends the first 6 MiB of it, and dies
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as raw:
        raw.sendall(
            f"PUT /api/v1/objects/{digest} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            f"authorization: Bearer {grants['writer']}\r\ncontent-type: application/octet-stream\r\n"
            f"content-length: {len(data)}\r\nx-upload-offset: 0\r\nx-upload-length: {len(data)}\r\n\r\n".encode()
            + data[: 6 << 20]
        )
    objects = RemoteObjectStore(server.url, token=grants["writer"])
    deadline = time.monotonic() + 20
    while not (held := objects.uploaded(digest)):  # the server keeps what arrived
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert held is not None and 0 < held <= 6 << 20
    progress: list[int] = []
    try:
        assert objects.put_file(big, progress=lambda done, total: progress.append(done)) == digest
    finally:
        objects.close()
    assert progress[0] > held  # it went on from there, not from the start
    assert kept.verify(digest) and list((kept.root / "tmp").iterdir()) == []
    # a resumed upload that does not start where the server's copy ends is told where it does
    status, body = _raw(
        server,
        "PUT",
        f"/api/v1/objects/{digest_bytes(b'x' * 10)}",
        b"x" * 5,
        **{
            "authorization": f"Bearer {grants['writer']}",
            "content-type": "application/octet-stream",
            "x-upload-offset": "5",
            "x-upload-length": "10",
        },
    )
    assert status == 409 and b"send the rest from there" in body


def test_a_download_that_breaks_off_goes_on_from_where_it_stopped(tmp_path: Path) -> None:
    """A server whose first answer breaks off after part of the object is asked for the rest (Range)."""
    data = os.urandom(3 << 20)
    digest = digest_bytes(data)
    cut = 1 << 20
    asked: list[bytes] = []

    def serve(head: bytes, conn: Any) -> None:
        asked.append(head)
        start = 0
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"range: bytes="):
                start = int(line.split(b"=")[1].rstrip(b"-"))
        if not start:  # all of it announced, part of it sent
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(data) + data[:cut])
            return
        rest = data[start:]
        conn.sendall(
            b"HTTP/1.1 206 Partial Content\r\ncontent-length: %d\r\n"
            b"content-range: bytes %d-%d/%d\r\n\r\n" % (len(rest), start, len(data) - 1, len(data)) + rest
        )

    with _fake_server(serve) as url:
        objects = RemoteObjectStore(url)
        try:
            objects.get_file(digest, tmp_path / "out.bin")
        finally:
            objects.close()
    assert (tmp_path / "out.bin").read_bytes() == data
    assert len(asked) == 2 and f"range: bytes={cut}-".encode() in asked[1].lower()
