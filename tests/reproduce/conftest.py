"""Real git repositories, real training scripts and real virtual environments for reproduce/verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, child_env, runstone_cmd

#: a seeded numpy loop: the config, the data file and a helper module decide the numbers
TRAIN = textwrap.dedent(
    """\
    import sys
    import numpy as np
    import runstone

    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    seeded = "--unseeded" not in sys.argv
    with runstone.init(config={"lr": 0.05, "steps": steps}, seed=0 if seeded else None) as run:
        rng = np.random.default_rng(1) if seeded else np.random.default_rng()
        scale = 1.0
        try:
            from helper import SCALE as scale
        except ImportError:
            pass
        try:
            data = np.loadtxt("data.csv", delimiter=",")
        except OSError:
            data = np.ones((4, 3))
        w = np.zeros(3)
        for step in range(steps):
            x = data * rng.normal(size=data.shape)
            grad = x.T @ (x @ w - 1.0) / len(x)
            w -= run.config["lr"] * grad * scale
            run.log({"loss": float(((x @ w - 1.0) ** 2).mean()), "step_time": float(rng.random())}, step=step)
        print("trained", CHANGED if "CHANGED" in dir() else "as committed")
    """
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def repo(workdir: Path) -> Path:
    """A git repository holding train.py; data.csv, which train.py reads if it is there, is ignored."""
    git(workdir, "init", "-q")
    git(workdir, "config", "user.email", "test@example.com")
    git(workdir, "config", "user.name", "test")
    (workdir / "train.py").write_text(TRAIN)
    (workdir / ".gitignore").write_text("data.csv\n")
    git(workdir, "add", "train.py", ".gitignore")
    git(workdir, "commit", "-qm", "train")
    return workdir


def env(**extra: str) -> dict[str, str]:
    base = child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2", **extra)
    base.setdefault("RUNSTONE_ENV_CACHE", os.environ.get("RUNSTONE_ENV_CACHE", ""))
    return {k: v for k, v in base.items() if v}


def runstone(
    cwd: Path, *args: str, python: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    cmd = [python, "-m", "runstone"] if python else runstone_cmd()
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=600, check=False
    )


def wrapped(cwd: Path, command: Sequence[str], *options: str, **extra: str) -> str:
    """Run ``command`` under ``runstone run``; returns the run's ID."""
    done = runstone(cwd, "run", *options, "--", *command, **extra)
    assert done.returncode == 0, done.stderr
    return done.stderr.rsplit("runstone: run ", 1)[1].split()[0]


def reproduce_json(cwd: Path, run_id: str, *options: str, **extra: str) -> tuple[int, dict[str, Any], str]:
    done = runstone(cwd, "reproduce", run_id, "--json", *options, **extra)
    try:
        data = json.loads(done.stdout)
    except ValueError:
        data = {}
    return done.returncode, data, done.stderr


def small_venv(path: Path, *packages: str) -> Path:
    """A virtual environment with ``packages`` and runstone (editable), made with uv."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    subprocess.run([uv, "venv", "-q", str(path)], check=True)
    python = path / "bin" / "python"
    # pip's find-links (a local wheel folder), where one is configured, serves uv too
    extra = {"UV_FIND_LINKS": os.environ["PIP_FIND_LINKS"]} if os.environ.get("PIP_FIND_LINKS") else {}
    install = [uv, "pip", "install", "-q", "--python", str(python)]
    subprocess.run([*install, *packages], check=True, env={**os.environ, **extra})
    subprocess.run([*install, "--no-deps", "-e", str(ROOT)], check=True, env={**os.environ, **extra})
    return python
