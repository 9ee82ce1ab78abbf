"""Configs: composing one, and recording one with a run, side by side with Hydra and MLflow.

    .venv/bin/python bench/config.py [--groups 8] [--leaves 200] [--repeat 200] [--runs 50]

Two comparisons, each in one process:

- compose: ``runstone.config.load(primary, overrides)`` vs hydra-core's
  ``compose(config_name, overrides)`` on the same generated ``conf/`` tree
  (a primary config with a defaults list of --groups groups, two options
  each, and --leaves leaves in all), with one group picked and two values
  overridden; per call, after a warm-up. Both results are checked equal.
- record: ``runstone.init(config=cfg, capture=False)`` + ``finish()`` with
  that composed config vs MLflow's ``start_run`` + ``log_params`` (the
  flattened leaves) + ``end_run`` on its default SQLite store, per run, over
  --runs runs; MLflow runs when bench/.peers/mlflow exists (``bench/run.py``
  creates it), in its own process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MLFLOW = HERE / ".peers" / "mlflow" / "bin" / "python"

MLFLOW_PROBE = """
import json, sys, time
import mlflow
params = json.loads(sys.argv[1]); runs = int(sys.argv[2])
mlflow.set_tracking_uri("sqlite:///mlflow.db")
mlflow.start_run(); mlflow.end_run()  # the store's tables are made outside the timing
t0 = time.perf_counter()
for _ in range(runs):
    mlflow.start_run()
    mlflow.log_params(params)
    mlflow.end_run()
print(json.dumps({"per_run_ms": (time.perf_counter() - t0) * 1000 / runs}))
"""


def make_tree(root: Path, groups: int, leaves: int) -> Path:
    conf = root / "conf"
    per_file = max(1, leaves // (groups * 2 + 1))
    defaults = [f"  - g{g}: a" for g in range(groups)]
    own = [f"p{i}: {i * 0.5}" for i in range(per_file)]
    conf.mkdir(parents=True)
    (conf / "config.yaml").write_text(
        "defaults:\n" + "\n".join(defaults) + "\n  - _self_\n" + "\n".join(own) + "\n"
    )
    for g in range(groups):
        (conf / f"g{g}").mkdir()
        for option in ("a", "b"):
            body = "\n".join(f"k{i}: {option}-{i}" if i % 2 else f"k{i}: {i}" for i in range(per_file))
            (conf / f"g{g}" / f"{option}.yaml").write_text(f"name: {option}\n{body}\n")
    return conf


def per_call_ms(fn: object, repeat: int) -> float:
    assert callable(fn)
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--leaves", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import runstone
    from runstone._json import flatten

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        conf = make_tree(root, args.groups, args.leaves)
        overrides = ["g0=b", "g1.k1=changed", "p0=9.5"]
        with initialize_config_dir(config_dir=str(conf), version_base=None):
            hydra_cfg = compose(config_name="config", overrides=overrides)
            ours_cfg = runstone.config.load(conf / "config.yaml", overrides)
            assert OmegaConf.to_container(hydra_cfg, resolve=True) == OmegaConf.to_container(ours_cfg)
            hydra_ms = per_call_ms(lambda: compose(config_name="config", overrides=overrides), args.repeat)
        ours_ms = per_call_ms(lambda: runstone.config.load(conf / "config.yaml", overrides), args.repeat)
        leaves = len(dict(flatten(OmegaConf.to_container(ours_cfg))))

        work = root / "runs"
        work.mkdir()
        code = (
            "import json, sys, time, runstone\n"
            "cfg = runstone.config.load(sys.argv[1], json.loads(sys.argv[2]))\n"
            "runstone.init(config=cfg, capture=False).finish()\n"
            "t0 = time.perf_counter()\n"
            "for _ in range(int(sys.argv[3])):\n"
            "    runstone.init(config=cfg, capture=False).finish()\n"
            "print(json.dumps({'per_run_ms': (time.perf_counter() - t0) * 1000 / int(sys.argv[3])}))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(conf / "config.yaml"), json.dumps(overrides), str(args.runs)],
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        )
        record_ours = json.loads(out.stdout)["per_run_ms"]
        record_mlflow = None
        if MLFLOW.exists():
            params = {k: v for k, v in flatten(OmegaConf.to_container(ours_cfg))}
            ml_work = root / "mlflow"
            ml_work.mkdir()
            out = subprocess.run(
                [str(MLFLOW), "-c", MLFLOW_PROBE, json.dumps(params), str(args.runs)],
                cwd=ml_work,
                capture_output=True,
                text=True,
                check=True,
            )
            record_mlflow = json.loads(out.stdout)["per_run_ms"]

    print(f"config: {args.groups} groups, {leaves} leaves, overrides {' '.join(overrides)}")
    print(f"{'case':<44} {'runstone':>10} {'peer':>10} {'ratio':>8}")
    print(
        f"{'compose (load vs hydra.compose), ms/call':<44} {ours_ms:>10.2f} {hydra_ms:>10.2f} "
        f"{hydra_ms / ours_ms:>7.1f}x"
    )
    if record_mlflow is not None:
        print(
            f"{'record with a run (init vs mlflow), ms/run':<44} {record_ours:>10.2f} {record_mlflow:>10.2f} "
            f"{record_mlflow / record_ours:>7.1f}x"
        )
    else:
        print(f"{'record with a run (init), ms/run':<44} {record_ours:>10.2f} {'-':>10}")


if __name__ == "__main__":
    main()
