"""save_checkpoint / load_checkpoint in one process: what is stored, how safely, and what is kept."""

from __future__ import annotations

import copy
import json
import math
import random
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import runstone
from runstone import Client
from runstone.api import checkpoints as ckpt
from runstone.errors import NotFoundError, StateError, UsageError
from tests.conftest import child_env, runstone_cmd

torch = pytest.importorskip("torch")


class Custom:
    """A value with no safe stored form (pickled only when allowed)."""

    def __init__(self) -> None:
        self.x = 1


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))


def _train_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> float:
    loss = model(torch.randn(8, 4)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _equal_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_everything_round_trips_and_every_generator_is_restored(workdir: Path) -> None:
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        _train_step(model, opt)
        sched.step()
    loader_gen = torch.Generator().manual_seed(3)
    sampler_rng = np.random.default_rng(4)
    legacy = np.random.RandomState(5)
    python_rng = random.Random(6)
    extra = {
        "loader": loader_gen,
        "sampler": sampler_rng,
        "legacy": legacy,
        "python": python_rng,
        "best": float("-inf"),
        "nan": math.nan,
        "negzero": -0.0,
        "big": 2**70,
        "counts": {1: "one", (2, 3): [b"\x00\xff", None, True]},
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "scalar": np.float64(2.5),
        "tensor": torch.tensor([1.0, 2.0], dtype=torch.bfloat16),
    }
    with runstone.init(project="p", seed=1) as run:
        run.log({"loss": 0.5, "acc": 0.9}, step=3)
        saved = run.save_checkpoint(3, model=model, optimizer=opt, scheduler=sched, extra=extra, epoch=1)
        assert (saved.step, saved.epoch, saved.metrics) == (3, 1, {"loss": 0.5, "acc": 0.9})
        assert set(saved.parts) == {"model", "optimizer", "scheduler", "extra"}
        assert set(saved.rng) == {"python", "numpy", "torch"}  # CUDA is not initialized here
        expected_state = {k: v.clone() for k, v in model.state_dict().items()}
        expected_opt = copy.deepcopy(opt.state_dict())
        expected_sched = copy.deepcopy(sched.state_dict())
        draws = (
            random.random(),
            np.random.random(),
            torch.rand(2).tolist(),
            torch.rand(2, generator=loader_gen).tolist(),
            sampler_rng.random(),
            legacy.random_sample(),
            python_rng.random(),
        )
        for _ in range(2):  # move everything on
            _train_step(model, opt)
            sched.step()
        model2 = _model()
        opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
        sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
        gen2 = torch.Generator()
        into = {"loader": gen2, "sampler": np.random.default_rng(0), "array": np.zeros((2, 3), np.float32)}
        array_before = into["array"]
        assert run.load_checkpoint(model=model2, optimizer=opt2, scheduler=sched2, extra=into) == 4
    assert _equal_state(model2.state_dict(), expected_state)
    state2 = opt2.state_dict()
    assert state2["param_groups"] == expected_opt["param_groups"]
    for key, value in expected_opt["state"].items():
        assert all(torch.equal(value[k], state2["state"][key][k]) for k in value)
    assert sched2.state_dict() == expected_sched
    again = (
        random.random(),
        np.random.random(),
        torch.rand(2).tolist(),
        torch.rand(2, generator=into["loader"]).tolist(),
        into["sampler"].random(),
        into["legacy"].random_sample(),
        into["python"].random(),
    )
    assert again == draws
    assert into["loader"] is gen2  # generators are set in place: a DataLoader keeps its reference
    assert into["array"] is array_before and into["array"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert math.isinf(into["best"]) and math.isnan(into["nan"]) and math.copysign(1, into["negzero"]) < 0
    assert into["big"] == 2**70 and into["counts"] == {1: "one", (2, 3): [b"\x00\xff", None, True]}
    assert into["scalar"] == 2.5 and isinstance(into["scalar"], np.float64)
    assert into["tensor"].dtype == torch.bfloat16 and into["tensor"].tolist() == [1.0, 2.0]


def test_the_stored_files_are_safe_formats(workdir: Path) -> None:
    with runstone.init(project="p") as run:
        saved = run.save_checkpoint(0, model=_model(), extra={"w": np.ones(3)})
        folder = Client().download(saved.ref, workdir / "ckpt")
    files = sorted(p.name for p in Path(folder).iterdir())
    assert files == ["arrays.npz", "checkpoint.json", "tensors.safetensors"]
    from safetensors import safe_open

    with safe_open(str(Path(folder) / "tensors.safetensors"), "pt") as f:
        assert len(list(f.keys())) == len(_model().state_dict()) + 1  # the weights and torch's RNG state
    document = json.loads((Path(folder) / "checkpoint.json").read_text())
    assert document["format"] == ckpt.FORMAT and document["step"] == 0


def test_unsafe_values_need_allow_pickle_on_save_and_on_load(workdir: Path) -> None:
    with runstone.init(project="p") as run:
        with pytest.raises(
            UsageError, match=r"extra\.obj: a .*Custom has no safe stored form.*allow_pickle=True"
        ):
            run.save_checkpoint(0, extra={"obj": Custom()})
        assert run.checkpoints() == []  # nothing half-saved
        saved = run.save_checkpoint(0, extra={"obj": Custom()}, allow_pickle=True)
        assert saved.pickled
        into: dict = {}
        with pytest.raises(UsageError, match="holds pickled values"):
            run.load_checkpoint(extra=into)
        run.load_checkpoint(extra=into, allow_pickle=True)
        assert into["obj"].x == 1


def test_without_safetensors_tensors_load_with_weights_only(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # as if not installed
    model = _model()
    with runstone.init(project="p") as run:
        saved = run.save_checkpoint(0, model=model)
        folder = Client().download(saved.ref, workdir / "ckpt")
        assert (Path(folder) / "tensors.pt").exists()
        model2 = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
        run.load_checkpoint(model=model2)
    assert _equal_state(model.state_dict(), model2.state_dict())


def test_numpy_and_scikit_learn_models_without_torch_in_the_checkpoint(workdir: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import SGDClassifier

    x, y = load_iris(return_X_y=True)
    clf = SGDClassifier(random_state=0)
    clf.partial_fit(x[:50], y[:50], classes=[0, 1, 2])
    with runstone.init(project="p") as run:
        run.save_checkpoint(1, model=clf, allow_pickle=True)  # an estimator may hold non-array attributes
        clf.partial_fit(x[50:], y[50:])
        fresh = SGDClassifier(random_state=0)
        assert run.load_checkpoint(model=fresh, allow_pickle=True) == 2
    reference = SGDClassifier(random_state=0)
    reference.partial_fit(x[:50], y[:50], classes=[0, 1, 2])
    assert np.array_equal(fresh.coef_, reference.coef_)
    assert np.array_equal(fresh.predict(x), reference.predict(x))


def test_asynchronous_save_snapshots_before_returning(workdir: Path) -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with runstone.init(project="p") as run:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        future = run.save_checkpoint(0, model=model, asynchronous=True)
        for _ in range(5):  # training goes on while the copy is written
            _train_step(model, opt)
        saved = future.result(timeout=60)
        assert saved.step == 0 and run.wait_for_checkpoints() == saved
        run.save_checkpoint(1, model=model, asynchronous=True)  # finish() waits for this one
    restored = _model()
    Client().load_checkpoint(run.id, model=restored, step=0)
    assert _equal_state(restored.state_dict(), before)
    assert [c.step for c in Client().checkpoints(run.id)] == [0, 1]


def test_a_failed_background_save_is_raised_by_the_next_wait(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    with runstone.init(project="p") as run:
        with monkeypatch.context() as patch:
            patch.setattr(ckpt, "write_snapshot", broken)
            future = run.save_checkpoint(0, extra={"x": 1}, asynchronous=True)
            with pytest.raises(OSError, match="No space left"):
                run.wait_for_checkpoints()
            assert future.exception() is not None
            second = run.save_checkpoint(1, extra={"x": 1}, asynchronous=True)  # fails in the background too
            assert second.exception(timeout=30) is not None
        # the failure is logged, and the next save still goes ahead
        with caplog.at_level("ERROR", logger="runstone"):
            assert run.save_checkpoint(2, extra={"x": 2}).step == 2
        assert "the previous checkpoint could not be stored: [Errno 28] No space left" in caplog.text
    assert [c.step for c in Client().checkpoints(run.id)] == [2]
    assert not list((workdir / ".runstone" / "tmp").iterdir())  # no scratch left behind


def test_a_timed_out_wait_leaves_the_save_pending(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real = ckpt.write_snapshot

    def slow(snap: object, folder: Path) -> None:
        release.wait(30)
        real(snap, folder)  # type: ignore[arg-type]

    monkeypatch.setattr(ckpt, "write_snapshot", slow)
    with runstone.init(project="p") as run:
        run.save_checkpoint(0, extra={"x": 1}, asynchronous=True)
        with pytest.raises(TimeoutError, match="still runs"):
            run.wait_for_checkpoints(timeout=0.05)
        release.set()
    assert [c.step for c in Client().checkpoints(run.id)] == [0]  # finish() waited for it


def test_an_asynchronous_save_keeps_the_metrics_of_its_step(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = ckpt.write_snapshot
    monkeypatch.setattr(ckpt, "write_snapshot", lambda snap, folder: (release.wait(30), real(snap, folder)))
    with runstone.init(project="p") as run:
        for step in range(6):
            run.log({"loss": 100.0 - step}, step=step)
            if step % 3 == 2:
                run.save_checkpoint(step, extra={"s": step}, asynchronous=True, keep_best=("loss", "min", 1))
            if step == 3:
                release.set()  # the loop logged on before the first save was written
    found = Client().checkpoints(run.id)
    assert [(c.step, c.metrics) for c in found] == [(5, {"loss": 95.0})]


def test_going_back_to_an_earlier_checkpoint_forgets_the_later_ones(workdir: Path) -> None:
    with runstone.init(project="p") as run:
        for step in range(9):
            run.log({"loss": float(step)}, step=step)
            if step % 3 == 2:
                run.save_checkpoint(step, extra={"s": step})
        assert run.load_checkpoint(step=5, extra={}) == 6
        assert [c.step for c in run.checkpoints()] == [2, 5]
        run.log({"loss": 60.0})
        run.save_checkpoint(6, extra={"s": 6}, keep_last=2)
        assert [c.step for c in run.checkpoints()] == [5, 6]
    (resume,) = Client().get_records(run.id)["resumes"]["resumes"]
    assert resume["superseded_points"] == {"loss": 3} and len(resume["superseded_checkpoints"]) == 1


def test_resume_is_refused_loudly_where_it_cannot_apply(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrapper = runstone.init(project="p")
    monkeypatch.setenv("RUNSTONE_RUN_ID", wrapper.id)  # as a `runstone run` without --resume passes it
    with caplog.at_level("WARNING", logger="runstone"):
        joined = runstone.init(project="p", resume="latest")
    assert joined.id == wrapper.id
    assert "resume='latest' is ignored" in caplog.text and "runstone run --resume" in caplog.text
    joined.finish()
    wrapper.finish()
    monkeypatch.delenv("RUNSTONE_RUN_ID")
    with runstone.init(project="p") as run:
        run.save_checkpoint(0, model={"w": np.ones(2)})
        with pytest.raises(UsageError, match="holds no optimizer"):
            run.load_checkpoint(model={"w": np.zeros(2)}, optimizer=torch.optim.SGD([torch.zeros(1)], lr=1))
        with pytest.raises(UsageError, match="map_location takes a device"):
            run.load_checkpoint(map_location={"cuda:0": "cpu"})
        assert run.load_checkpoint(rng="numpy") == 1  # one name works as well as a set


def test_retention_keeps_the_last_and_the_best_and_forgets_the_rest(workdir: Path) -> None:
    losses = [5.0, 1.0, 4.0, 0.5, 3.0, 6.0, 7.0, 8.0]
    with runstone.init(project="p") as run:
        for step, loss in enumerate(losses):
            run.log({"val_loss": loss}, step=step)
            run.save_checkpoint(step, extra={"step": step}, keep_last=2, keep_best=("val_loss", "min", 2))
        kept = [c.step for c in run.checkpoints()]
        assert kept == [1, 3, 6, 7]
        with pytest.raises(UsageError, match="keep_best must be"):
            run.save_checkpoint(9, keep_best=("val_loss", "lowest", 2))
        with pytest.raises(UsageError, match="keep_last must be a positive integer"):
            run.save_checkpoint(9, keep_last=0)
        with pytest.raises(
            NotFoundError, match=r"no checkpoint at step 2 \(its checkpoints: steps 1, 3, 6, 7\)"
        ):
            run.load_checkpoint(step=2)
    client = Client()
    names = {a.artifact.ref for a in client.artifacts(run.id)}
    assert len(names) == 4  # the removed versions are gone from the run's record too
    assert runstone.Client().fsck().ok
    report = client.gc(grace_s=0)
    assert report.deleted  # the bytes of removed checkpoints are reclaimed by gc


def test_retention_never_removes_a_checkpoint_another_run_uses(workdir: Path) -> None:
    with runstone.init(project="p") as run:
        first = run.save_checkpoint(0, extra={"a": 1})
    with runstone.init(project="p") as other:
        into: dict = {}
        assert other.load_checkpoint(ref=first.ref, extra=into) == 1 and into == {"a": 1}
        assert other.checkpoints() == []  # another run's checkpoint is an input, not this run's
    assert [(u.artifact.ref, u.direction) for u in Client().artifacts(other.id)] == [(first.ref, "input")]
    with runstone.init(project="p", resume=run.id) as again:
        for step in (1, 2, 3):
            again.save_checkpoint(step, extra={"a": step}, keep_last=1)
        assert [c.step for c in again.checkpoints()] == [0, 3]


def test_resume_errors_say_what_to_do(workdir: Path) -> None:
    with pytest.raises(runstone.RunstoneError):
        runstone.init(project="p", resume="nope")
    with runstone.init(project="p") as run:
        with pytest.raises(StateError, match="still running"):
            runstone.init(project="p", resume=run.id)
        with pytest.raises(NotFoundError, match="has no checkpoint; save one"):
            run.load_checkpoint()
        assert run.load_checkpoint(missing_ok=True) == 0
    # "latest" with nothing crashed starts a new run
    fresh = runstone.init(project="p", resume="latest")
    assert fresh.id != run.id and not fresh.resumed
    fresh.finish()


def test_a_run_resumed_in_process_keeps_its_series_and_supersedes_later_points(workdir: Path) -> None:
    with runstone.init(project="p") as run:
        for step in range(6):
            run.log({"loss": float(step)}, step=step)
            if step == 2:
                run.save_checkpoint(step, extra={"s": step})
        run.finish("crashed")
    with runstone.init(project="p", resume="latest") as again:
        assert again.id == run.id and again.resumed
        into: dict = {}
        assert again.load_checkpoint(extra=into) == 3
        again.log({"loss": 30.0})  # continues at step 3
        again.log({"loss": 40.0})
    history = Client().metric_history(run.id, "loss")
    assert history.steps.tolist() == [0, 1, 2, 3, 4]
    assert history.values.tolist() == [0.0, 1.0, 2.0, 30.0, 40.0]
    run_now = Client().get_run(run.id)
    assert run_now.status.value == "finished" and run_now.metrics["loss"].count == 5
    (resume,) = Client().get_records(run.id)["resumes"]["resumes"]
    assert resume["superseded_points"] == {"loss": 3}
    assert "manifest" in Client().get_records(run.id)  # sealed again when it ended


SLOW_SAVER = textwrap.dedent(
    """
    import sys, numpy as np, runstone
    run = runstone.init(project="p", capture=False)
    big = np.random.default_rng(0).random(4_000_000)  # 32 MB per checkpoint
    for step in range(1000):
        big[0] = step
        run.save_checkpoint(step, extra={"big": big, "step": step})
        print(step, flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 0.3, 0.7])
def test_a_process_killed_while_saving_leaves_the_previous_checkpoint_whole(
    workdir: Path, delay: float
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVER], env=child_env(), stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    line = child.stdout.readline()  # the first checkpoint is stored
    assert line.strip() == "0", line
    threading.Event().wait(delay)  # then kill it somewhere inside a later save
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    client = Client()
    (run,) = client.find_runs()
    found = client.checkpoints(run.id)
    assert found, "the checkpoint saved before the kill is listed"
    into: dict = {}
    client.load_checkpoint(run.id, extra=into)
    assert into["step"] == found[-1].step and into["big"][0] == found[-1].step
    report = subprocess.run([*runstone_cmd(), "fsck"], env=child_env(), capture_output=True, text=True)
    assert report.returncode == 0, report.stdout + report.stderr
    # the next save clears the dead process's scratch folder
    with runstone.init(project="p", resume=run.id) as again:
        again.save_checkpoint(found[-1].step + 1, extra={"x": 1})
    assert not list((workdir / ".runstone" / "tmp").iterdir())


def test_checkpoint_ls_lists_steps_sizes_digests_and_metrics(workdir: Path) -> None:
    with runstone.init(project="p", name="lister") as run:
        for step in range(3):
            run.log({"loss": 1.0 / (step + 1)}, step=step)
            run.save_checkpoint(step, extra={"w": np.full(10, step)}, epoch=step // 2)
    env = child_env()
    shown = subprocess.run(
        [*runstone_cmd(), "checkpoint", "ls", "lister"], env=env, capture_output=True, text=True, check=True
    )
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"run {run.id} (lister): 3 checkpoints")
    assert lines[1].split() == ["step", "epoch", "size", "digest", "saved", "loss", "version"]
    assert lines[2].split()[0:2] == ["0", "0"] and "1" in lines[2].split()
    assert lines[4].split()[-2:] == ["0.333333", "@v3"]
    as_json = subprocess.run(
        [*runstone_cmd(), "checkpoint", "ls", run.id[:8], "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(as_json.stdout)
    assert [c["step"] for c in data["checkpoints"]] == [0, 1, 2]
    first = data["checkpoints"][0]
    assert first["digest"].startswith("sha256:") and first["size_bytes"] > 0
    assert first["metrics"] == {"loss": 1.0} and first["ref"] == f"checkpoint-{run.id}@v1"
    with runstone.init(project="p", name="empty"):
        pass
    empty = subprocess.run(
        [*runstone_cmd(), "checkpoint", "ls", "empty"], env=env, capture_output=True, text=True, check=True
    )
    assert "has no checkpoints; save them with run.save_checkpoint" in empty.stderr
