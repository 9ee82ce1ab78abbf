"""Artifacts through the API: outputs, inputs, versions, fetching back; fsck and gc. Local and S3."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

import runstone
from runstone.errors import AmbiguousError, NotFoundError, StateError, StoreError, UsageError


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "s3":
        monkeypatch.setenv("RUNSTONE_ARTIFACTS", request.getfixturevalue("s3_url"))
    return str(request.param)


def dataset(root: Path) -> Path:
    (root / "data" / "images").mkdir(parents=True)
    for i in range(12):
        (root / "data" / "images" / f"{i}.png").write_bytes(bytes([i]) * 100)
    (root / "data" / "labels.csv").write_text("id,label\n" + "".join(f"{i},{i % 3}\n" for i in range(12)))
    return root / "data"


def test_outputs_inputs_versions_and_fetching(where: str, workdir: Path) -> None:
    data = dataset(workdir)
    model = workdir / "model.bin"
    model.write_bytes(b"weights-1")
    with runstone.init(project="p", capture=False) as prepare:
        ds = prepare.log_artifact(data, kind="dataset", metadata={"rows": 12})
    with runstone.init(project="p", capture=False) as train:
        local = train.use_artifact("data")
        assert sorted(p.name for p in local.rglob("*.png")) == sorted(p.name for p in data.rglob("*.png"))
        v1 = train.log_artifact(model, kind="model")
        model.write_bytes(b"weights-2")
        v2 = runstone.log_artifact(model, kind="model", metadata={"acc": 0.9})
        again = train.log_artifact(model, kind="model")
    assert (ds.ref, ds.file_count, ds.size_bytes, ds.metadata) == (
        "data@v1",
        13,
        1200 + (workdir / "data" / "labels.csv").stat().st_size,
        {"rows": 12},
    )
    assert (v1.ref, v2.ref, again.ref) == ("model.bin@v1", "model.bin@v2", "model.bin@v2")
    client = runstone.Client()
    assert [(u.artifact.ref, u.direction) for u in client.artifacts(train.id)] == [
        ("data@v1", "input"),
        ("model.bin@v1", "output"),
        ("model.bin@v2", "output"),
    ]
    assert client.get_artifact("model.bin@v1").digest == v1.digest
    assert client.get_artifact(f"model.bin@{v2.digest[7:15]}") == v2
    out = client.download("model.bin@v1", workdir / "out" / "m1.bin")
    assert out.read_bytes() == b"weights-1"
    restored = client.download("data", workdir / "restored")
    assert (restored / "labels.csv").read_text() == (data / "labels.csv").read_text()
    assert client.artifact_runs(ds) == [(prepare.id, "output"), (train.id, "input")]
    assert client.fsck().ok


def test_datasets_by_digest_only_unless_uploaded(where: str, workdir: Path) -> None:
    data = dataset(workdir)
    with runstone.init(project="p", capture=False) as run:
        recorded = run.use_dataset(data)
        assert recorded.stored is False and recorded.run_id is None
        with pytest.raises(StateError, match="recorded by digest only"):
            run.use_artifact("data")
        uploaded = run.use_dataset(data, upload=True)
    assert uploaded.stored and uploaded.version == recorded.version == 1
    assert runstone.Client().download("data", workdir / "copy").is_dir()


def test_bad_calls_are_clear_errors_and_record_nothing(workdir: Path) -> None:
    (workdir / "f.txt").write_text("x")
    with runstone.init(project="p", capture=False) as run:
        with pytest.raises(NotFoundError, match="does not exist"):
            run.log_artifact(workdir / "missing.txt")
        with pytest.raises(UsageError, match="without '@'"):
            run.log_artifact(workdir / "f.txt", name="a@b")
        with pytest.raises(UsageError, match="metadata must be a mapping"):
            run.log_artifact(workdir / "f.txt", metadata=[1])  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="cannot be stored as JSON"):
            run.log_artifact(workdir / "f.txt", metadata={"x": object()})
        with pytest.raises(NotFoundError, match="No artifact named 'nope'"):
            run.use_artifact("nope")
        with pytest.raises(NotFoundError, match=r"has no version v7 \(versions: f.txt@v1\)"):
            run.log_artifact(workdir / "f.txt")
            run.use_artifact("f.txt@v7")
    assert [u.artifact.ref for u in runstone.Client().artifacts(run.id)] == ["f.txt@v1"]


def test_a_name_in_two_projects_needs_the_project(workdir: Path) -> None:
    (workdir / "f.txt").write_text("x")
    for project in ("a", "b"):
        with runstone.init(project=project, capture=False) as run:
            run.log_artifact(workdir / "f.txt")
    with pytest.raises(AmbiguousError, match="several projects"):
        runstone.Client().get_artifact("f.txt")
    assert runstone.Client().get_artifact("f.txt", project="b").project == "b"


def test_fsck_finds_corrupt_and_missing_objects(workdir: Path) -> None:
    data = dataset(workdir)
    with runstone.init(project="p") as run:  # with capture: the code record refers to objects too
        artifact = run.log_artifact(data)
    client = runstone.Client()
    assert client.fsck().ok
    objects = workdir / ".runstone" / "objects" / "sha256"
    entries = json.loads(client.read_object(artifact.digest))["entries"]
    label_digest = entries["labels.csv"]["digest"]
    path = objects / label_digest[7:9] / label_digest[9:]
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    report = client.fsck()
    assert report.corrupt == [label_digest] and not report.missing
    path.unlink()
    report = client.fsck()
    assert report.missing == [
        {"digest": label_digest, "referred_to_by": "artifact p/data@v1 (a file or folder in it)"}
    ]


def test_gc_deletes_only_old_unreferenced_objects(workdir: Path) -> None:
    from runstone.api.capture import object_store
    from runstone.settings import current

    data = dataset(workdir)
    with runstone.init(project="p") as run:
        run.log_artifact(data)
    objects = object_store(current())
    orphan_old = objects.put_bytes(b"nobody refers to me")
    orphan_young = objects.put_bytes(b"stored a moment ago")
    old = time.time() - 7200
    path = workdir / ".runstone" / "objects" / "sha256" / orphan_old[7:9] / orphan_old[9:]
    os.utime(path, (old, old))
    client = runstone.Client()
    dry = client.gc(dry_run=True)
    assert dry.deleted == [orphan_old] and objects.has(orphan_old)
    report = client.gc()
    assert report.deleted == [orphan_old] and report.young == 1 and not objects.has(orphan_old)
    assert objects.has(orphan_young) and client.fsck().ok  # every referenced object (records too) kept
    assert client.gc(grace_s=0).deleted == [orphan_young]
    assert client.fsck().ok


def test_a_dataset_by_url(workdir: Path, s3_url: str) -> None:
    import fsspec

    bucket = s3_url.removeprefix("s3://").split("/")[0]
    fsspec.filesystem("s3").pipe_file(f"{bucket}/data/train.csv", b"x,y\n1,2\n")
    with runstone.init(project="p", capture=False) as run:
        recorded = run.use_dataset(f"s3://{bucket}/data/train.csv")
        with pytest.raises(NotFoundError, match="does not exist"):
            run.use_dataset(f"s3://{bucket}/data/nothing.csv")
        with pytest.raises(UsageError, match="only local files"):
            run.use_dataset(f"s3://{bucket}/data/train.csv", upload=True)
    assert (recorded.name, recorded.stored, recorded.size_bytes) == ("train.csv", False, 8)
    assert recorded.digest == "sha256:" + hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    [use] = runstone.Client().artifacts(run.id)
    assert use.path == f"s3://{bucket}/data/train.csv"


def test_gc_stops_when_a_manifest_cannot_be_read_and_deletes_manifests_first(workdir: Path) -> None:
    from runstone.api.capture import object_store
    from runstone.settings import current

    data = dataset(workdir)
    with runstone.init(project="p", capture=False) as run:
        artifact = run.log_artifact(data)
    objects = object_store(current())
    client = runstone.Client()
    # an unreferenced old tree: its manifest must go before its files
    (workdir / "old").mkdir()
    (workdir / "old" / "a.txt").write_text("orphan file")
    from runstone.artifacts.tree import hash_path, store_tree

    orphan = hash_path(workdir / "old")
    store_tree(objects, orphan)
    old = time.time() - 7200
    for info in objects.list_objects():
        os.utime(
            workdir / ".runstone" / "objects" / "sha256" / info.digest[7:9] / info.digest[9:], (old, old)
        )
    deleted: list[str] = []
    real_delete = type(objects).delete
    import runstone.api.capture as capture_module

    class Spy(type(objects)):  # type: ignore[misc]
        def delete(self, digest: str) -> None:
            deleted.append(digest)
            real_delete(self, digest)

    spy = Spy(objects.root)
    original = capture_module.object_store
    capture_module.object_store = lambda settings: spy  # type: ignore[assignment]
    try:
        report = client.gc()
    finally:
        capture_module.object_store = original
    assert deleted[0] == orphan.digest and len(deleted) == 2 and report.deleted == deleted
    # a damaged manifest: gc deletes nothing
    manifest = workdir / ".runstone" / "objects" / "sha256" / artifact.digest[7:9] / artifact.digest[9:]
    manifest.chmod(0o644)
    manifest.write_bytes(b"{broken")
    before = {info.digest for info in objects.list_objects()}
    with pytest.raises(StoreError, match="gc stopped before deleting anything"):
        client.gc(grace_s=0)
    assert {info.digest for info in objects.list_objects()} == before


def test_gc_removes_leftovers_of_interrupted_writes(workdir: Path) -> None:
    tmp = workdir / ".runstone" / "objects" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / "partial").write_bytes(b"x" * 100)
    old = time.time() - 7200
    os.utime(tmp / "partial", (old, old))
    (tmp / "recent").write_bytes(b"y")
    with runstone.init(project="p", capture=False):
        pass
    assert runstone.Client().gc().temporary == 1
    assert not (tmp / "partial").exists() and (tmp / "recent").exists()


def test_names_are_plain_and_a_symlink_keeps_its_own_name(workdir: Path) -> None:
    (workdir / "ckpt_100.pt").write_bytes(b"100")
    (workdir / "latest.pt").symlink_to("ckpt_100.pt")
    with runstone.init(project="p", capture=False) as run:
        assert run.log_artifact(workdir / "latest.pt").name == "latest.pt"
        for bad in ("/etc/passwd", "../x", "a/b", ".."):
            with pytest.raises(UsageError, match="plain name"):
                run.log_artifact(workdir / "ckpt_100.pt", name=bad)


@pytest.mark.slow
def test_processes_fetching_one_artifact_at_once_all_get_it_whole(workdir: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import child_env

    data = workdir / "many"
    data.mkdir()
    for i in range(300):
        (data / f"f{i}.txt").write_text(f"{i}\n" * 20)
    with runstone.init(project="p", capture=False) as run:
        run.log_artifact(data)
    code = (
        "import runstone\n"
        "with runstone.init(project='p', capture=False) as run:\n"
        "    print(len(list(run.use_artifact('many').iterdir())))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=workdir, env=child_env(), stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outputs == ["300"] * 6 and all(p.returncode == 0 for p in procs)
    cached = next((workdir / ".runstone" / "cache").rglob("many"))
    assert len(list(cached.iterdir())) == 300
    assert (cached / "f1.txt").stat().st_mode & 0o222 == 0  # read-only
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".fetching-")]
