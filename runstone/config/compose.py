"""Compose a config from files, a defaults list, overrides and a schema, on OmegaConf.

Layer 5 (beside ``api``). The composition follows Hydra's rules for the parts
most projects use, so a ``conf/`` tree written for Hydra loads the same way:

- A config file is YAML, JSON or TOML and holds a mapping. Its ``defaults``
  list names what it is composed from: ``- model: resnet`` merges
  ``model/resnet.yaml`` under the key ``model``; ``- base`` merges
  ``base.yaml`` at the file's own level; ``- _self_`` places the file's own
  keys (last, when not listed); ``- optional group: name`` is skipped when
  the file does not exist; ``- group: null`` picks nothing. Group files may
  have defaults lists of their own (relative to their group), and a
  ``# @package _global_`` header merges a file at the top level.
- Overrides: ``group=option`` picks another option of a group in the defaults
  list (``+group=option`` adds a group, ``~group`` drops one); ``key=value``
  changes an existing key, ``+key=value`` adds a new one, ``++key=value``
  sets or adds, ``~key`` deletes (see ``runstone.capture.cmdline`` for values).
- Interpolations (``${optimizer.lr}``, ``${oc.env:DATA_DIR,/data}``) are
  resolved; a value left as ``???`` is an error.
- A schema (a dataclass or a pydantic model class) validates and converts
  the result.

Every key remembers the file or override it came from, so an error names it:
``conf/train.yaml: optimizer.lr: expected float, got 'fast'``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from runstone._json import flatten
from runstone.api.configs import Provenance, attach_provenance, type_name
from runstone.capture.cmdline import Override, parse_override
from runstone.capture.env import is_secret_key
from runstone.errors import ConfigError, MissingDependencyError

__all__ = ["FILE_TEXT_MAX_BYTES", "SUFFIXES", "compose", "file_entry"]

#: the file types a config may be written in, in the order a bare name looks for them
SUFFIXES = (".yaml", ".yml", ".json", ".toml")
#: config file text kept with a run, per file; larger files are kept by digest only
FILE_TEXT_MAX_BYTES = 256 * 1024

_PACKAGE_HEADER = re.compile(r"^\s*#\s*@package\s+(\S+)\s*$", re.M)
_SECRET_LINE = re.compile(
    r"""^(?P<lead>\s*["']?)(?P<key>[\w.\-]+)(?P<sep>["']?\s*[:=]\s*)(?P<value>[^\s#,{}\[\]].*?)(?P<tail>,?\s*)$"""
)


def _omegaconf() -> Any:
    try:
        import omegaconf
    except ImportError:
        raise MissingDependencyError("runstone.config.load()", package="omegaconf", extra="config") from None
    return omegaconf


def _display(path: Path) -> str:
    """A path as the user would write it: relative to the working directory when inside it."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def file_entry(path: Path, data: bytes) -> dict[str, Any]:
    """How a config file is kept with a run: its path, digest, size and (redacted) text."""
    entry: dict[str, Any] = {
        "path": _display(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
    }
    if len(data) <= FILE_TEXT_MAX_BYTES:
        entry["text"] = _redact_text(data.decode("utf-8", "replace"))
    else:
        entry["skipped"] = f"larger than {FILE_TEXT_MAX_BYTES} bytes; kept by digest only"
    return entry


def _redact_text(text: str) -> str:
    """Config file text with literal values of secret-looking keys blanked (line by line)."""

    def one(line: str) -> str:
        match = _SECRET_LINE.match(line)
        if not match or not is_secret_key(match["key"]) or "${" in match["value"]:
            return line
        if match["value"].strip("'\" ") in ("", "null", "~", "???"):
            return line
        quote = '"' if match["value"].startswith('"') else ""
        return f"{match['lead']}{match['key']}{match['sep']}{quote}<redacted>{quote}{match['tail']}"

    return "\n".join(one(line) for line in text.split("\n"))


def _toml_loads(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    import tomli  # type: ignore[unreachable,unused-ignore]  # the config extra installs it on Python 3.10

    return tomli.loads(text)


class _Composer:
    def __init__(self, primary: Path) -> None:
        self.oc = _omegaconf()
        self.root = primary.parent
        self.files: list[dict[str, Any]] = []
        self.origins: dict[str, str] = {}
        self.choices: dict[str, Any] = {}
        self.group_origins: dict[str, str] = {}  # group -> the override that picked its option

    # --- reading -------------------------------------------------------------

    def find(self, folder: Path, name: str) -> Path | None:
        candidate = folder / name
        if candidate.suffix in SUFFIXES and candidate.is_file():
            return candidate
        for suffix in SUFFIXES:
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return path
        return None

    def read(self, path: Path) -> tuple[dict[str, Any], str | None]:
        """The mapping in a file and its ``# @package`` header, if any."""
        shown = _display(path)
        try:
            data_bytes = path.read_bytes()
            text = data_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("is not UTF-8 text", origin=shown) from None
        except OSError as e:
            raise ConfigError(f"cannot be read: {e.strerror or e}", origin=shown) from None
        if not any(f["path"] == shown for f in self.files):
            self.files.append(file_entry(path, data_bytes))
        header = _PACKAGE_HEADER.search(text) if path.suffix in (".yaml", ".yml") else None
        data = self.parse(path, shown, text)
        return data, (header[1] if header else None)

    def parse(self, path: Path, shown: str, text: str) -> dict[str, Any]:
        oc = self.oc
        try:
            if path.suffix == ".json":
                data = json.loads(text)
            elif path.suffix == ".toml":
                data = _toml_loads(text)
            else:
                node = oc.OmegaConf.create(text) if text.strip() else oc.OmegaConf.create({})
                data = oc.OmegaConf.to_container(node, resolve=False)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", origin=shown
            ) from None
        except Exception as e:  # YAML and TOML parsers raise their own error types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            detail = " ".join(line.strip() for line in str(e).strip().splitlines()[1:4])
            kind = "TOML" if path.suffix == ".toml" else "YAML"
            raise ConfigError(f"invalid {kind}: {first} {detail}".strip(), origin=shown) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"must hold a mapping at the top level, not a {type(data).__name__}", origin=shown
            )
        return data

    # --- composing -----------------------------------------------------------

    def node(self, data: Any, package: str, origin: str) -> Any:
        """``data`` placed at ``package`` (dotted), as an OmegaConf node."""
        for part in reversed([p for p in package.split(".") if p]):
            data = {part: data}
        try:
            return self.oc.OmegaConf.create(data)
        except Exception as e:
            raise ConfigError(_first_line(e), origin=origin) from None

    def note_origins(self, data: Any, package: str, origin: str) -> None:
        if not isinstance(data, dict):
            return
        for key, _ in flatten(data, package):
            self.origins[key] = origin

    def merge(self, into: Any, node: Any, origin: str) -> Any:
        try:
            return self.oc.OmegaConf.merge(into, node)
        except Exception as e:
            raise ConfigError(
                _first_line(e), origin=origin, key=getattr(e, "full_key", None) or None
            ) from None

    def compose(
        self,
        path: Path,
        package: str,
        group_dir: Path,
        group_overrides: dict[str, Override] | None,
    ) -> Any:
        """The composed node of one file: its defaults list, then itself (``_self_``)."""
        shown = _display(path)
        data, header = self.read(path)
        if header == "_global_":
            package = ""
        elif header and header != "_group_":
            package = header.replace("/", ".")
        defaults = data.pop("defaults", None)
        if defaults is not None and not isinstance(defaults, list):
            raise ConfigError("must be a list (e.g. '- model: resnet')", origin=shown, key="defaults")
        items: list[Any] = list(defaults or [])
        if "_self_" not in items:
            items.append("_self_")
        if group_overrides is not None:  # the primary file: overrides pick and add groups
            items = self.apply_group_overrides(items, group_overrides, shown)
        result = self.oc.OmegaConf.create({})
        for item in items:
            if item == "_self_":
                self.note_origins(data, package, shown)
                result = self.merge(result, self.node(data, package, shown), shown)
                continue
            if isinstance(item, str):
                found = self.find(path.parent, item)
                if found is None:
                    raise ConfigError(
                        f"names {item!r}, but there is no {item}.yaml (or .yml, .json, .toml) in "
                        f"{_display(path.parent)}",
                        origin=shown,
                        key="defaults",
                    )
                result = self.merge(result, self.compose(found, package, path.parent, None), _display(found))
                continue
            if not isinstance(item, dict) or len(item) != 1:
                raise ConfigError(
                    f"entry {item!r} is neither a name nor one 'group: option' pair",
                    origin=shown,
                    key="defaults",
                )
            ((raw_group, option),) = item.items()
            words = str(raw_group).split()
            optional = "optional" in words[:-1]
            group = words[-1].split("@", 1)[0]
            target_package = words[-1].split("@", 1)[1] if "@" in words[-1] else group.replace("/", ".")
            full_group = _display(group_dir / group) if group_dir != self.root else group
            if group_dir == self.root:
                self.choices[group] = option
            if option is None:
                continue
            for choice in option if isinstance(option, list) else [option]:
                folder = group_dir / group
                found = self.find(folder, str(choice))
                if found is None:
                    if optional:
                        continue
                    overridden = self.group_origins.get(group) if group_dir == self.root else None
                    raise ConfigError(
                        f"no option {choice!r} in config group {group!r}{_choices_hint(self, folder)}",
                        origin=overridden or shown,
                        key=None if overridden else f"defaults.{full_group}",
                    )
                sub_package = ".".join(p for p in (package, target_package.replace("/", ".")) if p)
                result = self.merge(result, self.compose(found, sub_package, folder, None), _display(found))
        return result

    def apply_group_overrides(
        self, items: list[Any], overrides: dict[str, Override], origin: str
    ) -> list[Any]:
        out: list[Any] = []
        seen = set()
        for item in items:
            if isinstance(item, dict) and len(item) == 1:
                ((raw_group, _option),) = item.items()
                group = str(raw_group).split()[-1].split("@", 1)[0]
                if group in overrides:
                    seen.add(group)
                    override = overrides[group]
                    if override.op == "delete":
                        continue
                    if override.op == "add":
                        raise ConfigError(
                            f"group {group!r} is already in the defaults list; "
                            f"write {group}={override.value}",
                            origin=f"override {override.text!r}",
                        )
                    item = {raw_group: override.value}
                    self.group_origins[group] = f"override {override.text!r}"
            out.append(item)
        for group, override in overrides.items():
            if group in seen:
                continue
            if override.op in ("add", "force"):
                out.insert(out.index("_self_") if "_self_" in out else len(out), {group: override.value})
                self.group_origins[group] = f"override {override.text!r}"
            else:
                verb = "delete" if override.op == "delete" else "select"
                raise ConfigError(
                    f"cannot {verb} config group {group!r}: it is not in the defaults list of {origin}; "
                    f"write +{group}={override.value if override.has_value else 'OPTION'} to add it",
                    origin=f"override {override.text!r}",
                )
        return out


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _choices_hint(composer: _Composer, folder: Path) -> str:
    if not folder.is_dir():
        return f" (there is no folder {_display(folder)})"
    names = sorted({p.stem for p in folder.iterdir() if p.suffix in SUFFIXES})
    return f" (choices: {', '.join(names)})" if names else f" ({_display(folder)} holds no config files)"


def _origin_of(origins: dict[str, str], key: str | None, default: str) -> str:
    """The file or override a key (or its nearest ancestor/descendant) came from."""
    if not key:
        return default
    probe = key
    while probe:
        if probe in origins:
            return origins[probe]
        probe = probe.rpartition(".")[0]
    for name, origin in origins.items():
        if name.startswith(key + "."):
            return origin
    return default


def _unresolvable_key(oc: Any, cfg: Any) -> str | None:
    """The first key whose interpolation fails (OmegaConf.resolve does not say which)."""
    for key, _ in flatten(oc.OmegaConf.to_container(cfg, resolve=False)):
        try:
            oc.OmegaConf.select(cfg, key, throw_on_resolution_failure=True, throw_on_missing=False)
        except Exception:
            return key
    return None


def _select(oc: Any, cfg: Any, key: str) -> tuple[bool, Any]:
    missing = object()
    try:
        value = oc.OmegaConf.select(
            cfg, key, default=missing, throw_on_missing=False, throw_on_resolution_failure=False
        )
    except Exception:
        return False, None
    return value is not missing, value


def _suggest(cfg_keys: Iterable[str], key: str) -> str:
    close = difflib.get_close_matches(key, list(cfg_keys), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _apply(oc: Any, cfg: Any, override: Override, origins: dict[str, str]) -> None:
    origin = f"override {override.text!r}"
    key = override.key.replace("/", ".")
    if override.sweep:
        raise ConfigError(
            "holds a comma-separated list, which is a sweep; sweeps run under Hydra's --multirun. "
            "Quote the value for text with a comma, or write a list as [a,b]",
            origin=origin,
        )
    exists, current = _select(oc, cfg, key)
    if override.op == "set" and not exists:
        known = dict(flatten(oc.OmegaConf.to_container(cfg, resolve=False)))
        raise ConfigError(
            f"is not in the config{_suggest(known, key)}; write +{override.text} to add it",
            origin=origin,
            key=key,
        )
    if override.op == "add" and exists:
        raise ConfigError(
            f"is already in the config; write {override.text[1:]} to change it (or ++ to set or add)",
            origin=origin,
            key=key,
        )
    if override.op == "delete":
        if not exists:
            raise ConfigError("is not in the config, so it cannot be deleted", origin=origin, key=key)
        if override.has_value and current != override.value:
            raise ConfigError(
                f"is {current!r}, not {override.value!r}; the deletion asked for that value",
                origin=origin,
                key=key,
            )
        parent_key, _, last = key.rpartition(".")
        parent = oc.OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if isinstance(parent, oc.ListConfig):
            del parent[int(last)]
        else:
            del parent[last]
        for name in [n for n in origins if n == key or n.startswith(key + ".")]:
            del origins[name]
        return
    try:
        oc.OmegaConf.update(cfg, key, override.value, merge=False, force_add=True)
    except Exception as e:
        raise ConfigError(_first_line(e), origin=origin, key=key) from None
    for name in [n for n in origins if n == key or n.startswith(key + ".")]:
        del origins[name]
    if isinstance(override.value, dict) and override.value:
        for name, _ in flatten(override.value, key):
            origins[name] = origin
    else:
        origins[key] = origin


_OC_CONVERT = re.compile(
    r"Value '(?P<value>.*?)' (?:of type '[\w.]+' )?could not be converted to (?P<type>\w+)", re.S
)
_OC_TYPES = {"float": "float", "integer": "int", "boolean": "bool", "string": "str"}
_PYDANTIC_TYPES = {
    "float": "float",
    "int": "int",
    "bool": "bool",
    "string": "str",
    "str": "str",
    "list": "list",
    "dict": "mapping",
}


def _omegaconf_reason(error: BaseException) -> str:
    text = str(error)
    match = _OC_CONVERT.search(text)
    if match:
        wanted = _OC_TYPES.get(match["type"].lower(), match["type"])
        return f"expected {wanted}, got {match['value']!r}"
    first = _first_line(error)
    key_error = re.match(r"Key '(.+)' not in '(\w+)'", first)
    if key_error:
        return f"not in the schema {key_error[2]}"
    return first


def _validate(oc: Any, cfg: Any, schema: Any, origins: dict[str, str], default: str) -> Any:
    if dataclasses.is_dataclass(schema) and isinstance(schema, type):
        try:
            return oc.OmegaConf.merge(oc.OmegaConf.structured(schema), cfg)
        except Exception as e:
            key = getattr(e, "full_key", None) or None
            raise ConfigError(
                _omegaconf_reason(e), origin=_origin_of(origins, key, default), key=key
            ) from None
    if isinstance(schema, type) and hasattr(schema, "model_validate"):
        try:
            model = schema.model_validate(oc.OmegaConf.to_container(cfg, resolve=True))
        except Exception as e:
            errors = getattr(e, "errors", None)
            if not callable(errors):
                raise ConfigError(_first_line(e), origin=default) from None
            problems = []
            for item in errors():
                key = ".".join(str(p) for p in item.get("loc", ()))
                kind = str(item.get("type", ""))
                base = kind.split("_", maxsplit=1)[0]
                if kind == "missing":
                    reason = f"missing (required by {schema.__name__})"
                elif kind == "extra_forbidden":
                    reason = f"not in the schema {schema.__name__}"
                elif base in _PYDANTIC_TYPES and kind.endswith(("_parsing", "_type")):
                    reason = f"expected {_PYDANTIC_TYPES[base]}, got {item.get('input')!r}"
                else:
                    reason = f"{item.get('msg')}, got {item.get('input')!r}"
                problems.append(
                    ConfigError(reason, origin=_origin_of(origins, key, default), key=key or None)
                )
            first = problems[0]
            if len(problems) > 1:
                rest = "; ".join(str(p) for p in problems[1:4])
                more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
                raise ConfigError(
                    f"{first.reason}; also {rest}{more}", origin=first.origin, key=first.key
                ) from None
            raise first from None
        from runstone.api.configs import _Plain

        return oc.OmegaConf.create(_Plain(enum_by_name=False)(model))
    raise ConfigError(f"must be a dataclass or a pydantic model class, got {schema!r}", origin="schema")


def compose(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    schema: Any = None,
    resolve: bool = True,
) -> Any:
    """See ``runstone.config.load``."""
    primary = Path(path)
    if isinstance(overrides, str):
        raise ConfigError(
            f"overrides must be a list of strings such as ['optimizer.lr=0.01'], got the string {overrides!r}"
        )
    if not primary.is_file():
        hint = ""
        if primary.suffix == "":
            for suffix in SUFFIXES:
                if primary.with_suffix(suffix).is_file():
                    primary = primary.with_suffix(suffix)
                    break
            else:
                hint = f" (nor {primary.name}.yaml, .yml, .json or .toml)"
        if not primary.is_file():
            raise ConfigError(f"no such config file{hint}", origin=_display(primary))
    if primary.suffix not in SUFFIXES:
        raise ConfigError(
            f"has the suffix {primary.suffix!r}; config files are YAML (.yaml, .yml), JSON or TOML",
            origin=_display(primary),
        )
    composer = _Composer(primary)
    oc = composer.oc
    parsed = []
    for text in overrides:
        if not isinstance(text, str):
            raise ConfigError(f"overrides must be strings, got {text!r}")
        try:
            parsed.append(parse_override(text))
        except Exception as e:
            raise ConfigError(str(e)) from None
    groups: dict[str, Override] = {}
    values: list[Override] = []
    for override in parsed:
        if (composer.root / override.key).is_dir() and not isinstance(override.value, (dict, list)):
            groups[override.key] = override
        else:
            values.append(override)
    shown = _display(primary)
    cfg = composer.compose(primary, "", composer.root, groups)
    origins = composer.origins
    for override in values:
        _apply(oc, cfg, override, origins)
    if resolve:
        try:
            oc.OmegaConf.resolve(cfg)
        except Exception as e:
            key = getattr(e, "full_key", None) or _unresolvable_key(oc, cfg)
            raise ConfigError(
                f"cannot be resolved: {_first_line(e)}", origin=_origin_of(origins, key, shown), key=key
            ) from None
        missing = sorted(oc.OmegaConf.missing_keys(cfg))
        if missing:
            key = missing[0]
            also = f" (also missing: {', '.join(missing[1:4])})" if len(missing) > 1 else ""
            raise ConfigError(
                f"has no value ('???'); set it with an override such as {key}=VALUE{also}",
                origin=_origin_of(origins, key, shown),
                key=key,
            )
    if schema is not None:
        cfg = _validate(oc, cfg, schema, origins, shown)
    oc.OmegaConf.set_struct(cfg, True)
    attach_provenance(
        cfg,
        Provenance(
            source="runstone.config.load",
            files=tuple(composer.files),
            overrides=tuple(overrides),
            schema=type_name(schema) if isinstance(schema, type) else None,
            extra={"primary": shown, "choices": composer.choices} if composer.choices else {"primary": shown},
        ),
    )
    return cfg
