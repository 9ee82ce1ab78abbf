"""Configs: load and compose them from files, hand them to a run, get them back, diff them.

Layer 5½ (above ``api``). Built on OmegaConf (``pip install 'runstone[config]'``),
imported only when a function here needs it::

    import sys
    import runstone

    cfg = runstone.config.load("conf/train.yaml", overrides=sys.argv[1:])
    with runstone.init(config=cfg) as run:
        ...

    runstone.config.of_run(run.id)            # the same config, same values and types
    runstone.config.diff(run_a, run_b)        # [ConfigChange(key, kind, old, new), ...]

See ``runstone.config.compose`` for the composition rules (defaults lists,
config groups, overrides), which follow Hydra's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from runstone._json import diff_trees
from runstone.api.client import Client
from runstone.api.configs import describe_config, rebuild
from runstone.config.compose import compose
from runstone.entities import ConfigChange

__all__ = ["diff", "load", "of_run", "record_of", "tree_of"]


def load(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    schema: Any = None,
    resolve: bool = True,
) -> Any:
    """Load a config file, compose it and apply overrides; returns an OmegaConf ``DictConfig``.

    Args:
        path: the primary config file (YAML, JSON or TOML); its folder holds
            the config groups its ``defaults`` list names (``model/resnet.yaml``).
            A name without a suffix finds ``NAME.yaml``, ``.yml``, ``.json`` or ``.toml``.
        overrides: command-line style overrides, e.g. ``sys.argv[1:]``:
            ``optimizer.lr=0.01``, ``model=vit`` (a config group),
            ``+new.key=1``, ``++key=1``, ``~drop.key``.
        schema: a dataclass or pydantic model class the result must fit;
            values are converted to the schema's types (``"0.1"`` to ``0.1``).
        resolve: resolve interpolations (``${optimizer.lr}``,
            ``${oc.env:DATA_DIR}``) now (default), so the run records the
            values it actually used.

    Returns:
        A ``DictConfig`` in struct mode (reading a misspelt key raises), which
        remembers its files and overrides: ``runstone.init(config=cfg)``
        records them with the run.

    Raises:
        ConfigError: a file, override, interpolation or schema check failed;
            the message names the file or override, the key and the reason.
            Left uncaught, it ends the program with that one line on stderr
            and no traceback (``RUNSTONE_DEBUG=1`` shows the traceback), as
            a command line's mistyped override should.
        MissingDependencyError: omegaconf is not installed.
    """
    return compose(path, overrides, schema=schema, resolve=resolve)


def record_of(run_id: str, *, uri: str | None = None) -> dict[str, Any]:
    """A run's config record: source, class, digest, files (with their text), overrides.

    Empty for a run started without a config.
    """
    with Client(uri) as client:
        run_id = client.resolve_run_id(run_id)
        return dict(client.get_records(run_id).get("config", {}))


def tree_of(run_id: str, *, uri: str | None = None) -> dict[str, Any]:
    """A run's resolved config as plain JSON types (mapping keys as stored: text)."""
    with Client(uri) as client:
        return dict(client.get_run(run_id).config)


def of_run(run_id: str, *, schema: Any = None, uri: str | None = None) -> Any:
    """The config a run ran with, as the same kind of object, to feed back to a reproduction.

    A config from ``load``, OmegaConf or Hydra comes back as a ``DictConfig``;
    a dataclass or pydantic instance as an instance of its class (when the
    class can be imported; else pass it as ``schema``, or get a dict); a
    ``Namespace`` as a ``Namespace``; a mapping as a dict; ``schema=dict``
    gives the plain dict whatever the kind. Values keep their types exactly
    (``1``, ``1.0`` and ``"1"`` stay apart; integer mapping keys stay
    integers). Keys set later with ``log_params`` are in every form but a
    class instance, which holds only its own fields. Values recorded as
    ``<redacted>`` (secrets) must be supplied again.

    Raises:
        NotFoundError, AmbiguousError: no run, or several, match ``run_id``.
        ConfigError: the values no longer fit ``schema``.
    """
    with Client(uri) as client:
        run = client.get_run(run_id)
        record = client.get_records(run.id).get("config")
    return rebuild(dict(run.config), record, schema=schema)


def _as_tree(value: Any, client: Client | None) -> dict[str, Any]:
    if isinstance(value, str):
        assert client is not None
        return dict(client.get_run(value).config)
    tree, _ = describe_config(value)
    return tree


def diff(old: Any, new: Any, *, uri: str | None = None) -> list[ConfigChange]:
    """What changed from one config to another, one ``ConfigChange`` per flattened key.

    ``old`` and ``new`` are run IDs (any unique prefix or name) or configs
    (anything ``runstone.init`` accepts). Types count: ``1`` to ``1.0`` is a
    change. Keys are in sorted order.
    """
    client = Client(uri) if isinstance(old, str) or isinstance(new, str) else None
    try:
        return diff_trees(_as_tree(old, client), _as_tree(new, client))
    finally:
        if client is not None:
            client.close()
