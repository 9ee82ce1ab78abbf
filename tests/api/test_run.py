"""Tracking from Python, in this process: init, log, params, tags, finish, errors."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import runstone
from runstone.entities import RunStatus
from runstone.errors import NotFoundError, StateError, UsageError


def _client() -> runstone.Client:
    return runstone.Client()


def test_issue_example_records_everything(workdir: Path) -> None:
    with runstone.init(
        project="demo", config={"lr": 0.1, "model": {"depth": 3}}, tags={"stage": "dev"}
    ) as run:
        for step in range(1000):
            run.log({"loss": 1 / (step + 1), "acc": step / 1000}, step=step)
    record = _client().get_run(run.id)
    assert record.status is RunStatus.FINISHED
    assert record.project == "demo"
    assert record.params == {"lr": 0.1, "model.depth": 3}
    assert record.config == {"lr": 0.1, "model": {"depth": 3}}
    assert record.tags == {"stage": "dev"}
    assert record.metrics["acc"].last_value == 0.999
    assert record.metrics["loss"].count == 1000
    history = _client().metric_history(run.id, "loss")
    assert history.steps.tolist() == list(range(1000))
    assert history.values.tolist() == [1 / (s + 1) for s in range(1000)]
    assert (workdir / ".runstone" / "runstone.db").exists()


def test_module_level_forms(workdir: Path) -> None:
    assert runstone.active_run() is None
    with pytest.raises(StateError, match=r"No active run; call runstone.init\(\) first"):
        runstone.log({"x": 1.0})
    run = runstone.init(project="p")
    assert runstone.active_run() is run
    runstone.log({"x": 1.0})
    runstone.log({"x": 2.0})
    runstone.log({"x": 9.0}, step=10)
    runstone.log({"x": 10.0})
    runstone.log_params({"batch": 32, "optimizer": {"name": "adam"}})
    runstone.set_tags({"epoch": 3, "best": True})
    runstone.finish()
    assert runstone.active_run() is None
    record = _client().get_run(run.id)
    assert _client().metric_history(run.id, "x").steps.tolist() == [0, 1, 10, 11]
    assert record.params == {"batch": 32, "optimizer.name": "adam"}
    assert record.tags == {"epoch": "3", "best": "true"}
    with runstone.init() as other:
        other.set_tags({"none": None, "nested": {"a": 1}})
    assert _client().get_run(other.id).tags == {"nested": '{"a":1}', "none": "null"}
    assert record.status is RunStatus.FINISHED
    assert record.project == "p"


def test_default_project_is_the_repository_name(workdir: Path) -> None:
    repo = workdir / "my-repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    import os

    os.chdir(repo / "src")
    with runstone.init() as run:
        pass
    assert run.project == "my-repo"
    assert (repo / ".runstone" / "runstone.db").exists()
    assert run.name.count("-") == 2  # a generated name such as brisk-otter-3f2a


def test_nan_and_infinities_are_stored_as_such(workdir: Path) -> None:
    with runstone.init() as run:
        run.log({"v": math.nan}, step=0)
        run.log({"v": math.inf}, step=1)
        run.log({"v": -math.inf}, step=2)
        run.log({"v": np.float32(0.5), "i": 3, "b": True, "np": np.int64(7)}, step=3)
    values = _client().metric_history(run.id, "v").values
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf
    assert values[3] == 0.5
    assert _client().get_run(run.id).metrics["np"].last_value == 7.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"acc": "0.9"}, "Metric 'acc': expected a number, got str"),
        ({"acc": None}, "expected a number, got NoneType"),
        ({"acc": [1, 2]}, "a list is not a number"),
        ({"acc": np.array([1.0, 2.0])}, "a ndarray is not a number"),
        ({3: 1.0}, "Metric names must be strings"),
        ({"": 1.0}, "is empty"),
        ({"a\nb": 1.0}, "control character"),
        ({"x" * 300: 1.0}, "at most 250"),
    ],
)
def test_bad_values_are_refused_and_nothing_of_the_call_is_kept(
    workdir: Path, data: dict[object, object], message: str
) -> None:
    with runstone.init() as run:
        with pytest.raises(UsageError, match=message):
            run.log({"ok": 1.0, **data}, step=0)  # type: ignore[dict-item]
        run.log({"after": 1.0})
    record = _client().get_run(run.id)
    assert set(record.metrics) == {"after"}
    assert record.metrics["after"].last_step == 0  # the refused call did not advance the step


@pytest.mark.parametrize("step", [-1, 2**63, 1.5, "3", True])
def test_bad_steps_are_refused(workdir: Path, step: object) -> None:
    with runstone.init() as run, pytest.raises(UsageError, match="step must be"):
        run.log({"x": 1.0}, step=step)  # type: ignore[arg-type]


def test_log_needs_a_mapping(workdir: Path) -> None:
    with runstone.init() as run, pytest.raises(UsageError, match="takes a mapping"):
        run.log(1.0)  # type: ignore[arg-type]


def test_params_that_cannot_be_json_are_refused_before_anything_is_written(workdir: Path) -> None:
    with pytest.raises(UsageError, match=r"model\.opt is of type object"):
        runstone.init(config={"model": {"opt": object()}})
    assert not (workdir / ".runstone").exists()
    with runstone.init() as run, pytest.raises(UsageError, match="set is of type set"):
        run.log_params({"set": {1, 2}})


def test_config_forms(workdir: Path) -> None:
    @dataclasses.dataclass
    class Cfg:
        lr: float = 0.1
        layers: tuple[int, ...] = (64, 32)

    with runstone.init(config=Cfg()) as a:
        pass
    with runstone.init(config=argparse.Namespace(lr=0.2, name="x")) as b:
        pass
    assert _client().get_run(a.id).config == {"lr": 0.1, "layers": [64, 32]}
    assert _client().get_run(b.id).params == {"lr": 0.2, "name": "x"}
    with pytest.raises(UsageError, match="config must be a mapping"):
        runstone.init(config=[1, 2])


def test_exception_in_with_block_marks_failed_and_reraises(workdir: Path) -> None:
    with pytest.raises(ZeroDivisionError), runstone.init() as run:
        run.log({"x": 1.0})
        _ = 1 / 0
    record = _client().get_run(run.id)
    assert record.status is RunStatus.FAILED
    assert record.error == "ZeroDivisionError: division by zero"
    assert record.metrics["x"].count == 1


def test_keyboard_interrupt_marks_killed(workdir: Path) -> None:
    with pytest.raises(KeyboardInterrupt), runstone.init() as run:
        raise KeyboardInterrupt
    assert _client().get_run(run.id).status is RunStatus.KILLED


@pytest.mark.parametrize(("code", "status", "exit_code"), [(0, "finished", 0), (3, "failed", 3)])
def test_system_exit_in_with_block(workdir: Path, code: int, status: str, exit_code: int) -> None:
    with pytest.raises(SystemExit), runstone.init() as run:
        raise SystemExit(code)
    record = _client().get_run(run.id)
    assert (record.status.value, record.exit_code) == (status, exit_code)


def test_finished_run_refuses_more_and_finish_is_idempotent(workdir: Path) -> None:
    run = runstone.init()
    run.finish()
    run.finish()
    with pytest.raises(StateError, match="has finished"):
        run.log({"x": 1.0})
    with pytest.raises(StateError):
        run.log_params({"a": 1})
    with pytest.raises(UsageError, match="final status"):
        runstone.init().finish("running")
    with pytest.raises(UsageError, match="Unknown run status 'bogus'"):
        runstone.init().finish("bogus")


def test_data_becomes_durable_without_finish(workdir: Path) -> None:
    """The writer flushes every interval: a reader sees points before the run ends."""
    run = runstone.init(flush_interval_s=0.05)
    run.log({"x": 1.0})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = _client().get_run(run.id)
        if "x" in record.metrics:
            break
        time.sleep(0.02)
    assert record.metrics["x"].count == 1
    assert record.status is RunStatus.RUNNING
    run.finish()


def test_explicit_flush(workdir: Path) -> None:
    with runstone.init(flush_interval_s=3600) as run:
        run.log({"x": 1.0})
        run.flush()
        assert _client().get_run(run.id).metrics["x"].count == 1


def test_threads_log_to_the_process_run(workdir: Path) -> None:
    with runstone.init() as run:

        def work(k: int) -> None:
            for i in range(500):
                runstone.log({f"t{k}": float(i)}, step=i)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    record = _client().get_run(run.id)
    assert [record.metrics[f"t{k}"].count for k in range(4)] == [500] * 4


def test_a_locked_store_delays_writes_but_loses_nothing(workdir: Path) -> None:
    """Another process holding the write lock makes the writer wait and retry, not fail."""
    run = runstone.init(flush_interval_s=0.05)
    db = workdir / ".runstone" / "runstone.db"
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    for i in range(1000):
        run.log({"x": float(i)}, step=i)
    time.sleep(0.5)  # several flush attempts happen against the lock
    blocker.execute("ROLLBACK")
    blocker.close()
    run.finish()
    assert len(_client().metric_history(run.id, "x")) == 1000


def test_joining_a_run_through_the_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = runstone.init(project="owner", config={"a": 1})
    monkeypatch.setenv("RUNSTONE_RUN_ID", owner.id)
    with runstone.init(project="ignored", config={"b": 2}) as joined:
        joined.log({"x": 1.0})
        raise_in_block = False
    assert joined.id == owner.id and joined.project == "owner"
    assert raise_in_block is False
    record = _client().get_run(owner.id)
    assert record.status is RunStatus.RUNNING  # the joiner does not end the owner's run
    assert record.params == {"a": 1, "b": 2}
    owner.finish()
    with runstone.init() as later:  # joined once already: a later init() starts its own run
        pass
    assert later.id != owner.id
    ended = runstone.init()
    ended.finish()
    monkeypatch.setenv("RUNSTONE_RUN_ID", ended.id)
    with pytest.raises(StateError, match="has ended"):
        runstone.init()
    monkeypatch.setenv("RUNSTONE_RUN_ID", "0" * 32)
    with pytest.raises(NotFoundError, match="unset RUNSTONE_RUN_ID"):
        runstone.init()


def test_client_without_a_store(workdir: Path) -> None:
    client = _client()
    assert client.find_runs() == []
    assert client.count_runs() == 0
    with pytest.raises(NotFoundError, match="No runstone store"):
        client.get_run("0194")
    assert not (workdir / ".runstone").exists()


def test_client_find_runs_and_pandas(workdir: Path) -> None:
    for lr in (0.1, 0.01):
        with runstone.init(config={"lr": lr}) as run:
            for s in range(3):
                run.log({"acc": lr * s})
    client = _client()
    runs = client.find_runs("params.lr < 0.05", order_by="-metrics.acc")
    assert [r.params["lr"] for r in runs] == [0.01]
    assert [r.params["lr"] for r in client.find_runs(order_by=["params.lr", "-name"])] == [0.01, 0.1]
    with pytest.raises(UsageError, match="limit must be 0 or more"):
        client.find_runs(limit=-1)
    frame = client.metric_frame(run.id, "acc")
    assert list(frame.columns) == ["step", "value", "timestamp"]
    assert frame["value"].tolist() == [0.0, 0.01, 0.02]
    client.set_tags(run.id, {"reviewed": "yes"})
    assert client.get_run(run.id[: client.unique_prefix_length()]).tags == {"reviewed": "yes"}
    assert client.get_run(run.name).id == run.id  # a unique name finds it too


def test_metric_frame_names_the_extra_when_pandas_is_missing(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from runstone.errors import MissingDependencyError

    with runstone.init() as run:
        run.log({"x": 1.0})
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'runstone\[pandas\]'"):
        _client().metric_frame(run.id, "x")


def test_heartbeats_continue_between_long_flush_intervals(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runstone.api import run as run_module

    monkeypatch.setattr(run_module, "HEARTBEAT_S", 0.05)
    run = runstone.init(flush_interval_s=3600)
    run.log({"x": 1.0})
    started = _client().get_run(run.id).heartbeat_ms
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = _client().get_run(run.id)
        if record.heartbeat_ms and started and record.heartbeat_ms > started:
            break
        time.sleep(0.02)
    assert record.heartbeat_ms is not None and started is not None and record.heartbeat_ms > started
    assert "x" not in record.metrics  # a heartbeat, not a flush
    run.finish()
    assert _client().get_run(run.id).metrics["x"].count == 1


def test_output_beyond_the_cap_keeps_its_head_and_tail(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runstone.api import run as run_module

    monkeypatch.setattr(run_module, "MAX_OUTPUT_BYTES", 10)
    monkeypatch.setattr(run_module, "OUTPUT_TAIL_BYTES", 6)
    with runstone.init() as run:
        run._add_output(b"0123456789abcdef")
        run._add_output(b"ghijkl-Traceback")
    stored = _client().read_output(run.id)
    assert stored.startswith(b"0123456789")
    assert stored.endswith(b"\n[runstone: 16 bytes of output not stored; the last 6 bytes follow]\nceback")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda run: run.log_params({"data_dir": "/data/caf\udce9"}), "not valid UTF-8"),
        (lambda run: run.log_params({"sep": "a\x00b"}), "NUL character"),
        (lambda run: run.set_tags({"path": "caf\udce9"}), "not valid UTF-8"),
        (lambda run: run.log({"caf\udce9": 1.0}), "not valid UTF-8"),
    ],
)
def test_text_no_store_can_hold_is_refused_at_the_call(workdir: Path, call: object, message: str) -> None:
    """Refused where it is given, so it can never block the writes queued behind it."""
    with runstone.init() as run:
        with pytest.raises(UsageError, match=message):
            call(run)  # type: ignore[operator]
        run.log({"after": 1.0})
    record = _client().get_run(run.id)
    assert record.status is RunStatus.FINISHED and record.metrics["after"].count == 1
