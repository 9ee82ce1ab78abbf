"""A run's config: any config object as a plain tree with its record, and back.

Layer 5. ``init(config=...)`` accepts an OmegaConf/Hydra ``DictConfig``, a
mapping, a dataclass or pydantic instance, or an ``argparse.Namespace``.
``describe_config`` turns it into the plain JSON tree the store keeps (its
leaves become searchable params) and a ``config`` record: what kind of object
it was, its class, the tree's digest, the keys redacted as secrets, the
mapping keys that were integers, and, for a config made by
``runstone.config.load``, the files it was composed from and the overrides as
given. ``rebuild`` is the way back, for ``runstone.config.of_run``: the same
kind of object with the same values and types.

Third-party packages (omegaconf, pydantic) are imported only when the object
passed in comes from them, so plain dict configs cost nothing extra.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import decimal
import enum
import importlib
import os
import pathlib
import sys
import threading
import types
import typing
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from runstone._json import check_flat_keys, digest, normalize
from runstone.capture.secrets import REDACTED, redact_tree
from runstone.errors import ConfigError, MissingDependencyError, UsageError

__all__ = [
    "Provenance",
    "attach_provenance",
    "describe_config",
    "import_type",
    "plain_tree",
    "provenance",
    "quiet_uncaught_config_errors",
    "rebuild",
    "restore_int_keys",
    "type_name",
]


@dataclass(frozen=True)
class Provenance:
    """Where a loaded config came from (kept beside it, recorded with the run)."""

    source: str
    files: tuple[dict[str, Any], ...] = ()
    overrides: tuple[str, ...] = ()
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# id(config) -> (weak reference, provenance). DictConfig hashes by content, so
# a WeakKeyDictionary would lose an entry as soon as the config is edited.
_PROVENANCE: dict[int, tuple[weakref.ref[Any], Provenance]] = {}
_PROVENANCE_LOCK = threading.Lock()


def attach_provenance(config: Any, provenance: Provenance) -> None:
    """Remember where ``config`` came from, for as long as it lives."""
    key = id(config)

    def forget(_: Any) -> None:
        with _PROVENANCE_LOCK:
            _PROVENANCE.pop(key, None)

    with _PROVENANCE_LOCK:
        _PROVENANCE[key] = (weakref.ref(config, forget), provenance)


def provenance(config: Any) -> Provenance | None:
    with _PROVENANCE_LOCK:
        entry = _PROVENANCE.get(id(config))
    if entry is None or entry[0]() is not config:
        return None
    return entry[1]


def type_name(cls: type) -> str:
    """``module:QualName`` of a class, the form ``rebuild`` imports."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_omegaconf(value: Any) -> bool:
    return type(value).__module__.startswith("omegaconf")


def _is_pydantic(value: Any) -> bool:
    return hasattr(type(value), "model_fields") and callable(getattr(value, "model_dump", None))


def _omegaconf_container(config: Any) -> Any:
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    try:
        return OmegaConf.to_container(config, resolve=True, throw_on_missing=True, enum_to_str=True)
    except MissingMandatoryValue as e:
        quiet_uncaught_config_errors()
        raise ConfigError(
            "has no value (it is '???' in the config); set it before starting the run",
            key=getattr(e, "full_key", None) or None,
        ) from None
    except InterpolationResolutionError as e:
        quiet_uncaught_config_errors()
        raise ConfigError(
            f"cannot be resolved: {str(e).splitlines()[0]}", key=getattr(e, "full_key", None) or None
        ) from None


class _Plain:
    """Turns config values into JSON-able ones, noting integer mapping keys and secret fields."""

    def __init__(self, enum_by_name: bool) -> None:
        self.enum_by_name = enum_by_name
        self.int_keys: list[list[str]] = []
        self.secret_fields: list[str] = []

    def __call__(self, value: Any, path: tuple[str, ...] = ()) -> Any:
        if _is_omegaconf(value):
            value = _omegaconf_container(value)
        elif _is_pydantic(value):
            value = value.model_dump(mode="python")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        elif isinstance(value, argparse.Namespace):
            value = vars(value)
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                where = ".".join(path) or "the top level"
                if isinstance(key, enum.Enum):
                    key = key.name
                elif isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise UsageError(
                        f"Config key {key!r} at {where} is of type {type(key).__name__}; keys must be "
                        "text or integers"
                    )
                elif isinstance(key, int):
                    self.int_keys.append([*path, str(key)])
                if str(key) in out:
                    raise UsageError(
                        f"Config keys at {where} hold both the integer {int(key)} and the text "
                        f"'{key}', which are stored alike; rename one of them"
                    )
                out[str(key)] = self(item, (*path, str(key)))
            return out
        if isinstance(value, (list, tuple)):
            return [self(item, (*path, str(i))) for i, item in enumerate(value)]
        if isinstance(value, (set, frozenset)):
            return sorted((self(item, path) for item in value), key=repr)
        if isinstance(value, enum.Enum):
            return value.name if self.enum_by_name else self(value.value, path)
        if isinstance(value, pathlib.PurePath):
            return str(value)
        if isinstance(value, (datetime.date, datetime.time)):
            return value.isoformat()
        if isinstance(value, (decimal.Decimal, uuid.UUID)):
            return str(value)
        if callable(getattr(value, "get_secret_value", None)):  # pydantic's SecretStr, SecretBytes
            self.secret_fields.append(".".join(path))
            return REDACTED
        tolist = getattr(value, "tolist", None)
        if callable(tolist) and getattr(value, "ndim", 0) > 0:
            return tolist()
        return value


def describe_config(config: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The stored tree for ``config`` and its ``config`` record (None for no config).

    Raises:
        UsageError: the object is not a config ``init`` accepts, or holds a
            value that cannot be stored (named by its dotted key).
        ConfigError: an OmegaConf value is missing or does not resolve.
    """
    if config is None:
        return {}, None
    sources = provenance(config)
    schema: str | None = None
    if _is_omegaconf(config):
        from omegaconf import DictConfig, OmegaConf

        if not isinstance(config, DictConfig):
            raise UsageError(f"config must be a mapping at the top level, got {type(config).__name__}")
        source = "omegaconf"
        object_type = OmegaConf.get_type(config)
        if dataclasses.is_dataclass(object_type):
            schema = type_name(object_type)
    elif _is_pydantic(config):
        source, schema = "pydantic", type_name(type(config))
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        source, schema = "dataclass", type_name(type(config))
    elif isinstance(config, argparse.Namespace):
        source = "namespace"
    elif isinstance(config, Mapping):
        source = "dict"
    else:
        raise UsageError(
            "config must be a mapping, an OmegaConf/Hydra DictConfig, a dataclass or pydantic "
            f"instance, or an argparse.Namespace; got {type(config).__name__}"
        )
    plain = _Plain(enum_by_name=source in ("omegaconf", "dataclass"))
    tree = normalize(plain(config))
    assert isinstance(tree, dict)
    check_flat_keys(tree)
    redacted = sorted(set(plain.secret_fields + redact_tree(tree)))
    record: dict[str, Any] = {"status": "ok", "source": source, "digest": digest(tree)}
    if source != "dict":
        record["type"] = type_name(type(config))
    if schema:
        record["schema"] = schema
    if sources is not None:
        record["source"] = sources.source
        if sources.schema:
            record["schema"] = sources.schema
        record["files"] = list(sources.files)
        record["overrides"] = list(sources.overrides)
        record.update(sources.extra)
    if redacted:
        record["redacted"] = redacted
    if plain.int_keys:
        record["int_keys"] = plain.int_keys
    return tree, record


def restore_int_keys(tree: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    """A copy of ``tree`` whose mapping keys at ``paths`` are integers again, as they were given.

    A path that no longer leads to a mapping (``log_params`` replaced it) is skipped.
    """
    if not paths:
        return tree
    tree = copy.deepcopy(tree)
    for path in sorted(paths, key=len, reverse=True):  # deepest first: parents keep their names
        node: Any = tree
        for part in path[:-1]:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = None
            if node is None:
                break
        if isinstance(node, dict) and path[-1] in node and int(path[-1]) not in node:
            node[int(path[-1])] = node.pop(path[-1])
    return tree


def import_type(name: str) -> type:
    """The class a ``module:QualName`` names (the module imported from ``sys.path``).

    Raises:
        UsageError: the text is not ``module:QualName``, the module fails to
            import (for any reason), or it has no such class.
    """
    module_name, sep, qualname = name.partition(":")
    if not sep or not module_name or not qualname:
        raise UsageError(f"{name!r} is not of the form module:Class (e.g. myproject.config:TrainConfig)")
    try:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
    except Exception as e:  # a module can fail to import in any way
        raise UsageError(f"{name}: cannot import {module_name}: {type(e).__name__}: {e}") from None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    if not isinstance(obj, type):
        raise UsageError(f"{name}: {module_name} has no class {qualname}")
    return obj


def _build(hint: Any, value: Any) -> Any:
    """``value`` (plain JSON types) as the type ``hint`` describes, as far as it can tell."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is None:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _build(arg, value)
            except Exception:
                continue
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build_dataclass(hint, value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum) and not isinstance(value, hint):
        return hint[value] if isinstance(value, str) and value in hint.__members__ else hint(value)
    if isinstance(hint, type) and issubclass(hint, pathlib.PurePath) and isinstance(value, str):
        return hint(value)
    if origin in (list, tuple, set, frozenset) and isinstance(value, list):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in value)
        if origin is tuple and args:
            return tuple(_build(a, v) for a, v in zip(args, value, strict=False))
        items = [_build(args[0] if args else Any, v) for v in value]
        return origin(items)
    if hint in (tuple, set, frozenset) and isinstance(value, list):
        return hint(value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _build(args[1], v) for k, v in value.items()}
    return value


def _build_dataclass(cls: type, tree: dict[str, Any]) -> Any:
    """An instance of ``cls`` from its fields' values, nested dataclasses, enums and tuples built too."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    kwargs = {
        f.name: _build(hints.get(f.name, Any), tree[f.name])
        for f in dataclasses.fields(cls)
        if f.init and f.name in tree
    }
    return cls(**kwargs)


def rebuild(tree: dict[str, Any], record: Mapping[str, Any] | None, *, schema: Any = None) -> Any:
    """The config object a run was given, rebuilt from its stored tree and record.

    A config that came from OmegaConf, Hydra or ``runstone.config.load`` comes
    back as a ``DictConfig`` (in struct mode, as ``load`` gives it); a
    dataclass or pydantic instance as an instance of its class (when the class
    can be imported, or is passed as ``schema``); a Namespace as a Namespace;
    a mapping as a dict. ``schema=dict`` asks for the plain dict whatever the
    kind.

    Raises:
        ConfigError: the values no longer fit the class.
        MissingDependencyError: a ``DictConfig`` is needed and omegaconf is
            not installed.
    """
    record = record or {}
    tree = restore_int_keys(tree, list(record.get("int_keys", [])))
    if schema is dict:
        return tree
    source = record.get("source", "dict")
    cls = schema
    if cls is None and source in ("dataclass", "pydantic") and record.get("type"):
        try:
            cls = import_type(str(record["type"]))
        except UsageError:
            cls = None  # e.g. a class defined in a script's __main__: a dict is the best answer
    if cls is not None:
        try:
            if isinstance(cls, type) and dataclasses.is_dataclass(cls):
                return _build_dataclass(cls, tree)
            if hasattr(cls, "model_validate"):
                return cls.model_validate(tree)
        except Exception as e:
            first = str(e).strip().splitlines()
            detail = "; ".join(
                line.strip() for line in first[:3] if line.strip() and "errors.pydantic" not in line
            )
            raise ConfigError(
                f"the run's config does not fit {type_name(cls)}: {detail}; "
                "pass schema=dict for the plain values"
            ) from None
        raise UsageError(f"schema must be a dataclass or a pydantic model class, got {cls!r}")
    if source == "namespace":
        return argparse.Namespace(**tree)
    if source in ("omegaconf", "hydra", "runstone.config.load"):
        try:
            from omegaconf import OmegaConf
        except ImportError:
            raise MissingDependencyError(
                "Rebuilding this run's config (an OmegaConf DictConfig)", package="omegaconf", extra="config"
            ) from None
        cfg = OmegaConf.create(tree)
        if source != "omegaconf":
            OmegaConf.set_struct(cfg, True)
        return cfg
    return tree


def plain_tree(value: Any, *, enum_by_name: bool = False) -> Any:
    """``value`` (a pydantic model, dataclass, DictConfig, ...) as plain Python values."""
    return _Plain(enum_by_name)(value)


_hook_lock = threading.Lock()
_hook_installed = False


def quiet_uncaught_config_errors() -> None:
    """From now on, an uncaught ConfigError ends the program with its one-line message, no traceback.

    Chains to the hook in place before (``RUNSTONE_DEBUG=1`` keeps the traceback).
    """
    global _hook_installed
    with _hook_lock:
        if _hook_installed:
            return
        _hook_installed = True
        previous = sys.excepthook

        def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
            if isinstance(exc, ConfigError) and not os.environ.get("RUNSTONE_DEBUG"):
                sys.stderr.write(f"runstone: config error: {exc} (RUNSTONE_DEBUG=1 shows the traceback)\n")
                return
            previous(exc_type, exc, tb)

        sys.excepthook = hook
