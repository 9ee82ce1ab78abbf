"""runstone: track machine-learning runs so that any run can be recreated exactly.

``import runstone`` loads only the standard library and this file: everything
else is loaded on first use (training scripts import this; it must be quick).

    import runstone

    with runstone.init(project="demo", config={"lr": 0.1}) as run:
        for step in range(100):
            run.log({"loss": 1 / (step + 1)}, step=step)
"""

import importlib as _importlib
import typing as _typing

from runstone._version import __version__

if _typing.TYPE_CHECKING:
    from runstone import config as config
    from runstone import integrations as integrations
    from runstone.api.client import Client
    from runstone.api.fluent import active_run, finish, init, log, log_artifact, log_params, set_tags
    from runstone.api.run import ActiveRun
    from runstone.api.seeding import seed
    from runstone.entities import MetricHistory, Run, RunStatus
    from runstone.errors import RunstoneError

__all__ = [
    "ActiveRun",
    "Client",
    "MetricHistory",
    "Run",
    "RunStatus",
    "RunstoneError",
    "__version__",
    "active_run",
    "finish",
    "init",
    "log",
    "log_artifact",
    "log_params",
    "seed",
    "set_tags",
]

_LAZY = {
    "ActiveRun": "runstone.api.run",
    "Client": "runstone.api.client",
    "MetricHistory": "runstone.entities",
    "Run": "runstone.entities",
    "RunStatus": "runstone.entities",
    "RunstoneError": "runstone.errors",
    "active_run": "runstone.api.fluent",
    "finish": "runstone.api.fluent",
    "init": "runstone.api.fluent",
    "log": "runstone.api.fluent",
    "log_artifact": "runstone.api.fluent",
    "log_params": "runstone.api.fluent",
    "seed": "runstone.api.seeding",
    "set_tags": "runstone.api.fluent",
}


#: subpackages reached as attributes (``runstone.config.load``), imported on first use
_SUBPACKAGES = ("config", "integrations")


def __getattr__(name: str) -> _typing.Any:
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"runstone.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runstone' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
