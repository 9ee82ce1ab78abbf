"""The software environment: interpreter, installed distributions, environment variables.

Layer 3, standard library only. Distributions are found by listing the
``*.dist-info``/``*.egg-info`` folders on ``sys.path``, whose names carry the
name and version: far cheaper than ``importlib.metadata`` or ``pip freeze``.
Only ``direct_url.json`` (editable, local and VCS installs) and ``INSTALLER``
are read, and only where present.

Environment variables that affect numerics or determinism are always kept;
the rest follow an allow/deny policy (``RUNSTONE_CAPTURE_ENV_ALLOW``,
``RUNSTONE_CAPTURE_ENV_DENY``: comma-separated glob patterns). Values of
secret-looking names are never stored, only noted as redacted, and
credentials are stripped from URL-like values.
"""

from __future__ import annotations

import fnmatch
import json
import os
import platform
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runstone.capture.code import strip_credentials

__all__ = [
    "NUMERIC_VARIABLES",
    "REDACTED",
    "capture_environment",
    "distributions",
    "environment_variables",
    "is_secret_name",
    "requirements_txt",
]

REDACTED = "<redacted>"
#: names (globs) always recorded: they change numbers or determinism
NUMERIC_VARIABLES = (
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "OMP_NUM_THREADS",
    "MKL_*",
    "OPENBLAS_*",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_*",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "TF_ENABLE_ONEDNN_OPTS",
    "XLA_FLAGS",
    "JAX_*",
    "NVIDIA_TF32_OVERRIDE",
    "TORCH_*",
    "PYTORCH_*",
    "CUDNN_*",
    "NCCL_*",
)
_SECRET = re.compile(
    r"TOKEN|SECRET|PASS|PWD|PW($|_)|CREDENTIAL|PRIVATE|(^|_)KEY($|_)|APIKEY|AUTH|COOKIE|SESSION|JWT|"
    r"(^|_)PAT($|_)|WEBHOOK|DSN|CONNECTION_STRING|CONN_STR|SIGNATURE",
    re.I,
)
#: values that carry a secret whatever the variable is called (connection strings)
_SECRET_VALUE = re.compile(r"(password|pwd|accountkey|sharedaccesskey|secret|token)\s*=", re.I)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name looks like it holds a secret."""
    return bool(_SECRET.search(name))


def _unclear_credentials(value: str) -> bool:
    """A URL-like value whose credentials cannot be told apart cleanly (a password holding '/').

    After stripping, an '@' still standing before the first '/' of the address,
    or a ':' and an '@' both in it, means something that looks like user
    information is left: the value is redacted rather than guessed at.
    """
    if "://" not in value:
        return False
    rest = value.split("://", 1)[1]
    if "@" in strip_credentials(value).split("://", 1)[1].split("/", 1)[0]:
        return True
    authority, _, path = rest.partition("/")
    # "user:pa/ss@host": a password holding '/' ends the address early
    return ":" in authority and "@" in path


def _matches(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def environment_variables(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Recorded variables, with secrets redacted.

    Returns:
        ``{"values": {name: value}, "redacted": [names], "omitted": count}``.
    """
    env = os.environ if env is None else env
    allow = [p for p in env.get("RUNSTONE_CAPTURE_ENV_ALLOW", "*").split(",") if p.strip()]
    deny = [p for p in env.get("RUNSTONE_CAPTURE_ENV_DENY", "").split(",") if p.strip()]
    values: dict[str, str] = {}
    redacted: list[str] = []
    omitted = 0
    for name in sorted(env):
        always = _matches(name, NUMERIC_VARIABLES)
        if not always and (not _matches(name, allow) or _matches(name, deny)):
            omitted += 1
            continue
        value = env[name]
        if is_secret_name(name) or _SECRET_VALUE.search(value) or _unclear_credentials(value):
            redacted.append(name)
            continue
        values[name] = strip_credentials(value)
    return {"values": values, "redacted": redacted, "omitted": omitted}


def _normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_cache: dict[tuple[tuple[str, int], ...], list[dict[str, Any]]] = {}


def distributions(path: list[str] | None = None) -> list[dict[str, Any]]:
    """Installed distributions visible on ``sys.path``: name, version and how installed.

    The first one found for a name wins, as for imports. The answer is cached
    per process until a directory on the path changes (an install or an
    uninstall changes its modification time), so runs started one after
    another in a process pay for the scan once.
    """
    entries = list(sys.path if path is None else path)
    key = tuple((entry, _mtime_ns(entry)) for entry in entries)
    cached = _cache.get(key)
    if cached is None:
        cached = _scan(entries)
        _cache.clear()
        _cache[key] = cached
    return [dict(d) for d in cached]


def _mtime_ns(entry: str) -> int:
    try:
        return os.stat(entry or ".").st_mtime_ns
    except OSError:
        return -1


def _scan(entries: list[str]) -> list[dict[str, Any]]:
    """Distributions on the path; ``.dist-info`` first, then ``.egg-info`` for names not yet found.

    A project's own checkout is often on the path (the script's folder) with the
    ``.egg-info`` its build left there; the installed ``.dist-info`` (which says
    how it was installed, e.g. editable) is the one to record.
    """
    found: dict[str, dict[str, Any]] = {}
    listings = []
    for entry in entries:
        try:
            listings.append((entry, os.listdir(entry or ".")))
        except OSError:
            continue
    for suffix, (entry, names) in [(s, listing) for s in ("dist-info", "egg-info") for listing in listings]:
        for folder in names:
            if not folder.endswith(suffix):
                continue
            meta = Path(entry or ".", folder)
            parsed = _name_version(folder, meta)
            if parsed is None:
                continue
            key = _normalize_name(parsed[0])
            if key in found:
                continue
            dist: dict[str, Any] = {"name": parsed[0], "version": parsed[1]}
            direct = meta / "direct_url.json"
            if direct.is_file():
                try:
                    info = json.loads(direct.read_text())
                except (OSError, ValueError):
                    info = {}
                url = strip_credentials(str(info.get("url", "")))
                if info.get("dir_info", {}).get("editable"):
                    dist["source"] = {"kind": "editable", "url": url}
                elif "vcs_info" in info:
                    vcs = info["vcs_info"]
                    dist["source"] = {
                        "kind": "vcs",
                        "url": url,
                        "vcs": vcs.get("vcs"),
                        "commit": vcs.get("commit_id"),
                    }
                elif url:
                    dist["source"] = {"kind": "local" if url.startswith("file:") else "url", "url": url}
            installer = meta / "INSTALLER"
            if installer.is_file():
                try:
                    dist["installer"] = installer.read_text().strip()
                except OSError:
                    pass
            found[key] = dist
    return sorted(found.values(), key=lambda d: _normalize_name(d["name"]))


def _name_version(folder: str, meta: Path) -> tuple[str, str] | None:
    """Name and version from a ``name-version[-pyX.Y[-platform]].{dist,egg}-info`` folder.

    Names and versions in these folder names have their dashes escaped, so the
    first two dash-separated parts are the name and the version. A folder
    without a version (``setup.py develop`` makes ``name.egg-info``) is read.
    """
    stem = folder.rsplit(".", 1)[0]
    parts = stem.split("-")
    if len(parts) >= 2 and parts[0] and parts[1]:
        return parts[0], parts[1]
    for name in ("METADATA", "PKG-INFO"):
        try:
            text = (
                (meta / name).read_text(errors="replace")
                if meta.is_dir()
                else meta.read_text(errors="replace")
            )
        except OSError:
            continue
        version = next((line[9:].strip() for line in text.splitlines() if line.startswith("Version: ")), None)
        if version:
            return parts[0], version
    return None


def _conda_packages(prefix: str) -> list[str]:
    """The explicit package URLs of a conda environment, from its conda-meta records."""
    urls = []
    meta = Path(prefix, "conda-meta")
    try:
        names = sorted(meta.glob("*.json"))
    except OSError:
        return []
    for path in names:
        try:
            url = json.loads(path.read_text()).get("url")
        except (OSError, ValueError):
            continue
        if url:
            urls.append(strip_credentials(url))
    return urls


def _interpreter() -> dict[str, Any]:
    conda = os.environ.get("CONDA_PREFIX")
    if conda and Path(sys.prefix).resolve() == Path(conda).resolve():
        kind = "conda"
    elif sys.prefix != sys.base_prefix:
        kind = "venv"
    else:
        kind = "system"
    return {
        "implementation": platform.python_implementation(),
        "version": platform.python_version(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "environment_kind": kind,
    }


def capture_environment() -> dict[str, Any]:
    """The interpreter, distributions (and conda packages), and environment variables."""
    record: dict[str, Any] = {
        "python": _interpreter(),
        "distributions": distributions(),
        "variables": environment_variables(),
    }
    conda = os.environ.get("CONDA_PREFIX")
    if conda:
        record["conda"] = {"prefix": conda, "explicit": _conda_packages(conda)}
    return record


def requirements_txt(record: Mapping[str, Any]) -> str:
    """A pinned requirements file that ``pip install -r`` and ``uv pip install -r`` accept.

    Editable installs become ``-e PATH``, VCS installs ``name @ git+URL@COMMIT``,
    local files ``name @ file://...``; everything else ``name==version``.
    """
    lines = [f"# Python {record.get('python', {}).get('version', '?')}"]
    for dist in record.get("distributions", []):
        source = dist.get("source") or {}
        kind = source.get("kind")
        if kind == "editable" and source.get("url", "").startswith("file://"):
            lines.append(f"-e {source['url'][len('file://') :]}")
        elif kind == "vcs" and source.get("url"):
            lines.append(
                f"{dist['name']} @ {source.get('vcs', 'git')}+{source['url']}@{source.get('commit')}"
            )
        elif kind in ("local", "url") and source.get("url"):
            lines.append(f"{dist['name']} @ {source['url']}")
        else:
            lines.append(f"{dist['name']}=={dist['version']}")
    return "\n".join(lines) + "\n"
