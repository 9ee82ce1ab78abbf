"""Fingerprints: a short digest of a model's state, cheap enough to take every step (layer 5).

The digest covers every tensor's name, dtype, shape and bits. The bits are
reduced where they live -- on the GPU for a GPU model, without copying the
parameters to the host -- in a few kernels whatever the number of tensors:
tensors are viewed as integers of their width, concatenated per width (in
the order of their names), laid out in rows of 1,024 and summed down each
column into int64 accumulators that wrap modulo 2**64. A change of one unit
in the last place of one weight changes its column's sum; moving values to
other positions (a transpose, values exchanged between tensors) changes
them too, unless the positions lie a multiple of 1,024 apart in the
concatenation. Only the 1,024 sums per width (8 KiB) and the tensors'
names, dtypes and shapes reach the host, where SHA-256 makes the digest.

The same reduction runs in numpy for arrays and CPU tensors (numpy's
integer sums are faster there, and calls are cheap, so tensors are summed
in place one by one), so the same bits give the same fingerprint in either
library and on any device. It is a check for divergence, not a
cryptographic digest of the weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import sys
from collections.abc import Mapping
from typing import Any

from runstone.errors import UsageError

__all__ = ["FINGERPRINT_PREFIX", "fingerprint", "fingerprint_value", "from_value"]

ALGORITHM = "runstone.fingerprint/1"
#: metric keys holding fingerprint series (``runstone.fingerprint/model``); log() refuses the prefix
FINGERPRINT_PREFIX = "runstone.fingerprint/"
#: hex digits kept: 48 bits, so a fingerprint is stored exactly as a float64 metric value
HEX_DIGITS = 12
#: integers are summed per position modulo COLUMNS (rows of COLUMNS, summed down each column)
COLUMNS = 1024


def fingerprint_value(hex_digest: str) -> float:
    """A fingerprint as the number its series stores (exact: below 2**53)."""
    return float(int(hex_digest, 16))


def from_value(value: float) -> str:
    """The fingerprint a stored series value stands for."""
    if math.isnan(value):
        return "-" * HEX_DIGITS
    return format(int(value), f"0{HEX_DIGITS}x")


def _leaves(obj: Any, name: str, out: list[tuple[str, Any]], seen: set[int]) -> None:
    """The named tensors, arrays and plain values of a model, state dict, estimator, ..."""
    torch = sys.modules.get("torch")
    np = sys.modules.get("numpy")
    if torch is not None:
        if isinstance(obj, torch.nn.Module):
            for key, value in obj.state_dict().items():
                out.append((f"{name}{key}", value))
            return
        if isinstance(obj, torch.Tensor):
            out.append((name, obj))
            return
    if np is not None and isinstance(obj, (np.ndarray, np.generic)):
        out.append((name, np.asarray(obj)))
        return
    if obj is None or isinstance(obj, (bool, numbers.Number, str, bytes)):
        out.append((name, obj))
        return
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _leaves(value, f"{name}{key}.", out, seen)
        return
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            _leaves(value, f"{name}{index}.", out, seen)
        return
    state_dict = getattr(obj, "state_dict", None)
    if callable(state_dict):
        _leaves(state_dict(), name, out, seen)
        return
    if callable(getattr(obj, "get_params", None)) and hasattr(obj, "__dict__"):
        # a scikit-learn estimator: its learned attributes (``coef_``, ``intercept_``, ``n_iter_``)
        learned = {k: v for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("_")}
        if not learned:
            raise UsageError(
                f"{type(obj).__name__} has no learned attributes yet (fit it first), so it has no fingerprint"
            )
        for key in sorted(learned):
            _leaves(learned[key], f"{name}{key}.", out, seen)
        return
    raise UsageError(
        f"Cannot fingerprint a {type(obj).__module__}.{type(obj).__qualname__}: pass a torch.nn.Module, "
        "a state dict, tensors or numpy arrays, or a scikit-learn estimator"
    )


_TORCH_INT = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}


def fingerprint(obj: Any) -> str:
    """The fingerprint of a model's state: 12 hex digits.

    Raises:
        UsageError: ``obj`` holds nothing that can be fingerprinted.
    """
    leaves: list[tuple[str, Any]] = []
    _leaves(obj, "", leaves, set())
    leaves.sort(key=lambda item: item[0])
    meta: list[Any] = []
    # per (device, width): the integer views to reduce together, in name order
    torch_groups: dict[tuple[str, int], list[Any]] = {}
    numpy_groups: dict[int, list[Any]] = {}
    torch = sys.modules.get("torch")
    np = sys.modules.get("numpy")
    for name, value in leaves:
        name = name.rstrip(".")
        if torch is not None and isinstance(value, torch.Tensor):
            tensor = value.detach()
            if tensor.layout != torch.strided:
                raise UsageError(f"{name}: a {tensor.layout} tensor cannot be fingerprinted; pass it dense")
            meta.append([name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape)])
            if tensor.numel() == 0:
                continue
            tensor = tensor.resolve_conj().resolve_neg()
            if tensor.is_complex():
                tensor = torch.view_as_real(tensor)
            width = tensor.element_size()
            flat = tensor.reshape(-1).view(getattr(torch, _TORCH_INT[width]))
            if flat.device.type == "cpu" and np is not None:
                # numpy's integer reductions are several times faster than torch's on the CPU,
                # and a CPU tensor's memory is shared with it, not copied
                numpy_groups.setdefault(width, []).append(flat.numpy())
            else:
                torch_groups.setdefault((str(tensor.device), width), []).append(flat)
        elif np is not None and isinstance(value, np.ndarray):
            meta.append([name, str(value.dtype), list(value.shape)])
            if value.size == 0:
                continue
            if value.dtype.kind in "fc" and value.dtype.itemsize > (8 if value.dtype.kind == "f" else 16):
                # long double: padding bytes hold garbage; its value as float64 / complex128
                value = value.astype(np.float64 if value.dtype.kind == "f" else np.complex128)
            if value.dtype.kind in "biufcmM":
                width = value.dtype.itemsize if value.dtype.kind != "c" else value.dtype.itemsize // 2
                flat = np.ascontiguousarray(value).reshape(-1).view(f"<i{width}")
                numpy_groups.setdefault(width, []).append(flat)
            else:  # strings, objects: their bytes or text go into the digest directly
                data = value.tobytes() if value.dtype.kind in "SUV" else repr(value.tolist()).encode()
                meta.append(hashlib.sha256(data).hexdigest())
        else:
            meta.append([name, type(value).__name__, repr(value)])
    if not meta:
        raise UsageError(f"{type(obj).__name__} holds no tensors, arrays or values to fingerprint")
    columns: dict[int, Any] = {}
    for (_, width), flats in torch_groups.items():
        assert torch is not None and np is not None
        _add(columns, width, _torch_columns(torch, flats).cpu().numpy())  # 8 KiB to the host
    for width, flats in numpy_groups.items():
        assert np is not None
        _add(columns, width, _numpy_columns(np, flats))
    sha = hashlib.sha256(json.dumps([ALGORITHM, COLUMNS, meta], separators=(",", ":"), default=str).encode())
    for width in sorted(columns):
        sha.update(width.to_bytes(1, "little"))
        sha.update(columns[width].astype("<i8").tobytes())
    return sha.hexdigest()[:HEX_DIGITS]


def _torch_columns(torch: Any, flats: list[Any]) -> Any:
    """Column sums of the concatenated integers laid out in rows of COLUMNS: a few kernels."""
    count = sum(f.numel() for f in flats)
    pad = -count % COLUMNS
    if pad:
        flats = [*flats, torch.zeros(pad, dtype=flats[0].dtype, device=flats[0].device)]
    x = flats[0] if len(flats) == 1 else torch.cat(flats)
    return x.view(-1, COLUMNS).sum(dim=0, dtype=torch.int64)


def _numpy_columns(np: Any, flats: list[Any]) -> Any:
    """The same column sums as ``_torch_columns``, tensor by tensor, without copying them."""
    total = np.zeros(COLUMNS, dtype=np.int64)
    offset = 0
    for x in flats:
        n = len(x)
        start = offset % COLUMNS
        head = min(n, -start % COLUMNS)  # up to the end of the current row
        if head:
            total[start : start + head] += x[:head]
        body = (n - head) // COLUMNS * COLUMNS
        if body:
            total += x[head : head + body].reshape(-1, COLUMNS).sum(axis=0, dtype=np.int64)
        tail = n - head - body
        if tail:
            total[:tail] += x[head + body :]
        offset += n
    return total


def _add(columns: dict[int, Any], width: int, values: Any) -> None:
    if width in columns:
        columns[width] = columns[width] + values  # int64 arrays: wraps modulo 2**64
    else:
        columns[width] = values.astype("int64", copy=False)
