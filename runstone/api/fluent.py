"""Module-level conveniences: ``runstone.init``, ``log``, ``log_params``, ``finish``, ...

Layer 5. Each function is a thin wrapper over ``ActiveRun``; none is a
second code path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from runstone import settings as settings_mod
from runstone._ids import friendly_name, new_run_id
from runstone._json import check_text, merge
from runstone._version import __version__
from runstone.api import lifecycle, seeding
from runstone.api.configs import describe_config
from runstone.api.run import ActiveRun, _clean_tags
from runstone.capture.process import process_info
from runstone.entities import Batch, RunSpec, RunStatus
from runstone.errors import NotFoundError, StateError, StoreError, UnreachableError, UsageError
from runstone.store.factory import open_store

__all__ = ["active_run", "finish", "init", "log", "log_artifact", "log_params", "set_tags"]

_log = logging.getLogger("runstone")


def init(
    project: str | None = None,
    *,
    name: str | None = None,
    config: Any = None,
    tags: Mapping[str, Any] | None = None,
    uri: str | None = None,
    flush_interval_s: float | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    capture: bool | None = None,
    resume: str | None = None,
) -> ActiveRun:
    """Start recording a run (or join the one a ``runstone run`` wrapper started).

    Args:
        project: the project to file the run under; default: the git
            repository's name, else the working directory's (or ``RUNSTONE_PROJECT``).
        name: a human name; default: a generated one such as ``brisk-otter-3f2a``.
        config: the run's configuration: an OmegaConf/Hydra ``DictConfig``
            (such as ``runstone.config.load`` returns), a mapping, a dataclass
            or pydantic instance, or an ``argparse.Namespace``. The resolved
            tree is stored whole, with its digest; its leaves become dotted
            params (``optimizer.lr``). String values under secret-looking keys
            (``api_key``, ``password``) are stored as ``<redacted>``.
        tags: string labels, e.g. ``{"stage": "dev"}``.
        uri: the store to write to; default: ``RUNSTONE_URI``, else the
            embedded store in ``.runstone/`` at the repository root.
        flush_interval_s: seconds between background writes (default 1.0,
            or ``RUNSTONE_FLUSH_INTERVAL_S``).
        seed: seed Python, numpy, PyTorch and TensorFlow (those already
            imported) with it; see ``runstone.seed`` (default ``RUNSTONE_SEED``).
        deterministic: with a seed, also ask for deterministic kernels
            (default ``RUNSTONE_DETERMINISTIC``).
        capture: record the code, environment and system (default on;
            ``RUNSTONE_CAPTURE=0`` turns it off).
        resume: reopen an ended run instead of starting one: its ID, ID
            prefix or name, or ``"latest"`` -- the project's newest run that
            crashed, was killed or failed (a new run starts when there is
            none). The run becomes ``running`` again and its ``resumes``
            record keeps when and how it had ended; then
            ``run.load_checkpoint(...)`` restores the training state.

    Returns:
        The run, already active: ``runstone.log`` writes to it. Use it as a
        context manager so an exception marks it failed.

    Raises:
        UsageError: a config or tag value cannot be stored.
        ConfigError: an OmegaConf config has a missing or unresolvable value.
        NotFoundError: ``RUNSTONE_RUN_ID`` (or ``resume``) names a run that is not in the store.
        StateError: the run to resume is still running.
        StoreError: the store cannot be opened or written.
    """
    return start_run(
        project,
        name=name,
        config=config,
        tags=tags,
        uri=uri,
        flush_interval_s=flush_interval_s,
        seed=seed,
        deterministic=deterministic,
        capture=capture,
        resume=resume,
    )


def start_run(
    project: str | None,
    *,
    name: str | None = None,
    config: Any = None,
    tags: Mapping[str, Any] | None = None,
    uri: str | None = None,
    flush_interval_s: float | None = None,
    command: list[str] | None = None,
    join: bool = True,
    seed: int | None = None,
    deterministic: bool | None = None,
    capture: bool | None = None,
    resume: str | None = None,
) -> ActiveRun:
    """``init`` with the wrapper's extras: the command to record, and whether to join."""
    settings = settings_mod.current()
    for text, what in ((project, "The project name"), (name, "The run name")):
        if text is not None:
            check_text(text, what)
    tree, config_record = describe_config(config)
    clean_tags = _clean_tags(tags or {})
    interval = flush_interval_s if flush_interval_s is not None else settings.flush_interval_s
    if not interval > 0:
        raise UsageError(f"flush_interval_s must be positive, got {interval}")
    if resume is not None and (not isinstance(resume, str) or not resume):
        raise UsageError(f"resume takes a run ID, ID prefix or name, or 'latest'; got {resume!r}")
    try:
        store = open_store(uri or settings.uri)
    except UnreachableError as e:
        if settings.join_run_id:  # the wrapper's run is on the server: a run here would split it
            raise
        # training does not wait for the server: the run is recorded here, for runstone sync to send
        uri = settings_mod.offline_uri(settings.home)
        _log.warning(
            "runstone: %s Recording this run offline in %s instead: runstone sync sends it once "
            "the server is back",
            e,
            uri,
        )
        store = open_store(uri)
    now_ms = int(time.time() * 1000)
    output_offset = 0
    resumed = False
    run_config = tree
    try:
        joining = bool(
            join
            and settings.join_run_id
            and (uri is None or uri == settings.uri)
            and lifecycle.claim_join(settings.join_run_id)
        )
        to_resume = None
        if resume is not None and not joining:
            # what earlier processes left unsent (their last points, how they ended) lands first
            _send_spooled(settings, store)
            to_resume = _run_to_resume(store, settings, resume, project or settings.project)
        elif resume is not None and "resumes" not in store.get_records(str(settings.join_run_id)):
            _log.warning(
                "runstone: resume=%r is ignored: this process joins run %s, which `runstone run` started "
                "anew; to resume, run the command with `runstone run --resume %s -- ...`",
                resume,
                settings.join_run_id,
                resume,
            )
        if joining:
            assert settings.join_run_id is not None
            run_id = settings.join_run_id
            try:
                record = store.get_run(run_id)
            except NotFoundError:
                raise NotFoundError(
                    f"RUNSTONE_RUN_ID={run_id} names a run that is not in {store.uri}; "
                    "unset RUNSTONE_RUN_ID to start a new run"
                ) from None
            if record.status.is_terminal and record.status is not RunStatus.CRASHED:
                raise StateError(
                    f"RUNSTONE_RUN_ID={run_id} names a run that has ended ({record.status}); "
                    "unset RUNSTONE_RUN_ID to start a new run"
                )
            project_name, run_name, owned = record.project, record.name, False
        elif to_resume is not None:
            info = process_info(command)
            entry = {"time_ms": now_ms, "host": info.host, "pid": info.pid, "command": list(info.argv)}
            before = store.reopen_run(to_resume, time_ms=now_ms, host=info.host, pid=info.pid, entry=entry)
            run_id, project_name, run_name, owned = before.id, before.project, before.name, True
            output_offset = before.output_size_bytes
            run_config = merge(dict(before.config), tree)
            resumed = True
            _log.info("runstone: resuming run %s (%s), which had %s", run_id, run_name, before.status.value)
        else:
            run_id = new_run_id(now_ms)
            project_name = project or settings.project
            run_name = name or friendly_name(run_id)
            owned = True
            info = process_info(command)
            store.create_run(
                RunSpec(
                    id=run_id,
                    project=project_name,
                    name=run_name,
                    start_time_ms=now_ms,
                    command=info.argv,
                    cwd=info.cwd,
                    host=info.host,
                    user=info.user,
                    pid=info.pid,
                    runstone_version=__version__,
                )
            )
        if tree or clean_tags:
            # Written before init returns: a run killed in its first second keeps its config.
            store.apply_batch(
                Batch(uuid.uuid4().hex, run_id, params=tree, tags=clean_tags, heartbeat_ms=now_ms)
            )
    except BaseException:
        store.close()
        raise
    run = ActiveRun(
        store,
        run_id=run_id,
        project=project_name,
        name=run_name,
        owned=owned,
        flush_interval_s=interval,
        config=run_config,
        output_offset=output_offset,
        spool=_spool_for(settings, store, run_id),
    )
    if config_record is not None:
        run._add_record("config", config_record)
    seed_value = seed if seed is not None else settings.seed
    deterministic = settings.deterministic if deterministic is None else deterministic
    if seed_value is not None:
        seeding.seed(seed_value, deterministic=deterministic)
    if settings.capture if capture is None else capture:
        from runstone.api.capture import capture_run

        # A wrapper's records are kept only until the command joins the run and
        # records its own view: its interpreter, the frameworks and modules it imported.
        capture_run(
            run,
            settings_mod.for_store(settings, uri or settings.uri),  # objects beside the store it names
            command=command,
            if_absent=command is not None or resumed,  # a resumed run keeps its first record
        )
    try:
        run.flush()  # the code and seed records are durable before the program goes on
    except StoreError as e:
        _log.warning("runstone: run %s: the record will be written later: %s", run.id, e)
    return run


def _spool_for(settings: settings_mod.Settings, store: Any, run_id: str) -> Any:
    """A spool for a run on a server (writes wait on disk until it has them), and what earlier
    processes here left unsent is sent, in the background. None for a local store."""
    if not store.uri.startswith(("http://", "https://")):
        return None
    from runstone.api.spool import Spool, spool_root

    root = spool_root(settings.home)
    try:
        spool = Spool(root, run_id, store.uri)
    except OSError as e:
        _log.warning(
            "runstone: run %s: cannot keep unsent writes on disk in %s (%s): they wait in memory",
            run_id,
            root,
            e,
        )
        return None
    if (
        sum(not name.startswith(".") for name in os.listdir(root)) > 1
    ):  # another process's: sent if it is gone
        threading.Thread(
            target=_replay_quietly, args=(root, store.uri), name="runstone-spool-replay", daemon=True
        ).start()
    return spool


def _send_spooled(settings: settings_mod.Settings, store: Any) -> None:
    """Send what earlier processes left in this home's spool (runs on a server), now."""
    from runstone.api.spool import spool_root

    root = spool_root(settings.home)
    if not store.uri.startswith(("http://", "https://")) or not root.is_dir():
        return
    from runstone.api.manifest import seal
    from runstone.api.spool import replay

    try:
        from runstone.api.capture import object_store

        replay(root, store, seal=seal, objects=object_store(settings_mod.for_store(settings, store.uri)))
    except Exception as e:  # they stay on disk for runstone sync
        _log.warning("runstone: writes earlier processes left unsent stay in %s: %s", root, e)


def _replay_quietly(root: Any, uri: str) -> None:
    from runstone.api.capture import open_objects
    from runstone.api.manifest import seal
    from runstone.api.spool import replay

    try:
        objects = open_objects(settings_mod.for_store(settings_mod.current(), uri).artifacts)
        with open_store(uri) as store:
            done = replay(root, store, seal=seal, objects=objects)
    except Exception as e:  # the server is still away: the next start tries again
        _log.info("runstone: spooled writes stay for later: %s", e)
        return
    if done.batches or done.artifacts or done.ended:
        _log.warning(
            "runstone: sent %d points (%d batches) and %d artifacts that earlier processes here had "
            "not sent%s",
            done.points,
            done.batches,
            done.artifacts,
            f"; ended run {', '.join(done.ended)}" if done.ended else "",
        )


def _run_to_resume(store: Any, settings: settings_mod.Settings, resume: str, project: str) -> str | None:
    """The ID of the run ``resume`` names (None: "latest" found nothing to resume)."""
    from runstone.api.client import reap
    from runstone.store.base import RunQuery
    from runstone.store.query import parse_filter, parse_order

    reap(store, settings)  # a run whose process is gone is crashed, and can be resumed
    if resume == "latest":
        found = store.find_runs(
            RunQuery(
                filter=parse_filter("status in ('crashed', 'killed', 'failed')"),
                order_by=parse_order("-started"),
                project=project,
                limit=1,
            )
        )
        if not found:
            _log.info(
                "runstone: no crashed, killed or failed run of project %s to resume; starting one", project
            )
            return None
        return str(found[0].id)
    try:
        run_id = store.resolve_run_id(resume)
    except (UsageError, NotFoundError):
        named = store.find_runs(RunQuery(filter=parse_filter(f"name = {_quote(resume)}"), limit=2))
        if len(named) != 1:
            raise NotFoundError(
                f"resume={resume!r}: no run (or no single run) in {store.uri} has that ID prefix or name; "
                "`runstone ls` lists runs"
            ) from None
        run_id = named[0].id
    run_id = str(run_id)
    if store.get_run(run_id).status is RunStatus.RUNNING:
        raise StateError(
            f"Run {run_id} is still running (its process is alive or sent a heartbeat recently); "
            "stop it before resuming it"
        )
    return run_id


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def active_run() -> ActiveRun | None:
    """The active run of this context (or the process's latest open run), or None."""
    return lifecycle.active()


def _require_active() -> ActiveRun:
    run = lifecycle.active()
    if run is None:
        raise StateError("No active run; call runstone.init() first")
    return run


def log(data: Mapping[str, Any], step: int | None = None) -> None:
    """``ActiveRun.log`` on the active run."""
    _require_active().log(data, step)


def log_params(params: Mapping[str, Any]) -> None:
    """``ActiveRun.log_params`` on the active run."""
    _require_active().log_params(params)


def log_artifact(path: Any, name: str | None = None, **kwargs: Any) -> Any:
    """``ActiveRun.log_artifact`` on the active run."""
    return _require_active().log_artifact(path, name, **kwargs)


def set_tags(tags: Mapping[str, Any]) -> None:
    """``ActiveRun.set_tags`` on the active run."""
    _require_active().set_tags(tags)


def finish(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """Finish the active run (see ``ActiveRun.finish``).

    Raises:
        StateError: there is no active run.
    """
    _require_active().finish(status)
