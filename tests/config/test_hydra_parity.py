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

CASES = [
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


@pytest.fixture
def conf(workdir: Path) -> Path:
    for name, text in TREE.items():
        path = workdir / "conf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return workdir / "conf"


def hydra_compose(conf: Path, overrides: list[str]) -> Any:
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)


@pytest.mark.parametrize("overrides", CASES, ids=[" ".join(c) or "(none)" for c in CASES])
def test_same_result_as_hydra(conf: Path, overrides: list[str]) -> None:
    expected = hydra_compose(conf, overrides)
    got = OmegaConf.to_container(runstone.config.load(conf / "config.yaml", overrides))
    assert got == expected
    assert repr(got) == repr(expected)  # types and key order too
