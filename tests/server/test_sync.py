"""Offline runs and ``runstone sync``: recorded with the server away, sent later, checked on arrival."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import runstone
from runstone.api.manifest import verify_manifest
from runstone.api.sync import sync_runs
from runstone.store.factory import open_store
from tests.server.test_faults import _start_server
from tests.server.test_objects import fetch_elsewhere
from tests.server.test_server_cli import _free_port

TRAIN = """
import runstone
with runstone.init("offline", name="away", config={"lr": 0.1, "model": {"depth": 2}}, tags={"stage": "dev"}) as run:
    for step in range(3000):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 3000}, step=step)
    run.log({"loss": 0.5}, step=10)  # a step logged again: the copy must keep both writes, in order
    import pathlib
    pathlib.Path("weights").mkdir(exist_ok=True)
    pathlib.Path("weights/w.bin").write_bytes(bytes(range(256)) * 1000)
    run.log_artifact("weights", name="weights")
    print("trained offline")
"""


def test_offline_runs_are_synced_and_checked(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "train.py").write_text(TRAIN)
    env = {
        **os.environ,
        "RUNSTONE_URI": url,
        "RUNSTONE_MODE": "offline",
        "RUNSTONE_HOME": str(tmp_path / ".rs"),
    }
    # no server at all: the run is recorded locally, at full speed
    subprocess.run(
        [sys.executable, "-m", "runstone", "run", "--", sys.executable, "train.py"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    offline = f"sqlite:///{tmp_path}/.rs/offline/runstone.db"
    with runstone.Client(offline) as local:
        (run,) = local.find_runs()
        assert run.status.value == "finished"
    store = f"sqlite:///{tmp_path}/server.db"
    server = _start_server(store, port)
    try:
        online = {k: v for k, v in env.items() if k != "RUNSTONE_MODE"}
        synced = subprocess.run(
            [sys.executable, "-m", "runstone", "sync", "--json"],
            cwd=tmp_path,
            env={**online, "RUNSTONE_MODE": "offline"},
            capture_output=True,
            text=True,
        )
        assert synced.returncode == 0, synced.stderr
        (result,) = json.loads(synced.stdout)["runs"]
        assert result["outcome"] == "copied" and result["points"] == 6001 and result["problems"] == []
        again = subprocess.run(
            [sys.executable, "-m", "runstone", "sync"],
            cwd=tmp_path,
            env={**online, "RUNSTONE_MODE": "offline"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert "present" in again.stdout
        # the server's run is the offline run, part for part (its manifest checks out there)
        with open_store(store) as direct:
            assert verify_manifest(direct, run.id) == []
            assert direct.get_run(run.id).config == {"lr": 0.1, "model": {"depth": 2}}
            assert b"trained offline" in direct.read_output(run.id)
        listed = subprocess.run(
            [sys.executable, "-m", "runstone", "ls", "--json"],
            cwd=tmp_path,
            env=online,
            capture_output=True,
            text=True,
            check=True,
        )
        assert run.id in listed.stdout
        # the artifact's bytes went too: a client elsewhere fetches them through the server, checked
        copy = fetch_elsewhere(tmp_path, online, run.id, "weights", "w")
        assert (copy / "w.bin").read_bytes() == bytes(range(256)) * 1000
        assert (tmp_path / ".rs" / "offline" / "objects").is_dir() and (tmp_path / "objects").is_dir()
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def test_sync_reports_a_mismatch(tmp_path: Path) -> None:
    with runstone.init("p", name="r", uri=str(tmp_path / "a.db")) as run:
        run.log({"loss": 1.0}, step=0)
    with open_store(str(tmp_path / "a.db")) as source, open_store(str(tmp_path / "b.db")) as target:
        [first] = sync_runs(source, target)
        assert first.outcome == "copied"
        # the target's copy is changed behind runstone's back: the next sync says which part
        import sqlite3

        conn = sqlite3.connect(tmp_path / "b.db")
        conn.execute("UPDATE runs SET name = 'tampered'")
        conn.commit()
        conn.close()
        [second] = sync_runs(source, target)
        assert second.outcome == "mismatch" and "run.name" in second.problems


def test_offline_mode_settings(tmp_path: Path) -> None:
    import pytest

    from runstone import settings
    from runstone.errors import UsageError

    env = {
        "RUNSTONE_URI": "https://runs.example.com",
        "RUNSTONE_MODE": "offline",
        "RUNSTONE_HOME": str(tmp_path),
    }
    offline = settings.current(env)
    assert (
        offline.uri == f"sqlite:///{tmp_path}/offline/runstone.db"
        and offline.sync_to == "https://runs.example.com"
    )
    # offline with an embedded store changes nothing; online is the default
    assert settings.current({**env, "RUNSTONE_URI": "sqlite:///x.db"}).uri == "sqlite:///x.db"
    assert settings.current({**env, "RUNSTONE_MODE": "online"}).uri == "https://runs.example.com"
    with pytest.raises(UsageError, match="online .* or offline"):
        settings.current({**env, "RUNSTONE_MODE": "airplane"})


def test_a_run_resumed_after_its_sync_is_not_called_present(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    with runstone.init("p", name="r", uri=a) as run:
        for step in range(5):
            run.log({"loss": 1.0}, step=step)
    with open_store(a) as source, open_store(b) as target:
        assert [r.outcome for r in sync_runs(source, target)] == ["copied"]
    with runstone.init(resume=run.id, uri=a) as again:
        again.log({"loss": 0.5}, step=5)
    with open_store(a) as source, open_store(b) as target:
        [result] = sync_runs(source, target)
        # an ended copy takes no more writes: the sync says the run changed after it was copied
        assert result.outcome == "mismatch" and "metrics.loss" in result.problems
        assert any("changed after it was copied" in p for p in result.problems)
        assert target.metric_history(run.id, "loss").steps.tolist() == list(range(5))


def test_one_run_that_cannot_go_does_not_stop_the_rest(tmp_path: Path) -> None:
    a = str(tmp_path / "a.db")
    for project in ("b-project", "a-project"):
        with runstone.init(project, name=project, uri=a) as run:
            run.log({"loss": 1.0}, step=0)

    class OnlyA:  # a target that refuses project b, as a server does for a token of project a
        def __init__(self, store: object) -> None:
            self.store = store

        def __getattr__(self, name: str) -> object:
            return getattr(self.store, name)

        def create_run(self, spec: object) -> None:
            from runstone.errors import AccessError

            if spec.project != "a-project":  # type: ignore[attr-defined]
                raise AccessError("The token is for project 'a-project', not 'b-project'")
            self.store.create_run(spec)  # type: ignore[attr-defined]

    with open_store(a) as source, open_store(str(tmp_path / "b.db")) as target:
        results = sync_runs(source, OnlyA(target))  # type: ignore[arg-type]
    assert sorted(r.outcome for r in results) == ["copied", "failed"]
    assert any("not 'b-project'" in p for r in results for p in r.problems)


def test_sync_without_a_server_says_where_to(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNSTONE_URI", "RUNSTONE_MODE")}
    result = subprocess.run(
        [sys.executable, "-m", "runstone", "sync"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "RUNSTONE_URI" in result.stderr
    env["RUNSTONE_URI"] = "http://127.0.0.1:9"
    result = subprocess.run(
        [sys.executable, "-m", "runstone", "sync"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0 and "nothing to send" in result.stdout
