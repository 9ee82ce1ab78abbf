"""Record what a run depends on when it starts: code, environment, system.

Layer 5: runs the pure ``capture`` functions, keeps the captured bytes in the
object store and the records with the run. The code is captured before
``init`` returns (git takes a few milliseconds, and the tree must be caught
before the program changes it); the environment and the machine are
described on a background thread, so starting a run stays fast, and
``finish`` waits for it. A part that fails is recorded as failed, with the
reason, and a warning; the run goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runstone.api.run import ActiveRun
from runstone.artifacts.base import ObjectStore
from runstone.capture.cmdline import parse_command_line
from runstone.capture.code import CodeCapture, capture_code, snapshot_files
from runstone.capture.env import capture_environment
from runstone.capture.system import capture_system
from runstone.settings import Settings

__all__ = ["capture_run", "object_store", "open_objects"]

log = logging.getLogger("runstone")

_REMOTE: dict[tuple[str, str], ObjectStore] = {}
_REMOTE_LOCK = threading.Lock()


def object_store(settings: Settings) -> ObjectStore:
    """The object store the settings name (see ``open_objects``)."""
    return open_objects(settings.artifacts)


def open_objects(location: str) -> ObjectStore:
    """The object store at ``location``: a local directory, a runstone server's ``http(s)://HOST``
    (objects streamed through it), or ``s3://bucket/prefix`` (any fsspec URL)."""
    if location.startswith(("http://", "https://")):
        from runstone.store.remote import RemoteObjectStore

        key = (location, os.environ.get("RUNSTONE_TOKEN") or "")
        with _REMOTE_LOCK:  # one per server and token: its pool of connections is reused
            if not _REMOTE:
                import atexit

                atexit.register(_close_remote)
            if key not in _REMOTE:
                _REMOTE[key] = RemoteObjectStore(location, token=key[1] or None)
            return _REMOTE[key]
    if "://" in location and not location.startswith("file://"):
        from runstone.artifacts.remote import FsspecObjectStore

        return FsspecObjectStore(location)
    from runstone.artifacts.local import LocalObjectStore

    return LocalObjectStore(Path(location.removeprefix("file://")))


def _close_remote() -> None:
    with _REMOTE_LOCK:
        stores = list(_REMOTE.values())
        _REMOTE.clear()
    for objects in stores:
        objects.close()  # type: ignore[attr-defined]


def _failed(part: str, error: BaseException) -> dict[str, Any]:
    log.warning("runstone: could not record the run's %s: %s: %s", part, type(error).__name__, error)
    return {"status": "failed", "error": f"{type(error).__name__}: {error}"}


def _entry_script(command: Sequence[str] | None) -> str | None:
    """The script a program runs: sys.argv[0], or the .py file a wrapped command names."""
    candidates = list(command or []) if command is not None else sys.argv[:1]
    for arg in candidates:
        if arg.endswith(".py") and Path(arg).is_file():
            return arg
    return None


def _module_files() -> list[str]:
    """Files of the imported modules, read without triggering lazily loaded ones."""
    files = []
    for module in list(sys.modules.values()):
        try:
            namespace = object.__getattribute__(module, "__dict__")
        except (AttributeError, TypeError):
            continue
        file = namespace.get("__file__")
        if isinstance(file, str):
            files.append(file)
    return files


def _blas() -> Any:
    """BLAS/LAPACK libraries numpy loaded: vendor, version, threads (needs threadpoolctl)."""
    if "numpy" not in sys.modules:
        return None
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"unknown": "threadpoolctl is not installed"}
    keys = ("user_api", "internal_api", "version", "num_threads", "architecture", "filepath")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()]


def capture_run(
    run: ActiveRun,
    settings: Settings,
    *,
    command: Sequence[str] | None = None,
    code: bool = True,
    system: bool = True,
    if_absent: bool = False,
) -> None:
    """Record the run's code now, and its environment and system in the background.

    Args:
        run: the run being started.
        settings: where objects go, and what to capture.
        command: the wrapped command (``runstone run``), else this program.
        code, system: record these parts.
        if_absent: keep each part only where the run has none: a wrapper's
            view, which a command that joins the run replaces with its own.
    """
    if code:
        _record_code(run, settings, command, if_absent)
    try:
        cmdline: dict[str, Any] = {"status": "ok", **parse_command_line(list(command or sys.argv))}
    except Exception as e:  # capture never fails the run
        cmdline = _failed("command line", e)
    run._add_record("cmdline", cmdline, if_absent=if_absent)
    parts = [("environment", capture_environment)] + ([("system", capture_system)] if system else [])

    def background() -> None:
        for part, probe in parts:
            began = time.perf_counter()
            try:
                result: dict[str, Any] = {"status": "ok", **probe()}
                if part == "system" and isinstance(result.get("frameworks"), dict):
                    blas = _blas()
                    if blas is not None and isinstance(result["frameworks"].get("numpy"), dict):
                        result["frameworks"]["numpy"]["blas"] = blas
            except Exception as e:
                result = _failed(part, e)
            result["capture_ms"] = round((time.perf_counter() - began) * 1000, 1)
            run._add_record(part, result, if_absent=if_absent)

    thread = threading.Thread(target=background, name=f"runstone-capture-{run.id[:8]}", daemon=True)
    run._capture_thread = thread
    thread.start()


def _complete_snapshot(run: ActiveRun, objects: ObjectStore, record: dict[str, Any], if_absent: bool) -> None:
    """Add the modules the program imported after the run started to its source snapshot."""
    snapshot = record["snapshot"]
    known = {entry["path"] for entry in snapshot["files"]}
    late = CodeCapture(record={})
    added = [
        e for e in snapshot_files(Path(snapshot["root"]), _module_files(), late) if e["path"] not in known
    ]
    if not added:
        return
    for data in late.blobs.values():
        objects.put_bytes(data)
    snapshot["files"] = sorted([*snapshot["files"], *added], key=lambda f: f["path"])
    snapshot["imported_later"] = sorted(e["path"] for e in added)
    run._add_record("code", record, if_absent=if_absent)


def _record_code(run: ActiveRun, settings: Settings, command: Sequence[str] | None, if_absent: bool) -> None:
    started = time.perf_counter()
    try:
        objects = object_store(settings)
        code = capture_code(
            Path.cwd(),
            root=settings.root,
            entry=_entry_script(command),
            module_files=_module_files,
            snapshot=settings.capture_snapshot,
            untracked_max_bytes=settings.untracked_max_bytes,
            diff_max_bytes=settings.diff_max_bytes,
        )
        for data in code.blobs.values():
            objects.put_bytes(data)
        record: dict[str, Any] = {"status": "ok", **code.record}
        if "snapshot" in record:
            run._finish_hooks.append(lambda: _complete_snapshot(run, objects, record, if_absent))
        skipped = record.get("git", {}).get("untracked_skipped")
        if skipped:
            log.warning(
                "runstone: %d untracked files were not kept with run %s (over %d bytes in all); "
                "raise RUNSTONE_CAPTURE_UNTRACKED_MAX_BYTES to keep them",
                len(skipped),
                run.id,
                settings.untracked_max_bytes,
            )
    except Exception as e:  # capture never fails the run
        record = _failed("code", e)
    record["capture_ms"] = round((time.perf_counter() - started) * 1000, 1)
    run._add_record("code", record, if_absent=if_absent)
