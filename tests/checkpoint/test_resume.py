"""Kill a training loop with SIGKILL at a random step, resume it, and compare with one never interrupted.

Real processes and signals: ``train_loop.py`` kills itself with SIGKILL after
a chosen step (after its last checkpoint, mid-epoch), a second process
resumes the run from its newest checkpoint, and the final weights, the loss
series and the fingerprint series must equal those of an uninterrupted run
bit for bit. Leaving the global generators unrestored must change the result.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runstone import Client, RunStatus
from tests.conftest import child_env, runstone_cmd

pytestmark = pytest.mark.slow

LOOP = Path(__file__).with_name("train_loop.py")
TOTAL_STEPS = 24  # train_loop.EPOCHS * train_loop.STEPS_PER_EPOCH


def _train(
    cwd: Path, framework: str, out: str, *args: str, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(LOOP), framework, out, *args],
        cwd=cwd,
        env=child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == expect, done.stderr
    return done


def _result(cwd: Path, out: str) -> dict[str, Any]:
    with np.load(cwd / out) as weights:
        arrays = {k: weights[k] for k in weights.files}
    client = Client(str(cwd / ".runstone" / "runstone.db"))
    (run,) = client.find_runs()
    loss = client.metric_history(run.id, "loss")
    return {
        "run": run,
        "weights": arrays,
        "loss_steps": loss.steps.tolist(),
        "loss": loss.values.tobytes(),  # the exact bits
        "fingerprints": client.fingerprints(run.id),
        "client": client,
    }


@pytest.fixture(scope="module", params=["torch", "numpy"])
def uninterrupted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if request.param == "torch":
        pytest.importorskip("torch")
    cwd = tmp_path_factory.mktemp(f"uninterrupted-{request.param}")
    _train(cwd, request.param, "final.npz")
    return {"framework": request.param, **_result(cwd, "final.npz")}


def _same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def _kill_points(framework: str) -> list[int]:
    chooser = random.Random(framework)  # random, yet the same on every run of the suite
    return sorted(chooser.sample(range(3, TOTAL_STEPS - 1), 3))


@pytest.mark.parametrize("attempt", [0, 1, 2])
def test_killed_and_resumed_run_ends_bit_identical(
    uninterrupted: dict[str, Any], attempt: int, tmp_path: Path
) -> None:
    framework = uninterrupted["framework"]
    kill_at = _kill_points(framework)[attempt]
    killed = _train(tmp_path, framework, "killed.npz", "--kill-at", str(kill_at), expect=-signal.SIGKILL)
    assert not (tmp_path / "killed.npz").exists(), killed.stdout
    _train(tmp_path, framework, "final.npz", "--resume", "latest")
    resumed = _result(tmp_path, "final.npz")
    assert _same_weights(resumed["weights"], uninterrupted["weights"]), f"killed after step {kill_at}"
    assert resumed["loss_steps"] == list(range(TOTAL_STEPS))
    assert resumed["loss"] == uninterrupted["loss"]
    assert resumed["fingerprints"] == uninterrupted["fingerprints"]
    run = resumed["run"]
    assert run.status is RunStatus.FINISHED
    (resume,) = resumed["client"].get_records(run.id)["resumes"]["resumes"]
    checkpoint_step = kill_at - (kill_at + 1) % 3  # train_loop checkpoints after steps 2, 5, 8, ...
    assert resume["step"] == checkpoint_step
    assert resume["previous"]["status"] == "crashed"
    assert resume["checkpoint"].startswith(f"checkpoint-{run.id}@v")
    # the points logged between the checkpoint and the kill were superseded, not kept twice
    assert resume["superseded_points"] == (
        {"loss": kill_at - checkpoint_step, "runstone.fingerprint/model": kill_at - checkpoint_step}
        if kill_at > checkpoint_step
        else {}
    )
    assert set(resume["rng_restored"]) >= {"python", "numpy"}


def test_resuming_without_the_random_states_gives_other_weights(
    uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    framework = uninterrupted["framework"]
    _train(tmp_path, framework, "killed.npz", "--kill-at", "13", expect=-signal.SIGKILL)
    _train(tmp_path, framework, "final.npz", "--resume", "latest", "--omit-rng")
    resumed = _result(tmp_path, "final.npz")
    assert not _same_weights(resumed["weights"], uninterrupted["weights"])
    # identical up to the checkpoint (step 11), different from the first step that drew random numbers
    fingerprints, expected = resumed["fingerprints"], uninterrupted["fingerprints"]
    assert [fingerprints[s] for s in range(12)] == [expected[s] for s in range(12)]
    assert fingerprints[12] != expected[12]


def test_an_asynchronous_save_resumes_the_same(uninterrupted: dict[str, Any], tmp_path: Path) -> None:
    framework = uninterrupted["framework"]
    _train(tmp_path, framework, "killed.npz", "--kill-at", "16", "--asynchronous", expect=-signal.SIGKILL)
    _train(tmp_path, framework, "final.npz", "--resume", "latest", "--asynchronous")
    assert _same_weights(_result(tmp_path, "final.npz")["weights"], uninterrupted["weights"])


def test_runstone_run_resume_reopens_the_run_for_the_command(
    uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    framework = uninterrupted["framework"]
    env = child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2")
    base = [*runstone_cmd(), "run", "--project", "resume"]
    first = subprocess.run(
        [*base, "--", sys.executable, str(LOOP), framework, "x.npz", "--kill-at", "7"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert first.returncode == 128 + signal.SIGKILL, first.stderr
    client = Client(str(tmp_path / ".runstone" / "runstone.db"))
    (killed,) = client.find_runs()
    assert killed.status is RunStatus.KILLED
    second = subprocess.run(
        [
            *base,
            "--resume",
            killed.id[:10],
            "--",
            sys.executable,
            str(LOOP),
            framework,
            "final.npz",
            "--join",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert second.returncode == 0, second.stderr
    resumed = _result(tmp_path, "final.npz")
    assert resumed["run"].id == killed.id and resumed["run"].status is RunStatus.FINISHED
    assert _same_weights(resumed["weights"], uninterrupted["weights"])
    assert resumed["loss"] == uninterrupted["loss"]
    (resume,) = client.get_records(killed.id)["resumes"]["resumes"]
    assert resume["previous"]["status"] == "killed" and resume["step"] == 5
    # both attempts' output is kept, one after the other
    output = client.read_output(killed.id)
    assert output.index(b"training from step 0\n") < output.index(b"training from step 6\n"), output
    shown = subprocess.run(
        [*runstone_cmd(), "show", killed.id],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "resumed       once" in shown.stdout and "after it had been killed" in shown.stdout
