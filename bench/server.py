"""The server under load: ingest from 1, 8 and 32 client processes, and reads during it, vs MLflow.

    .venv/bin/python bench/server.py            # defaults: about 4-5 minutes (MLflow's part dominates)
    .venv/bin/python bench/server.py --quick    # 1 and 8 clients, smaller loads: under 2 minutes
    # [--workers 2] [--clients 1,8,32] [--modes stream,requests] [--mlflow-cap-s 45] [--no-mlflow]
    # [--json PATH] [--keep]

Everything runs on this machine, on loopback, and is torn down at the end:

- a throwaway PostgreSQL cluster (initdb under a temporary folder, as the
  ``postgres`` user when run as root, stock settings: fsync and
  synchronous_commit on), with one database for runstone and one for MLflow;
- ``runstone server --store postgresql://... --workers N`` as a process;
- load: each client is a process of its own with its own run
  (``runstone.init(uri="http://127.0.0.1:PORT", capture=False)``) logging
  10 metrics per step (``run.log({10 keys}, step=i)``), then ``finish()``.
  Two ways: "stream" lets the run's writer batch as it does in training (a
  flush a second, and whatever is left at ``finish()``); "1,000-point
  requests" also calls ``run.flush()`` every 100 steps, so each request
  carries 1,000 points and waits for its answer, as MLflow's ``log_batch``.
  100,000 points per client, 800,000 at most in all (25,000 each at 32
  clients), as the anchor file's; --quick: 20,000 and 160,000.
  Clients start, create their runs and wait; the window runs from the
  moment they are told to go until the last ``finish()`` returned (data
  durable). Afterwards every point is checked through the store itself
  (``runstone.Client("postgresql://...")``): each run finished, each
  metric's history exactly the steps sent with the values sent, and the
  stored point count (duplicates included) equal to the points sent;
- reads: a reader process loops ``Client("http://...").metric_history(run,
  "big")`` on a pre-filled 10,000-point metric during every ingest window
  (p50/p99 of the calls that started in it), and 20 times when idle;
- failed requests: runstone's writer retries quietly, so each client counts,
  at its HTTP layer (``RemoteStore``), every store call that raised and every
  5xx answer (runstone's server keeps no access log); MLflow's 5xx come from
  its server's access log. Also counted: every line the clients wrote to
  stderr, and every error line in the server's log during the window;
- CPU: the server's process tree and PostgreSQL's, from /proc, over each window.

MLflow (``bench/.peers/mlflow``: mlflow 3.17.2 and psycopg2-binary, installed
there on first use as bench/run.py does) runs the same load against
``mlflow server --backend-store-uri postgresql+psycopg2://... --workers N`` on
the other database: each client ``create_run`` then ``log_batch`` of 1,000
points (10 keys x 100 steps) until its points are sent or --mlflow-cap-s
passed, then ``set_terminated``; no client retries
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``), so a failure is counted, as in
an earlier measurement of an MLflow server on this machine. Its stored points are
counted in its database. Without MLflow (--no-mlflow, or the install fails)
the table compares with that measurement's numbers instead, labeled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / ".peers"
MLFLOW_VERSION = "3.17.2"
KEYS = 10  # metrics per step, as the anchor's 10 keys x 100 steps per log_batch
REQUEST_STEPS = 100  # steps per request in the "1,000-point requests" mode
BIG_POINTS = 10_000  # the pre-filled metric the reader reads
IDLE_READS = 20
PROJECT = "serverbench"

#: MLflow on this machine, from an earlier measurement of its tracking server (PostgreSQL rows;
#: mlflow 3.17.2, 4 workers, stock PostgreSQL 15): clients -> (points/s, log_batch p50, p99 ms)
ANCHOR_FILE = "an earlier MLflow 3.17 server measurement on this machine (2026-11-26)"
ANCHOR_INGEST = {1: (3_874, 244.9, 442.5), 8: (6_465, 900.5, 2_449.1), 32: (7_154, 4_115.7, 9_077.9)}
ANCHOR_READ_IDLE_P50_MS = 596.7
ANCHOR_READ_LOAD_MS = (2_664.6, 5_095.0)  # p50, p99 during 8-client ingest


# --- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTONE_", "MLFLOW_"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "1"
    env.update(extra)
    return env


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (as the anchor file's), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def wait_http(url: str, proc: subprocess.Popen[Any], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{url} did not answer (exit {proc.poll()}):\n{tail}")
        time.sleep(0.1)


def stop_group(proc: subprocess.Popen[Any], timeout_s: float = 20.0) -> None:
    """Stop a process started in a session of its own, and whatever it started (by its group ID)."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:  # anything of its group still there (MLflow's job runners)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


# --- CPU from /proc --------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds: user + system, its own and its reaped children's)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        cpu = sum(int(f) for f in fields[11:15]) / tick
        table[int(entry)] = (int(fields[1]), cpu)
    return table


def tree_cpu(root: int, table: dict[int, tuple[int, float]]) -> float:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
        todo += children.get(pid, [])
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


# --- PostgreSQL ------------------------------------------------------------------------------


def pg_bindir() -> Path:
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if shutil.which("initdb"):
        found.insert(0, str(shutil.which("initdb")))
    if not found:
        raise SystemExit("PostgreSQL is not installed (no initdb); apt-get install postgresql")
    return Path(found[0]).parent


class Postgres:
    """A throwaway cluster on a free loopback port, stock settings (fsync on), as tests/conftest.py."""

    def __init__(self) -> None:
        self.bindir = pg_bindir()
        self.base = base = Path(tempfile.mkdtemp(prefix="runstone-serverbench-pg-"))
        self.data = base / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            shutil.chown(base, "postgres", "postgres")
            os.chmod(base, 0o700)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def start(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "initdb"), "-D", str(self.data), "--auth=trust", "-Upostgres"],
            check=True,
            capture_output=True,
        )
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=300"
        pg_ctl = [*self.as_user, str(self.bindir / "pg_ctl"), f"-D{self.data}", f"-l{self.base / 'log'}"]
        subprocess.run(
            [*pg_ctl, "-w", "-o", options, "start"],
            check=True,
            capture_output=True,
        )

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def uri(self, db: str, driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.uri("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.uri("postgres")) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)


# --- the processes the harness starts: roles of this same file -------------------------------
#
# ``python bench/server.py _ROLE JSON`` runs one role; the MLflow roles run in MLflow's venv, so
# this file imports nothing outside the standard library at its top.


def _wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")


def _write(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data))


def role_rs_load(p: dict[str, Any]) -> None:
    """One runstone client: its own run, ``run.log({10 keys}, step)`` for p['steps'] steps, finish()."""
    import runstone
    from runstone.store import remote

    latencies: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []
    status_5xx = [0]
    call_orig, answer_orig = remote.RemoteStore._call, remote.RemoteStore._answer

    def call(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return call_orig(self, method, *args, **kwargs)
        except Exception as e:
            errors.append(f"{method}: {type(e).__name__}: {e}"[:300])
            raise
        finally:
            if method == "apply_batch":
                latencies.append(time.perf_counter() - t)
                sizes.append(args[0].point_count)

    def answer(self: Any, status: int, data: bytes) -> Any:
        if status >= 500:
            status_5xx[0] += 1
        return answer_orig(self, status, data)

    remote.RemoteStore._call = call  # type: ignore[method-assign]
    remote.RemoteStore._answer = answer  # type: ignore[method-assign]
    keys = [f"m{k}" for k in range(KEYS)]
    run = runstone.init(PROJECT, name=p["name"], uri=p["url"], capture=False)
    _wait_for_go()
    t0, c0 = time.time(), time.process_time()
    every = p["flush_every"]
    for step in range(p["steps"]):
        run.log({key: step * 0.001 + k for k, key in enumerate(keys)}, step=step)
        if every and (step + 1) % every == 0:
            run.flush()
    t_logged = time.time()
    run.finish()
    t1 = time.time()
    _write(
        p["out"],
        {
            "run_id": run.id,
            "start": t0,
            "logged": t_logged,
            "end": t1,
            "cpu_s": time.process_time() - c0,
            "sent": p["steps"] * KEYS,
            "latencies": latencies,
            "sizes": sizes,
            "errors": errors,
            "status_5xx": status_5xx[0],
        },
    )


def role_rs_prefill(p: dict[str, Any]) -> None:
    import runstone

    run = runstone.init(PROJECT + "-prefill", name="prefill", uri=p["url"], capture=False)
    for step in range(BIG_POINTS):
        run.log({"big": step * 0.5}, step=step)
    run.finish()
    print(json.dumps({"run_id": run.id}), flush=True)


def _reader(read: Callable[[], int], p: dict[str, Any]) -> None:
    """Read once (warm), then p['idle'] timed reads, or timed reads from 'go' until 'stop'."""
    if read() != BIG_POINTS:
        raise SystemExit("the pre-filled history is not whole")
    calls: list[tuple[float, float, int]] = []

    def timed() -> None:
        t, t0 = time.time(), time.perf_counter()
        n = read()
        calls.append((t, time.perf_counter() - t0, n))

    if p.get("idle"):
        for _ in range(p["idle"]):
            timed()
    else:
        stop = threading.Event()
        _wait_for_go()
        threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
        while not stop.is_set():
            timed()
    _write(p["out"], {"calls": calls})


def role_rs_read(p: dict[str, Any]) -> None:
    import runstone

    client = runstone.Client(p["url"])
    _reader(lambda: len(client.metric_history(p["run_id"], "big")), p)


def role_ml_prefill(p: dict[str, Any]) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(p["url"])
    experiment = client.create_experiment(PROJECT)
    run = client.create_run(experiment)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    for start in range(0, BIG_POINTS, 1000):
        client.log_batch(run_id, metrics=[Metric("big", s * 0.5, now, s) for s in range(start, start + 1000)])
    client.set_terminated(run_id)
    print(json.dumps({"run_id": run_id, "experiment_id": experiment}), flush=True)


def role_ml_read(p: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(p["url"])
    _reader(lambda: len(client.get_metric_history(p["run_id"], "big")), p)


def role_ml_load(p: dict[str, Any]) -> None:
    """One MLflow client: its own run, log_batch of 1,000 points until sent or the cap, set_terminated."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(p["url"])
    run_id = client.create_run(p["experiment_id"], run_name=p["name"]).info.run_id
    keys = [f"m{k}" for k in range(KEYS)]
    latencies: list[float] = []
    errors: list[str] = []
    acked = 0
    _wait_for_go()
    t0, c0 = time.time(), time.process_time()
    deadline = time.monotonic() + p["cap_s"]
    for first in range(0, p["steps"], REQUEST_STEPS):
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, step * 0.001 + k, now, step)
            for step in range(first, min(first + REQUEST_STEPS, p["steps"]))
            for k, key in enumerate(keys)
        ]
        t = time.perf_counter()
        try:
            client.log_batch(run_id, metrics=metrics)
            acked += len(metrics)
        except Exception as e:
            errors.append(f"log_batch: {type(e).__name__}: {e}"[:300])
        latencies.append(time.perf_counter() - t)
        if time.monotonic() > deadline:
            break
    try:
        client.set_terminated(run_id)
    except Exception as e:
        errors.append(f"set_terminated: {type(e).__name__}: {e}"[:300])
    t1 = time.time()
    _write(
        p["out"],
        {
            "run_id": run_id,
            "start": t0,
            "end": t1,
            "cpu_s": time.process_time() - c0,
            "sent": acked + 1000 * sum(e.startswith("log_batch") for e in errors),
            "acked": acked,
            "latencies": latencies,
            "sizes": [1000] * len(latencies),
            "errors": errors,
            "status_5xx": 0,  # counted in the server's access log
        },
    )


ROLES: dict[str, Callable[[dict[str, Any]], None]] = {
    "_rs_load": role_rs_load,
    "_rs_prefill": role_rs_prefill,
    "_rs_read": role_rs_read,
    "_ml_load": role_ml_load,
    "_ml_prefill": role_ml_prefill,
    "_ml_read": role_ml_read,
}


# --- the servers -----------------------------------------------------------------------------


class Tool:
    """One side of the comparison: how to start its server, its roles, and how to count its points."""

    name = ""
    python: Path

    def __init__(self, work: Path, workers: int, store: str) -> None:
        self.work = work
        self.workers = workers
        self.store = store
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / f"{self.name}-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_url(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        t = time.perf_counter()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.work,
                env=clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(self.ready_url(), self.proc, 180, self.log)
        self.started_s = time.perf_counter() - t

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def spawn(self, role: str, params: dict[str, Any], stderr: Path) -> subprocess.Popen[str]:
        with stderr.open("w") as err:
            return subprocess.Popen(
                [str(self.python), str(Path(__file__).resolve()), role, json.dumps(params)],
                cwd=self.work,
                env=clean_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def run_role(self, role: str, params: dict[str, Any]) -> dict[str, Any]:
        err = self.work / f"{role}.stderr"
        proc = self.spawn(role, params, err)
        out, _ = proc.communicate(timeout=600)
        if proc.returncode:
            raise RuntimeError(f"{role} failed:\n{err.read_text()[-3000:]}")
        return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> tuple[list[str], int]:
        """(error lines, 5xx answers in its access log) the server wrote after ``offset``.

        runstone's server keeps no access log: its 5xx answers are counted by its clients.
        """
        with self.log.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
        words = ("Traceback", "ERROR", "Exception", "CRITICAL")
        errors = [line for line in lines if any(w in line for w in words)]
        return errors, sum(1 for line in lines if re.search(r'HTTP/[0-9.]+" 5[0-9][0-9] ', line))


class Runstone(Tool):
    name = "runstone"
    python = Path(sys.executable)
    load_role, read_role = "_rs_load", "_rs_read"

    def command(self) -> list[str]:
        return [
            str(self.python),
            "-m",
            "runstone",
            "server",
            "--store",
            self.store,
            "--workers",
            str(self.workers),
            "--port",
            str(self.port),
        ]

    def ready_url(self) -> str:
        return f"{self.url}/api/v1/info"

    def prefill(self) -> dict[str, Any]:
        return self.run_role("_rs_prefill", {"url": self.url})

    def verify(self, outputs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
        """Each run finished; each metric's history the steps and values sent; raw stored count = sent."""
        import numpy as np

        import runstone
        from runstone.store.factory import open_store

        bad: list[str] = []
        stored = 0
        expect_steps = np.arange(steps, dtype=np.int64)
        with runstone.Client(self.store) as client:
            store = open_store(self.store)
            for out in outputs:
                run = client.get_run(out["run_id"])
                if run.status.value != "finished":
                    bad.append(f"{run.name}: {run.status.value}")
                raw = store.metric_digests(run.id)
                for k in range(KEYS):
                    key = f"m{k}"
                    history = client.metric_history(run.id, key)
                    count = raw.get(key, {}).get("count", 0)
                    stored += count
                    if count != steps or run.metrics[key].count != steps:
                        bad.append(f"{run.name} {key}: {count} stored, summary {run.metrics[key].count}")
                    if not np.array_equal(history.steps, expect_steps) or not np.array_equal(
                        history.values, expect_steps * 0.001 + k
                    ):
                        bad.append(f"{run.name} {key}: history differs")
        return {"stored": stored, "problems": bad[:20]}


class Mlflow(Tool):
    name = "mlflow"
    load_role, read_role = "_ml_load", "_ml_read"

    def __init__(self, work: Path, workers: int, store: str, python: Path) -> None:
        self.python = python
        super().__init__(work, workers, store)
        self.experiment_id = ""

    def command(self) -> list[str]:
        return [
            str(self.python.parent / "mlflow"),
            "server",
            "--backend-store-uri",
            self.store,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    def ready_url(self) -> str:
        return f"{self.url}/health"

    def prefill(self) -> dict[str, Any]:
        result = self.run_role("_ml_prefill", {"url": self.url})
        self.experiment_id = result["experiment_id"]
        return result

    def verify(self, outputs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
        """Points in MLflow's ``metrics`` table per run: those acknowledged, no (key, step) twice."""
        import psycopg

        bad: list[str] = []
        stored = 0
        uri = self.store.replace("postgresql+psycopg2://", "postgresql://")
        with psycopg.connect(uri) as conn:
            for out in outputs:
                row = conn.execute(
                    "SELECT COUNT(*), COUNT(DISTINCT (key, step)) FROM metrics WHERE run_uuid = %s",
                    (out["run_id"],),
                ).fetchone()
                count, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
                stored += count
                if count != out["acked"] or distinct != count:
                    bad.append(f"{out['run_id']}: {count} stored ({distinct} distinct), {out['acked']} acked")
        return {"stored": stored, "problems": bad[:20]}


def ensure_mlflow() -> Path:
    """MLflow and psycopg2-binary in bench/.peers/mlflow (installed once, as bench/run.py does)."""
    venv = PEERS / "mlflow"
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"setting up MLflow {MLFLOW_VERSION} in {venv} (once, about a minute)...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    have = subprocess.run(
        [str(python), "-c", "import mlflow, psycopg2; print(mlflow.__version__)"],
        check=False,
        capture_output=True,
        text=True,
    )
    if have.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}", "psycopg2-binary"],
            check=True,
            timeout=900,
        )
    return python


# --- one configuration -----------------------------------------------------------------------


def run_config(
    tool: Any, postgres: Postgres, big_run: str, clients: int, steps: int, mode: str, cap_s: float
) -> dict[str, Any]:
    """``clients`` load processes and a reader against ``tool``'s server; the numbers of one window."""
    tag = f"{tool.name}-{mode}-{clients}"
    folder = tool.work / tag
    folder.mkdir()
    reader = tool.spawn(
        tool.read_role,
        {"url": tool.url, "run_id": big_run, "out": str(folder / "reader.json")},
        folder / "reader.stderr",
    )
    loads = [
        tool.spawn(
            tool.load_role,
            {
                "url": tool.url,
                "name": f"{tag}-{i}",
                "steps": steps,
                "flush_every": REQUEST_STEPS if mode == "requests" else 0,
                "experiment_id": getattr(tool, "experiment_id", ""),
                "cap_s": cap_s,
                "out": str(folder / f"client-{i}.json"),
            },
            folder / f"client-{i}.stderr",
        )
        for i in range(clients)
    ]
    try:
        for proc in [reader, *loads]:
            if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                proc.wait(30)
                errs = sorted(folder.glob("*.stderr"))
                raise RuntimeError(f"{tag}: a process did not start:\n" + errs[0].read_text()[-3000:])
        table = _proc_table()
        cpu0 = (tree_cpu(tool.proc.pid, table), tree_cpu(postgres.pid(), table), machine_ticks())
        log_offset = tool.log_size()
        go = time.time()
        for proc in [reader, *loads]:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in loads:
            proc.wait(timeout=cap_s + 600)
        done = time.time()
        table = _proc_table()
        cpu1 = (tree_cpu(tool.proc.pid, table), tree_cpu(postgres.pid(), table), machine_ticks())
        assert reader.stdin is not None
        reader.stdin.write("stop\n")
        reader.stdin.flush()
        reader.wait(120)
    finally:
        for proc in [reader, *loads]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    server_errors, server_5xx = tool.log_since(log_offset)
    failed = [p for p in loads if p.returncode]
    if failed:
        first = folder / f"client-{loads.index(failed[0])}.stderr"
        raise RuntimeError(f"{tag}: {len(failed)} clients failed:\n" + first.read_text()[-3000:])
    outputs = [json.loads((folder / f"client-{i}.json").read_text()) for i in range(clients)]
    end = max(o["end"] for o in outputs)
    window = end - go
    check = tool.verify(outputs, steps)
    latencies = [x for o in outputs for x in o["latencies"]]
    sizes = [x for o in outputs for x in o["sizes"]]
    reads = json.loads((folder / "reader.json").read_text())["calls"]
    in_window = [d for t, d, n in reads if go <= t <= end]
    short = [n for t, d, n in reads if n != BIG_POINTS]
    if short:
        check["problems"].append(f"{len(short)} reads of the {BIG_POINTS:,}-point metric got {min(short):,}")
    stderr_lines = [
        line
        for f in sorted(folder.glob("*.stderr"))
        for line in f.read_text(errors="replace").splitlines()
        if line.strip()
    ]
    busy = (cpu1[2][0] - cpu0[2][0]) / max(1, cpu1[2][1] - cpu0[2][1])
    sent = sum(o["sent"] for o in outputs)
    result = {
        "tool": tool.name,
        "mode": mode,
        "clients": clients,
        "steps_per_client": steps,
        "sent": sent,
        "stored": check["stored"],
        "problems": check["problems"],
        "window_s": window,
        "points_per_s": check["stored"] / window,
        "slowest_client_s": max(o["end"] - o["start"] for o in outputs),
        "requests": len(latencies),
        "points_per_request": sum(sizes) / len(sizes) if sizes else None,
        "request_p50_ms": _ms(percentile(latencies, 50)),
        "request_p99_ms": _ms(percentile(latencies, 99)),
        "failed_requests": sum(len(o["errors"]) for o in outputs),
        "status_5xx": sum(o["status_5xx"] for o in outputs) + server_5xx,
        "server_error_lines": server_errors[:10],
        "errors": [e for o in outputs for e in o["errors"]][:10],
        "stderr_lines": stderr_lines[:10],
        "error_line_count": len(stderr_lines) + len(server_errors),
        "reads": len(in_window),
        "read_p50_ms": _ms(percentile(in_window, 50)),
        "read_p99_ms": _ms(percentile(in_window, 99)),
        "short_reads": len(short),
        "server_cores": (cpu1[0] - cpu0[0]) / (done - go),
        "postgres_cores": (cpu1[1] - cpu0[1]) / (done - go),
        "client_cores": sum(o["cpu_s"] for o in outputs) / window,
        "machine_busy": busy,
        "server_cpu_us_per_point": (cpu1[0] - cpu0[0]) / max(1, check["stored"]) * 1e6,
    }
    say(
        f"  {tag}: {result['points_per_s']:,.0f} points/s ({result['stored']:,}/{sent:,} points in "
        f"{window:.2f} s), {result['requests']} requests p50 {_fmt(result['request_p50_ms'])} ms, "
        f"read p50 {_fmt(result['read_p50_ms'])} ms ({len(in_window)}), failed {result['failed_requests']}, "
        f"server {result['server_cores']:.2f} cores, postgres {result['postgres_cores']:.2f}"
        + (f"; PROBLEMS {check['problems'][:3]}" if check["problems"] else "")
    )
    return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _fmt(value: float | None, spec: str = ",.1f") -> str:
    return "—" if value is None else format(value, spec)


def idle_reads(tool: Any, big_run: str) -> dict[str, Any]:
    out = tool.work / f"{tool.name}-idle-reads.json"
    tool.run_role(tool.read_role, {"url": tool.url, "run_id": big_run, "idle": IDLE_READS, "out": str(out)})
    calls = [d for _, d, _ in json.loads(out.read_text())["calls"]]
    return {"reads": len(calls), "p50_ms": _ms(percentile(calls, 50)), "p99_ms": _ms(percentile(calls, 99))}


def steps_for(clients: int, quick: bool) -> int:
    """Steps per client: 100,000 points each, at most 800,000 in all (as the anchor: 25,000 at 32)."""
    most, total = (20_000, 160_000) if quick else (100_000, 800_000)
    return min(most, total // clients) // KEYS


def run_tool(
    tool: Any, postgres: Postgres, counts: list[int], modes: list[str], quick: bool, cap_s: float
) -> dict[str, Any]:
    say(f"{tool.name}: starting its server ({tool.workers} workers) ...")
    tool.start()
    say(f"  up in {tool.started_s:.1f} s; pre-filling a {BIG_POINTS:,}-point metric ...")
    try:
        big_run = tool.prefill()["run_id"]
        idle = idle_reads(tool, big_run)
        say(f"  idle read of {BIG_POINTS:,} points: p50 {_fmt(idle['p50_ms'])} ms")
        configs = [
            run_config(tool, postgres, big_run, n, steps_for(n, quick), mode, cap_s)
            for mode in modes
            for n in counts
        ]
    finally:
        tool.stop()
    return {
        "server_start_s": tool.started_s,
        "idle_read": idle,
        "configs": configs,
    }


# --- report ----------------------------------------------------------------------------------

MODE_NAMES = {"stream": "stream (writer batches)", "requests": "1,000-point requests"}


def print_report(results: dict[str, Any]) -> None:
    rows = []
    for tool in ("runstone", "mlflow"):
        part = results.get(tool)
        if not part:
            continue
        for c in part["configs"]:
            rows.append(
                [
                    tool if tool == "runstone" else f"MLflow {MLFLOW_VERSION}",
                    MODE_NAMES[c["mode"]] if tool == "runstone" else "log_batch of 1,000",
                    str(c["clients"]),
                    f"{c['points_per_s']:,.0f}",
                    f"{c['stored']:,}/{c['sent']:,}",
                    f"{c['window_s']:.2f}",
                    f"{c['requests']:,} × {_fmt(c['points_per_request'], ',.0f')}",
                    f"{_fmt(c['request_p50_ms'])} / {_fmt(c['request_p99_ms'])}",
                    f"{_fmt(c['read_p50_ms'])} / {_fmt(c['read_p99_ms'])} ({c['reads']})",
                    f"{c['failed_requests']} / {c['status_5xx']} / {c['error_line_count']}",
                    f"{c['server_cores']:.2f}",
                    f"{c['postgres_cores']:.2f}",
                    f"{c['client_cores']:.2f}",
                    f"{c['machine_busy']:.0%}",
                ]
            )
    head = [
        "server",
        "how clients send",
        "clients",
        "points/s",
        "stored/sent",
        "window s",
        "requests × points",
        "request p50/p99 ms",
        "read 10k p50/p99 ms (n)",
        "failed / 5xx / error lines",
        "server cores",
        "pg cores",
        "client cores",
        "busy",
    ]
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for tool in ("runstone", "mlflow"):
        part = results.get(tool)
        if part:
            idle = part["idle_read"]
            print(
                f"{tool}: idle read of {BIG_POINTS:,} points p50 {_fmt(idle['p50_ms'])} ms, "
                f"p99 {_fmt(idle['p99_ms'])} ms ({idle['reads']}); "
                f"server up in {part['server_start_s']:.1f} s"
            )
    problems = [
        (results[t]["configs"][i]["mode"], results[t]["configs"][i]["clients"], p)
        for t in ("runstone", "mlflow")
        if results.get(t)
        for i in range(len(results[t]["configs"]))
        for p in results[t]["configs"][i]["problems"]
    ]
    if problems:
        print(f"VERIFICATION PROBLEMS: {problems[:10]}")
    print_ratios(results)


def print_ratios(results: dict[str, Any]) -> None:
    ours = results["runstone"]
    live = results.get("mlflow")
    if live:
        theirs = {c["clients"]: (c["points_per_s"], c["read_p50_ms"]) for c in live["configs"]}
        theirs_idle = live["idle_read"]["p50_ms"]
        print(
            f"\nrunstone / MLflow {MLFLOW_VERSION}: same run, same machine, {results['workers']} workers each"
        )
    else:
        theirs = {n: (v[0], ANCHOR_READ_LOAD_MS[0] if n == 8 else None) for n, v in ANCHOR_INGEST.items()}
        theirs_idle = ANCHOR_READ_IDLE_P50_MS
        print(
            f"\nrunstone vs MLflow {MLFLOW_VERSION} numbers FROM {ANCHOR_FILE} (same machine, NOT the same "
            "run; MLflow with 4 workers, PostgreSQL, a reader only at 8 clients):"
        )
    print("| runstone's clients send | clients | runstone/MLflow ingest | MLflow/runstone read p50 |")
    print("|---|---:|---:|---:|")
    for c in ours["configs"]:
        other = theirs.get(c["clients"])
        if not other:
            continue
        ingest = c["points_per_s"] / other[0]
        read = (
            f"{other[1] / c['read_p50_ms']:,.1f}x"
            if other[1] is not None and c["read_p50_ms"] is not None
            else "—"
        )
        print(f"| {MODE_NAMES[c['mode']]} | {c['clients']} | {ingest:,.1f}x | {read} |")
    if theirs_idle and ours["idle_read"]["p50_ms"]:
        print(f"idle read p50: MLflow/runstone {theirs_idle / ours['idle_read']['p50_ms']:,.1f}x")


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller loads, shorter MLflow windows: ~2 min")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes, both servers (2)")
    parser.add_argument("--clients", help="concurrent client counts (default 1,8,32; --quick 1,8)")
    parser.add_argument(
        "--modes",
        default="stream,requests",
        help="how runstone's clients send: stream, requests (1,000-point flushes), or both (default)",
    )
    parser.add_argument(
        "--mlflow-cap-s", type=float, help="stop each MLflow client after this long (default 45; --quick 8)"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="compare with the anchor file's numbers")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, client outputs)")
    args = parser.parse_args()
    counts = [int(x) for x in (args.clients or ("1,8" if args.quick else "1,8,32")).split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    if not set(modes) <= set(MODE_NAMES):
        raise SystemExit(f"--modes: stream and/or requests, not {args.modes}")
    cap_s = args.mlflow_cap_s or (8.0 if args.quick else 45.0)
    t_start = time.perf_counter()

    mlflow_python: Path | None = None
    mlflow_note = ""
    if not args.no_mlflow:
        try:
            mlflow_python = ensure_mlflow()
        except (subprocess.SubprocessError, OSError) as e:
            mlflow_note = f"MLflow could not be installed ({e}); comparing with {ANCHOR_FILE}"
            say(mlflow_note)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode for runstone, so 32 clients do not compile it
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "runstone")], check=True, env=env)

    work = Path(tempfile.mkdtemp(prefix="runstone-serverbench-"))
    postgres = Postgres()
    results: dict[str, Any] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "workers": args.workers,
        "quick": args.quick,
        "clients": counts,
        "modes": modes,
        "mlflow_cap_s": cap_s,
    }
    try:
        say(f"PostgreSQL: a throwaway cluster in {postgres.base} ...")
        postgres.start()
        results["postgresql"] = postgres.version()
        postgres.create_db("runstone")
        ours = Runstone(work, args.workers, postgres.uri("runstone"))
        results["runstone"] = run_tool(ours, postgres, counts, modes, args.quick, cap_s)
        if mlflow_python is not None:
            postgres.create_db("mlflow")
            theirs = Mlflow(work, args.workers, postgres.uri("mlflow", "postgresql+psycopg2"), mlflow_python)
            results["mlflow"] = run_tool(theirs, postgres, counts, ["requests"], args.quick, cap_s)
        else:
            results["mlflow_note"] = mlflow_note or f"--no-mlflow: compared with {ANCHOR_FILE}"
            results["anchor"] = {
                "file": ANCHOR_FILE,
                "ingest_points_per_s_p50_p99_ms": ANCHOR_INGEST,
                "read_idle_p50_ms": ANCHOR_READ_IDLE_P50_MS,
                "read_in_8_client_ingest_p50_p99_ms": ANCHOR_READ_LOAD_MS,
            }
    finally:
        postgres.stop()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["total_s"] = time.perf_counter() - t_start
    print(
        f"\nrunstone server under load on {os.cpu_count()} CPUs (clients, reader, servers and "
        f"PostgreSQL {results['postgresql']} share them), {args.workers} server workers, "
        f"{KEYS} metrics per step; total {results['total_s']:.0f} s"
    )
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\n(details: {args.json})")


if __name__ == "__main__":
    main()
