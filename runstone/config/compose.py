"""Compose a config from files, a defaults list, overrides and a schema, on OmegaConf.

Layer 5½ (above ``api``). The composition follows Hydra's rules (checked
against hydra-core's ``compose`` in the tests), so a ``conf/`` tree written
for Hydra loads the same way:

- A config file is YAML, JSON or TOML and holds a mapping. Its ``defaults``
  list names what it is composed from: ``- model: resnet`` merges
  ``model/resnet.yaml`` under the key ``model``; ``- base`` merges
  ``base.yaml`` at the file's own level; ``- _self_`` places the file's own
  keys (last, when not listed); ``- optional group: name`` is skipped when
  the file does not exist; ``- group: null`` picks nothing;
  ``- group: [a, b]`` merges both options; ``- group@pkg: name`` places it
  under ``pkg``. Group files may have defaults lists of their own (relative
  to their group, or absolute: ``- /model: mlp``), and ``- override
  /model: mlp`` in any file changes the option picked for a group. A
  ``# @package _global_`` header merges a file at the top level. The
  ``hydra`` node and ``hydra/...`` groups are Hydra's own settings and are
  left out.
- Overrides: ``group=option`` picks another option of a group anywhere in
  the defaults tree (``model/encoder=large`` included; ``group=[a,b]`` picks
  several), ``+group=option`` adds a group, ``~group`` drops one;
  ``key=value`` changes an existing key (a mapping value is merged into the
  mapping there), ``+key=value`` adds a new one, ``++key=value`` sets or
  adds, ``~key`` deletes (see ``runstone.capture.cmdline`` for values). They
  win over the files' ``override`` entries.
- A dataclass schema is merged before the overrides (so a key only the
  schema has can be set); interpolations (``${optimizer.lr}``,
  ``${oc.env:DATA_DIR,/data}``, ``${now:%Y-%m-%d}``) are resolved; a value
  left as ``???`` is an error; a pydantic schema validates the result.

Every key remembers the file or override it came from, so an error names it:
``conf/train.yaml: optimizer.lr: expected float, got 'fast'``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import difflib
import functools
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from runstone._json import flatten
from runstone.api.configs import (
    Provenance,
    attach_provenance,
    plain_tree,
    quiet_uncaught_config_errors,
    type_name,
)
from runstone.capture.cmdline import Override, parse_override
from runstone.capture.secrets import REDACTED, redact_override, redact_tree
from runstone.errors import ConfigError, MissingDependencyError

__all__ = ["FILE_TEXT_MAX_BYTES", "SUFFIXES", "compose", "file_entry", "find_config"]

#: the file types a config may be written in, in the order a bare name looks for them
SUFFIXES = (".yaml", ".yml", ".json", ".toml")
#: config file text kept with a run, per file; larger files are kept by digest only
FILE_TEXT_MAX_BYTES = 256 * 1024
#: passes over the defaults tree to settle ``override`` entries that pick files with overrides of their own
_MAX_PASSES = 8

_PACKAGE_HEADER = re.compile(r"^\s*#\s*@package\s+(\S+)\s*$", re.M)


def _omegaconf() -> Any:
    try:
        import omegaconf
    except ImportError:
        raise MissingDependencyError("runstone.config.load()", package="omegaconf", extra="config") from None
    if not omegaconf.OmegaConf.has_resolver("now"):  # Hydra registers it; plain OmegaConf does not
        omegaconf.OmegaConf.register_new_resolver(
            "now", lambda pattern: datetime.datetime.now().strftime(pattern), use_cache=True
        )
    return omegaconf


def _display(path: Path) -> str:
    """A path as the user would write it: relative to the working directory when inside it."""
    try:
        shown = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path.resolve()) if shown.startswith("..") else shown


def find_config(folder: Path, name: str) -> Path | None:
    """The config file ``name`` in ``folder`` (``name`` may lack its suffix), or None."""
    candidate = folder / name
    if candidate.suffix in SUFFIXES and candidate.is_file():
        return candidate
    for suffix in SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _toml_loads(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    import tomli  # type: ignore[unreachable,unused-ignore]  # the config extra installs it on Python 3.10

    return tomli.loads(text)


_YAML_FLOAT = re.compile(
    r"""^(?:[-+]?[0-9]+(?:_[0-9]+)*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+)
        |\.[0-9]+(?:_[0-9]+)*(?:[eE][-+][0-9]+)?
        |[-+]?[0-9]+(?:_[0-9]+)*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)


@functools.lru_cache(maxsize=1)
def _yaml_loader() -> Any:
    """A safe YAML loader (libyaml's when present) that reads values as OmegaConf does.

    As OmegaConf's own loader: ``1e-3`` is a float (YAML 1.2, where PyYAML's
    1.1 rules say text), timestamps stay text, and a duplicate key is an error.
    """
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc,valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG:
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"found duplicate key {key_node.value}",
                            key_node.start_mark,
                        )
                    seen.add(key_node.value)
            return super().construct_mapping(node, deep=deep)

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_FLOAT, list("-+0123456789."))
    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in Loader.yaml_implicit_resolvers.items()
    }
    return Loader


def _parse_text(suffix: str, text: str) -> Any:
    """The data in a config file's text (JSON, TOML, else YAML read as OmegaConf reads it)."""
    if suffix == ".json":
        return json.loads(text)
    if suffix == ".toml":
        return _toml_loads(text)
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # a safe loader


def _yaml_problem(error: Any) -> str:
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    text = str(error).strip()
    return " ".join(line.strip() for line in text.splitlines()[:4]) or type(error).__name__


def file_entry(path: Path, data: bytes, parsed: Any = None) -> dict[str, Any]:
    """How a config file is kept with a run: its path, SHA-256, size and text, secrets blanked.

    Each value the secret rule finds in the parsed file is replaced in the
    text; where one cannot be found there as written (escaped, split over
    lines) or is too short to replace safely, the text is not kept at all.
    """
    entry: dict[str, Any] = {
        "path": _display(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
    }
    if len(data) > FILE_TEXT_MAX_BYTES:
        entry["skipped"] = f"larger than {FILE_TEXT_MAX_BYTES} bytes; kept by digest only"
        return entry
    text = data.decode("utf-8", "replace")
    if parsed is None:
        try:
            parsed = _parse_text(path.suffix, text)
        except Exception:
            parsed = None  # unreadable files fail composition with their own error
    else:
        parsed = copy.deepcopy(parsed)  # redact_tree blanks in place
    secrets: list[Any] = []
    if isinstance(parsed, (dict, list)):
        redact_tree(parsed, found=secrets)
    for secret in sorted({str(s) for s in secrets}, key=len, reverse=True):
        if len(secret) < 4 or secret not in text:
            entry["skipped"] = "holds a secret value that cannot be blanked in the text; kept by digest only"
            return entry
        text = text.replace(secret, REDACTED)
    entry["text"] = text
    return entry


@dataclasses.dataclass
class _Entry:
    """One item of a defaults list."""

    kind: str  # "self", "file" or "group"
    name: str = ""  # the file, or the group's path from the config root ("model/block")
    written: str = ""  # the group as written, relative to its file's package ("block")
    option: Any = None  # the group's option: a name, a list of names or None
    optional: bool = False
    override: bool = False
    package: str | None = None  # an explicit @package
    origin: str = ""

    @property
    def key(self) -> str:
        """How overrides name this entry: ``group``, or ``group@package`` with an explicit package."""
        return f"{self.name}@{self.package}" if self.package else self.name


class _Composer:
    def __init__(self, primary: Path, group_overrides: dict[str, Override]) -> None:
        self.oc = _omegaconf()
        self.root = primary.parent
        self.group_overrides = group_overrides
        self.declared: dict[str, tuple[Any, str]] = {}  # group -> (option, the file declaring it)
        self.reset()

    def reset(self) -> None:
        self.files: list[dict[str, Any]] = []
        self.origins: dict[str, str] = {}
        self.choices: dict[str, Any] = {}
        self.found_declared: dict[str, tuple[Any, str]] = {}
        self.used: set[str] = set()
        self.added: set[str] = set()

    # --- reading -------------------------------------------------------------

    def read(self, path: Path) -> tuple[dict[str, Any], str | None]:
        """The mapping in a file and its ``# @package`` header, if any."""
        shown = _display(path)
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("is not UTF-8 text", origin=shown) from None
        except OSError as e:
            raise ConfigError(f"cannot be read: {e.strerror or e}", origin=shown) from None
        header = _PACKAGE_HEADER.search(text) if path.suffix in (".yaml", ".yml") else None
        try:
            data = _parse_text(path.suffix, text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", origin=shown
            ) from None
        except Exception as e:  # YAML and TOML parsers raise their own error types
            kind = "TOML" if path.suffix == ".toml" else "YAML"
            raise ConfigError(f"invalid {kind}: {_yaml_problem(e)}", origin=shown) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"must hold a mapping at the top level, not a {type(data).__name__}", origin=shown
            )
        if not any(f["path"] == shown for f in self.files):
            self.files.append(file_entry(path, raw, data))
        return data, (header[1] if header else None)

    def parse_defaults(self, defaults: Any, group_dir: Path, origin: str) -> list[_Entry]:
        if defaults is None:
            return [_Entry("self", origin=origin)]
        if not isinstance(defaults, list):
            raise ConfigError("must be a list (e.g. '- model: resnet')", origin=origin, key="defaults")
        entries = []
        for item in defaults:
            if item == "_self_":
                entries.append(_Entry("self", origin=origin))
            elif isinstance(item, str):
                entries.append(_Entry("file", name=item, origin=origin))
            elif isinstance(item, dict) and len(item) == 1:
                ((raw, option),) = item.items()
                words = str(raw).split()
                group, _, package = words[-1].partition("@")
                if group.startswith("/"):
                    full = group.lstrip("/")
                else:
                    full = Path(os.path.relpath(group_dir / group, self.root)).as_posix()
                entries.append(
                    _Entry(
                        "group",
                        name=full,
                        written=group.lstrip("/"),
                        option=option,
                        optional="optional" in words[:-1],
                        override="override" in words[:-1],
                        package=package or None,
                        origin=origin,
                    )
                )
            else:
                raise ConfigError(
                    f"entry {item!r} is neither a name nor one 'group: option' pair",
                    origin=origin,
                    key="defaults",
                )
        if not any(e.kind == "self" for e in entries):
            entries.append(_Entry("self", origin=origin))
        folder = Path(os.path.relpath(group_dir, self.root)).as_posix()
        for key, override in self.group_overrides.items():
            group, _, package = key.partition("@")
            parent = group.rpartition("/")[0] or "."
            if override.op == "add" and parent == folder:
                if any(e.kind == "group" and e.key == key for e in entries):
                    raise ConfigError(
                        f"group {key!r} is already in the defaults list of {origin}; "
                        f"write {key}={override.value}",
                        origin=f"override {override.text!r}",
                    )
                self.added.add(key)
                entries.append(
                    _Entry(
                        "group",
                        name=group,
                        written=group.rpartition("/")[2],
                        option=override.value,
                        package=package or None,
                        origin=origin,
                    )
                )
        return entries

    # --- composing -----------------------------------------------------------

    @staticmethod
    def node(data: Any, package: str) -> dict[str, Any]:
        """``data`` placed at ``package`` (dotted)."""
        for part in reversed([p for p in package.split(".") if p]):
            data = {part: data}
        return dict(data)

    @staticmethod
    def merge(into: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        """``update`` merged into ``into`` by OmegaConf's rules, on plain data (one ``create`` at the end).

        Mappings merge key by key; anything else replaces; ``???`` never
        replaces a value. (``OmegaConf.merge`` per file would copy the whole
        config each time.)
        """
        out = dict(into)
        for key, value in update.items():
            old = out.get(key)
            if value == "???" and key in out:
                continue
            if isinstance(old, dict) and isinstance(value, dict):
                out[key] = _Composer.merge(old, value)
            else:
                out[key] = value
        return out

    def option_for(self, entry: _Entry) -> tuple[Any, bool]:
        """The option an entry picks after overrides, and whether the entry is dropped."""
        override = self.group_overrides.get(entry.key)
        if override is not None and override.op != "add":
            self.used.add(entry.key)
            if override.op == "delete":
                return None, True
            return override.value, False
        if entry.key in self.declared:
            self.used.add(entry.key)
            return self.declared[entry.key][0], False
        return entry.option, False

    def compose(self, path: Path, package: str, group_dir: Path, *, explicit: bool = False) -> dict[str, Any]:
        """The composed node of one file: its defaults list in order, itself at ``_self_``.

        ``explicit``: the package was given in the defaults list (``group@pkg``),
        which wins over the file's ``# @package`` header.
        """
        shown = _display(path)
        data, header = self.read(path)
        if header == "_global_" and not explicit:
            package = ""
        elif header and header != "_group_" and not explicit:
            package = header.replace("/", ".")
        if not package:
            data.pop("hydra", None)  # Hydra's own settings, not the app's
        entries = self.parse_defaults(data.pop("defaults", None), group_dir, shown)
        result: dict[str, Any] = {}
        for entry in entries:
            if entry.kind == "self":
                for key, _ in flatten(data, package):
                    self.origins[key] = shown
                result = self.merge(result, self.node(data, package))
            elif entry.kind == "file":
                found = find_config(path.parent, entry.name)
                if found is None:
                    raise ConfigError(
                        f"names {entry.name!r}, but there is no {entry.name}.yaml (or .yml, .json, .toml) in "
                        f"{_display(path.parent)}",
                        origin=shown,
                        key="defaults",
                    )
                # a config in a folder is in that group: its package is the folder (as Hydra places it)
                folder = Path(entry.name).parent.as_posix()
                sub_package = ".".join(p for p in (package, folder.replace("/", ".")) if p and p != ".")
                result = self.merge(result, self.compose(found, sub_package, found.parent))
            elif entry.name == "hydra" or entry.name.startswith("hydra/"):
                continue
            elif entry.override:
                self.found_declared.setdefault(entry.key, (entry.option, shown))
            else:
                result = self.compose_group(result, entry, package)
        return result

    def compose_group(self, result: dict[str, Any], entry: _Entry, package: str) -> dict[str, Any]:
        option, dropped = self.option_for(entry)
        if dropped:
            return result
        self.choices[entry.key] = option
        if option is None:
            return result
        folder = self.root / entry.name
        if entry.package is None:  # Hydra's default: the group as written, under the file's package
            sub_package = ".".join(p for p in (package, entry.written.replace("/", ".")) if p)
        elif entry.package == "_global_" or entry.package.startswith("_global_."):
            sub_package = entry.package.removeprefix("_global_").lstrip(".")
        else:
            sub_package = ".".join(p for p in (package, entry.package.replace("/", ".")) if p)
        for choice in option if isinstance(option, list) else [option]:
            found = find_config(folder, str(choice))
            if found is None:
                if entry.optional:
                    continue
                override = self.group_overrides.get(entry.key)
                origin = f"override {override.text!r}" if override else entry.origin
                if entry.key in self.declared and not override:
                    origin = self.declared[entry.key][1]
                raise ConfigError(
                    f"no option {choice!r} in config group {entry.name!r}{_choices_hint(folder)}",
                    origin=origin,
                    key=None if override else f"defaults.{entry.name}",
                )
            result = self.merge(
                result, self.compose(found, sub_package, folder, explicit=entry.package is not None)
            )
        return result

    def run(self, primary: Path) -> Any:
        """Compose, again while ``override`` entries change which files are picked."""
        for _ in range(_MAX_PASSES):
            self.reset()
            tree = self.compose(primary, "", self.root)
            if self.found_declared == self.declared:
                break
            self.declared = dict(self.found_declared)
        for group, (_option, origin) in self.declared.items():
            if group not in self.used:
                raise ConfigError(
                    f"overrides config group {group!r}, which is not in the defaults list", origin=origin
                )
        for group, override in self.group_overrides.items():
            if override.op == "add" and group not in self.added:
                raise ConfigError(
                    f"cannot add config group {group!r}: no config composed here lives in its parent folder",
                    origin=f"override {override.text!r}",
                )
            if override.op != "add" and group not in self.used:
                verb = "delete" if override.op == "delete" else "select"
                raise ConfigError(
                    f"cannot {verb} config group {group!r}: it is not in the defaults list; "
                    f"write +{group}={override.value if override.has_value else 'OPTION'} to add it",
                    origin=f"override {override.text!r}",
                )
        try:
            return self.oc.OmegaConf.create(tree)
        except Exception as e:
            key = getattr(e, "full_key", None) or None
            raise ConfigError(
                _first_line(e), origin=_origin_of(self.origins, key, _display(primary)), key=key
            ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _choices_hint(folder: Path) -> str:
    if not folder.is_dir():
        return f" (there is no folder {_display(folder)})"
    names = sorted({p.stem for p in folder.iterdir() if p.suffix in SUFFIXES})
    return f" (choices: {', '.join(names)})" if names else f" ({_display(folder)} holds no config files)"


def _origin_of(origins: dict[str, str], key: str | None, default: str) -> str:
    """The file or override a key (or its nearest ancestor/descendant) came from."""
    if not key:
        return default
    key = re.sub(r"\[(\d+)\]", r".\1", key)
    probe = key
    while probe:
        if probe in origins:
            return origins[probe]
        probe = probe.rpartition(".")[0]
    for name, origin in origins.items():
        if name.startswith(key + "."):
            return origin
    return default


def _exists(oc: Any, cfg: Any, key: str) -> tuple[bool, Any]:
    """Whether ``key`` is in the config (even as ``???`` or null), and its value as written."""
    parent_key, _, last = key.rpartition(".")
    try:
        parent = oc.OmegaConf.select(cfg, parent_key, throw_on_missing=False) if parent_key else cfg
    except Exception:
        return False, None
    if isinstance(parent, oc.DictConfig):
        try:
            node = parent._get_node(last)  # "in" would say no for a '???' value
        except Exception:  # a schema's config refuses to look up keys it lacks
            return False, None
        if node is None:
            return False, None
    elif isinstance(parent, oc.ListConfig) and last.lstrip("-").isdigit():
        if not -len(parent) <= int(last) < len(parent):
            return False, None
        node = parent._get_node(int(last))
    else:
        return False, None
    value = node._value() if node is not None else None
    return True, value


def _suggest(cfg_keys: Iterable[str], key: str) -> str:
    close = [k for k in difflib.get_close_matches(key, list(cfg_keys), n=2) if k != key]
    return f" (did you mean {close[0]}?)" if close else ""


def _apply(oc: Any, cfg: Any, override: Override, origins: dict[str, str]) -> None:
    origin = f"override {override.text!r}"
    key = override.key.replace("/", ".")
    if override.sweep:
        raise ConfigError(
            "is a sweep (a comma-separated list, or choice/range/interval/glob); sweeps run under Hydra's "
            "--multirun. Quote the value for text with a comma, or write a list as [a,b]",
            origin=origin,
        )
    exists, current = _exists(oc, cfg, key)
    if override.op == "set" and not exists:
        known = dict(flatten(oc.OmegaConf.to_container(cfg, resolve=False)))
        raise ConfigError(
            f"is not in the config{_suggest(known, key)}; write +{override.text} to add it",
            origin=origin,
            key=key,
        )
    if override.op == "add" and exists and current is not None:
        raise ConfigError(
            f"is already in the config; write {override.text[1:]} to change it (or ++ to set or add)",
            origin=origin,
            key=key,
        )
    descendants = [n for n in origins if n == key or n.startswith(key + ".")]
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
        try:
            with oc.open_dict(cfg):
                del parent[int(last) if isinstance(parent, oc.ListConfig) else last]
        except Exception as e:  # e.g. a key the schema defines
            raise ConfigError(f"cannot be deleted: {_first_line(e)}", origin=origin, key=key) from None
        for name in descendants:
            del origins[name]
        return
    try:  # a schema's config is in struct mode: keys it lacks are refused here
        oc.OmegaConf.update(cfg, key, override.value, merge=True)
    except Exception as e:
        raise ConfigError(_omegaconf_reason(e), origin=origin, key=key) from None
    if not isinstance(override.value, dict):
        for name in descendants:
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


def _pydantic_problems(schema: type, error: Any, origins: dict[str, str], default: str) -> ConfigError:
    problems = []
    for item in error.errors():
        key = ".".join(str(p) for p in item.get("loc", ()))
        kind = str(item.get("type", ""))
        base = kind.split("_", maxsplit=1)[0]
        message = str(item.get("msg", kind))
        if kind == "missing":
            reason = f"missing (required by the schema {schema.__name__})"
        elif kind == "extra_forbidden":
            reason = "not in the schema"
        elif base in _PYDANTIC_TYPES and kind.endswith(("_parsing", "_type")):
            reason = f"expected {_PYDANTIC_TYPES[base]}, got {item.get('input')!r}"
        elif "got" in message.lower():
            reason = message
        else:
            reason = f"{message}, got {item.get('input')!r}"
        problems.append(ConfigError(reason, origin=_origin_of(origins, key, default), key=key or None))
    first = problems[0]
    if len(problems) == 1:
        return first
    rest = "; ".join(str(p) for p in problems[1:4])
    more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
    return ConfigError(f"{first.reason}; also {rest}{more}", origin=first.origin, key=first.key)


def _validate_pydantic(oc: Any, cfg: Any, schema: type, origins: dict[str, str], default: str) -> Any:
    data = oc.OmegaConf.to_container(cfg, resolve=True)
    try:
        model = schema.model_validate(data)  # type: ignore[attr-defined]
    except Exception as e:
        if not callable(getattr(e, "errors", None)):
            raise ConfigError(_first_line(e), origin=default) from None
        raise _pydantic_problems(schema, e, origins, default) from None
    validated = plain_tree(model)
    # A model that ignores unknown keys would silently drop them from the record: refuse them.
    kept = dict(flatten(validated))
    for key, _ in flatten(data):
        if key not in kept and not any(key.startswith(k + ".") for k in kept):
            raise ConfigError(
                f"not in the schema {schema.__name__}", origin=_origin_of(origins, key, default), key=key
            )
    return oc.OmegaConf.create(validated)


def _load_error(error: ConfigError) -> ConfigError:
    quiet_uncaught_config_errors()
    return error


def compose(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    schema: Any = None,
    resolve: bool = True,
) -> Any:
    """See ``runstone.config.load``."""
    try:
        return _compose(path, overrides, schema=schema, resolve=resolve)
    except ConfigError as e:
        raise _load_error(e) from None


def _compose(path: str | os.PathLike[str], overrides: Sequence[str], *, schema: Any, resolve: bool) -> Any:
    primary = Path(path)
    if isinstance(overrides, str):
        raise ConfigError(
            f"overrides must be a list of strings such as ['optimizer.lr=0.01'], got the string {overrides!r}"
        )
    if not primary.is_file() and primary.suffix == "" and find_config(primary.parent, primary.name):
        primary = find_config(primary.parent, primary.name) or primary
    if not primary.is_file():
        hint = f" (nor {primary.name}.yaml, .yml, .json or .toml)" if primary.suffix == "" else ""
        raise ConfigError(f"no such config file{hint}", origin=_display(primary))
    if primary.suffix not in SUFFIXES:
        raise ConfigError(
            f"has the suffix {primary.suffix!r}; config files are YAML (.yaml, .yml), JSON or TOML",
            origin=_display(primary),
        )
    is_dataclass_schema = isinstance(schema, type) and dataclasses.is_dataclass(schema)
    if schema is not None and not is_dataclass_schema and not hasattr(schema, "model_validate"):
        raise ConfigError(f"must be a dataclass or a pydantic model class, got {schema!r}", origin="schema")
    parsed = []
    for text in overrides:
        if not isinstance(text, str):
            raise ConfigError(f"overrides must be strings, got {text!r}")
        try:
            parsed.append(parse_override(text))
        except Exception as e:
            raise ConfigError(str(e)) from None
    root = primary.parent
    groups: dict[str, Override] = {}
    values: list[Override] = []
    for override in parsed:
        group = override.key.partition("@")[0]
        if group == "hydra" or group.startswith(("hydra.", "hydra/")):
            continue  # Hydra's own settings: recorded as given, not part of the app's config
        if (root / group).is_dir() and not isinstance(override.value, dict):
            groups[override.key] = override
        else:
            values.append(override)
    composer = _Composer(primary, groups)
    oc = composer.oc
    shown = _display(primary)
    cfg = composer.run(primary)
    origins = composer.origins
    if is_dataclass_schema:
        schema_name = f"schema {schema.__name__}"
        try:
            cfg = oc.OmegaConf.merge(oc.OmegaConf.structured(schema), cfg)
        except Exception as e:
            key = getattr(e, "full_key", None) or None
            raise ConfigError(_omegaconf_reason(e), origin=_origin_of(origins, key, shown), key=key) from None
        for key, _ in flatten(oc.OmegaConf.to_container(cfg, resolve=False)):
            origins.setdefault(key, schema_name)
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
    if schema is not None and not is_dataclass_schema:
        cfg = _validate_pydantic(oc, cfg, schema, origins, shown)
    oc.OmegaConf.set_struct(cfg, True)
    extra: dict[str, Any] = {"primary": shown}
    if composer.choices:
        extra["choices"] = composer.choices
    attach_provenance(
        cfg,
        Provenance(
            source="runstone.config.load",
            files=tuple(composer.files),
            overrides=tuple(redact_override(text) for text in overrides),
            schema=type_name(schema) if isinstance(schema, type) else None,
            extra=extra,
        ),
    )
    return cfg


def _unresolvable_key(oc: Any, cfg: Any) -> str | None:
    """The first key whose interpolation fails (OmegaConf.resolve does not say which)."""
    for key, _ in flatten(oc.OmegaConf.to_container(cfg, resolve=False)):
        try:
            oc.OmegaConf.select(cfg, key, throw_on_resolution_failure=True, throw_on_missing=False)
        except Exception:
            return key
    return None
