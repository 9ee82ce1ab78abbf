"""Object stores: a local directory and S3 (a real S3-compatible server on loopback), through one interface."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runstone.artifacts.base import ObjectStore, digest_bytes, digest_file
from runstone.artifacts.local import LocalObjectStore
from runstone.artifacts.remote import FsspecObjectStore
from runstone.artifacts.tree import DigestCache, hash_path, restore, store_tree, tree_digests
from runstone.errors import NotFoundError, StoreError, UsageError


@pytest.fixture(params=["local", "s3"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    return FsspecObjectStore(request.getfixturevalue("s3_url"))


def test_bytes_and_files_round_trip_once(objects: ObjectStore, tmp_path: Path) -> None:
    digest = objects.put_bytes(b"hello")
    assert digest == digest_bytes(b"hello") and objects.has(digest)
    assert objects.put_bytes(b"hello") == digest
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    file_digest = objects.put_file(big)
    assert file_digest == digest_file(big)[0]
    out = tmp_path / "out" / "copy.bin"
    objects.get_file(file_digest, out)
    assert out.read_bytes() == big.read_bytes()
    assert objects.get_bytes(digest) == b"hello" and objects.verify(file_digest)
    listed = {info.digest: info.size_bytes for info in objects.list_objects()}
    assert listed == {digest: 5, file_digest: big.stat().st_size}
    objects.delete(digest)
    objects.delete(digest)  # already gone: fine
    assert not objects.has(digest)
    with pytest.raises(NotFoundError):
        objects.get_bytes(digest)


def test_a_file_that_changed_since_it_was_hashed_is_refused(objects: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("one")
    stale = digest_file(path)[0]
    path.write_text("two")
    with pytest.raises(StoreError, match="changed while it was being stored"):
        objects.put_file(path, digest=stale)
    assert not objects.has(stale) and list(objects.list_objects()) == []


def test_bad_digests_are_usage_errors(objects: ObjectStore) -> None:
    with pytest.raises(UsageError, match="not an object digest"):
        objects.has("md5:abc")


def test_local_corruption_is_found_on_read(tmp_path: Path) -> None:
    objects = LocalObjectStore(tmp_path / "o")
    digest = objects.put_bytes(b"data")
    path = objects._path(digest)
    path.chmod(0o644)
    path.write_bytes(b"DATA")
    assert not objects.verify(digest)
    with pytest.raises(StoreError, match="is corrupt"):
        objects.get_bytes(digest)
    dest = tmp_path / "x"
    with pytest.raises(StoreError, match="is corrupt"):
        objects.get_file(digest, dest)
    assert not dest.exists() and not list(tmp_path.glob(".x.*"))  # nothing partial left behind
    chunks = objects.iter_bytes(digest)  # streamed: the mismatch shows after the last chunk
    assert next(chunks) == b"DATA"
    with pytest.raises(StoreError, match="is corrupt"):
        next(chunks)
    assert b"".join(objects.iter_bytes(objects.put_bytes(b"fine"))) == b"fine"


def make_tree(root: Path, files: int = 20) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    for i in range(files):
        (root / ("sub" if i % 2 else ".") / f"f{i}.txt").write_text(f"content {i % 7}\n")
    (root / "sub" / "deeper" / "run.sh").write_text("echo hi\n")
    (root / "sub" / "deeper" / "run.sh").chmod(0o755)
    (root / "link").symlink_to("sub/f1.txt")  # followed: stored as the file it points to
    (root / "dangling").symlink_to("nowhere")  # kept as a link
    (root / "sub" / "up").symlink_to("..")  # a loop: kept as a link
    (root / "empty").mkdir()
    return root


def test_a_directory_is_a_merkle_tree_sharing_unchanged_parts(objects: ObjectStore, tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    tree = hash_path(data)
    assert tree.is_dir and tree.file_count == 22
    store_tree(objects, tree)
    before = {info.digest for info in objects.list_objects()}
    assert set(tree_digests(objects, tree.digest, True)) <= before
    assert store_tree(objects, hash_path(data)) == 0  # unchanged: stops at the root
    (data / "sub" / "deeper" / "new.txt").write_text("a changed file\n")
    changed = hash_path(data)
    store_tree(objects, changed)
    added = {info.digest for info in objects.list_objects()} - before
    assert len(added) == 4  # the new file, and the manifests of deeper/, sub/ and the root
    out = tmp_path / "restored"
    restore(objects, changed.digest, True, out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == sorted(
        str(p.relative_to(data)) for p in data.rglob("*")
    )  # rglob does not enter symlinked folders
    assert (
        not (out / "link").is_symlink()
        and (out / "link").read_text() == (data / "sub" / "f1.txt").read_text()
    )
    assert os.readlink(out / "dangling") == "nowhere" and os.readlink(out / "sub" / "up") == ".."
    assert os.access(out / "sub" / "deeper" / "run.sh", os.X_OK) and (out / "empty").is_dir()
    with pytest.raises(UsageError, match="already exists"):
        restore(objects, changed.digest, True, out)


def test_digest_cache_skips_rehashing_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runstone.artifacts import tree as tree_module

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    real_ns = time.time_ns
    monkeypatch.setattr(tree_module.time, "time_ns", lambda: real_ns() + 10_000_000_000)  # written long ago
    cache = DigestCache(tmp_path / "cache.db")
    first = hash_path(path, cache=cache).digest
    calls = []
    real = tree_module.digest_file
    monkeypatch.setattr(tree_module, "digest_file", lambda p: calls.append(p) or real(p))
    assert hash_path(path, cache=cache).digest == first and calls == []
    assert hash_path(path, cache=cache, verify=True).digest == first and len(calls) == 1
    path.write_bytes(b"y" * 1000)  # same size; the modification time moves
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert hash_path(path, cache=cache).digest != first and len(calls) == 2


def test_large_files_go_up_to_s3_in_parts(s3_url: str, tmp_path: Path) -> None:
    from runstone.artifacts.remote import PART_BYTES

    objects = FsspecObjectStore(s3_url)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(PART_BYTES + PART_BYTES // 2))
    etags = []
    real_mv = objects.fs.mv

    def spy(src: str, dst: str) -> None:
        etags.append(objects.fs.info(src)["ETag"])
        real_mv(src, dst)

    objects.fs.mv = spy
    digest = objects.put_file(big)
    assert etags and etags[0].strip('"').endswith("-2")  # a two-part upload
    assert objects.verify(digest) and not objects.fs.find(s3_url.removeprefix("s3://") + "/tmp")


def test_the_digest_cache_misses_a_rewrite_that_keeps_size_mtime_and_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runstone.artifacts import tree as tree_module

    real_ns = time.time_ns
    monkeypatch.setattr(tree_module.time, "time_ns", lambda: real_ns() + 10_000_000_000)
    path = tmp_path / "label.txt"
    path.write_text("label=cat")
    os.utime(path, ns=(1_704_067_200_000_000_000, 1_704_067_200_000_000_000))  # as tar x sets it
    cache = DigestCache(tmp_path / "cache.db")
    first = hash_path(path, cache=cache).digest
    inode = path.stat().st_ino
    with open(path, "r+") as f:  # same inode, same size, mtime set back: only the change time moves
        f.write("label=dog")
    os.utime(path, ns=(1_704_067_200_000_000_000, 1_704_067_200_000_000_000))
    assert path.stat().st_ino == inode
    assert hash_path(path, cache=cache).digest != first


def test_a_file_written_just_now_is_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "fresh.txt"
    path.write_text("x")
    cache = DigestCache(tmp_path / "cache.db")
    hash_path(path, cache=cache)
    assert cache.lookup(path.resolve(), path.stat()) is None


def test_an_unusable_cache_only_costs_a_rehash(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    cache = DigestCache(blocked / "cache.db")  # its folder cannot be made
    path = tmp_path / "f.txt"
    path.write_text("x")
    assert hash_path(path, cache=cache).digest == digest_file(path)[0]
