"""The resume check on a GPU: skipped where there is none (the CPU tests in tests/checkpoint are the proof).

On a machine with CUDA, runs ``train_loop.py torch --device cuda`` (seeded with
``runstone.seed(0, deterministic=True)``) uninterrupted, then killed with
SIGKILL after a step and resumed from its newest checkpoint -- which holds
the CUDA generators' states -- and compares weights, losses and
fingerprints bit for bit. Run it alone with ``pytest tests/gpu -v``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.checkpoint.test_resume import _result, _same_weights, _train

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("kill_at", [7, 16])
def test_a_killed_gpu_run_resumes_bit_identical(tmp_path: Path, kill_at: int) -> None:
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    whole.mkdir()
    interrupted.mkdir()
    _train(whole, "torch", "final.npz", "--device", "cuda")
    expected = _result(whole, "final.npz")
    _train(
        interrupted, "torch", "x.npz", "--device", "cuda", "--kill-at", str(kill_at), expect=-signal.SIGKILL
    )
    _train(interrupted, "torch", "final.npz", "--device", "cuda", "--resume", "latest")
    resumed = _result(interrupted, "final.npz")
    assert _same_weights(resumed["weights"], expected["weights"])
    assert resumed["loss"] == expected["loss"]
    assert resumed["fingerprints"] == expected["fingerprints"]
    (resume,) = resumed["client"].get_records(resumed["run"].id)["resumes"]["resumes"]
    assert "cuda" in resume["rng_restored"]
