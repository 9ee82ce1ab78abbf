"""Train with a config composed from conf/, overridden on the command line.

    python train.py                              # conf/train.yaml as it is
    python train.py model=mlp optimizer.lr=0.1   # another model, another learning rate
    python train.py optimizer=momentum epochs=5
"""

import sys

import runstone
from model import train
from schema import TrainConfig

cfg = runstone.config.load("conf/train.yaml", overrides=sys.argv[1:], schema=TrainConfig)

with runstone.init(project="config-example", config=cfg, seed=cfg.seed) as run:
    loss = train(cfg, run.log)
    print(f"run {run.id[:12]} ({run.name}): final loss {loss:.4f}")
