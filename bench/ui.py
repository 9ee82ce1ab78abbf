"""The web UI over a big store: the runs table, run pages and a 1M-point chart, served and in a browser.

    .venv/bin/python bench/ui.py                                 # 100,000 runs, a 1,000,000-point series
    .venv/bin/python bench/ui.py --runs 2000 --points 100000     # a quick check (well under a minute)

Three parts, in one go:

- fill: a fresh SQLite store (in a temporary folder, or --keep DIR) gets
  --runs runs written through runstone's own Store interface (``create_run``,
  ``apply_batch``, ``finish_run`` / ``mark_crashed``; no environment capture):
  four params, two or three metrics of a few points, two or three tags and a
  status each (finished, failed, crashed, killed; the newest few running),
  and some reproductions of earlier runs carrying ``reproduction_of`` and
  ``verdict`` tags. Then one more run gets a --points-point metric (a few
  spikes and one NaN) in batches of 100,000 points.
- server: the app of ``runstone ui`` (``create_app`` on uvicorn, loopback, in
  its own process) answers each page or API call --repeat times after one
  warm-up (fewer, 5 at least, once a case has taken --budget seconds):
  median and p95 of the whole request (a new connection each time, body
  read). The first request for the big series after a server start, before
  the server has cached its history, is timed over --cold starts. Then the
  store calls behind those pages, timed in this process through ``Client``.
- browser: Debian's chromium through Playwright (never ``playwright
  install``): the runs table's navigation timings, and the big run's metrics
  page until its chart has drawn (``charts.js`` marks ``rs-first-chart``).

Nothing is compared with a peer (see bench/README.md). --json PATH keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BIG_NAME = "long-1m"
BIG_KEY = "loss"
BATCH_POINTS = 100_000
MARKER = "bench-ui.json"

#: the UI server, as tests/ui/conftest.py starts it, in a process of its own
SERVER = """
import sys
import uvicorn
from runstone.server.app import create_app, open_socket
sock = open_socket("127.0.0.1", 0)
config = uvicorn.Config(create_app(sys.argv[1]), log_level="warning", access_log=False, lifespan="on")
server = uvicorn.Server(config)
print(sock.getsockname()[1], flush=True)
server.run(sockets=[sock])
"""


# --- filling the store ------------------------------------------------------------------


def fill(uri: str, runs: int, points: int, seed: int) -> dict[str, Any]:
    """Write ``runs`` runs and one run with a ``points``-point series; returns their IDs and timings."""
    from runstone._ids import friendly_name, new_run_id
    from runstone.entities import Batch, MetricSeries, RunSpec, RunStatus
    from runstone.store.factory import open_store

    rng = random.Random(seed)
    store = open_store(uri, create=True)
    now = int(time.time() * 1000)
    running = min(10, max(1, runs // 1000))
    spacing_ms = 150_000  # a run every 2.5 minutes: 100,000 runs span about 6 months
    start = now - (runs + 10) * spacing_ms
    finished: list[tuple[str, str, dict[str, Any]]] = []  # (id, name, params) of runs to reproduce
    ids: list[str] = []
    repro_of: dict[str, str] = {}
    statuses: dict[str, int] = {}
    small_run = None  # a finished run in the middle with 8 or more points: its series is downsampled
    t0 = time.perf_counter()
    for i in range(runs):
        started = start + i * spacing_ms + rng.randrange(spacing_ms // 2)
        run_id = new_run_id(started)
        project = "vision" if rng.random() < 0.7 else "nlp"
        live = i >= runs - running
        tags = {
            "stage": rng.choices(("sweep", "baseline", "ablation", "debug"), (70, 10, 15, 5))[0],
            "dataset": rng.choice(("cifar10", "imagenet-1k") if project == "vision" else ("wikitext-103",)),
        }
        if rng.random() < 0.2:
            tags["owner_note"] = rng.choice(("keep", "rerun with warmup", "best so far"))
        original = finished[-rng.randrange(1, min(len(finished), 500) + 1)] if finished else None
        if original is not None and not live and rng.random() < 0.01:
            of_id, of_name, params = original
            name = f"{of_name}-repro1"
            tags["reproduction_of"] = of_id
            tags["verdict"] = rng.choices(("IDENTICAL", "EQUIVALENT", "DIVERGED"), (60, 25, 15))[0]
            status = "finished"
            repro_of[run_id] = of_id
        else:
            name = friendly_name(run_id)
            params = {
                "lr": round(10 ** rng.uniform(-4.5, -0.5), 6),
                "batch_size": rng.choice((32, 64, 128, 256, 512)),
                "depth": rng.randrange(2, 25),
                "optimizer": rng.choices(("adam", "adamw", "sgd", "lion"), (40, 35, 20, 5))[0],
            }
            status = (
                "running"
                if live
                else rng.choices(("finished", "failed", "crashed", "killed"), (85, 8, 5, 2))[0]
            )
        statuses[status] = statuses.get(status, 0) + 1
        host = f"gpu-{rng.randrange(16):02d}"
        store.create_run(
            RunSpec(
                id=run_id,
                project=project,
                name=name,
                start_time_ms=started,
                command=("python", "train.py", f"optimizer.lr={params['lr']}", f"depth={params['depth']}"),
                cwd=f"/home/team/{project}",
                host=host,
                user=rng.choice(("ana", "ben", "chen", "dara", "eli")),
                pid=rng.randrange(1000, 60000),
                runstone_version="0.1.0",
            )
        )
        duration = int(rng.lognormvariate(math.log(20 * 60_000), 0.8))
        n = rng.randrange(4, 11) if status != "failed" else rng.randrange(1, 5)
        stamps = array("q", (started + duration * (j + 1) // n for j in range(n)))
        steps = array("q", range(0, n * 100, 100))
        decay = 0.5 + 4 * params["lr"]
        loss = [2.3 * math.exp(-decay * j) + 0.05 + 0.02 * rng.random() for j in range(n)]
        if status == "failed" and rng.random() < 0.3:
            loss[-1] = math.nan  # diverged
        acc = [max(0.0, min(1.0, 1 - v / 2.4 + 0.01 * rng.random())) for v in loss]
        series = [MetricSeries("loss", steps, array("d", loss), stamps)]
        series.append(MetricSeries("acc", steps, array("d", acc), stamps))
        if rng.random() < 0.67:
            val = array("d", (v * (1.05 + 0.05 * rng.random()) for v in loss))
            series.append(MetricSeries("val_loss", steps, val, stamps))
        store.apply_batch(
            Batch(
                uuid.uuid4().hex,
                run_id,
                metrics=tuple(series),
                params=params,
                tags=tags,
                heartbeat_ms=now if live else stamps[-1],
            )
        )
        end = stamps[-1] + rng.randrange(1000, 30_000)
        if status == "crashed":
            store.mark_crashed(run_id, end_time_ms=stamps[-1])
        elif status == "finished":
            store.finish_run(run_id, status=RunStatus.FINISHED, end_time_ms=end, exit_code=0)
        elif status == "failed":
            error = rng.choice(
                (
                    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
                    "ValueError: loss is NaN at step 300",
                    "FileNotFoundError: [Errno 2] No such file or directory: 'data/shard-0007.tar'",
                )
            )
            store.finish_run(run_id, status=RunStatus.FAILED, end_time_ms=end, exit_code=1, error=error)
        elif status == "killed":
            store.finish_run(run_id, status=RunStatus.KILLED, end_time_ms=end, exit_code=130)
        if status == "finished" and run_id not in repro_of:
            finished.append((run_id, name, params))
            if small_run is None and i >= runs // 2 and n >= 8:
                small_run = run_id
        ids.append(run_id)
        if (i + 1) % 10_000 == 0:
            print(f"  {i + 1:,} runs, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    runs_s = time.perf_counter() - t0

    big_id, series_s = fill_big(store, points, now - 3 * 86_400_000, seed)
    store.close()
    middle = ids[len(ids) // 2] if ids else big_id
    position = {run_id: i for i, run_id in enumerate(ids)}
    originals = sorted(set(repro_of.values()), key=lambda r: abs(position[r] - len(ids) // 2))
    return {
        "runs": runs,
        "points": points,
        "seed": seed,
        "big": big_id,
        "page_run": originals[0] if originals else middle,
        "small_run": small_run or middle,
        "running_ids": ids[-running:],
        "statuses": statuses,
        "reproductions": len(repro_of),
        "runs_s": runs_s,
        "series_s": series_s,
    }


def fill_big(store: Any, points: int, started: int, seed: int) -> tuple[str, float]:
    """One finished run with a ``points``-point metric, written in batches of 100,000 points."""
    import numpy as np

    from runstone._ids import new_run_id
    from runstone.entities import Batch, MetricSeries, RunSpec, RunStatus

    rng = np.random.default_rng(seed)
    steps = np.arange(points, dtype=np.int64)
    values = 2.3 * np.exp(-steps / (points / 4)) + 0.1 + 0.02 * rng.standard_normal(points)
    for at in (0.11, 0.37, 0.52, 0.83):  # spikes one point wide; the charts must keep them
        values[int(points * at)] = 25.0
    values[int(points * 0.61)] = np.nan
    stamps = started + steps * 250  # a point every 250 ms
    run_id = new_run_id()
    spec = RunSpec(
        id=run_id,
        project="vision",
        name=BIG_NAME,
        start_time_ms=int(started),
        command=("python", "train.py", "trainer.steps=1000000"),
        cwd="/home/team/vision",
        host="gpu-00",
        user="ana",
        pid=4242,
        runstone_version="0.1.0",
    )
    t0 = time.perf_counter()
    store.create_run(spec)
    params = {"lr": 0.003, "batch_size": 256, "depth": 50, "optimizer": "adamw"}
    store.apply_batch(Batch(uuid.uuid4().hex, run_id, params=params, tags={"stage": "long"}))
    for lo in range(0, points, BATCH_POINTS):
        hi = min(points, lo + BATCH_POINTS)
        series = MetricSeries(
            BIG_KEY,
            array("q", steps[lo:hi].tobytes()),
            array("d", values[lo:hi].tobytes()),
            array("q", stamps[lo:hi].tobytes()),
        )
        store.apply_batch(
            Batch(uuid.uuid4().hex, run_id, metrics=(series,), heartbeat_ms=int(stamps[hi - 1]))
        )
    store.finish_run(run_id, status=RunStatus.FINISHED, end_time_ms=int(stamps[-1]) + 5000, exit_code=0)
    return run_id, time.perf_counter() - t0


def keep_running(uri: str, info: dict[str, Any]) -> None:
    """A fresh heartbeat for the runs that are running (a reused store's are old)."""
    from runstone.store.factory import open_store

    now = int(time.time() * 1000)
    with open_store(uri, create=False) as store:
        for run_id in info.get("running_ids", []):
            store.heartbeat(run_id, now)


def store_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("runstone.db*"))


# --- the server ---------------------------------------------------------------------------


class Server:
    """``runstone ui``'s app on uvicorn on loopback, in a process of its own."""

    def __init__(self, uri: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTONE_")}
        env["RUNSTONE_HEARTBEAT_TIMEOUT_S"] = "86400"  # see main()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, uri], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
        )
        assert self.proc.stdout is not None
        port = self.proc.stdout.readline().strip()
        if not port:
            self.proc.wait(10)
            raise RuntimeError("the UI server did not start (its error is above)")
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                get(self.url + "/static/favicon.svg")
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("the UI server did not answer") from None
                time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(url: str) -> tuple[float, bytes]:
    """(seconds for the whole request, body); fails on any status but 200."""
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=300) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"GET {url}: HTTP {e.code}\n{e.read()[:2000]!r}") from None
    return time.perf_counter() - t0, body


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def timed_requests(url: str, repeat: int, budget_s: float) -> dict[str, Any]:
    """One warm-up, then ``repeat`` requests, or fewer (5 at least) once they took ``budget_s``."""
    get(url)
    times: list[float] = []
    size = 0
    while len(times) < repeat and (len(times) < 5 or sum(times) < budget_s):
        seconds, body = get(url)
        times.append(seconds)
        size = len(body)
    return {
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": p95(times) * 1000,
        "n": len(times),
        "kb": size / 1000,
    }


def q(path: str, **params: Any) -> str:
    return f"{path}?{urllib.parse.urlencode(params)}" if params else path


def server_cases(info: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, path, what it checks) of each timed request."""
    runs, points, big = info["runs"], info["points"], info["big"]
    pages = max(1, math.ceil((runs + 1) / 50))
    deep = min(1000, pages)
    series = {"run": big, "key": BIG_KEY, "points": 2000}
    lo, hi = int(points * 0.40), int(points * 0.41)
    return [
        ("runs table /", "/", "page 1 of 50"),
        ("  sorted by a metric", q("/", order="-metrics.loss"), "order=-metrics.loss"),
        (
            "  filtered",
            q("/", filter="params.lr > 0.01 and status = 'finished'"),
            "filter=params.lr > 0.01 and status = 'finished'",
        ),
        (f"  deep page ({deep:,})", q("/", page=deep), f"page={deep}, offset {(deep - 1) * 50:,}"),
        ("/api/runs (JSON)", "/api/runs", "page 1 of 50"),
        ("run page /runs/ID", f"/runs/{info['page_run']}", "overview of a run that was reproduced"),
        (f"metrics page, {points:,}-pt run", f"/runs/{big}/metrics", "HTML only (charts fetch their data)"),
        ("/api/series 2000 pts, cached", q("/api/series", **series), f"{points:,} points -> <= 2,000"),
        (
            "/api/series zoomed, cached",
            q("/api/series", **series, lo=lo, hi=hi),
            f"lo={lo:,} hi={hi:,}",
        ),
    ]


def run_server(uri: str, info: dict[str, Any], repeat: int, cold: int, budget_s: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    big_series = q("/api/series", run=info["big"], key=BIG_KEY, points=2000)
    # 5 points (the fewest) of a small series: downsampled, so all that takes is imported and warm
    small_series = q("/api/series", run=info["small_run"], key="loss", points=5)
    cold_ms: list[float] = []
    with Server(uri) as server:
        get(server.url + small_series)  # one-time costs (imports, a connection) before the cold read
        seconds, body = get(server.url + big_series)
        cold_ms.append(seconds * 1000)
        data = json.loads(body)
        assert data["total"] == info["points"] and data["returned"] <= 2000, data["returned"]
        results["series_returned"] = data["returned"]
        assert None in data["y"] and max(v for v in data["y"] if v is not None) == 25.0, "spikes and NaN kept"
        _, body = get(server.url + "/api/runs")
        assert json.loads(body)["total"] == info["runs"] + 1
        try:
            _, body = get(server.url + "/static/charts.js")
        except RuntimeError:  # not there (yet): the browser part says what is missing
            body = b""
        results["charts_js"] = b"rs-first-chart" in body
        for label, path, note in server_cases(info):
            print(f"  {label.strip()} ...", file=sys.stderr, flush=True)
            timed = timed_requests(server.url + path, repeat, budget_s)
            results[label] = {**timed, "note": note, "path": path}
    for _ in range(cold - 1):
        with Server(uri) as server:
            get(server.url + small_series)
            cold_ms.append(get(server.url + big_series)[0] * 1000)
    results["/api/series 2000 pts, first"] = {
        "median_ms": statistics.median(cold_ms),
        "p95_ms": max(cold_ms),
        "n": len(cold_ms),
        "kb": 0.0,
        "note": "first request after a server start: the history read from the store",
    }
    return results


def store_calls(uri: str, info: dict[str, Any], repeat: int, budget_s: float) -> list[tuple[str, float, int]]:
    """The store calls behind those pages, timed in this process (median ms): where a page's time goes."""
    from runstone.api.client import Client

    client = Client(uri)
    flt = "params.lr > 0.01 and status = 'finished'"
    deep = min(1000, max(1, math.ceil((info["runs"] + 1) / 50)))
    page = client.find_runs(limit=50)
    quoted = ", ".join(f"'{r.id}'" for r in page)
    calls: list[tuple[str, Callable[[], object]]] = [
        ("count_runs()", client.count_runs),
        ("find_runs(limit=50)", lambda: client.find_runs(limit=50)),
        (
            "find_runs(order=-metrics.loss, limit=50)",
            lambda: client.find_runs(order_by="-metrics.loss", limit=50),
        ),
        (f"count_runs({flt!r})", lambda: client.count_runs(flt)),
        ("find_runs(filter, limit=50)", lambda: client.find_runs(flt, limit=50)),
        (
            f"find_runs(limit=50, offset={(deep - 1) * 50:,})",
            lambda: client.find_runs(limit=50, offset=(deep - 1) * 50),
        ),
        (
            "reproductions of 50 runs (tags.reproduction_of in (...))",
            lambda: client.find_runs(f"tags.reproduction_of in ({quoted})", order_by="-started"),
        ),
        (
            "reproductions of 1 run (every run page)",
            lambda: client.find_runs(f"tags.reproduction_of in ('{info['page_run']}')", order_by="-started"),
        ),
        ("get_run(ID)", lambda: client.get_run(info["page_run"])),
        (f"metric_history, {info['points']:,} points", lambda: client.metric_history(info["big"], BIG_KEY)),
    ]
    out = []
    for label, call in calls:
        call()
        times: list[float] = []
        while len(times) < repeat and (len(times) < 3 or sum(times) < budget_s):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out.append((label, statistics.median(times) * 1000, len(times)))
    client.close()
    return out


# --- the browser --------------------------------------------------------------------------

NAV_TIMINGS = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return {ttfb: n.responseStart - n.startTime, dcl: n.domContentLoadedEventEnd - n.startTime,
          load: n.loadEventEnd - n.startTime, fcp: paint ? paint.startTime : null};
}"""
CHART_DONE = """() => {
  const c = document.querySelector('.rs-chart');
  return !c || c.dataset.state === 'drawn' || c.dataset.state === 'error';
}"""
CHART_TIMINGS = """() => {
  const c = document.querySelector('.rs-chart');
  const mark = performance.getEntriesByName('rs-first-chart')[0];
  return {state: c ? c.dataset.state || 'none set' : 'no .rs-chart element',
          points: c ? c.dataset.points || null : null, drawn: mark ? mark.startTime : null};
}"""


def run_browser(
    uri: str, info: dict[str, Any], repeat: int, chromium: str, charts_js: bool
) -> dict[str, Any]:
    """Navigation timings of the runs table; the metrics page until its chart drew (ms, medians).

    Without a charts.js that marks its first chart (``charts_js``), nothing waits for a chart.
    """
    from playwright.sync_api import sync_playwright

    found: dict[str, Any] = {"missing": []}
    with Server(uri) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)

        def visit(path: str, chart: bool) -> dict[str, Any]:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + path, wait_until="load", timeout=300_000)
            page.wait_for_function(
                "() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0", timeout=60_000
            )
            try:  # chromium adds the paint entries just after the load event
                page.wait_for_function(
                    "() => performance.getEntriesByName('first-contentful-paint').length > 0", timeout=10_000
                )
            except Exception:  # reported as missing
                pass
            out = page.evaluate(NAV_TIMINGS)
            if chart:
                try:
                    page.wait_for_function(CHART_DONE, timeout=60_000)
                except Exception as e:  # a chart that never settles is reported, not fatal
                    errors.append(f"the chart neither drew nor failed in 60 s ({type(e).__name__})")
                out.update(page.evaluate(CHART_TIMINGS))
            out["errors"] = errors
            context.close()
            return out

        metrics_path = f"/runs/{info['big']}/metrics"
        visit("/", chart=False)  # templates compiled, connections opened
        first = visit(metrics_path, chart=charts_js)  # the server has not read the big history yet
        drew = first.get("drawn") is not None  # else the chart is not waited for again
        tables = [visit("/", chart=False) for _ in range(repeat)]
        charts = [visit(metrics_path, chart=drew) for _ in range(repeat)]
        browser.close()

    def median(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(values) if len(values) == len(rows) else None

    for key in ("ttfb", "fcp", "dcl", "load"):
        found[f"table_{key}"] = median(tables, key)
    if found["table_fcp"] is None:
        found["missing"].append("runs table first-contentful-paint")
    found["chart_first"] = first.get("drawn")
    found["chart_warm"] = median(charts, "drawn")
    found["chart_load"] = median(charts, "load")
    found["chart_points"] = first.get("points")
    found["n"] = repeat
    if charts_js and (found["chart_warm"] is None or found["chart_first"] is None):
        states = sorted({str(c["state"]) for c in [first, *charts] if "state" in c})
        errors = sorted({e for c in [first, *charts] for e in c["errors"]})
        why = f"chart state {', '.join(states)}" + (
            f"; page errors: {'; '.join(errors)[:300]}" if errors else ""
        )
        found["missing"].append(f"metrics page chart drawn ({why})")
    return found


# --- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the store (default 100,000)")
    parser.add_argument("--points", type=int, default=1_000_000, help="points of the long series")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per case (median, p95)")
    parser.add_argument(
        "--budget", type=float, default=30.0, help="seconds a case may take before it stops at 5 requests"
    )
    parser.add_argument("--cold", type=int, default=3, help="server starts timing the first series request")
    parser.add_argument("--browser-repeat", type=int, default=5, help="page loads per browser case")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser Playwright drives")
    parser.add_argument("--no-browser", action="store_true", help="skip the browser part")
    parser.add_argument("--keep", type=Path, help="make (or reuse) the store in this folder and keep it")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    if args.runs < 1 or args.points < 10 or args.repeat < 1 or args.cold < 1 or args.browser_repeat < 1:
        parser.error("--runs, --repeat, --cold and --browser-repeat must be 1 or more, --points 10 or more")

    # The running runs are on other hosts: no reader here (the server, this process) may count
    # them crashed while the benchmark runs, which the default 120 s of silence would.
    os.environ["RUNSTONE_HEARTBEAT_TIMEOUT_S"] = "86400"
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        folder = (args.keep or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'runstone.db'}"
        marker = folder / MARKER
        info: dict[str, Any] | None = None
        if marker.exists():
            info = json.loads(marker.read_text())
            if (info["runs"], info["points"], info["seed"]) != (args.runs, args.points, args.seed):
                sys.exit(
                    f"{folder} holds a store of other sizes ({info['runs']:,} runs, {info['points']:,} "
                    "points); give another --keep folder"
                )
            print(f"reusing the store in {folder} (filled before)", file=sys.stderr)
            info["reused"] = True
        elif (folder / "runstone.db").exists():
            sys.exit(f"{folder} holds a runstone store this benchmark did not make; give an empty folder")
        else:
            print(f"filling {uri} with {args.runs:,} runs ...", file=sys.stderr, flush=True)
            info = fill(uri, args.runs, args.points, args.seed)
            info["reused"] = False
            if args.keep:
                marker.write_text(json.dumps(info))
        info["store_mb"] = store_bytes(folder) / 1e6

        keep_running(uri, info)
        print("server ...", file=sys.stderr, flush=True)
        served = run_server(uri, info, args.repeat, args.cold, args.budget)
        print("store calls ...", file=sys.stderr, flush=True)
        calls = store_calls(uri, info, args.repeat, args.budget / 2)
        browser: dict[str, Any] = {}
        if args.no_browser:
            browser["missing"] = ["all browser numbers (--no-browser)"]
        else:
            print("browser ...", file=sys.stderr, flush=True)
            keep_running(uri, info)
            try:
                browser = run_browser(uri, info, args.browser_repeat, args.chromium, served["charts_js"])
            except Exception as e:  # the other numbers still print
                browser = {"missing": [f"all browser numbers ({type(e).__name__}: {str(e)[:300]})"]}
        if not served["charts_js"]:
            browser.setdefault("missing", []).append(
                "the metrics page's chart drawn: no charts.js that marks rs-first-chart was served"
            )

    report(args, info, served, calls, browser)
    if args.json:
        args.json.write_text(
            json.dumps({"fill": info, "server": served, "store_calls": calls, "browser": browser}, indent=2)
        )


def report(
    args: argparse.Namespace,
    info: dict[str, Any],
    served: dict[str, Any],
    calls: list[tuple[str, float, int]],
    browser: dict[str, Any],
) -> None:
    runs, points = info["runs"], info["points"]
    statuses = ", ".join(f"{n:,} {s}" for s, n in sorted(info["statuses"].items(), key=lambda kv: -kv[1]))
    print(
        f"\nstore: {runs:,} runs ({statuses}; {info['reproductions']:,} reproductions) "
        f"+ 1 run with a {points:,}-point series, {info['store_mb']:,.0f} MB of SQLite"
    )
    if info["reused"]:
        print(f"fill: reused (first filled in {info['runs_s']:.1f} s + {info['series_s']:.1f} s)")
    else:
        print(
            f"fill: {runs:,} runs in {info['runs_s']:.1f} s ({info['runs_s'] / runs * 1000:.2f} ms per run: "
            "create_run + apply_batch + finish_run); "
            f"the {points:,}-point series in {info['series_s']:.2f} s "
            f"({math.ceil(points / BATCH_POINTS)} batches)"
        )

    print(
        f"\nserver ({os.cpu_count()} cores): the whole request over loopback, a new connection each, "
        f"after a warm-up; up to {args.repeat} requests (fewer once a case took {args.budget:.0f} s)"
    )
    width = 34
    print(f"{'case':<{width}} {'n':>3} {'median ms':>10} {'p95 ms':>9} {'KB':>7}  what")
    order = [label for label, _, _ in server_cases(info)]
    order.insert(order.index("/api/series 2000 pts, cached"), "/api/series 2000 pts, first")
    for label in order:
        row = served[label]
        kb = f"{row['kb']:7.1f}" if row["kb"] else f"{'':>7}"
        note = row["note"] + (" (n server starts; p95: the worst)" if "first" in label else "")
        print(f"{label:<{width}} {row['n']:3d} {row['median_ms']:10.1f} {row['p95_ms']:9.1f} {kb}  {note}")
    print(f"(the series answers carry {served['series_returned']:,} points for points=2000)")

    print("\nstore calls behind those pages, in this process (Client, median ms):")
    w = max(len(label) for label, _, _ in calls)
    for label, ms, n in calls:
        print(f"  {label:<{w}} {ms:9.1f}  (n={n})")

    print(
        f"\nbrowser (chromium, headless; median of {browser.get('n', args.browser_repeat)} loads, "
        "a fresh context each, ms from navigation start):"
    )

    def show(label: str, value: Any) -> None:
        print(f"  {label:<58} {'missing' if value is None else f'{value:9.1f}'}")

    if "table_dcl" in browser:
        show("runs table: first byte", browser["table_ttfb"])
        show("runs table: first contentful paint", browser["table_fcp"])
        show("runs table: DOMContentLoaded", browser["table_dcl"])
        show("runs table: load", browser["table_load"])
        show("metrics page: load", browser["chart_load"])
        show(f"metrics page: chart drawn ({points:,} pts, server cached)", browser["chart_warm"])
        show("metrics page: chart drawn, first (server not cached)", browser["chart_first"])
        if browser.get("chart_points"):
            print(f"  (the chart drew {int(browser['chart_points']):,} points)")
    for what in browser.get("missing", []):
        print(f"  missing: {what}")
    print("\nno peer compared (see bench/README.md)")


if __name__ == "__main__":
    main()
