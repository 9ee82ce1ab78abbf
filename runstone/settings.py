"""Where runstone keeps things and how it behaves: one Settings object.

Layer 2 (imports only errors and the standard library). Settings are read from
the environment each time ``current()`` is called, never frozen at import, so a
program may change ``RUNSTONE_*`` variables before it starts a run.

===============================  ==========================================  ===============
variable                         meaning                                     default
===============================  ==========================================  ===============
``RUNSTONE_HOME``                directory of the embedded store             ``.runstone/`` at the root of
                                                                             the git repository holding the
                                                                             working directory, else the
                                                                             working directory
``RUNSTONE_URI``                 the metadata store                          ``sqlite:///<home>/runstone.db``
``RUNSTONE_ARTIFACTS``           where artifact bytes go                     ``<home>/objects``; with a
                                                                             server's ``RUNSTONE_URI``,
                                                                             through that server
``RUNSTONE_PROJECT``             project of new runs                         the repository's (or working
                                                                             directory's) name
``RUNSTONE_FLUSH_INTERVAL_S``    seconds between background flushes          ``1.0``
``RUNSTONE_HEARTBEAT_TIMEOUT_S`` silence after which a running run on        ``120``
                                 another host counts as crashed
``RUNSTONE_RUN_ID``              join this existing run instead of           unset (set by ``runstone run``
                                 creating one                                for the command it wraps)
``RUNSTONE_CAPTURE``             ``0`` turns off recording code, environment ``1``
                                 and system
``RUNSTONE_CAPTURE_SNAPSHOT``    ``1``: snapshot the program's files even    ``0``
                                 inside git
``RUNSTONE_CAPTURE_UNTRACKED_MAX_BYTES``  untracked files kept, in all       50 MiB
``RUNSTONE_CAPTURE_DIFF_MAX_BYTES``  uncommitted changes kept while the     100 MiB
                                 changed files hold at most this
``RUNSTONE_SEED``                seed new runs with it (set by               unset
                                 ``runstone run --seed``)
``RUNSTONE_DETERMINISTIC``       ``1``: ask frameworks for deterministic     unset
                                 kernels (``runstone run --deterministic``)
``RUNSTONE_MODE``                ``offline``: a server's runs are recorded   ``online``
                                 in ``<home>/offline/`` until
                                 ``runstone sync`` sends them
``RUNSTONE_TOKEN``               the API token sent to a runstone server     unset
===============================  ==========================================  ===============
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runstone.errors import UsageError

__all__ = ["Settings", "current", "find_root"]

ENV_HOME = "RUNSTONE_HOME"
ENV_URI = "RUNSTONE_URI"
ENV_ARTIFACTS = "RUNSTONE_ARTIFACTS"
ENV_PROJECT = "RUNSTONE_PROJECT"
ENV_FLUSH = "RUNSTONE_FLUSH_INTERVAL_S"
ENV_HEARTBEAT = "RUNSTONE_HEARTBEAT_TIMEOUT_S"
ENV_RUN_ID = "RUNSTONE_RUN_ID"
ENV_CAPTURE = "RUNSTONE_CAPTURE"
ENV_SNAPSHOT = "RUNSTONE_CAPTURE_SNAPSHOT"
ENV_UNTRACKED_MAX = "RUNSTONE_CAPTURE_UNTRACKED_MAX_BYTES"
ENV_DIFF_MAX = "RUNSTONE_CAPTURE_DIFF_MAX_BYTES"
ENV_SEED = "RUNSTONE_SEED"
ENV_DETERMINISTIC = "RUNSTONE_DETERMINISTIC"
ENV_MODE = "RUNSTONE_MODE"


@dataclass(frozen=True)
class Settings:
    """The resolved settings for one use.

    Attributes:
        root: the git repository root holding the working directory, else the
            working directory; names the default project and store location.
        home: the embedded store's directory.
        uri: the metadata store's URI.
        artifacts: where artifact bytes are stored.
        project: the default project for new runs.
        flush_interval_s: how often a run's background writer makes data durable.
        heartbeat_timeout_s: how long a run on another host may stay silent
            before readers count it as crashed.
        join_run_id: the run to join instead of creating a new one, if any.
        capture: record code, environment and system at the start of a run.
        capture_snapshot: snapshot the program's files even inside git.
        untracked_max_bytes: untracked files kept with a run's code, in all.
        seed: seed new runs with this, if set.
        deterministic: ask frameworks for deterministic kernels.
        sync_to: the server ``uri`` stands in for (``RUNSTONE_MODE=offline``):
            ``runstone sync`` sends its runs there.
    """

    root: Path
    home: Path
    uri: str
    artifacts: str
    project: str
    flush_interval_s: float
    heartbeat_timeout_s: float
    join_run_id: str | None
    capture: bool = True
    capture_snapshot: bool = False
    untracked_max_bytes: int = 50 * 1024 * 1024
    diff_max_bytes: int = 100 * 1024 * 1024
    seed: int | None = None
    deterministic: bool = False
    sync_to: str | None = None


def find_root(cwd: Path) -> Path:
    """The top of the git working tree holding ``cwd``, else ``cwd`` itself.

    Walks up looking for ``.git`` (a directory, or a file in worktrees and
    submodules); cheaper than asking git.
    """
    for candidate in (cwd, *cwd.parents):
        if (candidate / ".git").exists():
            return candidate
    return cwd


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number of seconds; unset it or use e.g. 1.0") from None
    if not value > 0:
        raise UsageError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}={raw!r}: use 1 or 0")


def _int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise UsageError(f"{name}={raw!r} must not be negative")
    return value


def _lenient(parse: Any, env: Mapping[str, str], name: str, default: Any) -> Any:
    try:
        value = parse(env, name, default)
    except UsageError as e:
        warnings.warn(f"runstone: {e}; using {default}", stacklevel=3)
        return default
    return default if value is None else value


def for_store(settings: Settings, uri: str, env: Mapping[str, str] | None = None) -> Settings:
    """``settings`` for working with the store at ``uri``: an embedded store named by its path keeps
    its objects, cache and digest cache beside it (unless ``RUNSTONE_ARTIFACTS`` says otherwise)."""
    env = os.environ if env is None else env
    if uri == settings.uri:
        return settings
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
    elif "://" not in uri:
        path = Path(uri)
    elif uri.startswith(("http://", "https://")):
        # a server: its objects are streamed through it, unless RUNSTONE_ARTIFACTS names them
        return dataclasses.replace(settings, artifacts=env.get(ENV_ARTIFACTS) or uri)
    else:  # a database elsewhere: RUNSTONE_ARTIFACTS, else the home's objects
        return dataclasses.replace(
            settings, artifacts=env.get(ENV_ARTIFACTS) or str(settings.home / "objects")
        )
    home = path.expanduser().resolve().parent
    artifacts = env.get(ENV_ARTIFACTS) or str(home / "objects")
    return dataclasses.replace(settings, home=home, artifacts=artifacts)


def current(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Settings resolved now from the environment and working directory.

    Args:
        env: the environment to read (``os.environ`` if omitted).
        cwd: the working directory (the process's if omitted).
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    root = find_root(cwd.resolve())
    home_raw = env.get(ENV_HOME)
    home = Path(home_raw).expanduser().resolve() if home_raw else root / ".runstone"
    uri = env.get(ENV_URI) or f"sqlite:///{home / 'runstone.db'}"
    mode = (env.get(ENV_MODE) or "online").strip().lower()
    if mode not in ("online", "offline"):
        raise UsageError(f"{ENV_MODE}={env.get(ENV_MODE)!r}: give online (the default) or offline")
    sync_to = None
    if mode == "offline" and uri.startswith(("http://", "https://")):
        # a server's runs are recorded here, for runstone sync to send when it can
        sync_to, uri = uri, offline_uri(home)
    if env.get(ENV_ARTIFACTS):
        artifacts = env[ENV_ARTIFACTS]
    elif uri.startswith(("http://", "https://")):
        artifacts = uri  # a server's clients send objects through it
    else:  # beside the embedded store (the offline one keeps its own)
        artifacts = str((home / "offline" if sync_to else home) / "objects")
    project = env.get(ENV_PROJECT) or root.name or "default"
    return Settings(
        root=root,
        home=home,
        uri=uri,
        artifacts=artifacts,
        project=project,
        flush_interval_s=_float(env, ENV_FLUSH, 1.0),
        heartbeat_timeout_s=_float(env, ENV_HEARTBEAT, 120.0),
        join_run_id=env.get(ENV_RUN_ID) or None,
        # Capture settings never stop a run: a bad value warns and the default holds.
        capture=_lenient(_flag, env, ENV_CAPTURE, True),
        capture_snapshot=_lenient(_flag, env, ENV_SNAPSHOT, False),
        untracked_max_bytes=_lenient(_int, env, ENV_UNTRACKED_MAX, 50 * 1024 * 1024),
        diff_max_bytes=_lenient(_int, env, ENV_DIFF_MAX, 100 * 1024 * 1024),
        seed=_int(env, ENV_SEED, None),
        deterministic=_flag(env, ENV_DETERMINISTIC, False),
        sync_to=sync_to,
    )


def offline_uri(home: Path) -> str:
    """Where runs meant for a server are recorded offline (``RUNSTONE_MODE=offline``)."""
    return f"sqlite:///{home / 'offline' / 'runstone.db'}"
