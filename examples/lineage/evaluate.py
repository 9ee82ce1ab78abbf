"""Stage 3: score the model on the held-out split (consumes model and data, produces a report)."""

import json
import pathlib

import numpy as np

import runstone

with runstone.init(project="lineage-example", name="evaluate") as run:
    w = np.load(run.use_artifact("model.npz"))["w"]
    test = np.load(run.use_artifact("data") / "test.npz")
    accuracy = float(np.mean(((test["x"] @ w) > 0) == test["y"]))
    run.log({"accuracy": accuracy})
    pathlib.Path("report.json").write_text(json.dumps({"accuracy": accuracy}) + "\n")
    run.log_artifact("report.json", kind="report")
    print(f"accuracy {accuracy:.3f}")
