"""A small training loop whose result depends on every random-number state (used by the resume tests).

    python train_loop.py torch|numpy OUT.npz [--kill-at STEP] [--resume RUN|--join] [--omit-rng]

``torch``: an MLP with dropout, trained by Adam on batches from a shuffling
DataLoader with its own generator. ``numpy``: a linear model with dropout
noise from numpy's global generator and per-epoch shuffles from a
``numpy.random.Generator``. Both checkpoint every 3 steps, in the middle of
epochs. ``--kill-at`` sends the process SIGKILL after that step; ``--resume``
reopens a run and restores its newest checkpoint (``--join``: the run a
``runstone run --resume`` wrapper reopened). The final weights go to OUT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import numpy as np

import runstone

EPOCHS = 4
BATCH = 8
SAMPLES = 48
STEPS_PER_EPOCH = SAMPLES // BATCH
EVERY = 3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("framework", choices=["torch", "numpy"])
    parser.add_argument("out")
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--resume")
    parser.add_argument("--join", action="store_true")
    parser.add_argument("--omit-rng", action="store_true")
    parser.add_argument("--asynchronous", action="store_true")
    parser.add_argument("--device", default="cpu", help="torch only: cuda runs deterministically")
    args = parser.parse_args()
    if args.framework == "torch":
        import torch

        torch.set_num_threads(1)
    deterministic = args.device != "cpu"  # runstone.seed(0, deterministic=True) on a GPU
    run = runstone.init(
        project="resume", seed=0, deterministic=deterministic, resume=args.resume, capture=False
    )
    train = train_torch if args.framework == "torch" else train_numpy
    weights = train(run, args)
    np.savez(args.out, **weights)
    run.finish()
    return 0


def _maybe_die(step: int, args: argparse.Namespace, run: runstone.ActiveRun) -> None:
    if args.kill_at is not None and step == args.kill_at:
        run.wait_for_checkpoints()
        run.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def train_torch(run: runstone.ActiveRun, args: argparse.Namespace) -> dict[str, np.ndarray]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    data = torch.Generator().manual_seed(123)
    x = torch.randn(SAMPLES, 6, generator=data)
    y = x @ torch.randn(6, 1, generator=data) + 0.1 * torch.randn(SAMPLES, 1, generator=data)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 1)
    ).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.9)
    loader_gen = torch.Generator().manual_seed(7)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, generator=loader_gen)
    # A DataLoader draws its epoch's order from its generator when the epoch starts: keep that state.
    epoch_start = torch.Generator()
    extra = {"loader_gen": loader_gen, "epoch_start": epoch_start}
    start = 0
    if args.resume or args.join:
        rng = not args.omit_rng
        start = run.load_checkpoint(model=model, optimizer=opt, scheduler=sched, extra=extra, rng=rng)
        # Go through the checkpoint's epoch again from its start, skipping the steps done: the
        # loader draws its order when an epoch starts and draws again when the epoch runs out.
        loader_gen.set_state(epoch_start.get_state())
    print(f"training from step {start}", flush=True)
    for epoch in range(max(start - 1, 0) // STEPS_PER_EPOCH, EPOCHS):
        epoch_start.set_state(loader_gen.get_state())
        for i, (xb, yb) in enumerate(loader):
            step = epoch * STEPS_PER_EPOCH + i
            if step < start:
                continue  # done before the checkpoint
            model.train()
            xb, yb = xb.to(args.device), yb.to(args.device)
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            run.log({"loss": loss.item()}, step=step)
            run.fingerprint(model, step=step)
            if step % EVERY == EVERY - 1:
                run.save_checkpoint(
                    step,
                    model=model,
                    optimizer=opt,
                    scheduler=sched,
                    extra=extra,
                    epoch=epoch,
                    asynchronous=args.asynchronous,
                )
            _maybe_die(step, args, run)
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def train_numpy(run: runstone.ActiveRun, args: argparse.Namespace) -> dict[str, np.ndarray]:
    data = np.random.default_rng(123)
    x = data.normal(size=(SAMPLES, 5))
    y = x @ data.normal(size=5) + 0.1 * data.normal(size=SAMPLES)
    model = {"w": np.zeros(5), "b": np.zeros(1)}
    shuffle = np.random.default_rng(7)
    extra: dict = {"shuffle": shuffle, "order": np.arange(SAMPLES)}
    start = 0
    if args.resume or args.join:
        start = run.load_checkpoint(model=model, extra=extra, rng=not args.omit_rng)
    print(f"training from step {start}", flush=True)
    for epoch in range(start // STEPS_PER_EPOCH, EPOCHS):
        if epoch * STEPS_PER_EPOCH >= start:
            extra["order"] = shuffle.permutation(SAMPLES)
        for i in range(STEPS_PER_EPOCH):
            step = epoch * STEPS_PER_EPOCH + i
            if step < start:
                continue
            idx = extra["order"][i * BATCH : (i + 1) * BATCH]
            keep = np.random.random(5) > 0.2  # dropout on the inputs, from numpy's global generator
            xb = x[idx] * keep / 0.8
            err = xb @ model["w"] + model["b"] - y[idx]
            model["w"] -= 0.05 * xb.T @ err / BATCH
            model["b"] -= 0.05 * err.mean(keepdims=True)
            run.log({"loss": float((err**2).mean())}, step=step)
            run.fingerprint(model, step=step)
            if step % EVERY == EVERY - 1:
                run.save_checkpoint(
                    step, model=model, extra=extra, epoch=epoch, keep_last=2, asynchronous=args.asynchronous
                )
            _maybe_die(step, args, run)
    return {k: v.copy() for k, v in model.items()}


if __name__ == "__main__":
    sys.exit(main())
