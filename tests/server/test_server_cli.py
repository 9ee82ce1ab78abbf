"""``runstone server`` as users run it: a real process, real clients in other processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import runstone

CLIENT = """
import sys, runstone
with runstone.init("shared", name=f"client-{sys.argv[1]}", flush_interval_s=0.05) as run:
    for step in range(2000):
        run.log({"loss": 1.0 / (step + 1), "worker": float(sys.argv[1])}, step=step)
"""


def _spawn(store: str, *options: str) -> subprocess.Popen[str]:
    """``runstone server --store STORE OPTIONS...`` as a process, its output piped."""
    command = [sys.executable, "-m", "runstone", "server", "--store", store, *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    store = f"sqlite:///{tmp_path}/server.db"
    port = _free_port()
    proc = _spawn(store, "--port", str(port), "--workers", str(request.param))
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line + proc.stderr.read()
        assert "RUNSTONE_URI=" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(url)
        yield url, store
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err


def _wait_until_serving(url: str) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/api/v1/info", timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_clients_in_other_processes_record_through_the_server(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, store = server
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {**os.environ, "RUNSTONE_URI": url}
    clients = [
        subprocess.Popen([sys.executable, str(script), str(i)], env=env, cwd=tmp_path) for i in range(4)
    ]
    assert [c.wait(timeout=120) for c in clients] == [0, 0, 0, 0]
    # what the server's store holds, read directly: every point of every client, once
    with runstone.Client(store) as direct:
        runs = direct.find_runs("project = shared")
        assert sorted(r.name for r in runs) == [f"client-{i}" for i in range(4)]
        for run in runs:
            history = direct.metric_history(run.id, "loss")
            assert history.steps.tolist() == list(range(2000)) and run.status.value == "finished"
    # and the same through the server, with the CLI
    listed = subprocess.run(
        [sys.executable, "-m", "runstone", "ls", "--uri", url, "--filter", "project = shared", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.count('"client-') == 4


def test_beyond_loopback_every_request_needs_a_token(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    port = _free_port()
    proc = _spawn(f"sqlite:///{tmp_path}/s.db", "--host", "0.0.0.0", "--port", str(port))
    try:
        assert f"http://127.0.0.1:{port}/" in proc.stdout.readline()
        assert "RUNSTONE_TOKEN=<token>" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(url)
        request = urllib.request.Request(
            url + "/api/v1/store/run_ids", data=b"{}", headers={"content-type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request, timeout=10)
        assert e.value.code == 401
        e.value.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "no API tokens yet" in err and "runstone token create" in err


def test_without_auth_the_server_says_so(tmp_path: Path) -> None:
    port = _free_port()
    proc = _spawn(f"sqlite:///{tmp_path}/s.db", "--port", str(port))
    try:
        proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert re.search(r"WARNING: no authentication", err)


def test_listening_socket_sends_small_answers_at_once() -> None:
    """Without TCP_NODELAY a small answer (headers, then body) waits ~40 ms for the client's delayed ACK."""
    from runstone.server.app import open_socket

    sock = open_socket("127.0.0.1", 0)
    with sock:
        assert sock.proto == socket.IPPROTO_TCP  # so asyncio sets TCP_NODELAY on every connection
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_name_the_server_was_not_told_is_named_in_the_error(tmp_path: Path) -> None:
    from runstone.errors import StoreError
    from runstone.server.app import create_app
    from runstone.store.factory import open_store
    from tests.conftest import AppServer

    uri = f"sqlite:///{tmp_path}/s.db"
    with (
        AppServer(create_app(uri, api=True, hosts=["10.9.9.9"])) as server,
        pytest.raises(StoreError, match="does not answer to the name '127.0.0.1'"),
    ):
        open_store(server.url)
    with (
        AppServer(create_app(uri, api=True, hosts=["10.9.9.9", "127.0.0.1"])) as server,
        open_store(server.url) as store,
    ):
        assert store.run_ids() == []


def test_workers_stop_when_the_main_process_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed supervisor leaves no worker serving the port: the server can be started again."""
    import time

    store = f"sqlite:///{tmp_path}/server.db"
    port = _free_port()
    proc = _spawn(store, "--port", str(port), "--workers", "2")
    try:
        assert "runstone server:" in proc.stdout.readline()
        _wait_until_serving(f"http://127.0.0.1:{port}")
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    deadline = time.monotonic() + 15
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break  # nobody listens any more
        assert time.monotonic() < deadline, "the workers outlived their main process"
        time.sleep(0.2)
    again = _spawn(store, "--port", str(port))
    try:
        assert "runstone server:" in again.stdout.readline()
        _wait_until_serving(f"http://127.0.0.1:{port}")
    finally:
        again.send_signal(signal.SIGINT)
        again.communicate(timeout=30)
