"""``runstone.config.load`` composes as hydra-core's ``compose`` does, on the same conf tree."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import runstone

TREE = {
    "config.yaml": """
        defaults:
          - model: a
          - opt: adam
          - optional extras: none
          - _self_
        seed: 1
        name: base
        layers: [1, 2, 3]
        nested: {x: 1, y: {p: 1, q: 2}}
        maybe: null
        hydra:
          job:
            chdir: false
        """,
    "model/a.yaml": "defaults:\n  - act: relu\nkind: a\ndepth: 2\n",
    "model/b.yaml": "kind: b\nwidth: 8\n",
    "model/mlp.yaml": "kind: mlp\nhidden: 32\n",
    "model/act/relu.yaml": "fn: relu\n",
    "model/act/gelu.yaml": "fn: gelu\n",
    "opt/adam.yaml": "lr: 0.001\nbetas: [0.9, 0.999]\n",
    "opt/sgd.yaml": "lr: 0.1\nmomentum: 0.9\n",  # Hydra reads YAML only
    "db/mysql.yaml": "port: 2\n",
    "gan.yaml": """
        defaults:
          - model@backbone: cnn
          - optimizer@gen: adam
          - optimizer@disc: adam
          - model@head: hdr
          - _self_
        steps: 3
        """,
    "model/cnn.yaml": "defaults:\n  - encoder: small\n  - encoder@enc: small\n  - /db: mysql\n  - _self_\nname: cnn\n",
    "model/hdr.yaml": "# @package over.there\nv: 1\n",
    "model/encoder/small.yaml": "width: 8\n",
    "optimizer/adam.yaml": "lr: 0.001\n",
    "optimizer/sgd.yaml": "lr: 0.1\n",
    "data/imagenet.yaml": "size: 224\n",
    "debug.yaml": """
        defaults:
          - model: a
          - _self_
        hydra:
          job:
            name: dbg
        level: 2
        """,
    "sub/inner.yaml": "defaults:\n  - leaf: x\nown: 1\n",
    "sub/leaf/x.yaml": "deep: true\n",
    "withsub.yaml": "defaults:\n  - sub/inner\n  - _self_\ntop: 1\n",
    "experiment/e.yaml": """
        # @package _global_
        defaults:
          - /opt@optim: sgd
          - override /model: mlp
        seed: 99
        nested:
          x: 50
        """,
}

CASES: list[tuple[str, list[str]]] = [
    ("gan", []),
    ("gan", ["optimizer@gen=sgd"]),
    ("gan", ["+data@data2=imagenet", "steps=4"]),
    ("gan", ["~optimizer@disc"]),
    ("debug", ["hydra.job.name=x"]),
    ("withsub", []),
]
CASES += [
    ("config", overrides)
    for overrides in [
        [],
        ["model=b"],
        ["model=[a,b]"],
        ["model/act=gelu"],
        ["opt=sgd", "opt.lr=0.5"],
        ["+experiment=e"],
        ["+experiment=e", "model=b"],
        ["nested.y={p: 9}"],
        ["nested={x: 2}"],
        ["+db=mysql", "++seed=3"],
        ["~nested.x", "~model"],
        ["+run=007", "+code=0", "+neg=-7", "+f=1e-3", "+g=.5"],
        ["seed=float(1)", "name=str(5)", "+i=int(2.7)"],
        ["name='C:\\new\\dir'", "+rx='\\d+'", "+esc=a\\,b"],
        ["maybe=3"],
        ["+maybe=3"],
        ["layers.1=7", "+layers2=[a, 'b c', null, true]"],
        ['name="it\'s"', "+u='ünïcødé'"],
    ]
]


@pytest.fixture
def conf(workdir: Path) -> Path:
    for name, text in TREE.items():
        path = workdir / "conf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return workdir / "conf"


def hydra_compose(conf: Path, name: str, overrides: list[str]) -> Any:
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        return OmegaConf.to_container(compose(config_name=name, overrides=overrides), resolve=True)


@pytest.mark.parametrize(
    ("name", "overrides"), CASES, ids=[f"{n}: {' '.join(c) or '(none)'}" for n, c in CASES]
)
def test_same_result_as_hydra(conf: Path, name: str, overrides: list[str]) -> None:
    expected = hydra_compose(conf, name, overrides)
    got = OmegaConf.to_container(runstone.config.load(conf / f"{name}.yaml", overrides))
    assert got == expected
    assert repr(got) == repr(expected)  # types and key order too
