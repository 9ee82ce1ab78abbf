"""Real Hydra apps (hydra-core) in a temporary folder, recorded by the decorator or the callback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import DictConfig

import runstone
from runstone.entities import RunStatus
from tests.conftest import child_env

pytestmark = pytest.mark.slow

DECORATED = """
    import hydra, runstone
    from runstone.integrations.hydra import track

    @hydra.main(config_path="conf", config_name="train", version_base=None)
    @track(project="hydra-app", tags={"kind": "decorated"})
    def main(cfg):
        if cfg.optimizer.lr < 0:
            raise ValueError("negative learning rate")
        for step in range(cfg.epochs):
            runstone.log({"loss": cfg.optimizer.lr / (step + 1)}, step=step)

    if __name__ == "__main__":
        main()
    """

PLAIN = """
    import hydra, runstone

    @hydra.main(config_path="conf", config_name="train", version_base=None)
    def main(cfg):
        if cfg.optimizer.lr < 0:
            raise ValueError("negative learning rate")
        runstone.log({"loss": cfg.optimizer.lr})

    if __name__ == "__main__":
        main()
    """

CALLBACK = """
    hydra:
      callbacks:
        runstone:
          _target_: runstone.integrations.hydra.RunstoneCallback
          project: hydra-callback
    """


@pytest.fixture
def app(workdir: Path) -> Path:
    (workdir / "conf" / "optimizer").mkdir(parents=True)
    (workdir / "conf" / "train.yaml").write_text("defaults:\n  - optimizer: sgd\n  - _self_\nepochs: 2\n")
    (workdir / "conf" / "optimizer" / "sgd.yaml").write_text("name: sgd\nlr: 0.1\n")
    (workdir / "conf" / "optimizer" / "adam.yaml").write_text("name: adam\nlr: 0.001\n")
    (workdir / "app.py").write_text(textwrap.dedent(DECORATED))
    return workdir


def hydra_run(cwd: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=cwd,
        env=child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2", HYDRA_FULL_ERROR="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_decorated_app_records_config_overrides_files_and_output_dir(app: Path) -> None:
    result = hydra_run(app, "app.py", "optimizer=adam", "epochs=3")
    assert result.returncode == 0, result.stderr
    [run] = runstone.Client().find_runs()
    assert run.project == "hydra-app" and run.status is RunStatus.FINISHED and run.tags["kind"] == "decorated"
    assert run.config == {"epochs": 3, "optimizer": {"lr": 0.001, "name": "adam"}}
    assert run.metrics["loss"].count == 3
    record = runstone.config.record_of(run.id)
    assert record["source"] == "hydra" and record["overrides"] == ["optimizer=adam", "epochs=3"]
    assert [f["path"] for f in record["files"]] == ["conf/train.yaml", "conf/optimizer/adam.yaml"]
    hydra = record["hydra"]
    assert (
        hydra["mode"] == "run"
        and hydra["config_name"] == "train"
        and hydra["choices"] == {"optimizer": "adam"}
    )
    assert (
        Path(hydra["output_dir"]).is_dir()
        and (Path(hydra["output_dir"]) / ".hydra" / "config.yaml").is_file()
    )
    back = runstone.config.of_run(run.id)
    assert isinstance(back, DictConfig) and back.optimizer.name == "adam"


def test_a_multirun_is_one_run_per_job_grouped_as_one_sweep(app: Path) -> None:
    result = hydra_run(app, "app.py", "-m", "optimizer.lr=0.1,0.01,0.001")
    assert result.returncode == 0, result.stderr
    runs = runstone.Client().find_runs(order_by="params.optimizer.lr")
    assert [r.params["optimizer.lr"] for r in runs] == [0.001, 0.01, 0.1]
    assert len({r.tags["sweep"] for r in runs}) == 1 and runs[0].tags["sweep"].startswith("multirun/")
    assert sorted(r.tags["sweep_job"] for r in runs) == ["0", "1", "2"]
    sweep = runs[0].tags["sweep"]
    assert len(runstone.Client().find_runs(f"tags.sweep = '{sweep}'")) == 3
    for run in runs:
        record = runstone.config.record_of(run.id)
        assert record["overrides"] == [f"optimizer.lr={run.params['optimizer.lr']}"]
        assert record["hydra"]["mode"] == "multirun" and record["hydra"]["sweep_dir"] == sweep


def test_a_failing_job_is_recorded_as_failed(app: Path) -> None:
    result = hydra_run(app, "app.py", "optimizer.lr=-1")
    assert result.returncode != 0
    [run] = runstone.Client().find_runs()
    assert run.status is RunStatus.FAILED and "negative learning rate" in (run.error or "")


def test_the_callback_records_an_unchanged_app(app: Path) -> None:
    (app / "plain.py").write_text(textwrap.dedent(PLAIN))
    train = app / "conf" / "train.yaml"
    train.write_text(train.read_text() + textwrap.dedent(CALLBACK))
    ok = hydra_run(app, "plain.py", "-m", "optimizer=sgd,adam")
    assert ok.returncode == 0, ok.stderr
    runs = runstone.Client().find_runs(order_by="params.optimizer.lr")
    assert [r.params["optimizer.name"] for r in runs] == ["adam", "sgd"]
    assert all(r.project == "hydra-callback" and r.status is RunStatus.FINISHED for r in runs)
    assert all("hydra" not in r.config for r in runs)  # Hydra's own settings are not the app's config
    assert [r.metrics["loss"].last_value for r in runs] == [0.001, 0.1]
    assert len({r.tags["sweep"] for r in runs}) == 1
    bad = hydra_run(app, "plain.py", "optimizer.lr=-2")
    assert bad.returncode != 0
    failed = runstone.Client().find_runs("status = 'failed'")
    assert len(failed) == 1 and "negative learning rate" in (failed[0].error or "")


def test_outside_a_hydra_job_the_decorator_says_what_to_do(workdir: Path) -> None:
    from runstone.errors import StateError
    from runstone.integrations.hydra import track

    @track()
    def main(cfg: object) -> None:
        pass

    with pytest.raises(StateError, match="through @hydra.main"):
        main({})


def test_a_multirun_under_runstone_run_keeps_each_job_its_own_run(app: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runstone",
            "run",
            "--project",
            "wrapped",
            "--",
            sys.executable,
            "app.py",
            "-m",
            "optimizer.lr=0.1,0.01",
        ],
        cwd=app,
        env=child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    runs = runstone.Client().find_runs()
    jobs = [r for r in runs if "sweep" in r.tags]
    assert len(runs) == 3 and len(jobs) == 2
    assert {r.project for r in jobs} == {"hydra-app"} and all(r.metrics["loss"].count == 2 for r in jobs)
    [wrapper] = [r for r in runs if "sweep" not in r.tags]
    assert wrapper.project == "wrapped" and wrapper.status is RunStatus.FINISHED


def test_a_job_run_in_its_output_directory_still_records_into_the_apps_store(app: Path) -> None:
    result = hydra_run(app, "app.py", "-m", "hydra.job.chdir=true", "optimizer.lr=0.1,0.2")
    assert result.returncode == 0, result.stderr
    runs = runstone.Client().find_runs()  # the store at the app's directory, not one per output folder
    assert len(runs) == 2 and all(r.cwd == str(app) for r in runs)
    assert not list(app.glob("multirun/**/.runstone"))
    record = runstone.config.record_of(runs[0].id)
    assert [f["path"] for f in record["files"]] == ["conf/train.yaml", "conf/optimizer/sgd.yaml"]
