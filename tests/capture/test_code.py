"""Code capture against real git repositories made in temporary folders."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runstone.capture.code import capture_code, strip_credentials

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('train')\n")
    (repo / "model.bin").write_bytes(bytes(range(256)) * 4)
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "remote", "add", "origin", "https://user:s3cret@git.example.invalid/team/repo.git")
    return repo


def _rebuild(record: dict, blobs: dict[str, bytes], source: Path, dest: Path) -> None:
    """Put the tree back from the record alone: clone at the commit, apply the diff, add untracked files."""
    git_record = record["git"]
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True, capture_output=True)
    if git_record["commit"]:
        git(dest, "checkout", "-q", git_record["commit"])
    if git_record["diff"]:
        patch = dest.parent / "changes.patch"
        patch.write_bytes(blobs[git_record["diff"]["digest"]])
        git(dest, "apply", "--binary", str(patch))
    for item in git_record["untracked"]:
        target = dest / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blobs[item["digest"]])


def _same_tree(a: Path, b: Path) -> None:
    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(root).parts and not p.name.endswith(".log")
        }

    assert files(a) == files(b)
    for name in files(a):
        assert filecmp.cmp(a / name, b / name, shallow=False), name


def test_clean_repository(repo: Path) -> None:
    capture = capture_code(repo, root=repo)
    git_record = capture.record["git"]
    assert capture.record["kind"] == "git"
    assert git_record["commit"] == git(repo, "rev-parse", "HEAD")
    assert (git_record["branch"], git_record["detached"], git_record["dirty"]) == ("main", False, False)
    assert git_record["diff"] is None and git_record["untracked"] == []
    assert git_record["remotes"] == {"origin": "https://git.example.invalid/team/repo.git"}
    assert "s3cret" not in repr(capture.record)


def test_dirty_repository_is_rebuilt_exactly(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")  # unstaged
    (repo / "model.bin").write_bytes(bytes(reversed(range(256))) * 4)  # binary change
    git(repo, "add", "model.bin")  # staged
    (repo / "notes").mkdir()
    (repo / "notes" / "idea.txt").write_text("untracked\n")
    (repo / "debug.log").write_text("ignored\n")
    git(repo, "rm", "-q", ".gitignore")
    (repo / ".gitignore").write_text("*.log\n")  # deleted from the index, back as untracked
    capture = capture_code(repo, root=repo)
    git_record = capture.record["git"]
    assert git_record["dirty"] is True
    assert [u["path"] for u in git_record["untracked"]] == sorted([".gitignore", "notes/idea.txt"])
    assert all(u["path"] != "debug.log" for u in git_record["untracked"])  # ignored files are not kept
    rebuilt = tmp_path / "rebuilt"
    _rebuild(capture.record, capture.blobs, repo, rebuilt)
    _same_tree(repo, rebuilt)


def test_untracked_size_limit_is_reported(repo: Path) -> None:
    (repo / "small.txt").write_text("x" * 10)
    (repo / "big.bin").write_bytes(b"y" * 5000)
    git_record = capture_code(repo, root=repo, untracked_max_bytes=1000).record["git"]
    assert [u["path"] for u in git_record["untracked"]] == ["small.txt"]
    assert git_record["untracked_skipped"] == [{"path": "big.bin", "size_bytes": 5000}]
    assert git_record["untracked_limit_bytes"] == 1000


def test_detached_head(repo: Path) -> None:
    (repo / "train.py").write_text("v2\n")
    git(repo, "commit", "-q", "-am", "second")
    first = git(repo, "rev-parse", "HEAD~1")
    git(repo, "checkout", "-q", first)
    git_record = capture_code(repo, root=repo).record["git"]
    assert (git_record["commit"], git_record["branch"], git_record["detached"]) == (first, None, True)


def test_no_commits_yet(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.py").write_text("a = 1\n")
    git(repo, "add", "a.py")
    (repo / "a.py").write_text("a = 2\n")  # staged, then changed again
    (repo / "b.py").write_text("b = 1\n")  # untracked
    capture = capture_code(repo, root=repo)
    git_record = capture.record["git"]
    assert git_record["commit"] is None and git_record["dirty"] is True
    diff = capture.blobs[git_record["diff"]["digest"]].decode()
    assert "a = 2" in diff
    assert [u["path"] for u in git_record["untracked"]] == ["b.py"]


def test_submodule_commits(repo: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    (lib / "lib.py").write_text("x = 1\n")
    git(lib, "add", ".")
    git(lib, "commit", "-q", "-m", "lib")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "vendor/lib")
    git(repo, "commit", "-q", "-m", "add lib")
    git_record = capture_code(repo, root=repo).record["git"]
    assert git_record["submodules"] == [{"path": "vendor/lib", "commit": git(lib, "rev-parse", "HEAD")}]


def test_outside_git_a_snapshot_of_the_program(tmp_path: Path) -> None:
    project = tmp_path / "plain"
    (project / "pkg").mkdir(parents=True)
    (project / "run.py").write_text("import pkg.mod\n")
    (project / "pkg" / "mod.py").write_text("X = 1\n")
    outside = tmp_path / "elsewhere.py"
    outside.write_text("Y = 2\n")
    capture = capture_code(
        project,
        root=project,
        entry=str(project / "run.py"),
        module_files=[str(project / "pkg" / "mod.py"), str(outside), os.__file__],
    )
    assert capture.record["kind"] == "snapshot"
    files = capture.record["snapshot"]["files"]
    assert [f["path"] for f in files] == ["pkg/mod.py", "run.py"]
    assert capture.blobs[files[1]["digest"]] == b"import pkg.mod\n"
    again = capture_code(project, root=project, entry=str(project / "run.py"))
    assert again.record["snapshot"]["files"][0]["digest"] == files[1]["digest"]  # content-addressed


def test_without_git_installed_it_falls_back_to_a_snapshot(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    capture = capture_code(repo, root=repo, entry=str(repo / "train.py"))
    assert capture.record["kind"] == "snapshot"
    assert [f["path"] for f in capture.record["snapshot"]["files"]] == ["train.py"]
    assert capture.record["git_unavailable"] == "git is not installed: the source was snapshotted instead"
    assert shutil.which("git") is None


def test_strip_credentials() -> None:
    assert strip_credentials("https://tok@github.com/a/b") == "https://github.com/a/b"
    assert strip_credentials("ssh://git@host:22/r.git") == "ssh://host:22/r.git"
    assert (
        strip_credentials("git@github.com:a/b.git") == "git@github.com:a/b.git"
    )  # scp form carries no secret
    assert strip_credentials("postgres://u:pw@db/x") == "postgres://db/x"


def test_rebuild_gaps_are_named_not_hidden(repo: Path, tmp_path: Path) -> None:
    (repo / "ulink").symlink_to("train.py")
    script = repo / "tool.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    nested = repo / "vendored"
    nested.mkdir()
    git(nested, "init", "-q")
    git(repo, "update-index", "--skip-worktree", "train.py")
    (repo / "train.py").write_text("print('hidden change')\n")
    git_record = capture_code(repo, root=repo).record["git"]
    untracked = {u["path"]: u for u in git_record["untracked"]}
    assert untracked["ulink"] == {"path": "ulink", "symlink": "train.py"}
    assert untracked["tool.sh"]["executable"] is True
    reasons = {n["path"]: n["reason"] for n in git_record["not_captured"]}
    assert "nested git repository" in reasons["vendored/"]
    assert "skip-worktree" in reasons["train.py"]
    assert git_record["dirty"] is True


def test_the_users_git_config_does_not_change_the_stored_diff(repo: Path, tmp_path: Path) -> None:
    git(repo, "config", "diff.noprefix", "true")
    (repo / ".gitattributes").write_text("*.py diff=upper\n")
    git(repo, "config", "diff.upper.textconv", "sh -c 'tr a-z A-Z < \"$0\"'")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "attributes")
    (repo / "train.py").write_text("print('new')\n")
    capture = capture_code(repo, root=repo)
    rebuilt = tmp_path / "rebuilt"
    _rebuild(capture.record, capture.blobs, repo, rebuilt)
    assert (rebuilt / "train.py").read_text() == "print('new')\n"


def test_huge_changes_are_listed_not_kept(repo: Path) -> None:
    (repo / "model.bin").write_bytes(os.urandom(4096))
    git_record = capture_code(repo, root=repo, diff_max_bytes=1000).record["git"]
    assert git_record["diff"] is None and git_record["dirty"] is True
    assert "over the 1,000-byte limit" in git_record["not_captured"][0]["reason"]
    assert git_record["commit"] is not None  # the rest of the record is still there


def test_undecodable_names_do_not_break_capture(repo: Path) -> None:
    (repo / os.fsdecode(b"bad\xffname.txt")).write_text("n\n")
    git_record = capture_code(repo, root=repo).record["git"]
    [item] = [u for u in git_record["untracked"] if "path_b64" in u]
    assert item["path"] == "bad\\xffname.txt"
    import base64

    assert base64.b64decode(item["path_b64"]) == b"bad\xffname.txt"
