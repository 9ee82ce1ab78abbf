"""``runstone.seed``: seed every random-number generator the program uses, and say what was set.

Layer 5. Frameworks are seeded only when the program has already imported
them (they are never imported here), so seeding costs nothing for what is
not used. Call it after importing your frameworks, or pass ``seed=`` to
``runstone.init`` after them.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any

from runstone.errors import UsageError

__all__ = ["seed"]

#: the workspace setting cuBLAS needs for deterministic results
CUBLAS_WORKSPACE = ":4096:8"


def seed(value: int, *, deterministic: bool = False) -> dict[str, Any]:
    """Seed Python, numpy, PyTorch (CPU and every CUDA device), TensorFlow; optionally go deterministic.

    Args:
        value: the seed, a non-negative integer below 2**32.
        deterministic: also ask the frameworks for deterministic kernels:
            ``torch.use_deterministic_algorithms(True)``, cuDNN deterministic
            with benchmarking off, ``CUBLAS_WORKSPACE_CONFIG`` (if unset),
            ``TF_DETERMINISTIC_OPS=1`` and TensorFlow's op determinism.

    Returns:
        What was seeded and set (also recorded in the active run, if any).
        ``PYTHONHASHSEED`` only takes effect at interpreter start: its value is
        recorded; ``runstone run --seed`` sets it for the command.

    Raises:
        UsageError: the seed is not an integer in range.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise UsageError(f"seed must be an integer from 0 to 2**32-1, got {value!r}")
    seeded = ["random"]
    settings: dict[str, Any] = {}
    random.seed(value)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(value)
        seeded.append("numpy")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(value)  # seeds the CPU and every CUDA generator (lazily: no CUDA init)
        seeded.append("torch")
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.random.set_seed(value)
        seeded.append("tensorflow")
    if "jax" in sys.modules:
        settings["jax"] = "JAX has no global generator: pass jax.random.key(seed) explicitly"
    if deterministic:
        if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        settings["CUBLAS_WORKSPACE_CONFIG"] = os.environ["CUBLAS_WORKSPACE_CONFIG"]
        os.environ["TF_DETERMINISTIC_OPS"] = "1"
        settings["TF_DETERMINISTIC_OPS"] = "1"
        if torch is not None:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            settings["torch.use_deterministic_algorithms"] = True
            settings["torch.backends.cudnn.deterministic"] = True
            settings["torch.backends.cudnn.benchmark"] = False
        if tf is not None:
            try:
                tf.config.experimental.enable_op_determinism()
                settings["tf.config.experimental.enable_op_determinism"] = True
            except AttributeError:
                pass
    record = {
        "seed": value,
        "deterministic": deterministic,
        "seeded": seeded,
        "settings": settings,
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED"),
    }
    from runstone.api import lifecycle

    run = lifecycle.active()
    if run is not None:
        run._add_record("seeds", record)
    return record
