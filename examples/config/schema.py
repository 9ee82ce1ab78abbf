"""The shape every config of this project must have (runstone.config.load checks it)."""

from dataclasses import dataclass, field


@dataclass
class Model:
    name: str = "linear"
    hidden: int = 0


@dataclass
class Optimizer:
    name: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.0


@dataclass
class Data:
    samples: int = 512
    features: int = 16
    classes: int = 4
    noise: float = 3.0


@dataclass
class TrainConfig:
    model: Model = field(default_factory=Model)
    optimizer: Optimizer = field(default_factory=Optimizer)
    data: Data = field(default_factory=Data)
    seed: int = 0
    epochs: int = 20
