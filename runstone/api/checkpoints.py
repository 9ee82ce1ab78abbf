"""Checkpoints: the whole training state at a step, random-number states included (layer 5).

A checkpoint is one artifact of kind ``checkpoint``, a folder:

``checkpoint.json``
    the format, step and epoch, and the state as a JSON skeleton: plain
    values inline (floats keep their bits: NaN and infinities are tagged,
    dict keys keep their types), every tensor and array by reference.
``tensors.safetensors``
    PyTorch tensors, in safetensors (``tensors.pt`` loaded with
    ``weights_only=True`` when safetensors is not installed). Neither format
    can run code when read.
``arrays.npz``
    numpy arrays (object arrays refused), read with ``allow_pickle=False``.
``pickled.pkl``
    only with ``allow_pickle=True``: values no safe format holds. Reading it
    runs code from the checkpoint, so loading it needs ``allow_pickle=True`` too.

Saving takes a synchronous snapshot (tensors and arrays copied, generator
states read) and then writes, stores and records it -- in a background
thread when asked, so training goes on while the bytes are written. The
artifact is recorded only after all its objects are stored: a process killed
while saving leaves the previous checkpoint whole. numpy, PyTorch and
safetensors are imported only when a checkpoint holds what needs them.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import pickle
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runstone.entities import Artifact
from runstone.errors import NotFoundError, StoreError, UsageError
from runstone.store.base import Store

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointWriter",
    "apply_retention",
    "checkpoint_name",
    "list_checkpoints",
    "read_checkpoint",
    "restore_into",
    "snapshot",
]

log = logging.getLogger("runstone")

FORMAT = "runstone.checkpoint/1"
STATE_FILE = "checkpoint.json"
TENSORS_FILE = "tensors.safetensors"
TENSORS_PT_FILE = "tensors.pt"
ARRAYS_FILE = "arrays.npz"
PICKLE_FILE = "pickled.pkl"
#: the parts ``save_checkpoint`` takes by keyword, in the order they are restored
PARTS = ("model", "optimizer", "scheduler", "scaler")
#: the global generators a checkpoint captures
RNG_NAMES = ("python", "numpy", "torch", "cuda")


@dataclass(frozen=True)
class Checkpoint:
    """A stored checkpoint: an artifact version of kind ``checkpoint``, at a step."""

    artifact: Artifact
    step: int
    epoch: int | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    parts: tuple[str, ...] = ()
    rng: tuple[str, ...] = ()
    pickled: bool = False

    @property
    def ref(self) -> str:
        return self.artifact.ref

    @property
    def digest(self) -> str:
        return self.artifact.digest

    @property
    def size_bytes(self) -> int:
        return self.artifact.size_bytes

    @property
    def created_ms(self) -> int:
        return self.artifact.created_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "step": self.step,
            "epoch": self.epoch,
            "digest": self.digest,
            "size_bytes": self.size_bytes,
            "created_ms": self.created_ms,
            "metrics": dict(self.metrics),
            "parts": list(self.parts),
            "rng": list(self.rng),
            "pickled": self.pickled,
        }

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> Checkpoint | None:
        meta = artifact.metadata
        if artifact.kind != "checkpoint" or meta.get("format") != FORMAT:
            return None
        return cls(
            artifact=artifact,
            step=int(meta["step"]),
            epoch=None if meta.get("epoch") is None else int(meta["epoch"]),
            metrics={k: _metric_value(v) for k, v in dict(meta.get("metrics") or {}).items()},
            parts=tuple(meta.get("parts") or ()),
            rng=tuple(meta.get("rng") or ()),
            pickled=bool(meta.get("pickled")),
        )


def _metric_value(value: Any) -> float:
    return math.nan if value is None else float(value)


def checkpoint_name(run_id: str) -> str:
    """The artifact name a run's checkpoints are versions of."""
    return f"checkpoint-{run_id}"


# --- the snapshot: state -> JSON skeleton + tensors + arrays ----------------------------------


def _torch() -> Any:
    return sys.modules.get("torch")


def _numpy() -> Any:
    return sys.modules.get("numpy")


@dataclass
class Snapshot:
    """A checkpoint's content, copied out of the live objects (safe to write from another thread)."""

    step: int
    epoch: int | None
    skeleton: Any
    tensors: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)
    pickles: dict[str, bytes] = field(default_factory=dict)
    parts: tuple[str, ...] = ()
    rng: tuple[str, ...] = ()
    #: the metric values logged at the step, read when the snapshot was taken
    metrics: dict[str, float] = field(default_factory=dict)


class _Encoder:
    def __init__(self, snap: Snapshot, allow_pickle: bool) -> None:
        self.snap = snap
        self.allow_pickle = allow_pickle

    def _key(self, prefix: str, table: Mapping[str, Any]) -> str:
        return f"{prefix}{len(table)}"

    def encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        np = _numpy()
        if np is not None and isinstance(value, np.generic) and not isinstance(value, np.object_):
            key = self._key("a", self.snap.arrays)
            self.snap.arrays[key] = np.asarray(value).copy()
            return {"$scalar": key}
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else {"$float": repr(float(value))}
        if isinstance(value, list):
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return {"$tuple": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict):
            pairs = value.items()
            return {"$dict": [[self.encode(k, path), self.encode(v, f"{path}.{k}")] for k, v in pairs]}
        if isinstance(value, (bytes, bytearray)):
            return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, random.Random) and type(value) is random.Random:
            return {"$python_random": self.encode(value.getstate(), path)}
        torch = _torch()
        if torch is not None:
            if isinstance(value, torch.Tensor):
                return self._tensor(value, path)
            if isinstance(value, torch.Generator):
                key = self._key("g", self.snap.tensors)
                self.snap.tensors[key] = value.get_state().clone()
                return {"$torch_generator": key, "device": str(value.device)}
        if np is not None:
            if isinstance(value, np.ndarray):
                if value.dtype.hasobject:
                    return self._pickle(value, path)
                key = self._key("a", self.snap.arrays)
                self.snap.arrays[key] = np.array(value, copy=True)
                return {"$array": key}
            if isinstance(value, np.random.Generator):
                return {"$numpy_generator": self.encode(value.bit_generator.state, path)}
            if isinstance(value, np.random.RandomState):
                return {"$numpy_random_state": self.encode(value.get_state(legacy=False), path)}
        return self._pickle(value, path)

    def _tensor(self, tensor: Any, path: str) -> Any:
        if tensor.is_sparse or tensor.layout != _torch().strided:
            raise UsageError(f"{path}: a {tensor.layout} tensor cannot be checkpointed; store it dense")
        key = self._key("t", self.snap.tensors)
        # a copy on the CPU, contiguous and sharing no memory: training may change the original now
        copy = tensor.detach().to("cpu", copy=True).contiguous()
        self.snap.tensors[key] = copy
        node: dict[str, Any] = {"$tensor": key}
        if tensor.device.type != "cpu":
            node["device"] = str(tensor.device)
        if tensor.requires_grad:
            node["requires_grad"] = True
        return node

    def _pickle(self, value: Any, path: str) -> Any:
        if not self.allow_pickle:
            raise UsageError(
                f"{path}: a {type(value).__module__}.{type(value).__qualname__} has no safe stored form "
                "(tensors, arrays, generators, numbers, strings, lists and dicts do). Pass "
                "allow_pickle=True to pickle it -- loading it then runs code from the checkpoint, so only "
                "load checkpoints you trust -- or store its state as arrays"
            )
        key = self._key("p", self.snap.pickles)
        try:
            self.snap.pickles[key] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise UsageError(f"{path}: cannot be pickled: {type(e).__name__}: {e}") from None
        return {"$pickle": key}


def state_of(obj: Any, part: str) -> Any:
    """What is kept of a model, optimizer, ...: ``state_dict()``, an estimator's attributes, or itself."""
    state_dict = getattr(obj, "state_dict", None)
    if callable(state_dict):
        return state_dict()
    if _is_estimator(obj):
        return dict(vars(obj))
    if isinstance(obj, Mapping):
        return obj
    raise UsageError(
        f"{part}: a {type(obj).__name__} has no state_dict(); pass an object with state_dict() "
        "(PyTorch), a scikit-learn estimator, or a dict of arrays"
    )


def _is_estimator(obj: Any) -> bool:
    has_params = callable(getattr(obj, "get_params", None))
    return has_params and hasattr(obj, "__dict__") and not isinstance(obj, type)


def rng_states() -> dict[str, Any]:
    """The states of the global generators in use: Python's, numpy's, PyTorch's CPU and CUDA ones.

    CUDA generators are read only when CUDA is already initialized (reading
    them would start it); before that they hold only their seed.
    """
    states: dict[str, Any] = {"python": random.getstate()}
    np = _numpy()
    if np is not None:
        states["numpy"] = np.random.get_state(legacy=False)
    torch = _torch()
    if torch is not None:
        states["torch"] = torch.get_rng_state()
        if torch.cuda.is_initialized():
            states["cuda"] = [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())]
    return states


def snapshot(
    step: int,
    *,
    epoch: int | None,
    parts: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
    allow_pickle: bool,
) -> Snapshot:
    """Copy the training state now (the part of saving that must happen before training goes on)."""
    snap = Snapshot(step=step, epoch=epoch, skeleton=None)
    encoder = _Encoder(snap, allow_pickle)
    state: dict[str, Any] = {}
    for name in PARTS:
        obj = parts.get(name)
        if obj is not None:
            state[name] = encoder.encode(state_of(obj, name), name)
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise UsageError(f"extra must be a dict of name -> value, got {type(extra).__name__}")
        state["extra"] = encoder.encode(dict(extra), "extra")
    rng = rng_states()
    state["rng"] = encoder.encode(rng, "rng")
    snap.skeleton = state
    snap.parts = tuple(k for k in (*PARTS, "extra") if k in state)
    snap.rng = tuple(rng)
    return snap


def write_snapshot(snap: Snapshot, folder: Path) -> None:
    """Write a snapshot's files into ``folder`` (which exists and is empty)."""
    if snap.tensors:
        try:
            from safetensors.torch import save_file
        except ImportError:
            import torch

            torch.save(snap.tensors, folder / TENSORS_PT_FILE)
        else:
            save_file(snap.tensors, str(folder / TENSORS_FILE), metadata={"format": FORMAT})
    if snap.arrays:
        import numpy as np

        with open(folder / ARRAYS_FILE, "wb") as f:
            np.savez(f, **snap.arrays)
    if snap.pickles:
        with open(folder / PICKLE_FILE, "wb") as f:
            pickle.dump(snap.pickles, f, protocol=pickle.HIGHEST_PROTOCOL)
    document = {"format": FORMAT, "step": snap.step, "epoch": snap.epoch, "state": snap.skeleton}
    (folder / STATE_FILE).write_text(json.dumps(document, separators=(",", ":"), allow_nan=False))


# --- reading back ----------------------------------------------------------------------------


@dataclass
class Loaded:
    """A checkpoint read back: its step and epoch, and its state with every reference resolved."""

    step: int
    epoch: int | None
    state: dict[str, Any]


class _Decoder:
    def __init__(self, folder: Path, *, allow_pickle: bool, map_location: Any) -> None:
        self.folder = folder
        self.allow_pickle = allow_pickle
        self.map_location = map_location
        self._tensors: dict[str, Any] | None = None
        self._arrays: dict[str, Any] | None = None
        self._pickles: dict[str, bytes] | None = None

    def tensors(self) -> dict[str, Any]:
        if self._tensors is None:
            if (self.folder / TENSORS_FILE).exists():
                try:
                    from safetensors.torch import load_file
                except ImportError:
                    raise _missing("safetensors", "its tensors are in safetensors") from None
                self._tensors = load_file(str(self.folder / TENSORS_FILE))
            elif (self.folder / TENSORS_PT_FILE).exists():
                import torch

                self._tensors = torch.load(self.folder / TENSORS_PT_FILE, weights_only=True)
            else:
                raise StoreError(f"The checkpoint in {self.folder} names tensors but holds no tensor file")
        return self._tensors

    def arrays(self) -> dict[str, Any]:
        if self._arrays is None:
            import numpy as np

            with np.load(self.folder / ARRAYS_FILE, allow_pickle=False) as found:
                self._arrays = {k: found[k] for k in found.files}
        return self._arrays

    def pickles(self) -> dict[str, bytes]:
        if self._pickles is None:
            if not self.allow_pickle:
                raise UsageError(
                    "This checkpoint holds pickled values (it was saved with allow_pickle=True); "
                    "reading them runs code from the checkpoint. Pass allow_pickle=True to "
                    "load_checkpoint if you trust where it came from"
                )
            with open(self.folder / PICKLE_FILE, "rb") as f:
                self._pickles = pickle.load(f)
        return self._pickles

    def _device(self, node: Mapping[str, Any]) -> Any:
        if self.map_location is not None:
            if not isinstance(self.map_location, str) and type(self.map_location).__name__ != "device":
                given = type(self.map_location).__name__
                raise UsageError(f"map_location takes a device such as 'cpu' or 'cuda:0', got a {given}")
            return self.map_location
        device = node.get("device")
        if device is None:
            return None
        torch = _torch()
        if device.startswith("cuda") and not (torch is not None and torch.cuda.is_available()):
            return None
        return device

    def decode(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "$dict" in node:
            return {self.decode(k): self.decode(v) for k, v in node["$dict"]}
        if "$tuple" in node:
            return tuple(self.decode(v) for v in node["$tuple"])
        if "$float" in node:
            return float(node["$float"])
        if "$bytes" in node:
            return base64.b64decode(node["$bytes"])
        if "$tensor" in node:
            tensor = self.tensors()[node["$tensor"]]
            device = self._device(node)
            if device is not None:
                tensor = tensor.to(device)
            if node.get("requires_grad"):
                tensor.requires_grad_(True)
            return tensor
        if "$array" in node:
            return self.arrays()[node["$array"]]
        if "$scalar" in node:
            return self.arrays()[node["$scalar"]][()]
        if "$torch_generator" in node:
            import torch

            device = self._device(node) or "cpu"
            generator = torch.Generator(device=device)
            generator.set_state(self.tensors()[node["$torch_generator"]])
            return generator
        if "$numpy_generator" in node:
            import numpy as np

            state = self.decode(node["$numpy_generator"])
            bit_generator = getattr(np.random, state["bit_generator"])()
            bit_generator.state = state
            return np.random.Generator(bit_generator)
        if "$numpy_random_state" in node:
            import numpy as np

            legacy = np.random.RandomState()
            legacy.set_state(self.decode(node["$numpy_random_state"]))
            return legacy
        if "$python_random" in node:
            python_random = random.Random()
            python_random.setstate(self.decode(node["$python_random"]))
            return python_random
        if "$pickle" in node:
            return pickle.loads(self.pickles()[node["$pickle"]])
        raise StoreError(
            f"Unknown entry in a checkpoint: {sorted(node)[:3]}; was it written by a newer runstone?"
        )


def _missing(package: str, why: str) -> Exception:
    from runstone.errors import MissingDependencyError

    return MissingDependencyError(f"Loading this checkpoint ({why})", package=package, extra="torch")


def read_checkpoint(folder: Path, *, allow_pickle: bool = False, map_location: Any = None) -> Loaded:
    """Read a checkpoint folder (materialized from its artifact)."""
    try:
        document = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        raise StoreError(f"{folder} is not a runstone checkpoint: it has no {STATE_FILE}") from None
    if document.get("format") != FORMAT:
        raise StoreError(
            f"{folder} holds checkpoint format {document.get('format')!r}; this runstone reads {FORMAT}"
        )
    decoder = _Decoder(folder, allow_pickle=allow_pickle, map_location=map_location)
    state = {part: decoder.decode(node) for part, node in document["state"].items()}
    return Loaded(step=int(document["step"]), epoch=document.get("epoch"), state=state)


def _restore_rng(states: Mapping[str, Any], which: frozenset[str]) -> list[str]:
    restored = []
    if "python" in which and "python" in states:
        random.setstate(states["python"])
        restored.append("python")
    np = _numpy()
    if "numpy" in which and "numpy" in states:
        if np is None:
            import numpy as np
        np.random.set_state(states["numpy"])
        restored.append("numpy")
    torch = _torch()
    if "torch" in which and "torch" in states:
        if torch is None:
            import torch
        torch.set_rng_state(states["torch"].cpu())
        restored.append("torch")
    if "cuda" in which and "cuda" in states:
        if torch is None or not torch.cuda.is_available():
            log.warning("runstone: the checkpoint holds CUDA generator states but CUDA is not available here")
        else:
            for index, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(state.cpu(), index)
            restored.append("cuda")
    return restored


def _load_into(obj: Any, state: Any, part: str) -> None:
    load_state_dict = getattr(obj, "load_state_dict", None)
    if callable(load_state_dict):
        load_state_dict(state)
        return
    if _is_estimator(obj):
        vars(obj).clear()
        vars(obj).update(state)
        return
    if isinstance(obj, MutableMapping):
        _update_mapping(obj, state)
        return
    raise UsageError(f"{part}: a {type(obj).__name__} cannot be restored into (it has no load_state_dict())")


def _update_mapping(target: MutableMapping[Any, Any], stored: Mapping[Any, Any]) -> None:
    """Put stored values into ``target``: arrays copied into same-shaped arrays, generators set in place."""
    np = _numpy()
    for key, value in stored.items():
        current = target.get(key)
        if np is not None and isinstance(current, np.ndarray) and isinstance(value, np.ndarray):
            if current.shape == value.shape and current.dtype == value.dtype and current.flags.writeable:
                np.copyto(current, value)
                continue
        elif _set_generator(current, value):
            continue
        target[key] = value


def _set_generator(current: Any, value: Any) -> bool:
    """Give an existing generator the stored one's state (a DataLoader keeps its reference); True if done."""
    torch = _torch()
    if torch is not None and isinstance(current, torch.Generator) and isinstance(value, torch.Generator):
        current.set_state(value.get_state())
        return True
    np = _numpy()
    if np is not None:
        if isinstance(current, np.random.Generator) and isinstance(value, np.random.Generator):
            current.bit_generator.state = value.bit_generator.state
            return True
        if isinstance(current, np.random.RandomState) and isinstance(value, np.random.RandomState):
            current.set_state(value.get_state())
            return True
    if type(current) is random.Random and type(value) is random.Random:
        current.setstate(value.getstate())
        return True
    return False


def restore_into(
    loaded: Loaded,
    *,
    parts: Mapping[str, Any],
    extra: MutableMapping[str, Any] | None,
    rng: bool | frozenset[str],
) -> list[str]:
    """Load a read checkpoint into the given objects; returns the global generators restored."""
    state = loaded.state
    # everything checked before anything is changed: a refused load leaves the objects as they were
    for name in PARTS:
        if parts.get(name) is not None and name not in state:
            stored = ", ".join(k for k in (*PARTS, "extra") if k in state) or "nothing"
            raise UsageError(f"The checkpoint of step {loaded.step} holds no {name} (it holds {stored})")
    if extra is not None and not isinstance(extra, MutableMapping):
        raise UsageError(f"extra must be a dict to fill in, got {type(extra).__name__}")
    which = frozenset(RNG_NAMES) if rng is True else frozenset() if rng is False else rng
    unknown = which - set(RNG_NAMES)
    if unknown:
        raise UsageError(f"rng names {sorted(unknown)}; the generators are {', '.join(RNG_NAMES)}")
    for name in PARTS:
        obj = parts.get(name)
        if obj is not None:
            _load_into(obj, state[name], name)
    if extra is not None:
        _update_mapping(extra, state.get("extra", {}))
    return _restore_rng(state.get("rng", {}), which)


# --- listing and retention ---------------------------------------------------------------------


def list_checkpoints(store: Store, run_id: str) -> list[Checkpoint]:
    """A run's checkpoints, oldest first (in the order they were saved: by version)."""
    found = []
    for use in store.run_artifacts(run_id):
        if use.direction != "output" or use.artifact.run_id != run_id:
            continue
        checkpoint = Checkpoint.from_artifact(use.artifact)
        if checkpoint is not None:
            found.append(checkpoint)
    found.sort(key=lambda c: c.artifact.version)
    return found


def check_keep_best(keep_best: Any) -> tuple[str, str, int] | None:
    if keep_best is None:
        return None
    try:
        key, mode, count = keep_best
    except (TypeError, ValueError):
        raise UsageError(
            f"keep_best must be (metric, 'min' or 'max', count), e.g. ('val_loss', 'min', 2); "
            f"got {keep_best!r}"
        ) from None
    if not isinstance(key, str) or mode not in ("min", "max") or not isinstance(count, int) or count < 1:
        raise UsageError(
            f"keep_best must be (metric, 'min' or 'max', count >= 1), e.g. ('val_loss', 'min', 2); "
            f"got {keep_best!r}"
        )
    return key, mode, count


def check_keep_last(keep_last: Any) -> int | None:
    if keep_last is None:
        return None
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise UsageError(f"keep_last must be a positive integer, got {keep_last!r}")
    return keep_last


def apply_retention(
    store: Store,
    run_id: str,
    *,
    keep_last: int | None,
    keep_best: tuple[str, str, int] | None,
) -> list[Checkpoint]:
    """Forget the run's checkpoints that neither rule keeps; returns those removed.

    The newest checkpoint is always kept (a resume starts from it), and so is
    one another run recorded as its input. The objects stay until ``gc``.
    """
    if keep_last is None and keep_best is None:
        return []
    found = list_checkpoints(store, run_id)
    if not found:
        return []
    keep = {found[-1].ref}
    if keep_last is not None:
        keep.update(c.ref for c in found[-keep_last:])
    if keep_best is not None:
        key, mode, count = keep_best
        scored = [c for c in found if key in c.metrics and not math.isnan(c.metrics[key])]
        scored.sort(key=lambda c: (c.metrics[key] if mode == "min" else -c.metrics[key], -c.artifact.version))
        keep.update(c.ref for c in scored[:count])
    removed = []
    for checkpoint in found:
        if checkpoint.ref not in keep and store.delete_artifact(checkpoint.artifact, run_id):
            removed.append(checkpoint)
    return removed


# --- the writer ----------------------------------------------------------------------------------


class CheckpointWriter:
    """Writes one run's checkpoints, one at a time, synchronously or in a background thread.

    ``store_folder(folder, name, metadata)`` stores a written folder as the
    run's artifact.
    """

    def __init__(
        self,
        *,
        run_id: str,
        store: Store,
        scratch: Callable[[], Path],
        store_folder: Callable[[Path, str, dict[str, Any]], Artifact],
    ) -> None:
        self._run_id = run_id
        self._store = store
        self._scratch = scratch
        self._store_folder = store_folder
        self._pending: Future[Checkpoint] | None = None
        self._lock = threading.Lock()

    def save(
        self,
        snap: Snapshot,
        *,
        keep_last: int | None,
        keep_best: tuple[str, str, int] | None,
        asynchronous: bool,
    ) -> Future[Checkpoint]:
        try:
            self.wait()  # one at a time: bounded memory
        except Exception as e:  # reported; this save still goes ahead
            log.error("runstone: run %s: the previous checkpoint could not be stored: %s", self._run_id, e)
        future: Future[Checkpoint] = Future()
        future.set_running_or_notify_cancel()

        def work() -> None:
            try:
                future.set_result(self._write(snap, keep_last=keep_last, keep_best=keep_best))
            except BaseException as e:
                future.set_exception(e)

        if not asynchronous:
            work()
            return future
        with self._lock:
            self._pending = future
        thread = threading.Thread(target=work, name=f"runstone-checkpoint-{self._run_id[:8]}", daemon=True)
        thread.start()
        return future

    def wait(self, timeout: float | None = None) -> Checkpoint | None:
        """Wait for a background save; raises its error (once)."""
        with self._lock:
            pending = self._pending
        if pending is None:
            return None
        try:
            result = pending.result(timeout)
        except FutureTimeout:
            raise TimeoutError(f"The checkpoint save still runs after {timeout} s") from None  # still pending
        except BaseException:
            self._forget(pending)
            raise
        self._forget(pending)
        return result

    def _forget(self, pending: Future[Checkpoint]) -> None:
        with self._lock:
            if self._pending is pending:
                self._pending = None

    def _write(
        self, snap: Snapshot, *, keep_last: int | None, keep_best: tuple[str, str, int] | None
    ) -> Checkpoint:
        started = time.monotonic()
        parent = self._scratch()
        parent.mkdir(parents=True, exist_ok=True)
        _clean_abandoned(parent)
        work = Path(tempfile.mkdtemp(dir=parent, prefix=f"ckpt-{os.getpid()}-"))
        try:
            folder = work / f"step-{snap.step}"
            folder.mkdir()
            write_snapshot(snap, folder)
            metrics = snap.metrics
            metadata = {
                "format": FORMAT,
                "step": snap.step,
                "epoch": snap.epoch,
                "metrics": {k: (None if math.isnan(v) else v) for k, v in metrics.items()},
                "parts": list(snap.parts),
                "rng": list(snap.rng),
                "pickled": bool(snap.pickles),
            }
            artifact = self._store_folder(folder, checkpoint_name(self._run_id), metadata)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        checkpoint = Checkpoint.from_artifact(artifact)
        assert checkpoint is not None
        removed = apply_retention(self._store, self._run_id, keep_last=keep_last, keep_best=keep_best)
        log.debug(
            "runstone: checkpoint %s of step %d stored in %.3f s; %d older removed",
            checkpoint.ref,
            snap.step,
            time.monotonic() - started,
            len(removed),
        )
        return checkpoint


def _clean_abandoned(parent: Path) -> None:
    """Remove scratch folders of saves whose process is gone (killed while saving)."""
    from runstone.capture.process import pid_alive

    for entry in parent.glob("ckpt-*"):
        try:
            pid = int(entry.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


def load(
    objects: Any,
    checkpoint: Checkpoint,
    *,
    parts: Mapping[str, Any],
    extra: MutableMapping[str, Any] | None,
    rng: bool | frozenset[str],
    map_location: Any,
    allow_pickle: bool,
) -> tuple[Loaded, list[str]]:
    """Fetch a checkpoint (every object checked) into a scratch folder, read it, restore it into objects.

    Returns what was read and the global generators restored.
    """
    from runstone.api.artifacts import fetch

    with tempfile.TemporaryDirectory(prefix=".runstone-load-") as scratch:
        folder = fetch(objects, checkpoint.artifact, Path(scratch) / "checkpoint")
        loaded = read_checkpoint(folder, allow_pickle=allow_pickle, map_location=map_location)
    return loaded, restore_into(loaded, parts=parts, extra=extra, rng=rng)


def find_checkpoint(
    store: Store, run_id: str, *, step: int | None = None, ref: str | None = None, project: str | None = None
) -> Checkpoint:
    """The checkpoint to load: ``ref`` (any run's), the run's newest one at ``step``, or its newest.

    Raises:
        NotFoundError: there is no such checkpoint.
    """
    if ref is not None:
        artifact = store.resolve_artifact(ref, project=project)
        checkpoint = Checkpoint.from_artifact(artifact)
        if checkpoint is None:
            raise UsageError(f"{artifact.ref} is a {artifact.kind}, not a runstone checkpoint")
        return checkpoint
    found = list_checkpoints(store, run_id)
    if step is not None:
        found = [c for c in found if c.step == step]
    if not found:
        if step is None:
            raise NotFoundError(
                f"Run {run_id} has no checkpoint; save one with run.save_checkpoint(step, model=...)"
            )
        steps = ", ".join(str(c.step) for c in list_checkpoints(store, run_id)) or "none"
        raise NotFoundError(f"Run {run_id} has no checkpoint at step {step} (its checkpoints: steps {steps})")
    return found[-1]
