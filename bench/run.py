"""Benchmark runstone against MLflow on the same workloads, in one go, and print ratios.

    .venv/bin/python bench/run.py            # full sizes (several minutes, MLflow dominates)
    .venv/bin/python bench/run.py --quick    # smaller sizes (about a minute after set-up)

MLflow is installed into a throwaway virtualenv under bench/.peers/ on the
first run (pip, from the package index). Every case runs in a fresh process
and a fresh directory, each store on its default embedded backend (runstone:
SQLite in .runstone/; MLflow: sqlite:///mlflow.db). Timings are medians over
--repeat runs; MLflow runs smaller sizes where its per-call cost would take
many minutes, and every ratio compares the cost per unit (per call, per step,
per point). Results also go to bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / ".peers"
MLFLOW_VERSION = "3.17.2"


def ensure_mlflow() -> Path:
    venv = PEERS / "mlflow"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    print(f"setting up MLflow {MLFLOW_VERSION} in {venv} (once)...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}"],
        check=True,
    )
    return python


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTONE_", "MLFLOW_"))}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "1"
    return env


def run_case(python: Path, workload: Path, case: str, n: int, cwd: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(python), str(workload), case, str(n)],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
    raise RuntimeError(f"{workload.name} {case} {n} failed:\n{result.stderr[-3000:]}")


def median_case(python: Path, workload: Path, case: str, n: int, repeat: int, key: str) -> float:
    values = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-") as d:
            values.append(run_case(python, workload, case, n, Path(d))[key])
    return statistics.median(values)


def median_history_read(python: Path, workload: Path, n: int, repeat: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-") as d:
        run_case(python, workload, "write_history", n, Path(d))
        return statistics.median(
            run_case(python, workload, "read_history", n, Path(d))["read_s"] for _ in range(repeat)
        )


def median_runs(python: Path, workload: Path, n: int, repeat: int) -> tuple[float, float]:
    """(seconds to create n runs, seconds for one filtered search over them in a fresh process)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as d:
        created = run_case(python, workload, "create_runs", n, Path(d))["total_s"]
        search = statistics.median(
            run_case(python, workload, "search_runs", n, Path(d))["search_s"] for _ in range(repeat)
        )
    return created, search


def import_time(python: Path, module: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-") as d:
            t0 = time.perf_counter()
            subprocess.run([str(python), "-c", f"import {module}"], cwd=d, env=clean_env(), check=True)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    args = parser.parse_args()

    # Bytecode for runstone's own modules (PYTHONDONTWRITEBYTECODE would otherwise
    # make every run recompile them); MLflow's were compiled by pip at install.
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "runstone")], check=True, env=env)
    ours = Path(sys.executable)
    theirs = ensure_mlflow()
    rs_work = HERE / "workloads" / "runstone_workload.py"
    ml_work = HERE / "workloads" / "mlflow_workload.py"
    q = args.quick
    sizes = {
        "single": (20_000 if q else 100_000, 500 if q else 2_000),
        "multi": (2_000 if q else 10_000, 200 if q else 500),
        "history": (200_000 if q else 1_000_000, 20_000 if q else 100_000),
        "runs": 200 if q else 1_000,
    }
    rows: list[tuple[str, str, str, float]] = []
    results: dict[str, Any] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cases": {},
    }

    def report(name: str, unit: str, ours_value: float, theirs_value: float, note: str) -> None:
        ratio = theirs_value / ours_value
        rows.append((name, f"{ours_value:,.3f} {unit}", f"{theirs_value:,.3f} {unit}", ratio))
        results["cases"][name] = {
            "unit": unit,
            "runstone": ours_value,
            "mlflow": theirs_value,
            "ratio": ratio,
            "note": note,
        }
        print(
            f"  {name}: runstone {ours_value:,.3f} {unit}, MLflow {theirs_value:,.3f} {unit}, {ratio:,.1f}x",
            file=sys.stderr,
        )

    print("import ...", file=sys.stderr, flush=True)
    bare = import_time(ours, "sys", args.repeat * 2)
    report(
        "import (process wall, s)",
        "s",
        import_time(ours, "runstone", args.repeat * 2),
        import_time(theirs, "mlflow", args.repeat * 2),
        f"whole 'python -c import X' process; a bare interpreter takes {bare:.3f} s",
    )
    n_rs, n_ml = sizes["single"]
    print("single scalar log() ...", file=sys.stderr, flush=True)
    report(
        "log 1 scalar, per call incl. flush (µs)",
        "µs",
        median_case(ours, rs_work, "single", n_rs, args.repeat, "total_s") / n_rs * 1e6,
        median_case(theirs, ml_work, "single", n_ml, args.repeat, "total_s") / n_ml * 1e6,
        f"runstone {n_rs:,} calls, MLflow {n_ml:,} calls (log_metric)",
    )
    n_rs, n_ml = sizes["multi"]
    print("10 scalars per step ...", file=sys.stderr, flush=True)
    per_step_rs = median_case(ours, rs_work, "multi", n_rs, args.repeat, "total_s") / n_rs
    per_step_ml = median_case(theirs, ml_work, "multi", n_ml, args.repeat, "total_s") / n_ml
    report(
        "10 scalars x 10,000 steps, total incl. flush (s)",
        "s",
        per_step_rs * 10_000,
        per_step_ml * 10_000,
        f"runstone ran {n_rs:,} steps, MLflow {n_ml:,} (log_metrics); scaled to 10,000 steps",
    )
    n_rs, n_ml = sizes["history"]
    print("history read ...", file=sys.stderr, flush=True)
    report(
        "read a metric history, per 1M points (s)",
        "s",
        median_history_read(ours, rs_work, n_rs, args.repeat) / n_rs * 1e6,
        median_history_read(theirs, ml_work, n_ml, args.repeat) / n_ml * 1e6,
        f"runstone read {n_rs:,} points, MLflow {n_ml:,} (get_metric_history); scaled to 1M",
    )

    n_runs = sizes["runs"]
    print("many runs ...", file=sys.stderr, flush=True)
    rs_create, rs_search = median_runs(ours, rs_work, n_runs, args.repeat)
    ml_create, ml_search = median_runs(theirs, ml_work, n_runs, args.repeat)
    report(
        "create a run (5 params, 3 metrics), per run (ms)",
        "ms",
        rs_create / n_runs * 1000,
        ml_create / n_runs * 1000,
        f"{n_runs:,} runs, one process, each started, logged and finished",
    )
    report(
        f"filtered search over {n_runs:,} runs, fresh process (s)",
        "s",
        rs_search,
        ml_search,
        "metrics.acc > 0.5 and params.lr = 0.01 (Client.find_runs vs mlflow.search_runs)",
    )

    print(f"\nrunstone vs MLflow {MLFLOW_VERSION} (embedded SQLite both), medians of {args.repeat}:")
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'runstone':>16}  {'MLflow':>18}  {'MLflow/runstone':>15}")
    for name, a, b, ratio in rows:
        print(f"{name:<{width}}  {a:>16}  {b:>18}  {ratio:>14,.1f}x")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / time.strftime("%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(results, indent=2))
    print(f"(a bare interpreter, python -c 'import sys', takes {bare:.3f} s of the import row)")
    print(f"\n(details: {path.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
