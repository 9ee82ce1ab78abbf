"""Rebuild a run's recorded Python environment as a fresh virtual environment.

Layer 5. ``recreate`` turns an environment record into a virtual environment
with exactly the recorded distributions at their recorded versions,
installed without dependency resolution (the record is the whole set):

- with ``uv`` where it is installed (``uv venv`` + ``uv pip install``),
  else with ``python -m venv`` and pip;
- editable and local installs from inside the run's own source tree become
  editable installs of the rebuilt tree (``project_paths`` maps one to the
  other), done after the cached part, without dependencies;
- other editable or local installs are installed from their recorded path
  when it still exists; VCS installs from their URL at the recorded commit.

Environments are cached by the digest of their package set (and the
interpreter's version) under ``RUNSTONE_ENV_CACHE`` (default
``~/.cache/runstone/envs``): a second reproduction reuses the first's. A
package version that cannot be had fails the build, naming it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runstone.api.compare import normalize_name
from runstone.errors import ReproductionError

__all__ = ["Environment", "cache_dir", "recreate", "requirements"]

ENV_CACHE = "RUNSTONE_ENV_CACHE"
ENV_INSTALLER = "RUNSTONE_INSTALLER"  # "uv" or "pip": force one
_MARKER = "runstone-environment.txt"


@dataclass(frozen=True)
class Environment:
    """A rebuilt environment: its interpreter, whether it came from the cache, how it was built."""

    python: Path
    path: Path
    digest: str
    cached: bool
    installer: str


def cache_dir() -> Path:
    """Where rebuilt environments are kept: ``RUNSTONE_ENV_CACHE``, else ``~/.cache/runstone/envs``."""
    explicit = os.environ.get(ENV_CACHE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "runstone", "envs")


def _local_path(url: str) -> Path | None:
    return Path(url[len("file://") :]) if url.startswith("file://") else None


def requirements(record: Mapping[str, Any], project_paths: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The pinned lines of the cached part, and the installer arguments of the project's own installs.

    Args:
        record: the run's environment record.
        project_paths: original source root -> rebuilt source root.

    Raises:
        ReproductionError: an editable or local install's path is gone.
    """
    pinned, project = [], []
    for dist in record.get("distributions") or []:
        name, version = dist.get("name"), dist.get("version")
        source = dist.get("source") or {}
        kind, url = source.get("kind"), str(source.get("url") or "")
        path = _local_path(url)
        if kind in ("editable", "local") and path is not None:
            mapped = _map(path, project_paths)
            if mapped is not None:
                project += ["-e", str(mapped)] if kind == "editable" else [str(mapped)]
                continue
            if not path.exists():
                raise ReproductionError(
                    f"{name} {version} was installed from {path}, which no longer exists; "
                    "put it back there (or install that version where it can be found) and try again"
                )
            pinned.append(f"-e {path}" if kind == "editable" else f"{name} @ {url}")
        elif kind == "vcs" and url:
            pinned.append(f"{name} @ {source.get('vcs', 'git')}+{url}@{source.get('commit')}")
        elif kind == "url" and url:
            pinned.append(f"{name} @ {url}")
        else:
            pinned.append(f"{name}=={version}")
    return sorted(pinned, key=str.lower), project


def _map(path: Path, project_paths: Mapping[str, str]) -> Path | None:
    text = str(path)
    for old, new in project_paths.items():
        if text == old or text.startswith(old.rstrip("/") + "/"):
            return Path(new + text[len(old.rstrip("/")) :])
    return None


def _interpreter(version: str | None) -> str:
    """A Python interpreter of the recorded version, or a clear error."""
    if not version or version == platform.python_version():
        return sys.executable
    major_minor = ".".join(version.split(".")[:2])
    for name in (f"python{version}", f"python{major_minor}"):
        found = shutil.which(name)
        if found:
            out = subprocess.run(
                [found, "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.stdout.strip() == version:
                return found
    raise ReproductionError(
        f"The run used Python {version}, and no python{major_minor} of that exact version is on PATH "
        f"(this is {platform.python_version()}); install it (e.g. uv python install {version}) "
        "or reproduce in the current environment"
    )


def _uv() -> str | None:
    """uv on PATH, or installed beside this interpreter (``pip install uv``)."""
    beside = Path(sys.executable).parent / "uv"
    return shutil.which("uv") or (str(beside) if beside.exists() else None)


def _installer() -> tuple[str, list[str]]:
    """``uv`` or ``pip`` (``RUNSTONE_INSTALLER`` forces one), and the uv program if uv."""
    forced = os.environ.get(ENV_INSTALLER)
    if forced and forced not in ("uv", "pip"):
        raise ReproductionError(
            f"{ENV_INSTALLER}={forced!r}: use uv or pip (or unset it to pick uv when installed)"
        )
    uv = _uv()
    if forced == "uv" and uv is None:
        raise ReproductionError(f"{ENV_INSTALLER}=uv, but uv is not installed; install it (pip install uv)")
    if forced == "pip" or uv is None:
        return "pip", []
    return "uv", [uv]


def _run(argv: list[str], log: Callable[[str], None]) -> subprocess.CompletedProcess[str]:
    log(f"  $ {' '.join(argv[:6])}{' ...' if len(argv) > 6 else ''}")
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _unobtainable(output: str, lines: list[str]) -> list[str]:
    """The pinned requirements an installer's error output names."""
    named = []
    lowered = normalize_name(output)
    for line in lines:
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", line)
        name, version = match.groups() if match else ("", "")
        if match and (
            normalize_name(f"{name}=={version}") in lowered or normalize_name(f"{name}-{version}") in lowered
        ):
            named.append(f"{match.group(1)}=={match.group(2)}")
    return named


@contextlib.contextmanager
def recreate(
    record: Mapping[str, Any],
    *,
    project_paths: Mapping[str, str] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Iterator[Environment]:
    """Build (or reuse from the cache) a virtual environment with exactly the recorded packages.

    A context manager: the environment is held (a lock per package set) until
    the block ends, because the run's own project is installed into it from
    ``project_paths`` each time; concurrent reproductions of the same package
    set take turns.

    Raises:
        ReproductionError: the interpreter or a package version cannot be had
            (the message names them), or the build failed otherwise.
    """
    project_paths = project_paths or {}
    version = (record.get("python") or {}).get("version")
    pinned, project = requirements(record, project_paths)
    text = f"# Python {version}\n" + "\n".join(pinned) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    root = cache_dir()
    path = root / digest
    python = path / "bin" / "python"
    installer, uv = _installer()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one user per package set; the others wait and reuse it
        cached = (path / _MARKER).is_file() and python.exists()
        if cached:
            log(f"runstone: reusing the environment {path} ({len(pinned)} packages)")
        else:
            _build(path, text, pinned=pinned, version=version, uv=uv, log=log)
        if project:
            done = _run([*_install_argv(uv, str(python)), *project], log)
            if done.returncode != 0:
                raise ReproductionError(
                    f"Could not install the run's own project ({' '.join(project)}) into {path}: "
                    f"{(done.stderr + done.stdout).strip()[-1500:]}"
                )
        yield Environment(python, path, digest, cached, installer)


def _build(
    path: Path,
    text: str,
    *,
    pinned: list[str],
    version: str | None,
    uv: list[str],
    log: Callable[[str], None],
) -> None:
    """Build the environment at ``path``; the marker file, written last, says it is complete."""
    interpreter = _interpreter(version)
    log(f"runstone: building an environment of {len(pinned)} packages with {'uv' if uv else 'pip'} in {path}")
    shutil.rmtree(path, ignore_errors=True)  # an earlier build that did not finish
    try:
        if uv:
            made = _run([*uv, "venv", "--quiet", "--python", interpreter, str(path)], log)
        else:
            made = _run([interpreter, "-m", "venv", str(path)], log)
        if made.returncode != 0:
            raise ReproductionError(f"Could not create a virtual environment: {made.stderr.strip()[-800:]}")
        (path / "requirements.txt").write_text(text)
        python = str(path / "bin" / "python")
        if pinned:
            done = _run([*_install_argv(uv, python), "-r", str(path / "requirements.txt")], log)
            if done.returncode != 0:
                output = done.stderr + done.stdout
                named = _unobtainable(output, pinned)
                which = f": {', '.join(named)} cannot be installed" if named else ""
                raise ReproductionError(
                    f"Could not install the recorded packages with {'uv' if uv else 'pip'}{which}. "
                    f"The installer said:\n{output.strip()[-1500:]}"
                )
        (path / _MARKER).write_text(text)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _install_argv(uv: list[str], python: str) -> list[str]:
    if uv:
        return [*uv, "pip", "install", "--quiet", "--python", python, "--no-deps"]
    return [python, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check"]
