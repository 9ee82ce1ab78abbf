"""Many processes and threads writing to one store at once: no lock errors, no lost points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import runstone
from runstone.entities import RunStatus
from tests.conftest import child_env

pytestmark = pytest.mark.slow

WORKER = """
import sys, threading, runstone
shared_id, worker, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
own = runstone.init(project="many", name=f"worker-{worker}")
def work(t):
    for i in range(steps):
        own.log({f"t{t}.a": float(i), f"t{t}.b": float(-i)}, step=i)
threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
for th in threads: th.start()
for th in threads: th.join()
own.finish()
import os
os.environ["RUNSTONE_RUN_ID"] = shared_id
with runstone.init() as shared:   # every worker also writes into one shared run
    for i in range(steps):
        shared.log({f"w{worker}": float(i)}, step=i)
print(own.id)
"""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_processes_and_threads_share_a_store(
    workdir: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    env = child_env(RUNSTONE_FLUSH_INTERVAL_S="0.05")
    if backend == "postgres":
        env["RUNSTONE_URI"] = request.getfixturevalue("postgres_uri")
    uri = env.get("RUNSTONE_URI")
    shared = runstone.init(project="many", name="shared", uri=uri)
    workers, steps = 6, 3000
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, shared.id, str(w), str(steps)],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    own_ids = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err, err
        own_ids.append(out.strip())
    shared.finish()
    with runstone.Client(uri) as client:
        _check(client, own_ids, shared.id, workers, steps)


def _check(client: runstone.Client, own_ids: list[str], shared_id: str, workers: int, steps: int) -> None:
    for run_id in own_ids:
        record = client.get_run(run_id)
        assert record.status is RunStatus.FINISHED
        assert {k: m.count for k, m in record.metrics.items()} == {
            f"t{t}.{s}": steps for t in range(3) for s in "ab"
        }
        history = client.metric_history(run_id, "t2.b")
        assert history.values.tolist() == [-float(i) for i in range(steps)]
    record = client.get_run(shared_id)
    assert {k: m.count for k, m in record.metrics.items()} == {f"w{w}": steps for w in range(workers)}
    assert client.count_runs() == workers + 1
