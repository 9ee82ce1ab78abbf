"""Reproduce and verify on a GPU: skipped where there is none.

A conv + embedding-bag loop on CUDA with fingerprints, in a git repository:

- seeded with ``deterministic=True`` (deterministic algorithms, cuDNN
  deterministic, no autotuning, ``CUBLAS_WORKSPACE_CONFIG``), reproduced with
  ``runstone reproduce --verify``: IDENTICAL;
- with cuDNN autotuning on and deterministic algorithms off, reproduced with
  ``--repeat 2``: whatever the card does is reported (print it with ``-s``);
  when it diverges, GPU nondeterminism must be among the likely causes.

Run it alone with ``pytest tests/gpu -v -s``.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.reproduce.conftest import git, reproduce_json, wrapped

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

LOOP = textwrap.dedent(
    """\
    import sys
    import torch
    import runstone

    deterministic = "--autotune" not in sys.argv
    with runstone.init(seed=0, deterministic=deterministic) as run:
        torch.backends.cudnn.benchmark = not deterministic
        dev = torch.device("cuda")
        conv = torch.nn.Conv2d(3, 32, 3, padding=1).to(dev)
        bag = torch.nn.EmbeddingBag(5000, 64, mode="sum").to(dev)
        head = torch.nn.Linear(32 * 16 * 16 + 64, 10).to(dev)
        model = torch.nn.ModuleDict({"conv": conv, "bag": bag, "head": head})
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        g = torch.Generator(device="cuda").manual_seed(1)
        for step in range(30):
            x = torch.randn(64, 3, 16, 16, device=dev, generator=g)
            idx = torch.randint(0, 5000, (64 * 20,), device=dev, generator=g)
            offsets = torch.arange(0, 64 * 20, 20, device=dev)
            y = torch.randint(0, 10, (64,), device=dev, generator=g)
            feats = torch.cat([torch.relu(conv(x)).flatten(1), bag(idx, offsets)], dim=1)
            loss = torch.nn.functional.cross_entropy(head(feats), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.log({"loss": loss.item()}, step=step)
            run.fingerprint(model, step=step)
    """
)


def test_a_deterministic_gpu_loop_reproduces_identically_and_autotuning_is_reported(repo: Path) -> None:
    (repo / "gpu_loop.py").write_text(LOOP)
    git(repo, "add", "gpu_loop.py")
    git(repo, "commit", "-qm", "gpu loop")
    strict = wrapped(repo, [sys.executable, "gpu_loop.py"])
    code, data, err = reproduce_json(repo, strict, "--verify")
    assert code == 0, err
    assert data["verdict"]["verdict"] == "IDENTICAL"

    tuned = wrapped(repo, [sys.executable, "gpu_loop.py", "--autotune"])
    code, data, err = reproduce_json(repo, tuned, "--repeat", "2")
    verdict = data["verdict"]
    print(json.dumps({k: verdict[k] for k in ("verdict", "first_divergence", "causes", "repeat")}, indent=1))
    if verdict["verdict"] == "DIVERGED":
        assert code == 1
        assert any(
            c["title"] in ("GPU nondeterminism", "intrinsic nondeterminism") for c in verdict["causes"][:2]
        )
    else:
        assert code == 0
