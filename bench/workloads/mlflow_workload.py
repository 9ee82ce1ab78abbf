"""The same benchmark cases for MLflow (its default SQLite store); prints ``RESULT {json}``.

Run by ``bench/run.py`` with the interpreter of a throwaway virtualenv holding MLflow.
"""

from __future__ import annotations

import json
import sys
import time


def single(n: int) -> dict[str, float]:
    import mlflow

    values = [1.0 / (i + 1) for i in range(n)]
    mlflow.start_run()
    t0 = time.perf_counter()
    for i in range(n):
        mlflow.log_metric("loss", values[i], step=i)
    t1 = time.perf_counter()
    run_id = mlflow.active_run().info.run_id
    mlflow.end_run()  # every call above was already durable
    t2 = time.perf_counter()
    assert len(mlflow.MlflowClient().get_metric_history(run_id, "loss")) == n
    return {"calls": n, "loop_s": t1 - t0, "finish_s": t2 - t1, "total_s": t2 - t0}


def multi(steps: int) -> dict[str, float]:
    import mlflow

    keys = [f"m{k}" for k in range(10)]
    rows = [{k: float(i + j) for j, k in enumerate(keys)} for i in range(steps)]
    mlflow.start_run()
    t0 = time.perf_counter()
    for i in range(steps):
        mlflow.log_metrics(rows[i], step=i)
    mlflow.end_run()
    t1 = time.perf_counter()
    return {"steps": steps, "total_s": t1 - t0}


def write_history(n: int) -> dict[str, float]:
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id, run_name="history")
    now = int(time.time() * 1000)
    for start in range(0, n, 1000):
        batch = [Metric("big", float(i), now, i) for i in range(start, min(n, start + 1000))]
        client.log_batch(run.info.run_id, metrics=batch)
    client.set_terminated(run.info.run_id)
    return {"points": n}


def read_history(n: int) -> dict[str, float]:
    import mlflow

    client = mlflow.MlflowClient()
    [run] = client.search_runs(
        [client.get_experiment_by_name("Default").experiment_id], "attributes.run_name = 'history'"
    )
    t0 = time.perf_counter()
    history = client.get_metric_history(run.info.run_id, "big")
    t1 = time.perf_counter()
    assert len(history) == n
    return {"points": n, "read_s": t1 - t0}


def create_runs(n: int) -> dict[str, float]:
    import mlflow

    t0 = time.perf_counter()
    for i in range(n):
        config = {"lr": [0.1, 0.01, 0.001][i % 3], "batch": 32, "depth": i % 5, "opt": "adam", "seed": i}
        with mlflow.start_run():
            mlflow.log_params(config)
            mlflow.log_metrics({"acc": (i % 100) / 100, "loss": 1 - (i % 100) / 100, "f1": 0.5}, step=0)
    return {"runs": n, "total_s": time.perf_counter() - t0}


def search_runs(n: int) -> dict[str, float]:
    import mlflow

    t0 = time.perf_counter()
    found = mlflow.search_runs(filter_string="metrics.acc > 0.5 and params.lr = '0.01'")
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
