"""``runstone verify`` and ``runstone diff``: verdicts, tolerances, first divergences and causes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import runstone
from runstone.api.verify import Policy, verify
from runstone.errors import ConfigError
from tests.conftest import child_env, runstone_cmd

TORCH_LOOP = textwrap.dedent(
    """\
    import sys
    import torch
    import runstone

    perturb_at = int(sys.argv[sys.argv.index("--perturb-at") + 1]) if "--perturb-at" in sys.argv else None
    with runstone.init(seed=0, config={"lr": 0.05}) as run:
        torch.set_num_threads(1)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        opt = torch.optim.SGD(model.parameters(), lr=run.config["lr"])
        x, y = torch.randn(64, 8), torch.randn(64, 1)
        for step in range(12):
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step == perturb_at:
                with torch.no_grad():
                    model[0].weight[0, 0] += 1e-3
            run.log({"loss": loss.item()}, step=step)
            run.fingerprint(model, step=step)
    """
)


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*runstone_cmd(), *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_a_perturbation_at_step_k_is_found_at_exactly_k(workdir: Path) -> None:
    pytest.importorskip("torch")
    (workdir / "loop.py").write_text(TORCH_LOOP)
    env = child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2")
    for extra in ([], ["--perturb-at", "7"]):
        subprocess.run([sys.executable, "loop.py", *extra], cwd=workdir, env=env, check=True, timeout=300)
    with runstone.Client() as client:
        perturbed, plain = client.find_runs()
    done = _cli(workdir, "verify", plain.id, perturbed.id, "--json")
    assert done.returncode == 1, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["verdict"] == "DIVERGED" and verdict["first_divergence"] == 7
    [model] = verdict["fingerprints"]
    assert model["first_divergence"] == 7 and model["steps"] == 12
    [loss] = verdict["metrics"]
    assert loss["first_difference"] == 8  # the loss at 7 was computed before the change
    assert any(c["category"] == "command" for c in verdict["causes"])
    # An unperturbed rerun of the same script is bit-identical, fingerprints included.
    subprocess.run([sys.executable, "loop.py"], cwd=workdir, env=env, check=True, timeout=300)
    with runstone.Client() as client:
        again = client.find_runs()[0]
    done = _cli(workdir, "verify", plain.id, again.id)
    assert done.returncode == 0 and done.stdout.startswith("IDENTICAL"), done.stdout


def _run(values: dict[str, list[float]], *, seed: int | None = 0, **init: object) -> str:
    with runstone.init(seed=seed, **init) as run:  # type: ignore[arg-type]
        for key, series in values.items():
            for step, value in enumerate(series):
                run.log({key: value}, step=step)
    return run.id


def test_verdicts_by_tolerance(workdir: Path) -> None:
    a = _run({"loss": [1.0, 0.5, 0.25], "lr": [0.1, 0.1, 0.1]})
    same = _run({"loss": [1.0, 0.5, 0.25], "lr": [0.1, 0.1, 0.1]})
    close = _run({"loss": [1.0, 0.5, 0.25 + 1e-9], "lr": [0.1, 0.1, 0.1]})
    far = _run({"loss": [1.0, 0.5, 0.3], "lr": [0.1, 0.1, 0.2]})
    with runstone.Client() as client:
        assert verify(client, a, same).verdict == "IDENTICAL"
        v = verify(client, a, close)
        assert v.verdict == "EQUIVALENT" and v.exit_code == 0
        [loss] = [m for m in v.metrics if m.key == "loss"]
        assert (
            loss.first_difference == 2
            and loss.first_divergence is None
            and loss.max_abs == pytest.approx(1e-9)
        )
        assert verify(client, a, close, policy=Policy(rtol=0, atol=0)).verdict == "DIVERGED"
        v = verify(client, a, far)
        assert v.verdict == "DIVERGED" and v.first_divergence == 2 and v.exit_code == 1
        # A policy that loosens loss and leaves lr out makes it equivalent.
        policy = Policy.from_dict({"metrics": {"loss": {"rtol": 0.5}, "lr": {"ignore": True}}})
        v = verify(client, a, far, policy=policy)
        assert v.verdict == "EQUIVALENT"
        assert [(m.key, m.status) for m in v.metrics] == [("loss", "equivalent"), ("lr", "ignored")]


def test_missing_steps_and_metrics_diverge(workdir: Path) -> None:
    a = _run({"loss": [1.0, 0.5, 0.25], "acc": [0.1, 0.2, 0.3]})
    shorter = _run({"loss": [1.0, 0.5]})
    with runstone.Client() as client:
        v = verify(client, a, shorter)
    assert v.verdict == "DIVERGED"
    by_key = {m.key: m for m in v.metrics}
    assert by_key["loss"].first_divergence == 2 and "logged by A only" in by_key["loss"].reason
    assert by_key["acc"].reason == "logged by A only"


def test_timing_metrics_are_left_out_unless_the_policy_compares_them(workdir: Path) -> None:
    a = _run({"loss": [1.0], "step_time": [0.31], "train/samples_per_second": [1200.0]})
    b = _run({"loss": [1.0], "step_time": [0.35], "train/samples_per_second": [1100.0]})
    with runstone.Client() as client:
        v = verify(client, a, b)
        assert v.verdict == "IDENTICAL"
        assert {m.key for m in v.metrics if m.status == "ignored"} == {
            "step_time",
            "train/samples_per_second",
        }
        assert "not compared" in v.to_text()
        assert verify(client, a, b, policy=Policy(timing_metrics="compare")).verdict == "DIVERGED"
    for real in ("ms_ssim", "time_series_mae", "eta", "speed_error", "num_papers", "sec_acc"):
        assert Policy().tolerance(real) is not None, real
    for timing in ("train/epoch_time", "data_time", "latency", "tokens_per_sec", "throughput"):
        assert Policy().tolerance(timing) is None, timing


def test_outputs_are_compared_by_digest(workdir: Path) -> None:
    runs = []
    for content in ("weights-1", "weights-1", "weights-2"):
        (workdir / "model.bin").write_text(content)
        (workdir / "run.log").write_text(content)
        with runstone.init(seed=0) as run:
            run.log({"loss": 1.0}, step=0)
            run.log_artifact("model.bin", kind="model")
            run.log_artifact("run.log")
        runs.append(run.id)
    with runstone.Client() as client:
        assert verify(client, runs[0], runs[1]).verdict == "IDENTICAL"
        v = verify(client, runs[0], runs[2])
        assert v.verdict == "DIVERGED"
        assert {o.name: o.status for o in v.outputs} == {"model.bin": "different", "run.log": "different"}
        policy = Policy.from_dict({"ignore_outputs": ["*.log"], "outputs": "report"})
        v = verify(client, runs[0], runs[2], policy=policy)
        assert v.verdict == "EQUIVALENT"
        assert {o.name: o.status for o in v.outputs} == {"model.bin": "different", "run.log": "ignored"}


def test_policy_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('rtol = 1e-3\nfingerprints = "report"\n[metrics."val/*"]\natol = 0.1\n')
    policy = Policy.load(good, atol=1e-6)
    assert (policy.rtol, policy.atol, policy.fingerprints) == (1e-3, 1e-6, "report")
    assert policy.tolerance("val/loss") == (1e-3, 0.1)
    assert policy.tolerance("train/loss") == (1e-3, 1e-6)
    for text, message in (
        ("rtol = -1", "rtol must be a number of 0 or more"),
        ("tolerance = 1", "unknown key(s) tolerance"),
        ('fingerprints = "loose"', "use one of exact, report"),
        ("[metrics.loss]\nrelative = 1", "metrics.loss: unknown key(s) relative"),
        ("rtol = ", "not valid TOML"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Policy.load(bad)
    with pytest.raises(ConfigError, match="Cannot read the policy file"):
        Policy.load(tmp_path / "missing.toml")


def test_diff_lists_recorded_differences(workdir: Path) -> None:
    a = _run({"loss": [1.0, 0.5]}, config={"lr": 0.1, "depth": 2})
    b = _run({"loss": [1.0, 0.4]}, config={"lr": 0.2, "depth": 2}, seed=1)
    done = _cli(workdir, "diff", a, b)
    assert done.returncode == 0, done.stderr
    assert "config:\n  config lr 0.1 → 0.2" in done.stdout
    assert "seeds:\n  seeds seed 0 → 1" in done.stdout
    assert "loss: differs from step 1" in done.stdout
    data = json.loads(_cli(workdir, "diff", a, b, "--json").stdout)
    keys = {(d["category"], d["key"]) for d in data["differences"]}
    assert {("config", "lr"), ("seeds", "seed")} <= keys
    done = _cli(workdir, "verify", a, b)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "DIVERGED at step 1"
    causes = lines[lines.index("likely causes, likeliest first:") + 1 :]
    assert causes[0].startswith("- 1. the config differs") or causes[0].startswith("- 1. the seeds differ")


def test_verify_errors_are_clear(workdir: Path) -> None:
    a = _run({"loss": [1.0]})
    done = _cli(workdir, "verify", a, "nosuchrun")
    assert done.returncode == 3 and "nosuchrun" in done.stderr
    done = _cli(workdir, "verify", a, a, "--rtol", "-1")
    assert done.returncode == 2 and "rtol must be a number of 0 or more" in done.stderr
