"""Canonical JSON, digests and flattening of nested configs.

Standard library only (layer 1). Canonical JSON here means: keys sorted,
no insignificant whitespace, UTF-8, floats in Python's shortest round-trip
form; NaN and infinities are written as ``NaN``/``Infinity`` (as Python's json
module reads them back). Two equal trees always give the same bytes, so the
SHA-256 of those bytes identifies a config.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from runstone.entities import ConfigChange
from runstone.errors import UsageError

__all__ = [
    "canonical_json",
    "check_flat_keys",
    "check_text",
    "diff_trees",
    "digest",
    "flatten",
    "merge",
    "normalize",
    "param_columns",
]


def check_text(text: str, what: str) -> str:
    """``text`` if every store can hold it, else a UsageError naming ``what``.

    Refused: NUL characters (PostgreSQL text cannot hold them) and lone
    surrogates (what Python makes of undecodable bytes in file names), which are
    not UTF-8.
    """
    if "\x00" in text:
        raise UsageError(f"{what} contains a NUL character; remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{what} is not valid UTF-8 text ({text!r:.60}), e.g. a file name with undecodable "
            "bytes; pass text.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')"
        ) from None
    return text


def normalize(value: Any, path: str = "") -> Any:
    """A copy of ``value`` made of plain JSON types, or a clear error.

    Tuples become lists; numpy/torch scalars become Python numbers (through
    their ``item()``); mapping keys must be strings (ints and bools are turned
    into strings, as JSON does).

    Raises:
        UsageError: a value (named by its dotted path) cannot be stored as JSON.
    """
    if isinstance(value, str):
        return check_text(value, f"The value of {path or 'the config'}")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise UsageError(
                    f"Config key {k!r} at {path or 'the top level'} is of type {type(k).__name__}; "
                    "keys must be strings"
                )
            key = check_text(str(k), f"The config key {k!r}")
            out[key] = normalize(v, f"{path}.{key}" if path else key)
        return out
    if isinstance(value, (list, tuple)):
        return [normalize(v, f"{path}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        try:
            return normalize(item(), path)
        except (TypeError, ValueError):
            pass
    raise UsageError(
        f"Value of {path or 'the config'} is of type {type(value).__name__}, which cannot be "
        "stored as JSON; pass a number, string, bool, None, list or dict (for example str(value))"
    )


def canonical_json(value: Any) -> str:
    """The canonical JSON text of an already-normalized value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of a normalized value."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The leaves of a nested mapping as (dotted key, value) pairs.

    Lists are leaves (their JSON is searchable as text); an empty mapping is a
    leaf too, so nothing the user set disappears from the flat view.
    """
    for key, value in tree.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and value:
            yield from flatten(value, full)
        else:
            yield full, value


def diff_trees(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[ConfigChange]:
    """What changed from ``old`` to ``new``, one entry per flattened key, in key order.

    Leaves are compared by their canonical JSON, so types count (``1``,
    ``1.0``, ``True`` and ``"1"`` all differ), NaN equals NaN, and lists compare
    whole. A mapping replaced by a value shows as its leaves removed and the
    value added.
    """
    before = dict(flatten(old))
    after = dict(flatten(new))
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            changes.append(ConfigChange(key, "removed", old=before[key]))
        elif key not in before:
            changes.append(ConfigChange(key, "added", new=after[key]))
        elif canonical_json(before[key]) != canonical_json(after[key]):
            changes.append(ConfigChange(key, "changed", old=before[key], new=after[key]))
    return changes


def check_flat_keys(tree: Mapping[str, Any]) -> None:
    """Refuse a tree where two leaves flatten to the same dotted key.

    Raises:
        UsageError: ``{"a.b": 1, "a": {"b": 2}}``: both are param ``a.b``.
    """
    seen: set[str] = set()
    for key, _ in flatten(tree):
        if key in seen:
            raise UsageError(
                f"Two config entries are both param {key!r} (a key with a dot in it, and the same "
                "path through nested mappings); rename one of them"
            )
        seen.add(key)


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in recursively (update's leaves win)."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def param_columns(value: Any) -> tuple[str, float | None, str]:
    """How a param leaf is stored for search: (json text, number or None, text).

    Numbers (not bools) get a numeric column so ``params.lr < 0.1`` compares
    numerically; strings compare by their own text; everything else by its JSON.
    """
    text_json = canonical_json(value)
    if isinstance(value, bool) or value is None:
        return text_json, None, text_json
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range: searchable as text only
            return text_json, None, text_json
        return text_json, (None if math.isnan(number) else number), text_json
    if isinstance(value, str):
        return text_json, None, value
    return text_json, None, text_json
