"""One runstone benchmark case per invocation; prints ``RESULT {json}``.

Run by ``bench/run.py`` in a fresh process and a fresh directory.
"""

from __future__ import annotations

import json
import sys
import time


def single(n: int) -> dict[str, float]:
    import runstone

    values = [1.0 / (i + 1) for i in range(n)]
    run = runstone.init(project="bench")
    t0 = time.perf_counter()
    for i in range(n):
        run.log({"loss": values[i]}, step=i)
    t1 = time.perf_counter()
    run.finish()  # durable from here
    t2 = time.perf_counter()
    assert len(runstone.Client().metric_history(run.id, "loss")) == n
    return {"calls": n, "loop_s": t1 - t0, "finish_s": t2 - t1, "total_s": t2 - t0}


def multi(steps: int) -> dict[str, float]:
    import runstone

    keys = [f"m{k}" for k in range(10)]
    rows = [{k: float(i + j) for j, k in enumerate(keys)} for i in range(steps)]
    run = runstone.init(project="bench")
    t0 = time.perf_counter()
    for i in range(steps):
        run.log(rows[i], step=i)
    run.finish()
    t1 = time.perf_counter()
    assert runstone.Client().get_run(run.id).metrics["m9"].count == steps
    return {"steps": steps, "total_s": t1 - t0}


def write_history(n: int) -> dict[str, float]:
    import runstone

    run = runstone.init(project="bench", name="history")
    for i in range(n):
        run.log({"big": float(i)}, step=i)
    run.finish()
    return {"points": n, "run_id": run.id}  # type: ignore[dict-item]


def read_history(n: int) -> dict[str, float]:
    import runstone

    client = runstone.Client()
    [run] = client.find_runs("name = history")
    t0 = time.perf_counter()
    history = client.metric_history(run.id, "big")
    t1 = time.perf_counter()
    assert len(history) == n and history.values[-1] == n - 1
    return {"points": n, "read_s": t1 - t0}


def create_runs(n: int) -> dict[str, float]:
    import runstone

    t0 = time.perf_counter()
    for i in range(n):
        config = {"lr": [0.1, 0.01, 0.001][i % 3], "batch": 32, "depth": i % 5, "opt": "adam", "seed": i}
        with runstone.init(project="bench", config=config) as run:
            run.log({"acc": (i % 100) / 100, "loss": 1 - (i % 100) / 100, "f1": 0.5}, step=0)
    return {"runs": n, "total_s": time.perf_counter() - t0}


def search_runs(n: int) -> dict[str, float]:
    import runstone

    t0 = time.perf_counter()
    found = runstone.Client().find_runs("metrics.acc > 0.5 and params.lr = 0.01")
    t1 = time.perf_counter()
    assert 0 < len(found) < n
    return {"hits": len(found), "search_s": t1 - t0}


CASES = {
    "create_runs": create_runs,
    "search_runs": search_runs,
    "single": single,
    "multi": multi,
    "write_history": write_history,
    "read_history": read_history,
}

if __name__ == "__main__":
    case, n = sys.argv[1], int(sys.argv[2])
    print("RESULT " + json.dumps(CASES[case](n)), flush=True)
