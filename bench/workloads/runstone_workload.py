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


CASES = {"single": single, "multi": multi, "write_history": write_history, "read_history": read_history}

if __name__ == "__main__":
    case, n = sys.argv[1], int(sys.argv[2])
    print("RESULT " + json.dumps(CASES[case](n)), flush=True)
