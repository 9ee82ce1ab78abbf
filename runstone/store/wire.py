"""The wire schema shared by the remote store (client) and the server: Store calls as JSON.

Layer 4, beside the stores; the client never imports the server, and both
import this. A ``Store`` method call travels as ``{"args": [...], "kwargs":
{...}}`` and its result (or error) comes back as JSON. Values are encoded by
``encode`` into plain JSON with tagged objects:

- the entities a store takes and returns (``RunSpec``, ``Batch``, ``Run``,
  ``Artifact``, the filter language's expression nodes, ...) as
  ``{"$type": NAME, ...fields}``; only the types in ``_TYPES`` decode, so a
  request can never build anything else;
- ``tuple``, ``bytes``, ``array.array`` and numpy arrays as ``$tuple``,
  ``$bytes`` (base64), ``$array`` and ``$ndarray`` (base64 of the little-endian
  buffer), so metric values cross bit for bit (NaN payloads, -0.0);
- NaN and infinities in plain floats as JSON's ``NaN``/``Infinity`` tokens
  (Python's JSON reads them; both ends are runstone).

Errors travel as ``{"error": {"type": CLASS, "message": TEXT}}`` and are
raised again on the client as the same ``RunstoneError`` class.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import enum
import inspect
import json
import sys
import types
import typing
from array import array
from typing import Any

from runstone import entities, errors
from runstone.store import base, query

__all__ = ["STORE_METHODS", "check_call", "decode", "dumps", "encode", "error_body", "loads", "raise_error"]

#: the Store methods a server answers (the abstract interface; helpers are built on them client-side)
STORE_METHODS = frozenset(
    name
    for name, value in vars(base.Store).items()
    if getattr(value, "__isabstractmethod__", False) and name != "close"
)

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        entities.RunSpec,
        entities.Run,
        entities.MetricSummary,
        entities.MetricSeries,
        entities.OutputChunk,
        entities.Batch,
        entities.MetricHistory,
        entities.ArtifactSpec,
        entities.Artifact,
        entities.ArtifactUse,
        base.RunQuery,
        base.LiveRun,
        query.Field,
        query.OrderKey,
        query.Compare,
        query.In,
        query.IsNull,
        query.And,
        query.Or,
        query.Not,
    )
}
_ENUMS: dict[str, type[enum.Enum]] = {"RunStatus": entities.RunStatus}
_ARRAY_CODES = frozenset("bBhHiIlLqQfd")
_NUMPY_DTYPES = frozenset({"<i8", "<f8", "<i4", "<f4", "|u1", "|b1"})


def encode(value: Any) -> Any:
    """``value`` as plain JSON data (see the module docstring)."""
    if isinstance(value, enum.Enum):  # first: RunStatus is a str too
        return {"$enum": type(value).__name__, "value": value.value}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _TYPES.get(name) is not type(value):
            raise TypeError(f"{name} is not part of the wire schema")
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$type": name, **fields}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {("$" + k if k.startswith("$") else k): encode(v) for k, v in value.items()}
        raise TypeError("only string-keyed mappings cross the wire")
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, array):
        data = value.tobytes() if sys.byteorder == "little" else _swapped(value)
        return {"$array": value.typecode, "data": base64.b64encode(data).decode("ascii")}
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
        if getattr(value, "ndim", 0) == 0:
            return encode(value.item())
        little = value.astype(value.dtype.newbyteorder("<"), copy=False)
        dtype = little.dtype.str
        return {"$ndarray": dtype, "data": base64.b64encode(little.tobytes()).decode("ascii")}
    if hasattr(value, "items"):  # other mappings (MappingProxyType, ...)
        return encode(dict(value.items()))
    raise TypeError(f"{type(value).__name__} cannot cross the wire")


def _swapped(value: array) -> bytes:  # type: ignore[type-arg]
    copy = array(value.typecode, value)
    copy.byteswap()
    return copy.tobytes()


def decode(data: Any) -> Any:
    """The value ``encode`` made ``data`` from.

    Raises:
        UsageError: ``data`` is malformed or names a type outside the schema.
    """
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    try:
        if "$type" in data:
            cls = _TYPES.get(data["$type"])
            if cls is None:
                raise errors.UsageError(f"{data['$type']!r} is not part of the wire schema")
            names = {f.name for f in dataclasses.fields(cls)}
            fields = {k: decode(v) for k, v in data.items() if k != "$type"}
            if not set(fields) <= names:
                raise errors.UsageError(f"{cls.__name__} has no field {sorted(set(fields) - names)[0]!r}")
            return cls(**fields)
        if "$enum" in data:
            return _ENUMS[data["$enum"]](data["value"])
        if "$tuple" in data:
            return tuple(decode(v) for v in data["$tuple"])
        if "$bytes" in data:
            return base64.b64decode(data["$bytes"], validate=True)
        if "$array" in data:
            code = data["$array"]
            if code not in _ARRAY_CODES:
                raise errors.UsageError(f"array type code {code!r} is not part of the wire schema")
            out = array(code)
            out.frombytes(base64.b64decode(data["data"], validate=True))
            if sys.byteorder != "little":
                out.byteswap()
            return out
        if "$ndarray" in data:
            import numpy as np

            if data["$ndarray"] not in _NUMPY_DTYPES:
                raise errors.UsageError(f"array type {data['$ndarray']!r} is not part of the wire schema")
            raw = np.frombuffer(base64.b64decode(data["data"], validate=True), dtype=data["$ndarray"])
            return raw.astype(raw.dtype.newbyteorder("="))
    except errors.RunstoneError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise errors.UsageError(f"Malformed value on the wire: {type(e).__name__}: {e}") from None
    return {(k[1:] if k.startswith("$$") else k): decode(v) for k, v in data.items()}


class _Array:
    """``array[int]`` / ``array[float]`` in the entities' annotations, for checking."""

    item: Any = None

    def __class_getitem__(cls, item: Any) -> Any:
        return type(f"array_{getattr(item, '__name__', item)}", (_Array,), {"item": item})


_NAMESPACE = {
    **vars(entities),
    **vars(query),
    **vars(base),
    "array": _Array,
    "Any": Any,
    # the filter language's aliases are strings at run time: the types they name
    "Expr": typing.Union[query.Compare, query.In, query.IsNull, query.And, query.Or, query.Not],  # noqa: UP007
    "Value": typing.Union[str, int, float, bool, None],  # noqa: UP007
}
_HINTS: dict[Any, dict[str, Any]] = {}


def _hints(obj: Any) -> dict[str, Any]:
    if obj not in _HINTS:
        _HINTS[obj] = typing.get_type_hints(obj, _NAMESPACE)
    return _HINTS[obj]


def _mismatch(value: Any, hint: Any, where: str) -> str | None:
    """Where ``value`` departs from the type ``hint`` says, deeply (containers and the schema's
    dataclasses), as ``path: expected ..., got ...``; None when it conforms."""

    def wrong(expected: Any) -> str:
        options = (
            typing.get_args(expected)
            if typing.get_origin(expected) in (typing.Union, types.UnionType)
            else ()
        )
        if options:
            shown = " | ".join("None" if a is type(None) else getattr(a, "__name__", str(a)) for a in options)
        else:
            shown = getattr(expected, "__name__", None) or str(expected).replace("runstone.", "")
        return f"{where}: expected {shown}, got {type(value).__name__}"

    if hint is Any:
        return None
    if hint is None or hint is type(None):
        return None if value is None else wrong(None)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        found = [_mismatch(value, a, where) for a in args]
        if any(f is None for f in found):
            return None
        closest = [
            f for a, f in zip(args, found, strict=True) if isinstance(a, type) and isinstance(value, a)
        ]
        return closest[0] if closest else wrong(hint)
    if origin is typing.Literal:
        return (
            None if value in args else f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}"
        )
    if origin is tuple:
        if not isinstance(value, tuple):
            return wrong(tuple)
        if len(args) == 2 and args[1] is Ellipsis:
            items = [(v, args[0]) for v in value]
        elif len(args) == len(value):
            items = list(zip(value, args, strict=True))
        else:
            return f"{where}: expected {len(args)} items, got {len(value)}"
        return next((m for i, (v, a) in enumerate(items) if (m := _mismatch(v, a, f"{where}[{i}]"))), None)
    if origin is list:
        if not isinstance(value, list):
            return wrong(list)
        return next((m for i, v in enumerate(value) if (m := _mismatch(v, args[0], f"{where}[{i}]"))), None)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, collections.abc.Mapping):
            return wrong(dict)
        for k, v in value.items():
            found_item = _mismatch(k, args[0], f"{where} key") or _mismatch(v, args[1], f"{where}[{k!r}]")
            if found_item:
                return found_item
        return None
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else wrong(float)
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else wrong(int)
    if isinstance(hint, type) and issubclass(hint, _Array):
        codes = "bhilq" if hint.item is int else "fd"
        ok = isinstance(value, array) and value.typecode.lower() in codes
        return None if ok else f"{where}: expected an array of {hint.item.__name__}"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, hint):
            return wrong(hint)
        for name, field_hint in _hints(hint).items():
            found_field = _mismatch(getattr(value, name), field_hint, f"{where}.{name}")
            if found_field:
                return found_field
        return None
    if isinstance(hint, type):
        return None if isinstance(value, hint) else wrong(hint)
    return None  # a hint this check does not model: the store's own checks apply


def check_call(method: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a ``Store`` call by name, each checked against the method's signature.

    Raises:
        UsageError: missing, extra or mistyped arguments (naming the parameter and its type).
    """
    function = getattr(base.Store, method)
    try:
        bound = inspect.signature(function).bind(None, *args, **kwargs)
    except TypeError as e:
        raise errors.UsageError(f"Bad arguments for {method}: {e}") from None
    named = {k: v for k, v in bound.arguments.items() if k != "self"}
    hints = _hints(function)
    for name, value in named.items():
        found = _mismatch(value, hints[name], name) if name in hints else None
        if found:
            raise errors.UsageError(f"Bad arguments for {method}: {found}")
        if isinstance(value, base.RunQuery):
            _check_query(method, value)
    return named


def _check_query(method: str, q: base.RunQuery) -> None:
    """Only a query the filter language can say passes: its text must parse back to it.

    Well-typed is not enough: an operator or an attribute name outside the
    language would otherwise reach the SQL text.
    """
    try:
        if q.filter is not None and query.parse_filter(query.format_filter(q.filter)) != q.filter:
            raise ValueError("the filter does not parse back to itself")
        if q.order_by and query.parse_order(",".join(k.to_text() for k in q.order_by)) != q.order_by:
            raise ValueError("the sort does not parse back to itself")
    except (errors.RunstoneError, ValueError, KeyError, TypeError, AttributeError, AssertionError) as e:
        raise errors.UsageError(
            f"Bad arguments for {method}: not a query of the filter language ({e})"
        ) from None
    if (q.limit is not None and q.limit < 0) or q.offset < 0:
        raise errors.UsageError(f"Bad arguments for {method}: limit and offset must be 0 or more")


def dumps(value: Any) -> bytes:
    """``value`` encoded, as JSON bytes."""
    return json.dumps(encode(value), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads(data: bytes) -> Any:
    """The value in JSON bytes made by ``dumps``.

    Raises:
        UsageError: not JSON, or not a value of the wire schema.
    """
    try:
        return decode(json.loads(data))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise errors.UsageError(f"The request is not valid JSON: {e}") from None


def error_body(exc: errors.RunstoneError) -> bytes:
    """The JSON body that carries an error to the client."""
    return dumps({"error": {"type": type(exc).__name__, "message": str(exc)}})


def raise_error(body: Any, status: int) -> None:
    """Raise the error a server answered with (``body`` decoded), as its own class where runstone has it."""
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        message = str(detail.get("message", ""))
        cls = getattr(errors, str(detail.get("type", "")), None)
    else:
        message, cls = (str(detail) if detail else f"HTTP {status}"), None
    if not (isinstance(cls, type) and issubclass(cls, errors.RunstoneError)):
        cls = errors.StoreError
    for kind in cls.__mro__:  # the class itself, or the nearest one built from a message alone
        try:
            exc = kind(message)
        except TypeError:
            continue
        if isinstance(exc, errors.RunstoneError):
            raise exc
    raise errors.StoreError(message)
