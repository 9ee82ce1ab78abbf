"""Faults: the server killed and restarted while clients log, and a client killed mid-run.

Real processes on loopback: a ``runstone server`` process, and client
processes that log with ``runstone.init(uri=http://...)``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runstone
from tests.server.test_server_cli import _free_port, _spawn, _wait_until_serving

STEPS = 1500
CLIENT = f"""
import sys, time, runstone
with runstone.init("faults", name=f"client-{{sys.argv[1]}}", flush_interval_s=0.05) as run:
    for step in range({STEPS}):
        run.log({{"loss": 1.0 / (step + 1), "client": float(sys.argv[1])}}, step=step)
        time.sleep(0.002)
"""


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> None:
    proc.send_signal(sig)
    proc.communicate(timeout=30)  # and close its pipe


def _start_server(store: str, port: int) -> subprocess.Popen[str]:
    proc = _spawn(store, "--port", str(port))
    assert "runstone server:" in proc.stdout.readline()
    _wait_until_serving(f"http://127.0.0.1:{port}")
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_server_killed_and_restarted_while_8_clients_log(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = (
        f"sqlite:///{tmp_path}/server.db" if backend == "sqlite" else request.getfixturevalue("postgres_uri")
    )
    port = _free_port()
    server = _start_server(store, port)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {**os.environ, "RUNSTONE_URI": f"http://127.0.0.1:{port}"}
    clients = [
        subprocess.Popen([sys.executable, str(script), str(i)], env=env, cwd=tmp_path) for i in range(8)
    ]
    try:
        time.sleep(2.0)  # the clients are logging
        _stop(server, signal.SIGKILL)
        time.sleep(1.5)  # down: the clients keep training, their writers retry
        server = _start_server(store, port)
        assert [c.wait(timeout=180) for c in clients] == [0] * 8
    finally:
        for c in clients:
            c.kill()
        _stop(server)
    with runstone.Client(store) as client:
        runs = client.find_runs("project = faults")
        assert sorted(r.name for r in runs) == sorted(f"client-{i}" for i in range(8))
        for run in runs:
            assert run.status.value == "finished", run.name
            history = client.metric_history(run.id, "loss")
            assert history.steps.tolist() == list(range(STEPS)), run.name  # every point
            assert run.metrics["loss"].count == STEPS  # once each


@pytest.mark.slow
def test_client_killed_mid_run_keeps_what_it_flushed(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/server.db"
    port = _free_port()
    server = _start_server(store, port)
    script = tmp_path / "client.py"
    script.write_text(CLIENT.replace(f"range({STEPS})", "range(10**9)"))
    env = {**os.environ, "RUNSTONE_URI": f"http://127.0.0.1:{port}"}
    try:
        client = subprocess.Popen([sys.executable, str(script), "0"], env=env, cwd=tmp_path)
        time.sleep(2.0)
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        killed_at = time.time()
        with runstone.Client(store) as reader:
            (run,) = reader.find_runs("project = faults")
            history = reader.metric_history(run.id, "loss")
            # contiguous from step 0, and recent: at most the last flush interval (plus a step) missing
            assert history.steps.tolist() == list(range(len(history)))
            assert killed_at * 1000 - history.timestamps_ms[-1] < 1500
    finally:
        _stop(server)
