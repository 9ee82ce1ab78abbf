"""Seeds and determinism: in-process, through init(), and through runstone run --seed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runstone
from runstone.errors import UsageError
from tests.conftest import child_env, runstone_cmd


def test_seed_makes_sequences_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv("TF_DETERMINISTIC_OPS", raising=False)
    first = runstone.seed(7)
    a = (random.random(), np.random.rand(3).tolist())
    runstone.seed(7, deterministic=True)
    b = (random.random(), np.random.rand(3).tolist())
    assert a == b
    # frameworks are seeded only once imported (other tests may have imported torch)
    assert first["seeded"] == ["random", "numpy"] + (["torch"] if "torch" in sys.modules else [])
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    torch = sys.modules.get("torch")
    if torch is not None:  # leave the process as it was for the tests after this one
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    with pytest.raises(UsageError, match="seed must be an integer"):
        runstone.seed(-1)


def test_init_seed_is_recorded(workdir: Path) -> None:
    with runstone.init(seed=3, deterministic=True) as run:
        value = np.random.rand()
    record = runstone.Client().get_records(run.id)["seeds"]
    assert (record["seed"], record["deterministic"]) == (3, True)
    assert "numpy" in record["seeded"]
    runstone.seed(3)
    assert np.random.rand() == value


SCRIPT = """
import json, random, numpy as np, runstone
with runstone.init() as run:
    print(json.dumps({"hash": hash("abc"), "random": random.random(), "numpy": float(np.random.rand())}))
"""


def test_runstone_run_seed_reaches_the_command(workdir: Path) -> None:
    (workdir / "train.py").write_text(SCRIPT)
    outputs = []
    for _ in range(2):
        result = subprocess.run(
            [*runstone_cmd(), "run", "--seed", "11", "--deterministic", "--", sys.executable, "train.py"],
            cwd=workdir,
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]  # PYTHONHASHSEED, random and numpy all repeat
    [latest, _] = runstone.Client().find_runs()
    seeds = runstone.Client().get_records(latest.id)["seeds"]
    assert seeds["seed"] == 11 and seeds["PYTHONHASHSEED"] == "11" and "numpy" in seeds["seeded"]
    assert seeds["settings"]["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    bad = subprocess.run(
        [*runstone_cmd(), "run", "--deterministic", "--", "true"],
        cwd=workdir,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--deterministic goes with --seed" in bad.stderr


def test_under_the_wrapper_outside_git_the_snapshot_holds_the_programs_modules(workdir: Path) -> None:
    (workdir / "pkg").mkdir()
    (workdir / "pkg" / "__init__.py").write_text("")
    (workdir / "pkg" / "helper.py").write_text("VALUE = 3\n")
    (workdir / "train.py").write_text(
        "import pkg.helper, runstone\nwith runstone.init() as run:\n    run.log({'v': pkg.helper.VALUE})\n"
    )
    subprocess.run(
        [*runstone_cmd(), "run", "--", sys.executable, "train.py"],
        cwd=workdir,
        env=child_env(),
        check=True,
        capture_output=True,
    )
    [run] = runstone.Client().find_runs()
    code = runstone.Client().get_records(run.id)["code"]
    assert code["kind"] == "snapshot"
    assert {f["path"] for f in code["snapshot"]["files"]} >= {"train.py", "pkg/helper.py", "pkg/__init__.py"}


def test_text_the_store_cannot_hold_never_stops_the_job(workdir: Path) -> None:
    env = child_env()
    env_bytes = {k.encode(): v.encode() for k, v in env.items()}
    env_bytes[b"WEIRD"] = b"caf\xe9"
    result = subprocess.run(
        [
            *runstone_cmd(),
            "run",
            "--",
            sys.executable,
            "-c",
            "import runstone; runstone.init().finish(); print('job ran')",
        ],
        cwd=workdir,
        env=env_bytes,  # type: ignore[arg-type]
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "job ran" in result.stdout
    [run] = runstone.Client().find_runs()
    assert run.status.value == "finished"
    variables = runstone.Client().get_records(run.id)["environment"]["variables"]["values"]
    assert variables["WEIRD"] == "caf\\udce9"
