"""How long starting a run takes with everything captured, in a git repository with ~200 distributions.

    .venv/bin/python bench/capture.py [--dists 200] [--repeat 5]

Makes a git repository (60 committed files, 5 modified, 5 untracked), tops the
current environment up to --dists distributions with synthetic ``*.dist-info``
folders on PYTHONPATH, and times ``runstone.init()`` in fresh processes: the
time until it returns (code captured, config stored), and the part timings
the records carry (code; environment and system on the background thread).
MLflow's ``start_run`` in the same repository (it records the git commit) runs
beside it when bench/.peers/mlflow exists (``bench/run.py`` creates it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MLFLOW = HERE / ".peers" / "mlflow" / "bin" / "python"

PROBE = """
import json, time
import runstone
t0 = time.perf_counter()
run = runstone.init(project="bench", config={"lr": 0.1})
t1 = time.perf_counter()
run.finish()
records = runstone.Client().get_records(run.id)
print(json.dumps({
    "init_ms": (t1 - t0) * 1000,
    "code_ms": records["code"]["capture_ms"],
    "environment_ms": records["environment"]["capture_ms"],
    "system_ms": records["system"]["capture_ms"],
    "distributions": len(records["environment"]["distributions"]),
    "untracked": len(records["code"]["git"]["untracked"]),
}))
"""

MLFLOW_PROBE = """
import json, time
import mlflow
t0 = time.perf_counter()
mlflow.start_run()
t1 = time.perf_counter()
mlflow.end_run()
print(json.dumps({"start_run_ms": (t1 - t0) * 1000}))
"""


def git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True)


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / "src").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for i in range(60):
        (repo / "src" / f"module_{i}.py").write_text(f"VALUE = {i}\n" * 50)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "start")
    for i in range(5):
        (repo / "src" / f"module_{i}.py").write_text(f"VALUE = {i + 1}\n" * 60)
        (repo / f"scratch_{i}.txt").write_text("notes\n" * 2000)
    return repo


def synthetic_site(root: Path, wanted: int) -> tuple[Path, int]:
    from importlib import metadata

    real = len({d.metadata["Name"] for d in metadata.distributions()})
    site = root / "site"
    site.mkdir()
    for i in range(max(0, wanted - real)):
        (site / f"synthetic_pkg_{i}-1.{i}.0.dist-info").mkdir()
    return site, real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dists", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    compile_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(HERE.parent / "runstone")], env=compile_env, check=True
    )
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as d:
        root = Path(d)
        repo = make_repo(root)
        site, real = synthetic_site(root, args.dists)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNSTONE_", "MLFLOW_"))}
        env["PYTHONPATH"] = str(site)
        results = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, "-c", PROBE], cwd=repo, env=env, capture_output=True, text=True, check=True
            )
            results.append(json.loads(out.stdout))
        print(
            f"runstone.init() in a git repository, {results[0]['distributions']} distributions "
            f"({real} installed + synthetic), {results[0]['untracked']} untracked files; "
            f"medians of {args.repeat}:"
        )
        for key in ("init_ms", "code_ms", "environment_ms", "system_ms"):
            print(f"  {key:<15} {statistics.median(r[key] for r in results):8.1f} ms")
        print("  (init_ms: the first init() of a fresh process, after `import runstone`: loading the API,")
        print("   opening the store, creating the run, storing the config and capturing the code;")
        print("   environment and system run on a background thread after init returns)")
        if MLFLOW.exists():
            menv = dict(env, MLFLOW_DISABLE_TELEMETRY="true")
            menv.pop("PYTHONPATH")
            times = []
            for _ in range(args.repeat):
                out = subprocess.run(
                    [str(MLFLOW), "-c", MLFLOW_PROBE],
                    cwd=repo,
                    env=menv,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                times.append(json.loads(out.stdout.strip().splitlines()[-1])["start_run_ms"])
            print(
                f"MLflow start_run() in the same repository (first run in a new store, then later ones): "
                f"first {times[0]:.0f} ms, median of the rest {statistics.median(times[1:] or times):.0f} ms"
            )


if __name__ == "__main__":
    main()
