"""Durability with real processes and real signals: exit, exceptions, SIGTERM, SIGINT, kill -9."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runstone
from runstone.entities import RunStatus
from tests.conftest import child_env

pytestmark = pytest.mark.slow

# A child started from a background job (CI, nohup) inherits ignored SIGINT/SIGHUP;
# give it the dispositions of a program started from a terminal.
PRELUDE = """
import signal, sys, time, runstone
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
run = runstone.init(project="durability")
print(run.id, flush=True)
"""


def _spawn(code: str, cwd: Path, interval: str = "0.2") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + code],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(RUNSTONE_FLUSH_INTERVAL_S=interval),
    )


def _end(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for the child and close its pipes; returns (exit code, stderr)."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _run_id(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def _wait_for(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"child ended before printing {text!r}: {proc.stderr.read() if proc.stderr else ''}")


def test_normal_exit_without_finish(workdir: Path) -> None:
    proc = _spawn("for i in range(5000): run.log({'x': float(i)}, step=i)\n", workdir)
    run_id = _run_id(proc)
    assert _end(proc)[0] == 0
    record = runstone.Client().get_run(run_id)
    assert record.status is RunStatus.FINISHED
    assert len(runstone.Client().metric_history(run_id, "x")) == 5000


def test_uncaught_exception_marks_failed(workdir: Path) -> None:
    proc = _spawn("run.log({'x': 1.0})\nraise ValueError('bad data')\n", workdir)
    run_id = _run_id(proc)
    returncode, err = _end(proc)
    assert returncode == 1
    record = runstone.Client().get_run(run_id)
    assert record.status is RunStatus.FAILED
    assert record.error == "ValueError: bad data"
    assert record.metrics["x"].count == 1
    assert "ValueError: bad data" in err


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [(signal.SIGTERM, 128 + 15), (signal.SIGINT, -signal.SIGINT), (signal.SIGHUP, 128 + 1)],
)
def test_signal_marks_killed_and_keeps_every_point(workdir: Path, signum: int, exit_code: int) -> None:
    code = (
        "for i in range(20000): run.log({'x': float(i)}, step=i)\n"
        "print('logged', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = _spawn(code, workdir, interval="3600")  # no periodic flush: only the signal path saves it
    run_id = _run_id(proc)
    _wait_for(proc, "logged")
    proc.send_signal(signum)
    returncode = _end(proc)[0]
    # SIGINT ends Python through KeyboardInterrupt, which exits by the same signal
    assert returncode == exit_code
    record = runstone.Client().get_run(run_id)
    assert record.status is RunStatus.KILLED
    assert len(runstone.Client().metric_history(run_id, "x")) == 20000


def test_kill_minus_9_at_random_moments(workdir: Path) -> None:
    """Several writers killed mid-flight: the store stays sound, each run shows crashed,
    and each keeps a contiguous prefix of its points up to about one flush interval before the kill."""
    interval_s = 0.2
    code = (
        "i = 0\n"
        "print('go', flush=True)\n"
        "while True:\n"
        "    run.log({'x': float(i), 'y': -float(i)}, step=i)\n"
        "    i += 1\n"
        "    if i % 1000 == 0: time.sleep(0.001)\n"
    )
    rng = random.Random()
    procs = [_spawn(code, workdir, interval=str(interval_s)) for _ in range(4)]
    ids = [_run_id(p) for p in procs]
    for p in procs:
        _wait_for(p, "go")
    kill_times_ms = []
    for p in procs:
        time.sleep(rng.uniform(0.2, 1.5))
        kill_times_ms.append(time.time() * 1000)
        p.kill()
        _end(p)
    db = workdir / ".runstone" / "runstone.db"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    client = runstone.Client()
    for run_id, killed_ms in zip(ids, kill_times_ms, strict=True):
        record = client.get_run(run_id)
        assert record.status is RunStatus.CRASHED
        for key, sign in (("x", 1.0), ("y", -1.0)):
            if key in record.metrics:
                hist = client.metric_history(run_id, key)
                steps, values = hist.steps.tolist(), hist.values.tolist()
                last_durable_ms = int(hist.timestamps_ms[-1])
            else:  # killed before its first flush
                steps, values, last_durable_ms = [], [], record.start_time_ms
            assert steps == list(range(len(steps))), "durable points form a prefix"
            assert values == [sign * s for s in steps]
            lost_ms = killed_ms - last_durable_ms
            # at most the last interval (plus scheduling slack on a loaded 2-core machine)
            assert lost_ms <= interval_s * 1000 + 1500, lost_ms


def test_crashed_run_is_detected_by_heartbeat_on_another_host(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runstone.store.factory import open_store
    from runstone.store.testing import make_spec

    monkeypatch.setenv("RUNSTONE_HEARTBEAT_TIMEOUT_S", "5")
    client = runstone.Client()
    with open_store(client.uri) as store:
        now = int(time.time() * 1000)
        from dataclasses import replace

        store.create_run(replace(make_spec("a" * 32), start_time_ms=now - 60_000))  # silent for 60 s
        store.create_run(replace(make_spec("b" * 32), start_time_ms=now))  # just started
    assert runstone.Client().reap(now_ms=now) == ["a" * 32]
    assert runstone.Client().get_run("b" * 32).status is RunStatus.RUNNING


def test_a_forked_child_logs_into_the_parents_run(workdir: Path) -> None:
    code = (
        "import os\n"
        "run.log({'parent': 1.0}, step=0)\n"  # buffered before the fork: the parent writes it, once
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    runstone.log({'child': 2.0}, step=0)\n"
        "    runstone.active_run().flush()\n"
        "    os._exit(0)\n"  # like a multiprocessing worker: no exit hooks
        "os.waitpid(pid, 0)\n"
        "run.log({'parent': 3.0}, step=1)\n"
    )
    proc = _spawn(code, workdir, interval="3600")
    run_id = _run_id(proc)
    returncode, err = _end(proc)
    assert returncode == 0, err
    record = runstone.Client().get_run(run_id)
    assert record.status is RunStatus.FINISHED  # the child did not end the parent's run
    assert record.metrics["parent"].count == 2
    assert record.metrics["child"].count == 1


def test_multiprocessing_workers_keep_what_they_log(workdir: Path) -> None:
    code = (
        "import multiprocessing as mp\n"
        "def work(k):\n"
        "    runstone.log({f'w{k}': float(k)}, step=0)\n"
        "ctx = mp.get_context('fork')\n"
        "procs = [ctx.Process(target=work, args=(k,)) for k in range(3)]\n"
        "[p.start() for p in procs]\n"
        "[p.join() for p in procs]\n"
        "assert all(p.exitcode == 0 for p in procs)\n"
    )
    proc = _spawn(code, workdir, interval="3600")
    run_id = _run_id(proc)
    returncode, err = _end(proc)
    assert returncode == 0, err
    assert sorted(runstone.Client().get_run(run_id).metrics) == ["w0", "w1", "w2"]


def test_sigterm_to_the_whole_group_still_saves_everything(workdir: Path) -> None:
    """A service manager signals every process; a wrapper forwards the same signal again."""
    code = (
        "for i in range(50000): run.log({'x': float(i)}, step=i)\n"
        "print('logged', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = _spawn(code, workdir, interval="3600")
    run_id = _run_id(proc)
    _wait_for(proc, "logged")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # the repeat, while the first is being handled
    assert _end(proc)[0] == 128 + signal.SIGTERM
    assert len(runstone.Client().metric_history(run_id, "x")) == 50000


def test_signal_during_an_explicit_flush_loses_nothing(workdir: Path) -> None:
    code = (
        "import os, threading\n"
        "for i in range(300000): run.log({'a': float(i), 'b': float(i)}, step=i)\n"
        "threading.Timer(0.03, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
        "run.flush()\n"
        "time.sleep(600)\n"
    )
    proc = _spawn(code, workdir, interval="3600")
    run_id = _run_id(proc)
    assert _end(proc)[0] == 128 + signal.SIGTERM
    record = runstone.Client().get_run(run_id)
    assert record.status is RunStatus.KILLED
    assert {k: m.count for k, m in record.metrics.items()} == {"a": 300000, "b": 300000}


def test_processes_creating_a_new_store_at_once(workdir: Path) -> None:
    code = "import runstone, sys\nrunstone.init(project='race').finish()\n"
    for attempt in range(5):
        home = workdir / f"store{attempt}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=workdir,
                env=child_env(RUNSTONE_HOME=str(home)),
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), errors
        assert runstone.Client(f"sqlite:///{home / 'runstone.db'}").count_runs() == 6
