"""The same training as a Hydra app, each job recorded as a run (pip install 'runstone[hydra]').

    python hydra_train.py optimizer.lr=0.1
    python hydra_train.py -m optimizer.lr=0.5,0.1,0.02     # a sweep: one run per job
"""

import hydra

import runstone
from model import train
from runstone.integrations.hydra import track


@hydra.main(config_path="conf", config_name="train", version_base=None)
@track(project="config-example")
def main(cfg):
    loss = train(cfg, runstone.log)
    print(f"final loss {loss:.4f}")


if __name__ == "__main__":
    main()
