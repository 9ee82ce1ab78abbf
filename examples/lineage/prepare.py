"""Stage 1: turn raw measurements into a train/test split (an input by digest, an output stored)."""

import pathlib

import numpy as np

import runstone

raw = pathlib.Path("raw")
if not raw.exists():  # the "raw data" a real project would download
    raw.mkdir()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 5))
    y = (x @ np.array([1.5, -2.0, 0.5, 0.0, 1.0]) > 0).astype(int)
    np.savetxt(raw / "measurements.csv", np.column_stack([x, y]), delimiter=",", fmt="%.6f")

with runstone.init(project="lineage-example", name="prepare") as run:
    run.use_dataset(raw, name="raw")
    table = np.loadtxt(raw / "measurements.csv", delimiter=",")
    out = pathlib.Path("data")
    out.mkdir(exist_ok=True)
    np.savez(out / "train.npz", x=table[:300, :-1], y=table[:300, -1])
    np.savez(out / "test.npz", x=table[300:, :-1], y=table[300:, -1])
    run.log_artifact(out, kind="dataset", metadata={"train": 300, "test": 100})
