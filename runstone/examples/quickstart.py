"""Softmax regression on a generated three-class data set, tracked with runstone.

Runs in a few seconds with numpy only (no downloads). ``runstone quickstart``
runs it under ``runstone run``; it also works on its own:

    python -m runstone.examples.quickstart --steps 300 --lr 0.5
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

import runstone


def make_data(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in 2-D, with a bias feature."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    labels = rng.integers(0, 3, size=n)
    points = centers[labels] + rng.normal(scale=1.5, size=(n, 2))
    features = np.hstack([points, np.ones((n, 1))])
    return features, labels


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project", default="quickstart")
    args = parser.parse_args(argv)

    config = {
        "model": {"kind": "softmax", "classes": 3},
        "optimizer": {"lr": args.lr},
        "steps": args.steps,
        "seed": args.seed,
    }
    with runstone.init(project=args.project, config=config, seed=args.seed) as run:
        x, y = make_data(args.seed)
        split = len(x) * 4 // 5
        x_train, y_train, x_val, y_val = x[:split], y[:split], x[split:], y[split:]
        weights = np.zeros((x.shape[1], 3))
        onehot = np.eye(3)[y_train]
        for step in range(args.steps):
            logits = x_train @ weights
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            loss = float(-np.mean(np.log(probs[np.arange(len(y_train)), y_train] + 1e-12)))
            weights -= args.lr * x_train.T @ (probs - onehot) / len(y_train)
            val_acc = float(np.mean(np.argmax(x_val @ weights, axis=1) == y_val))
            run.log({"loss": loss, "val_acc": val_acc}, step=step)
            if step % max(1, args.steps // 5) == 0 or step == args.steps - 1:
                print(f"step {step:4d}  loss {loss:.4f}  val_acc {val_acc:.3f}", flush=True)
        print(f"done: run {run.id}", flush=True)


if __name__ == "__main__":
    main()
