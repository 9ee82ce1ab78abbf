"""Hydra apps recorded as runstone runs, unchanged: a decorator or a Hydra callback.

Layer 6 (above ``config`` and ``api``). Each Hydra job becomes one run that
records Hydra's composed config (resolved), the overrides as given, the
config files the job was composed from (its primary config and each chosen
group option), the job's output directory and the choices Hydra made. In a
multirun (``python app.py -m optimizer.lr=0.1,0.01``) every job is its own
run, and the runs of one sweep share the tag ``sweep`` (the sweep's
directory) and carry ``sweep_job`` (the job's number).

Either decorate the task function, under ``@hydra.main``::

    from runstone.integrations.hydra import track

    @hydra.main(config_path="conf", config_name="train", version_base=None)
    @track(project="digits")
    def main(cfg):
        runstone.log({"loss": ...})

or leave the code alone and add the callback to the config::

    hydra:
      callbacks:
        runstone:
          _target_: runstone.integrations.hydra.RunstoneCallback
          project: digits     # optional; so are name, tags and seed

Needs hydra-core (``pip install 'runstone[hydra]'``), imported only when a job starts.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from runstone.api.configs import Provenance, attach_provenance
from runstone.api.fluent import start_run
from runstone.api.run import ActiveRun
from runstone.capture.secrets import redact_override
from runstone.config.compose import file_entry, find_config
from runstone.entities import RunStatus
from runstone.errors import MissingDependencyError, StateError

__all__ = ["RunstoneCallback", "start_job_run", "track"]

F = TypeVar("F", bound=Callable[..., Any])


def _hydra_config() -> Any:
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:
        raise MissingDependencyError(
            "runstone.integrations.hydra", package="hydra-core", extra="hydra"
        ) from None
    if not HydraConfig.initialized():
        raise StateError(
            "runstone.integrations.hydra records Hydra jobs, and no Hydra job is running; "
            "call the task function through @hydra.main"
        )
    return HydraConfig.get()


def _config_files(hc: Any) -> list[dict[str, Any]]:
    """The files a job was composed from: the primary config and each chosen group option."""
    folders = [
        Path(str(source["path"]))
        for source in hc.runtime.config_sources
        if str(source.get("schema")) == "file" and source.get("provider") != "hydra"
    ]
    wanted = [str(hc.job.config_name)] if hc.job.config_name else []
    for group, option in dict(hc.runtime.choices).items():
        if option is not None and not str(group).startswith("hydra"):
            wanted.append(f"{group}/{option}")
    files = []
    for name in wanted:
        for folder in folders:
            found = find_config(folder, name)
            if found is not None:
                try:
                    files.append(file_entry(found, found.read_bytes()))
                except OSError as e:
                    files.append({"path": str(found), "error": str(e)})
                break
    return files


@contextlib.contextmanager
def _in_directory(path: str) -> Iterator[None]:
    """Work in ``path`` for a while: the directory the app was started in, when Hydra changed it."""
    before = os.getcwd()
    if os.path.realpath(path) == os.path.realpath(before):
        yield
        return
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def start_job_run(
    cfg: Any,
    *,
    project: str | None = None,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    **init_kwargs: Any,
) -> ActiveRun:
    """Start the run of the current Hydra job (what ``track`` and the callback do).

    ``cfg`` is the job's config (a ``hydra`` node in it is left out); other
    arguments go to ``runstone.init``. The run is made from the directory the
    app was started in (its store, project and code), even when Hydra runs
    the job in its output directory (``hydra.job.chdir``). In a multirun,
    each job is a run of its own, even under ``runstone run``.
    """
    from omegaconf import OmegaConf, open_dict

    hc = _hydra_config()
    if "hydra" in cfg:
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
        with open_dict(cfg):
            del cfg["hydra"]
    mode = str(getattr(hc.mode, "name", hc.mode)).lower()
    hydra_info: dict[str, Any] = {
        "mode": mode,
        "config_name": hc.job.config_name,
        "output_dir": hc.runtime.output_dir,
        "job_name": hc.job.name,
        "choices": {k: v for k, v in dict(hc.runtime.choices).items() if not str(k).startswith("hydra")},
        "version": hc.runtime.version,
    }
    run_tags = dict(tags or {})
    if mode == "multirun":
        hydra_info["sweep_dir"] = hc.sweep.dir
        hydra_info["job_num"] = hc.job.num
        run_tags.setdefault("sweep", str(hc.sweep.dir))
        run_tags.setdefault("sweep_job", str(hc.job.num))
    with _in_directory(str(hc.runtime.cwd)):
        attach_provenance(
            cfg,
            Provenance(
                source="hydra",
                files=tuple(_config_files(hc)),
                overrides=tuple(redact_override(text) for text in hc.overrides.task),
                extra={"hydra": hydra_info},
            ),
        )
        return start_run(
            project, name=name, config=cfg, tags=run_tags, join=mode != "multirun", **init_kwargs
        )


def track(
    project: str | None = None,
    *,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    **init_kwargs: Any,
) -> Callable[[F], F]:
    """Decorate a Hydra task function so that each job is recorded as a run.

    Place it under ``@hydra.main``. The run is active while the function
    runs (``runstone.log`` writes to it); an exception marks it failed and
    goes on to Hydra. Arguments are ``runstone.init``'s.
    """

    def decorate(task: F) -> F:
        @functools.wraps(task)
        def wrapper(cfg: Any, *args: Any, **kwargs: Any) -> Any:
            with start_job_run(cfg, project=project, name=name, tags=tags, **init_kwargs):
                return task(cfg, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class RunstoneCallback:
    """A Hydra callback (``hydra.callbacks``) recording each job as a run, with no code change.

    Keyword arguments come from the callback's config entry and go to
    ``runstone.init``: ``project``, ``name``, ``tags``, ``seed``,
    ``deterministic``, ``uri``.
    """

    def __init__(self, **init_kwargs: Any) -> None:
        self._init_kwargs = init_kwargs
        self._run: ActiveRun | None = None

    # Hydra looks these up by name; the run/multirun hooks are not needed.
    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        return None

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        return None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        return None

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        return None

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        options = dict(self._init_kwargs)
        if "tags" in options and options["tags"] is not None:
            options["tags"] = dict(options["tags"])
        self._run = start_job_run(config, **options)

    def on_job_end(self, config: Any, job_return: Any = None, **kwargs: Any) -> None:
        run, self._run = self._run, None
        if run is None or not run.is_open:
            return
        status = str(getattr(getattr(job_return, "status", None), "name", "COMPLETED"))
        if status == "COMPLETED":
            run.finish()
            return
        error = getattr(job_return, "_return_value", None)
        described = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else None
        run.finish(RunStatus.FAILED, error=described)
