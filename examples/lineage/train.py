"""Stage 2: fit a logistic regression on the prepared data (consumes data, produces the model)."""

import numpy as np

import runstone

with runstone.init(project="lineage-example", name="train", config={"lr": 0.5, "steps": 200}, seed=0) as run:
    data = np.load(run.use_artifact("data") / "train.npz")
    x, y = data["x"], data["y"]
    w = np.zeros(x.shape[1])
    for step in range(run.config["steps"]):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= run.config["lr"] * x.T @ (p - y) / len(y)
        run.log({"loss": float(-np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)))}, step=step)
    np.savez("model.npz", w=w)
    run.log_artifact("model.npz", kind="model")
