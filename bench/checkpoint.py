"""Checkpoints and fingerprints: what they cost a training loop, beside the usual alternatives.

    .venv/bin/python bench/checkpoint.py [--width 1024] [--depth 8] [--repeat 20] [--device cpu|cuda]

On one model (an MLP of --depth layers of --width units; on a GPU, bf16
autocast), in one process, times:

- a training step (forward, backward, Adam step), the reference;
- ``fingerprint(model)`` (runstone's on-device reduction) beside the two
  obvious alternatives: copying every parameter to the host and hashing the
  bytes with SHA-256, and one integer sum per tensor -- each as a share of a
  training step; then checks that all three see a one-ulp change in one weight;
- saving a checkpoint of model and optimizer: ``torch.save`` of both state
  dicts to a file (no RNG states, no record) beside
  ``run.save_checkpoint(...)`` synchronous, and ``asynchronous=True`` -- for
  which both the time the training loop is held and the time until the
  checkpoint is recorded are shown.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def median_time(fn: Any, repeat: int, sync: Any) -> float:
    fn()  # warm up
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def host_sha256(model: Any) -> str:
    sha = hashlib.sha256()
    for tensor in model.state_dict().values():
        sha.update(tensor.detach().cpu().contiguous().view(-1).view(__import__("torch").uint8).numpy())
    return sha.hexdigest()[:12]


def per_tensor_sums(model: Any) -> str:
    import torch

    ints = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    sums = [
        int(t.detach().reshape(-1).view(ints[t.element_size()]).sum(dtype=torch.int64))
        for t in model.state_dict().values()
    ]
    return hashlib.sha256(repr(sums).encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args()

    import torch

    import runstone
    from runstone.api.fingerprint import fingerprint

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.manual_seed(0)
    layers: list[Any] = []
    for _ in range(args.depth):
        layers += [torch.nn.Linear(args.width, args.width), torch.nn.GELU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(args.width, 10)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, args.width, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    params = sum(p.numel() for p in model.parameters())

    def train_step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step = median_time(train_step, args.repeat, sync)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model: {params:,} parameters ({len(model.state_dict())} tensors) on {name}")
    print(f"training step: {step * 1000:.2f} ms (median of {args.repeat})\n")

    print(f"{'fingerprint method':40} {'ms':>9} {'of a step':>10}  sees one ulp")
    methods = [
        ("runstone fingerprint (on device)", lambda: fingerprint(model)),
        ("copy to host + SHA-256", lambda: host_sha256(model)),
        ("one integer sum per tensor", lambda: per_tensor_sums(model)),
    ]
    for label, fn in methods:
        took = median_time(fn, args.repeat, sync)
        before = fn()
        weight = model[0].weight
        with torch.no_grad():
            old = weight[3, 5].clone()
            weight[3, 5] = torch.nextafter(old, old + 1)
        changed = fn() != before
        with torch.no_grad():
            weight[3, 5] = old
        print(f"{label:40} {took * 1000:9.3f} {took / step:10.1%}  {'yes' if changed else 'NO'}")

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        run = runstone.init(project="bench-checkpoint", capture=False)
        state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        train_step()  # Adam's state exists from the first step

        def torch_save() -> None:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, Path(tmp) / "plain.pt")

        counter = iter(range(10**9))

        def save_sync() -> None:
            run.save_checkpoint(next(counter), model=model, optimizer=opt, keep_last=2)

        def save_async_held() -> None:
            run.save_checkpoint(next(counter), model=model, optimizer=opt, keep_last=2, asynchronous=True)

        def save_async_total() -> None:
            save_async_held()
            run.wait_for_checkpoints()

        repeat = max(3, args.repeat // 4)
        plain = median_time(torch_save, repeat, sync)
        sync_s = median_time(save_sync, repeat, sync)
        held: list[float] = []
        for _ in range(repeat):
            run.wait_for_checkpoints()
            start = time.perf_counter()
            save_async_held()
            held.append(time.perf_counter() - start)
        run.wait_for_checkpoints()
        total = median_time(save_async_total, repeat, sync)
        run.finish()
    mib = state_bytes * 3 / 2**20
    print(f"\ncheckpoint of model + Adam state ({mib:.0f} MiB of tensors), median of {repeat}:")
    print(f"{'torch.save to a file (no RNG, no record)':48} {plain * 1000:9.1f} ms")
    print(f"{'runstone save_checkpoint':48} {sync_s * 1000:9.1f} ms  ({sync_s / plain:.2f}x torch.save)")
    held_s = statistics.median(held)
    label = "runstone asynchronous: training held"
    print(f"{label:48} {held_s * 1000:9.1f} ms  ({held_s / plain:.2f}x torch.save)")
    print(f"{'runstone asynchronous: until recorded':48} {total * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
