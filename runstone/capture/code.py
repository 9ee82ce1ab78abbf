"""The source a run executes: a git commit with its changes, or a snapshot of the files.

Layer 3, standard library only. ``capture_code`` returns the record (digests,
sizes, names) and the bytes to store under those digests; it never touches a
store. Everything needed to put the exact tree back is kept: the commit, the
binary-safe diff of staged and unstaged changes against it, and the contents
of untracked, non-ignored files (up to a size limit, reported when hit).
Outside git, the entry script and every imported module under the project
root are snapshotted, content-addressed, so unchanged files cost nothing.

git runs with ``GIT_OPTIONAL_LOCKS=0`` so capture never takes the index lock
from under the user's own git commands.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CodeCapture", "capture_code", "snapshot_files", "strip_credentials"]

#: untracked files are kept up to this many bytes in all (RUNSTONE_CAPTURE_UNTRACKED_MAX_BYTES)
DEFAULT_UNTRACKED_MAX_BYTES = 50 * 1024 * 1024
#: uncommitted changes are kept while the changed files hold at most this many bytes
#: (RUNSTONE_CAPTURE_DIFF_MAX_BYTES)
DEFAULT_DIFF_MAX_BYTES = 100 * 1024 * 1024
_GIT_TIMEOUT_S = 20
# user[:password]@ up to the last '@' before the address's first '/' (a password may hold '@')
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]*@")


@dataclass
class CodeCapture:
    """A code record and the bytes its digests refer to."""

    record: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)

    def add_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest


def strip_credentials(url: str, marker: str = "") -> str:
    """A URL without its user:password part (``https://tok@host/x`` -> ``https://host/x``).

    With a ``marker``, the part is replaced by it (``https://<redacted>@host/x``), so
    a reader can tell something was taken out.
    """
    return _CREDENTIALS.sub(lambda m: m.group("scheme") + (f"{marker}@" if marker else ""), url)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    return subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        timeout=_GIT_TIMEOUT_S,
        env=env,
        check=False,
    )


def _git_text(root: Path, *args: str) -> str | None:
    result = _git(root, *args)
    return result.stdout.decode("utf-8", "surrogateescape").strip() if result.returncode == 0 else None


def _git_root(cwd: Path) -> tuple[Path | None, str | None]:
    """The repository's top (or None) and, when git cannot be asked, why."""
    try:
        top = _git_text(cwd, "rev-parse", "--show-toplevel")
    except FileNotFoundError:
        return None, "git is not installed: the source was snapshotted instead"
    except subprocess.TimeoutExpired:
        return None, "git did not answer in time: the source was snapshotted instead"
    return (Path(top) if top else None), None


def _text(raw: bytes) -> tuple[str, str | None]:
    """A file name as text, and its exact bytes (base64) when they are not UTF-8."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode()


def _capture_git(
    root: Path, capture: CodeCapture, untracked_max_bytes: int, diff_max_bytes: int
) -> dict[str, Any]:
    commit = _git_text(root, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git_text(root, "symbolic-ref", "-q", "--short", "HEAD")
    remotes: dict[str, str] = {}
    for line in (_git_text(root, "remote", "-v") or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and (len(parts) < 3 or parts[2] == "(fetch)"):
            remotes[parts[0]] = strip_credentials(parts[1])
    not_captured: list[dict[str, Any]] = []
    record: dict[str, Any] = {
        "root": str(root),
        "commit": commit,
        "branch": branch,
        "detached": commit is not None and branch is None,
        "remotes": remotes,
        "diff": None,
        "not_captured": not_captured,
    }
    # Staged and unstaged changes against the commit (or, with no commit yet,
    # against the empty tree), binary-safe so `git apply` puts them back; the
    # options pin the format whatever the user's git configuration says.
    base = commit or _git_text(root, "hash-object", "-t", "tree", os.devnull)
    changed = _git(root, "diff", "--name-only", "-z", "--no-textconv", "--no-ext-diff", str(base))
    changed_bytes = 0
    for raw in filter(None, changed.stdout.split(b"\0")):
        with contextlib.suppress(OSError):
            changed_bytes += (root / raw.decode("utf-8", "surrogateescape")).stat().st_size
    if changed_bytes > diff_max_bytes:
        not_captured.append(
            {
                "path": "(uncommitted changes)",
                "reason": f"changed files hold {changed_bytes:,} bytes, over the {diff_max_bytes:,}-byte "
                "limit (RUNSTONE_CAPTURE_DIFF_MAX_BYTES)",
            }
        )
        diff_stdout = b"skipped"
    else:
        diff = _git(
            root,
            "-c",
            "diff.noprefix=false",
            "-c",
            "diff.mnemonicPrefix=false",
            "diff",
            "--binary",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            "--ignore-submodules=none",
            str(base),
        )
        if diff.returncode != 0:
            not_captured.append(
                {
                    "path": "(uncommitted changes)",
                    "reason": f"git diff failed: {diff.stderr.decode(errors='replace').strip()}",
                }
            )
        diff_stdout = diff.stdout
        if diff.returncode == 0 and diff.stdout:
            record["diff"] = {"digest": capture.add_blob(diff.stdout), "size_bytes": len(diff.stdout)}
    listed = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    untracked, skipped, total = [], [], 0
    for raw in filter(None, listed.stdout.split(b"\0")):
        rel, rel_b64 = _text(raw)
        path = root / raw.decode("utf-8", "surrogateescape")
        entry: dict[str, Any] = {"path": rel} | ({"path_b64": rel_b64} if rel_b64 else {})
        try:
            if path.is_symlink():
                untracked.append(entry | {"symlink": os.readlink(path)})
                continue
            if path.is_dir():  # a nested repository git will not look into
                not_captured.append(entry | {"reason": "a nested git repository; its files are not kept"})
                continue
            size = path.stat().st_size
            if total + size > untracked_max_bytes:
                skipped.append(entry | {"size_bytes": size})
                continue
            data = path.read_bytes()
            executable = os.access(path, os.X_OK)
        except OSError as e:
            skipped.append(entry | {"error": e.strerror or str(e)})
            continue
        total += len(data)
        entry |= {"digest": capture.add_blob(data), "size_bytes": len(data)}
        untracked.append(entry | ({"executable": True} if executable else {}))
    submodules = []
    listing = _git(root, "submodule", "status", "--recursive") if (root / ".gitmodules").exists() else None
    for raw in (listing.stdout if listing is not None else b"").splitlines():
        line = raw.decode("utf-8", "backslashreplace")
        if len(line) < 43:
            continue
        state, sha, rest = line[0], line[1:41], line[42:]
        sub_path = rest.rsplit(" (", 1)[0] if rest.endswith(")") else rest  # the path may hold spaces
        submodules.append({"path": sub_path, "commit": sha})
        inner = _git(root / sub_path, "status", "--porcelain") if state != "-" else None
        if inner is not None and inner.stdout.strip():
            not_captured.append(
                {"path": sub_path, "reason": "the submodule has uncommitted changes; they are not kept"}
            )
    hidden = _git(root, "ls-files", "-v", "-z")
    for raw in filter(None, hidden.stdout.split(b"\0")):
        flag = raw[:1]
        if flag == b"S" or (flag.islower() and flag != b"?"):
            not_captured.append(
                {
                    "path": _text(raw[2:])[0],
                    "reason": "marked skip-worktree or assume-unchanged: git does not report its changes",
                }
            )
    record.update(
        dirty=bool(diff_stdout) or bool(untracked) or bool(skipped) or bool(not_captured),
        untracked=untracked,
        untracked_skipped=skipped,
        untracked_limit_bytes=untracked_max_bytes,
        submodules=submodules,
    )
    return record


def _snapshot(
    root: Path, entry: str | None, module_files: Iterable[str], capture: CodeCapture
) -> dict[str, Any]:
    # String prefixes, not Path.resolve() on everything: a program imports hundreds of modules.
    top = os.path.realpath(root)
    inside = top.rstrip(os.sep) + os.sep
    excluded = tuple(
        os.path.realpath(p).rstrip(os.sep) + os.sep for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}
    )
    files: dict[str, dict[str, Any]] = {}
    for name in [entry, *module_files]:
        if not name:
            continue
        path = os.path.abspath(name)
        if path.startswith(excluded) or f"{os.sep}site-packages{os.sep}" in path:
            continue
        if not path.startswith(inside):
            path = os.path.realpath(path)  # named through a symlinked directory?
            if not path.startswith(inside):
                continue
        rel = path[len(inside) :]
        if rel in files or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        files[rel] = {"path": rel, "digest": capture.add_blob(data), "size_bytes": len(data)}
    return {"root": top, "entry": entry, "files": sorted(files.values(), key=lambda f: f["path"])}


def snapshot_files(root: Path, module_files: Iterable[str], capture: CodeCapture) -> list[dict[str, Any]]:
    """Snapshot entries (path, digest, size) of the module files under ``root``; bytes go to ``capture``."""
    return list(_snapshot(root, None, module_files, capture)["files"])


def capture_code(
    cwd: Path,
    *,
    root: Path,
    entry: str | None = None,
    module_files: Iterable[str] | Callable[[], Iterable[str]] = (),
    snapshot: bool = False,
    untracked_max_bytes: int = DEFAULT_UNTRACKED_MAX_BYTES,
    diff_max_bytes: int = DEFAULT_DIFF_MAX_BYTES,
) -> CodeCapture:
    """Describe, and keep the bytes of, the source the program runs.

    Args:
        cwd: the working directory.
        root: the project root (the git repository's top, else ``cwd``).
        entry: the entry script, if the program is a script.
        module_files: files of imported modules (snapshot candidates), or a
            function giving them, called only when a snapshot is taken.
        snapshot: snapshot the program's files even inside git.
        untracked_max_bytes: keep untracked files up to this many bytes in all.
        diff_max_bytes: keep uncommitted changes while the changed files hold at
            most this many bytes (a huge binary rewrite is listed, not kept).

    Returns:
        ``record["kind"]`` is ``git`` (with ``record["git"]``) or ``snapshot``;
        a snapshot is also present when asked for. Never raises for git
        trouble: the caller records exceptions as a failed part.
    """
    capture = CodeCapture(record={"cwd": str(cwd)})
    git_root, problem = _git_root(cwd)
    if problem:
        capture.record["git_unavailable"] = problem
    if git_root is not None:
        capture.record["kind"] = "git"
        capture.record["git"] = _capture_git(git_root, capture, untracked_max_bytes, diff_max_bytes)
    else:
        capture.record["kind"] = "snapshot"
    if git_root is None or snapshot:
        files = module_files() if callable(module_files) else module_files
        capture.record["snapshot"] = _snapshot(git_root or root, entry, files, capture)
    return capture
