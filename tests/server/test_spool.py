"""The spool: a run on a server keeps its unsent writes on disk, so a SIGKILL while the server is away loses
nothing beyond the last flush interval, and the writes arrive on the next start or ``runstone sync``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import runstone
from runstone.api.manifest import verify_manifest
from runstone.api.spool import Spool, spool_root
from runstone.store.factory import open_store
from runstone.store.testing import make_batch, make_spec
from tests.server.test_faults import _start_server
from tests.server.test_objects import fetch_elsewhere
from tests.server.test_server_cli import _free_port

LOGGER = """
import time, runstone
with runstone.init("spool", name="killed") as run:
    print(run.id, flush=True)
    step = 0
    while True:
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        print(step, flush=True)
        step += 1
        time.sleep(0.001)
"""


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNSTONE_")},
        "RUNSTONE_URI": f"http://127.0.0.1:{port}",
        "RUNSTONE_HOME": str(tmp_path / "home"),
        "RUNSTONE_FLUSH_INTERVAL_S": "0.2",
        "RUNSTONE_CAPTURE": "0",
    }


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> None:
    proc.send_signal(sig)
    proc.communicate(timeout=30)


def test_a_client_killed_while_the_server_is_away_loses_at_most_the_last_flush(tmp_path: Path) -> None:
    port = _free_port()
    store = f"sqlite:///{tmp_path}/server.db"
    server = _start_server(store, port)
    (tmp_path / "logger.py").write_text(LOGGER)
    client = subprocess.Popen(
        [sys.executable, "logger.py"],
        cwd=tmp_path,
        env=_env(tmp_path, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    run_id = client.stdout.readline().strip()
    printed: list[int] = []
    reader = threading.Thread(target=lambda: printed.extend(int(line) for line in client.stdout or ()))
    reader.start()
    try:
        time.sleep(1.0)  # logging to the server
        _stop(server, signal.SIGKILL)
        at_server_kill = printed[-1]
        time.sleep(1.5)  # logging on, the server away: the writes wait in the spool
    finally:
        client.send_signal(signal.SIGKILL)
        _, err = client.communicate(timeout=30)
        reader.join(10)
    last = printed[-1]
    assert last > at_server_kill + 500, (at_server_kill, last)  # it trained on at full speed
    folders = [p for p in spool_root(tmp_path / "home").iterdir()]
    assert len(folders) == 1 and list(folders[0].glob("*.json")), err
    server = _start_server(store, port)
    try:
        assert _sync(tmp_path, _env(tmp_path, port))["spool"]["batches"] >= 5
    finally:
        _stop(server)
    with open_store(store) as direct:
        steps = list(direct.metric_history(run_id, "loss").steps)
    # every step once, in order, up to within the last flush interval (0.2 s) of the kill
    assert steps == list(range(len(steps)))
    assert steps[-1] >= last - 400, (steps[-1], last)
    assert not list(spool_root(tmp_path / "home").iterdir())  # sent, and gone


ENDER = """
import os, time, runstone
import runstone.api.run
runstone.api.run._SPOOLED_FLUSH_DEADLINE_S = 1.0
with runstone.init("spool", name="ends-alone") as run:
    print(run.id, flush=True)
    for step in range(100):
        run.log({"loss": float(step)}, step=step)
    run.flush()
    print("flushed", flush=True)
    while not os.path.exists("go"):
        time.sleep(0.05)
    for step in range(100, 200):
        run.log({"loss": float(step)}, step=step)
print("ended", flush=True)
"""


def _sync(cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """``runstone sync --json``, which must succeed: what it printed."""
    synced = subprocess.run(
        [sys.executable, "-m", "runstone", "sync", "--json"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert synced.returncode == 0, synced.stderr
    result: dict[str, Any] = json.loads(synced.stdout)
    return result


def _go_on_without_the_server(
    tmp_path: Path, script: str, env: dict[str, str], server: subprocess.Popen[str]
) -> tuple[str, str, str]:
    """Run a script that prints its run ID and "flushed", then waits for a file "go"; SIGKILL the
    server in between; the script's run ID, output and errors once it ended (successfully)."""
    (tmp_path / "script.py").write_text(script)
    client = subprocess.Popen(
        [sys.executable, "script.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    run_id = client.stdout.readline().strip()
    assert client.stdout.readline().strip() == "flushed"
    _stop(server, signal.SIGKILL)
    (tmp_path / "go").touch()
    out, err = client.communicate(timeout=60)
    assert client.returncode == 0, err
    return run_id, out, err


def test_a_run_that_ends_while_the_server_is_away_ends_there_on_the_next_start(tmp_path: Path) -> None:
    port = _free_port()
    store = f"sqlite:///{tmp_path}/server.db"
    server = _start_server(store, port)
    env = _env(tmp_path, port)
    run_id, out, err = _go_on_without_the_server(tmp_path, ENDER, env, server)
    assert "ended" in out, err  # the program is not failed for it
    assert "sent when a run next starts here" in err
    server = _start_server(store, port)
    try:
        # the next run started here sends it, in the background
        (tmp_path / "next.py").write_text(
            "import time, runstone\nwith runstone.init('spool', name='next'):\n    time.sleep(3)\n"
        )
        done = subprocess.run(
            [sys.executable, "next.py"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "sent 100 points" in done.stderr
    finally:
        _stop(server)
    with open_store(store) as direct:
        assert list(direct.metric_history(run_id, "loss").steps) == list(range(200))
        assert direct.get_run(run_id).status.value == "finished"
        assert verify_manifest(direct, run_id) == []  # and sealed, as an ending on-line would be


def test_a_live_processs_spool_is_left_alone_and_a_dead_ones_is_sent(tmp_path: Path) -> None:
    from runstone.api.spool import replay

    uri = str(tmp_path / "s.db")
    with runstone.init("p", name="ended", uri=uri) as run:
        ended = run.id
    running = "f" * 32
    root = tmp_path / "spool"
    with open_store(uri) as store:
        store.create_run(make_spec(running))
        spools = [Spool(root, run_id, store.uri) for run_id in (running, ended)]
        for spool in spools:
            spool.add(make_batch(spool.run_id, y=([0, 1], [1.0, 2.0])))
        assert replay(root, store).left == 2  # their process (this one) holds them
        for spool in spools:  # as if the process died: the locks are released
            os.close(spool._fd)
        done = replay(root, store)
        assert (done.batches, done.points) == (1, 2)
        assert len(done.dropped) == 1 and "has ended" in done.dropped[0]  # an ended run takes no more
        assert list(store.metric_history(running, "y").values) == [1.0, 2.0]
        assert not list(root.iterdir())


STARTER = """
import pathlib, runstone
pathlib.Path("model.bin").write_bytes(b"weights" * 1000)
with runstone.init("spool", name="started-alone") as run:
    for step in range(50):
        run.log({"loss": float(step)}, step=step)
    run.log_artifact("model.bin", name="model")
    print(run.id)
"""


def test_a_run_started_while_the_server_is_away_is_recorded_offline_and_synced(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there yet
    (tmp_path / "starter.py").write_text(STARTER)
    env = _env(tmp_path, port)
    done = subprocess.run(
        [sys.executable, "starter.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Recording this run offline" in done.stderr and "runstone sync" in done.stderr
    run_id = done.stdout.strip()
    store = f"sqlite:///{tmp_path}/server.db"
    server = _start_server(store, port)
    try:
        synced = _sync(tmp_path, env)
        assert [r["outcome"] for r in synced["runs"]] == ["copied"]
        assert fetch_elsewhere(tmp_path, env, run_id, "model", "m.bin").read_bytes() == b"weights" * 1000
    finally:
        _stop(server)
    with open_store(store) as direct:
        assert list(direct.metric_history(run_id, "loss").steps) == list(range(50))


def _dead(spool: Spool) -> None:
    """As if the spool's process had died: its lock is released, its files stay."""
    os.close(spool._fd)
    spool._fd = -1


def test_a_runs_batches_go_before_its_ending_whichever_folder_holds_them(tmp_path: Path) -> None:
    from runstone.api.spool import replay

    with open_store(str(tmp_path / "s.db")) as store:
        run_id = "e" * 32
        store.create_run(make_spec(run_id))
        root = tmp_path / "spool"
        wrapper = Spool(root, run_id, store.uri)  # made first: the run's ending, as a wrapper's
        wrapper.add(
            {"run_id": run_id, "status": "finished", "end_time_ms": 9_000, "exit_code": 0, "error": None}
        )
        child = Spool(root, run_id, store.uri)  # made later: the command's last points
        child.add(make_batch(run_id, loss=([0, 1, 2], [3.0, 2.0, 1.0])))
        _dead(wrapper)
        _dead(child)
        done = replay(root, store)
        assert (done.batches, done.points, done.ended, done.dropped) == (1, 3, [run_id], [])
        assert store.get_run(run_id).status.value == "finished"
        assert list(store.metric_history(run_id, "loss").values) == [3.0, 2.0, 1.0]


def test_resuming_sends_the_spool_first_and_a_later_ending_never_ends_the_resumed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runstone.server.app import create_app
    from tests.conftest import AppServer

    monkeypatch.setenv("RUNSTONE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RUNSTONE_URI", raising=False)
    with AppServer(create_app(f"sqlite:///{tmp_path}/server.db", api=True)) as server:
        first = runstone.init("p", name="first", uri=server.url, capture=False)
        run_id = first._id
        # the first process dies with its last points and its ending (failed) in the spool
        first._spool.add(make_batch(run_id, loss=([0, 1], [1.0, 0.5])))
        first._spool.add(
            {"run_id": run_id, "status": "failed", "end_time_ms": 5_000, "exit_code": 1, "error": "x"}
        )
        _dead(first._spool)
        first._spool = None
        first._stopping = True
        first._wake.set()
        first._writer.join(10)
        first._store.close()
        from runstone.api import lifecycle

        lifecycle.unregister(first)
        with runstone.init("p", uri=server.url, resume=run_id, capture=False) as again:
            assert again._id == run_id
            again.log({"loss": 0.25}, step=2)
        with runstone.Client(server.url) as client:
            assert client.get_run(run_id).status.value == "finished"  # not failed by the old ending
            assert list(client.metric_history(run_id, "loss").values) == [1.0, 0.5, 0.25]
            resumes = client.get_records(run_id)["resumes"]["resumes"]
            assert resumes[0]["previous"]["status"] == "failed"  # it resumed from that ending
        # an ending spooled before a resume and found later is dropped, not applied
        from runstone.api.spool import replay

        with open_store(server.url) as store:
            late = Spool(spool_root(tmp_path / "home"), run_id, store.uri)
            late.add(
                {"run_id": run_id, "status": "failed", "end_time_ms": 4_000, "exit_code": 1, "error": "x"}
            )
            _dead(late)
            done = replay(spool_root(tmp_path / "home"), store)
            assert done.ended == [] and done.dropped == []  # nothing wrong: it is simply outdated
            assert store.get_run(run_id).status.value == "finished"  # as the resumed process ended it


def test_a_refused_token_keeps_the_spooled_batches(tmp_path: Path) -> None:
    from runstone.api.run import ActiveRun
    from runstone.errors import AccessError

    with open_store(str(tmp_path / "s.db")) as real:
        run_id = "d" * 32
        real.create_run(make_spec(run_id))

        class Refusing:
            refuse = True

            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

            def apply_batch(self, batch: object) -> bool:
                if self.refuse:
                    raise AccessError("The token is a reader's; apply_batch needs a writer's")
                return real.apply_batch(batch)  # type: ignore[arg-type]

            def close(self) -> None:
                pass

        store = Refusing()
        spool = Spool(tmp_path / "spool", run_id, real.uri)
        run = ActiveRun(
            store,  # type: ignore[arg-type]
            run_id=run_id,
            project="proj",
            name="r",
            owned=False,
            flush_interval_s=60,
            spool=spool,
        )
        run.log({"loss": 1.0}, step=0)
        with pytest.raises(AccessError):
            run.flush()
        assert list(spool.path.glob("*.json"))  # kept, for when the token is right
        store.refuse = False
        run.flush()
        assert list(real.metric_history(run_id, "loss").values) == [1.0]
        run.finish()


ARTIFACT_WHILE_AWAY = """
import os, pathlib, time, runstone
import runstone.api.run
runstone.api.run._SPOOLED_FLUSH_DEADLINE_S = 1.0
pathlib.Path("weights").mkdir(exist_ok=True)
pathlib.Path("weights/w.bin").write_bytes(bytes(range(256)) * 2000)
pathlib.Path("weights/config.txt").write_text("depth=2")
with runstone.init("spool", name="artifact-away") as run:
    print(run.id, flush=True)
    run.log({"loss": 1.0}, step=0)
    run.flush()
    print("flushed", flush=True)
    while not os.path.exists("go"):
        time.sleep(0.05)
    kept = run.log_artifact("weights", name="weights")
    print(kept.version, flush=True)
    run.log({"loss": 0.5}, step=1)
print("ended", flush=True)
"""


def test_an_artifact_logged_while_the_server_is_away_arrives_with_the_run(tmp_path: Path) -> None:
    port = _free_port()
    store = f"sqlite:///{tmp_path}/server.db"
    server = _start_server(store, port)
    env = _env(tmp_path, port)
    run_id, out, err = _go_on_without_the_server(tmp_path, ARTIFACT_WHILE_AWAY, env, server)
    assert out.split() == ["0", "ended"]  # version 0: numbered when the server has it
    assert "weights is kept in the spool" in err
    server = _start_server(store, port)
    try:
        synced = _sync(tmp_path, env)
        spool = synced["spool"]
        assert (spool["artifacts"], spool["ended"], spool["dropped"]) == (1, [run_id], [])
        copy = fetch_elsewhere(tmp_path, env, run_id, "weights", "w")
        assert (copy / "w.bin").read_bytes() == bytes(range(256)) * 2000
    finally:
        _stop(server)
    with open_store(store) as direct:
        assert direct.get_run(run_id).status.value == "finished"
        assert [u.artifact.ref for u in direct.run_artifacts(run_id)] == ["weights@v1"]
        assert verify_manifest(direct, run_id) == []  # recorded before the run was sealed
        assert list(direct.metric_history(run_id, "loss").values) == [1.0, 0.5]
    assert not list(spool_root(tmp_path / "home").iterdir())  # the spooled bytes are gone too


class _Away:
    """An object store (or store) that fails as an unreachable server does while ``away`` is set."""

    def __init__(self, inner: Any, *, objects: bool) -> None:
        self.inner, self.away, self.objects = inner, False, objects

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name in ("writing", "collecting", "close"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.away:
                from runstone.errors import UnreachableError

                raise UnreachableError(f"Cannot reach the runstone server ({name})")
            return attr(*args, **kwargs)

        return call


def test_artifacts_keep_their_order_and_reach_the_server_before_the_run_ends(tmp_path: Path) -> None:
    from runstone.api.run import ActiveRun
    from runstone.artifacts.local import LocalObjectStore
    from runstone.settings import current

    with open_store(str(tmp_path / "s.db")) as real:
        run_id = "c" * 32
        real.create_run(make_spec(run_id))
        kept = LocalObjectStore(tmp_path / "objects")
        objects = _Away(kept, objects=True)
        spool = Spool(tmp_path / "spool", run_id, real.uri)
        mine = open_store(str(tmp_path / "s.db"))  # the run's own: finish() closes it
        run = ActiveRun(
            mine, run_id=run_id, project="proj", name="r", owned=True, flush_interval_s=60, spool=spool
        )
        run._artifact_context = lambda: (mine, objects, current(), run_id)  # type: ignore[method-assign]
        model = tmp_path / "model.bin"
        model.write_bytes(b"first")
        objects.away = True
        assert run.log_artifact(model, name="model").version == 0  # kept in the spool
        objects.away = False
        model.write_bytes(b"second")
        # the first goes first, so the newest content is the latest version
        assert run.log_artifact(model, name="model").version == 2
        assert (
            real.resolve_artifact("model", project="proj").digest == real.resolve_artifact("model@v2").digest
        )
        model.write_bytes(b"third")
        objects.away = True
        assert run.log_artifact(model, name="model").version == 0
        run.finish()  # the objects still fail: the run must not end without it
        assert real.get_run(run_id).status.value == "running"
        objects.away = False
        from runstone.api.manifest import seal
        from runstone.api.spool import replay

        done = replay(tmp_path / "spool", real, seal=seal, objects=objects)  # type: ignore[arg-type]
        assert (done.artifacts, done.ended, done.dropped) == (1, [run_id], [])
        assert real.get_run(run_id).status.value == "finished"
        assert verify_manifest(real, run_id) == []  # sealed with all three versions in it
        assert [u.artifact.version for u in real.run_artifacts(run_id)] == [1, 2, 3]
        assert not list((tmp_path / "spool").iterdir())


def test_one_runs_refused_entries_never_hold_up_anothers(tmp_path: Path) -> None:
    from runstone.api.spool import replay

    with open_store(str(tmp_path / "s.db")) as store:
        gone, here = "1" * 32, "2" * 32  # the server has no run "gone" (a reset database)
        store.create_run(make_spec(here))
        root = tmp_path / "spool"
        for run_id in (gone, here):
            spool = Spool(root, run_id, store.uri)
            spool.add(make_batch(run_id, loss=([0], [1.0])))
            spool.add(
                {"run_id": run_id, "status": "finished", "end_time_ms": 9_000, "exit_code": 0, "error": None}
            )
            _dead(spool)
        done = replay(root, store)
        assert done.ended == [here] and len(done.dropped) == 2  # the lost run's batch and ending
        assert list(store.metric_history(here, "loss").values) == [1.0]
        assert not list(root.iterdir())
