"""Configuration overrides on a command line: parsed values, and a best-effort params view.

Layer 3, standard library only. One grammar serves both users of it:
``runstone.config.load`` applies the overrides it parses here, and the
record of any run keeps a view of its own command line parsed the same way,
so a wrapped script that never calls runstone still shows
``optimizer.lr: 0.01`` for ``python train.py optimizer.lr=0.01``.

The grammar follows Hydra's override syntax, which most users already know:

- ``key=value`` sets a value; ``+key=value`` adds a key; ``++key=value`` sets
  or adds; ``~key`` (or ``~key=value``) deletes.
- Values: ``null``; ``true``/``false`` (any case); integers (``1``, ``-3``,
  ``1_000``); floats (``0.01``, ``1e-3``, ``inf``, ``nan``); quoted strings
  (``'1'`` is the text ``1``); lists ``[1, 2]`` and mappings ``{a: 1}``;
  anything else is text (``${oc.env:HOME}`` interpolations included).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from runstone.capture.secrets import redact_argv
from runstone.errors import UsageError

__all__ = ["Override", "parse_command_line", "parse_override", "parse_value", "set_path"]

_INT = re.compile(r"[+-]?(?:0|[1-9](?:_?\d)*)")  # Hydra's: "007" is text
_FLOAT = re.compile(
    r"[+-]?(?:\d(?:_?\d)*\.(?:\d(?:_?\d)*)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d+)?"
    r"|[+-]?\d(?:_?\d)*[eE][+-]?\d+"
)
_SPECIAL_FLOATS = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_OVERRIDE = re.compile(r"(?P<prefix>\+\+|\+|~)?(?P<key>[A-Za-z_][\w\-./@]*)(?:=(?P<value>.*))?", re.S)
#: Python's own options that take a value (``python -W ignore train.py``)
_PYTHON_VALUED = {"-W", "-X", "-Q"}


@dataclass(frozen=True)
class Override:
    """One parsed override.

    ``op`` is ``"set"`` (``key=value``), ``"add"`` (``+key=value``),
    ``"force"`` (``++key=value``) or ``"delete"`` (``~key``, where ``value``
    is the value it must have, or absent when ``has_value`` is false).
    """

    text: str
    op: str
    key: str
    value: Any = None
    has_value: bool = True
    sweep: bool = False  # an unquoted top-level comma: Hydra's multirun sweep syntax


def _split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and not quote:  # an escaped separator is not one
            i += 2
            continue
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _unquote(text: str) -> str | None:
    """The text of a quoted value: only an escaped quote (or backslashes before one) is unescaped."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        quote = text[0]
        return re.sub(r"(\\+)" + quote, lambda m: "\\" * (len(m[1]) // 2) + quote, text[1:-1])
    return None


#: characters an unquoted value may escape with a backslash (Hydra's grammar)
_ESCAPABLE = re.compile(r"\\([\\()\[\]{}:=, '\"])")
#: Hydra's functions that make a sweep, and the casts it applies to one value
_SWEEP_FUNCTIONS = re.compile(r"(choice|range|interval|glob|shuffle|sort|tag)\(.*\)", re.S)
_CAST = re.compile(r"(int|float|str|bool)\((.*)\)", re.S)


def parse_value(text: str) -> Any:
    """A command-line value as the type it spells (see the module docstring)."""
    raw = text.strip()
    quoted = _unquote(raw)
    if quoted is not None:
        return quoted
    cast = _CAST.fullmatch(raw)
    if cast:
        return _cast(cast[1], parse_value(cast[2]), raw)
    lower = raw.lower()
    if lower == "null":
        return None
    if lower in ("true", "false"):
        return lower == "true"
    if _INT.fullmatch(raw):
        return int(raw.replace("_", ""))
    if _FLOAT.fullmatch(raw):
        return float(raw.replace("_", ""))
    if lower in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[lower]
    if raw.startswith("[") and raw.endswith("]") and "${" not in raw:
        inner = raw[1:-1].strip()
        return [] if not inner else [parse_value(item) for item in _split_top(inner)]
    if raw.startswith("{") and raw.endswith("}") and "${" not in raw:
        inner = raw[1:-1].strip()
        out: dict[str, Any] = {}
        for item in _split_top(inner) if inner else []:
            key, sep, value = item.partition(":")
            if not sep:
                return raw  # not a mapping after all: keep the text
            name = key.strip()
            out[_unquote(name) or name] = parse_value(value)
        return out
    return _ESCAPABLE.sub(r"\1", raw)


def _cast(kind: str, value: Any, raw: str) -> Any:
    try:
        if kind == "str":
            if isinstance(value, str):
                return value
            if isinstance(value, (list, dict)):
                return json.dumps(value)
            return str(value).lower() if isinstance(value, bool) or value is None else str(value)
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() in ("true", "false"):
                    return value.lower() == "true"
                raise ValueError(value)
            return bool(value)
        if kind == "int":
            return int(float(value)) if isinstance(value, str) else int(value)
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{raw}: cannot cast {value!r} to {kind}") from None


def _unbalanced(value: str) -> str | None:
    """The bracket or quote a value leaves open, if any (outside quotes, escapes skipped)."""
    stack: list[str] = []
    quote = ""
    pairs = {"]": "[", "}": "{", ")": "("}
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"" and (i == 0 or value[i - 1] in "[{(,: ="):
            quote = ch
        elif ch in "[{(":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return ch
        i += 1
    return quote or (stack[-1] if stack else None)


def parse_override(text: str) -> Override:
    """One ``key=value``-style override.

    Raises:
        UsageError: ``text`` is not an override (it names the form expected).
    """
    match = _OVERRIDE.fullmatch(text)
    if match is None:
        raise UsageError(
            f"Override {text!r} is not of the form key=value (also +key=value to add a key, "
            "++key=value to set or add, ~key to delete)"
        )
    prefix, key, value = match["prefix"] or "", match["key"], match["value"]
    op = {"": "set", "+": "add", "++": "force", "~": "delete"}[prefix]
    if value is None and op != "delete":
        raise UsageError(f"Override {text!r} has no value; write {key}=VALUE (or ~{key} to delete it)")
    if value is None:
        return Override(text, op, key, has_value=False)
    open_mark = _unbalanced(value)
    if open_mark:
        raise UsageError(f"Override {text!r}: {open_mark!r} is not closed; quote the value to use it as text")
    sweep = len(_split_top(value.strip())) > 1 or bool(_SWEEP_FUNCTIONS.fullmatch(value.strip()))
    return Override(text, op, key, None if sweep else parse_value(value), sweep=sweep)


def set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted ``key`` in a nested dict, making the mappings on the way."""
    *parents, last = key.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _script_args(argv: list[str]) -> tuple[str | None, list[str]]:
    """The script (or module) a command runs and the arguments it gets."""
    if not argv:
        return None, []
    program = os.path.basename(argv[0])
    if not re.fullmatch(r"python[\d.]*|pypy[\d.]*", program):
        return argv[0], argv[1:]
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-m", "-c"):
            return (f"{arg} {argv[i + 1]}" if i + 1 < len(argv) else None), argv[i + 2 :]
        if arg in _PYTHON_VALUED:
            i += 2
            continue
        if arg.startswith("-") and arg != "-":
            i += 1
            continue
        return arg, argv[i + 1 :]
    return None, []


def _is_value(arg: str) -> bool:
    return not arg.startswith("-") or bool(_INT.fullmatch(arg) or _FLOAT.fullmatch(arg))


def parse_command_line(argv: list[str]) -> dict[str, Any]:
    """A best-effort params view of a command's arguments.

    ``key=value`` overrides (Hydra/OmegaConf style) and ``--flag value``,
    ``--flag=value`` and bare ``--flag`` (true) options become nested params;
    other arguments are listed as positional. Nothing here can fail: what
    does not parse is kept as text.

    Returns:
        ``{"parsed_from": "command line", "script": ..., "params": {...},
        "overrides": [...], "positional": [...]}``.
    """
    script, args = _script_args(redact_argv(argv))
    params: dict[str, Any] = {}
    overrides: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if arg.startswith("-") and len(arg) > 1 and not _is_value(arg):
            name, sep, value = arg.lstrip("-").partition("=")
            name = name.replace("-", "_")
            if not name:
                positional.append(arg)
                continue
            if sep:
                set_path(params, name, parse_value(value))
            elif i < len(args) and _is_value(args[i]) and "=" not in args[i]:
                set_path(params, name, parse_value(args[i]))
                i += 1
            else:
                set_path(params, name, True)
            continue
        try:
            override = parse_override(arg) if "=" in arg or arg.startswith("~") else None
        except UsageError:
            override = None
        if override is None:
            positional.append(arg)
            continue
        overrides.append(arg)
        if override.op != "delete":  # a sweep keeps its text: "0.1,0.01", "choice(1,2)"
            value = arg.partition("=")[2] if override.sweep else override.value
            set_path(params, override.key.replace("/", "."), value)
    return {
        "parsed_from": "command line",
        "best_effort": True,
        "script": script,
        "params": params,
        "overrides": overrides,
        "positional": positional,
    }
