"""Shared fixtures: isolated working directories and a real PostgreSQL server.

PostgreSQL: ``RUNSTONE_TEST_POSTGRES_URI`` names a server to use (each test
gets a fresh database on it). Otherwise, when PostgreSQL's binaries are
installed, the session starts a throwaway cluster on a free loopback port
(as the ``postgres`` user when running as root, since initdb refuses root)
and stops it at the end. With neither, PostgreSQL tests are skipped — unless
``RUNSTONE_REQUIRE_POSTGRES=1`` (CI sets it), which makes them fail instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with no runstone settings inherited from outside."""
    for name in list(os.environ):
        if name.startswith("RUNSTONE_") and name not in (
            "RUNSTONE_TEST_POSTGRES_URI",
            "RUNSTONE_REQUIRE_POSTGRES",
        ):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RUNSTONE_FLUSH_INTERVAL_S", "0.2")
    return work


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python process: no inherited RUNSTONE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTONE_")}
    env.update(extra)
    return env


def runstone_cmd() -> list[str]:
    return [sys.executable, "-m", "runstone"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, found)
    return Path(candidates[0]).parent if candidates else None


def _start_cluster() -> tuple[str, object]:
    bindir = _pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb found); apt-get install postgresql")
    base = Path(tempfile.mkdtemp(prefix="runstone-pg-"))
    data = base / "data"
    port = _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        os.chmod(base, 0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(base / "log"),
            "-o",
            options,
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URI of a PostgreSQL server's maintenance database."""
    uri = os.environ.get("RUNSTONE_TEST_POSTGRES_URI")
    stop = None
    if not uri:
        try:
            uri, stop = _start_cluster()
        except Exception as e:  # reported as a skip or failure below
            message = f"no PostgreSQL server for the tests: {e}"
            if os.environ.get("RUNSTONE_REQUIRE_POSTGRES") == "1":
                pytest.fail(message)
            pytest.skip(message)
    yield uri
    if stop is not None:
        stop()  # type: ignore[operator]


@pytest.fixture
def postgres_uri(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint of a real S3-compatible server on loopback (moto's server mode), for the session."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the S3-compatible server (moto) did not start; pip install 'moto[server]'")
            time.sleep(0.05)
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_url(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/objects`` on the test S3 server, with the environment pointing at it."""
    import fsspec

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(bucket)
    fsspec.filesystem("s3").invalidate_cache()
    return f"s3://{bucket}/objects"


class AppServer:
    """An ASGI app served by uvicorn in a thread on a free loopback port (``url``), as a context manager."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from runstone.server.app import open_socket

        self.sock = open_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
