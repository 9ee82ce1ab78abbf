"""``runstone.config.load``: files, composition, overrides, interpolation, schemas and their errors."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from pydantic import BaseModel, ConfigDict

import runstone
from runstone.api.configs import provenance
from runstone.errors import ConfigError
from tests.conftest import child_env


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


TREE = {
    "conf/train.yaml": """
        defaults:
          - model: resnet
          - optimizer: sgd
          - _self_
        seed: 0
        epochs: 3
        data:
          root: ${oc.env:DATA_ROOT,/data}
          batch_size: 32
        """,
    "conf/model/resnet.yaml": "name: resnet\ndepth: 18\n",
    "conf/model/vit.yaml": "name: vit\ndepth: 12\npatch: 16\n",
    "conf/optimizer/sgd.yaml": "name: sgd\nlr: 0.1\nmomentum: 0.9\nwarmup_lr: ${optimizer.lr}\n",
    "conf/optimizer/adam.json": '{"name": "adam", "lr": 0.001, "betas": [0.9, 0.999]}',
}


@pytest.fixture
def conf(workdir: Path) -> Path:
    write(workdir, TREE)
    return workdir / "conf" / "train.yaml"


def plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True)


def test_composes_groups_in_order_and_resolves(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_ROOT", "/mnt/data")
    cfg = runstone.config.load(conf)
    assert plain(cfg) == {
        "model": {"name": "resnet", "depth": 18},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "warmup_lr": 0.1},
        "seed": 0,
        "epochs": 3,
        "data": {"root": "/mnt/data", "batch_size": 32},
    }
    assert list(cfg) == ["model", "optimizer", "seed", "epochs", "data"]  # the defaults list's order


def test_overrides_pick_groups_and_set_add_force_delete(conf: Path) -> None:
    cfg = runstone.config.load(
        "conf/train.yaml",
        overrides=[
            "model=vit",
            "optimizer=adam",
            "optimizer.lr=0.01",
            "+new.key=1",
            "++seed=7",
            "++fresh='1'",
            "~data.batch_size",
            "epochs=1e-3",
        ],
    )
    out = plain(cfg)
    assert out["model"] == {"name": "vit", "depth": 12, "patch": 16}
    assert out["optimizer"] == {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999]}
    assert out["new"] == {"key": 1} and out["seed"] == 7 and out["fresh"] == "1"
    assert out["data"] == {"root": "/data"} and out["epochs"] == 0.001
    assert type(out["new"]["key"]) is int and type(out["epochs"]) is float


def test_an_interpolation_follows_an_override(conf: Path) -> None:
    cfg = runstone.config.load(conf, ["optimizer.lr=0.5"])
    assert cfg.optimizer.warmup_lr == 0.5


def test_self_first_lets_the_defaults_win_and_self_last_is_implicit(workdir: Path) -> None:
    write(
        workdir,
        {
            "c/first.yaml": "defaults:\n  - _self_\n  - opt: a\nopt:\n  lr: 1\n",
            "c/last.yaml": "defaults:\n  - opt: a\nopt:\n  lr: 1\n",
            "c/opt/a.yaml": "lr: 2\n",
        },
    )
    assert runstone.config.load("c/first.yaml").opt.lr == 2
    assert runstone.config.load("c/last.yaml").opt.lr == 1


def test_base_files_nested_defaults_global_package_optional_and_null(workdir: Path) -> None:
    write(
        workdir,
        {
            "c/main.yaml": """
                defaults:
                  - base
                  - model: net
                  - optional extras: missing
                  - logger: null
                  - experiment: fast
                name: main
                """,
            "c/base.toml": 'name = "base"\nshared = true\n',
            "c/model/net.yaml": "defaults:\n  - block: basic\nwidth: 64\n",
            "c/model/block/basic.yaml": "kind: basic\n",
            "c/logger/tb.yaml": "dir: runs\n",
            "c/experiment/fast.yaml": "# @package _global_\nepochs: 1\nmodel:\n  width: 8\n",
        },
    )
    out = plain(runstone.config.load("c/main"))  # a bare name finds main.yaml
    assert out == {
        "name": "main",
        "shared": True,
        "model": {"width": 8, "block": {"kind": "basic"}},
        "epochs": 1,
    }


def test_json_and_toml_primaries(workdir: Path) -> None:
    write(
        workdir,
        {
            "j/train.json": '{"defaults": [{"opt": "a"}], "lr": 1.0, "n": 1, "s": "1"}',
            "j/opt/a.toml": "momentum = 0.5\n",
        },
    )
    out = plain(runstone.config.load("j/train.json", ["n=2"]))
    assert out == {"opt": {"momentum": 0.5}, "lr": 1.0, "n": 2, "s": "1"}
    assert [type(out[k]) for k in ("lr", "n", "s")] == [float, int, str]


def test_group_overrides_add_and_remove_groups(conf: Path) -> None:
    assert "model" not in runstone.config.load(conf, ["~model"])
    write(conf.parent.parent, {"conf/trainer/gpu.yaml": "devices: 2\n"})
    assert runstone.config.load(conf, ["+trainer=gpu"]).trainer.devices == 2


def test_result_is_struct_and_remembers_its_sources(conf: Path) -> None:
    cfg = runstone.config.load(conf, ["model=vit"])
    with pytest.raises(Exception, match="modle"):
        cfg.modle  # noqa: B018  # a misspelt key raises instead of reading as None
    sources = provenance(cfg)
    assert sources is not None
    assert sources.overrides == ("model=vit",)
    paths = [f["path"] for f in sources.files]
    assert paths == ["conf/train.yaml", "conf/model/vit.yaml", "conf/optimizer/sgd.yaml"]
    assert sources.files[1]["text"] == "name: vit\ndepth: 12\npatch: 16\n"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["optimizer.lrr=1"],
            "override 'optimizer.lrr=1': optimizer.lrr: is not in the config (did you mean optimizer.lr?); write +optimizer.lrr=1 to add it",
        ),
        (["+seed=1"], "override '+seed=1': seed: is already in the config"),
        (
            ["model=foo"],
            "override 'model=foo': no option 'foo' in config group 'model' (choices: resnet, vit)",
        ),
        (["~nothing"], "override '~nothing': nothing: is not in the config, so it cannot be deleted"),
        (["~seed=5"], "override '~seed=5': seed: is 0, not 5"),
        (["optimizer.lr=0.1,0.01"], "is a sweep"),
        (["=1"], "is not of the form key=value"),
        (["seed"], "has no value; write seed=VALUE"),
        (["trainer=gpu"], "not in the defaults list"),
    ],
)
def test_override_errors_name_the_override_and_key(conf: Path, overrides: list[str], message: str) -> None:
    write(conf.parent.parent, {"conf/trainer/gpu.yaml": "devices: 2\n"})
    with pytest.raises(ConfigError) as info:
        runstone.config.load(conf, overrides)
    assert message in str(info.value)


def test_a_string_of_overrides_is_refused(conf: Path) -> None:
    with pytest.raises(ConfigError, match="must be a list"):
        runstone.config.load(conf, "model=vit")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("files", "path", "message"),
    [
        ({}, "nope.yaml", "nope.yaml: no such config file"),
        ({"c.ini": "[a]\n"}, "c.ini", "c.ini: has the suffix '.ini'"),
        ({"c.yaml": "a: [1, 2\n"}, "c.yaml", "c.yaml: invalid YAML"),
        ({"c.json": '{"a": 1,}'}, "c.json", "c.json: invalid JSON at line 1"),
        ({"c.toml": "a = \n"}, "c.toml", "c.toml: invalid TOML"),
        ({"c.yaml": "- 1\n- 2\n"}, "c.yaml", "c.yaml: must hold a mapping at the top level, not a list"),
        (
            {"c.yaml": "defaults:\n  - other\n"},
            "c.yaml",
            "c.yaml: defaults: names 'other', but there is no other.yaml",
        ),
        (
            {"c.yaml": "defaults:\n  - m: x\n"},
            "c.yaml",
            "c.yaml: defaults.m: no option 'x' in config group 'm' (there is no folder m)",
        ),
        ({"c.yaml": "a: ${nope}\n"}, "c.yaml", "c.yaml: a: cannot be resolved"),
        ({"c.yaml": "a: ${oc.env:RUNSTONE_TEST_UNSET_VAR}\n"}, "c.yaml", "RUNSTONE_TEST_UNSET_VAR"),
        (
            {"c.yaml": "data:\n  path: ???\n"},
            "c.yaml",
            "c.yaml: data.path: has no value ('???'); set it with an override such as data.path=VALUE",
        ),
    ],
)
def test_file_errors_name_the_file_key_and_reason(
    workdir: Path, files: dict[str, str], path: str, message: str
) -> None:
    write(workdir, files)
    with pytest.raises(ConfigError) as info:
        runstone.config.load(path)
    assert message in str(info.value)


@dataclasses.dataclass
class Optimizer:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    warmup_lr: float = 0.0


@dataclasses.dataclass
class Model:
    name: str = "resnet"
    depth: int = 18
    patch: int = 0


@dataclasses.dataclass
class Data:
    root: str = "/data"
    batch_size: int = 1


@dataclasses.dataclass
class Train:
    model: Model = dataclasses.field(default_factory=Model)
    optimizer: Optimizer = dataclasses.field(default_factory=Optimizer)
    data: Data = dataclasses.field(default_factory=Data)
    seed: int = 0
    epochs: int = 1


class PydanticTrain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    class Opt(BaseModel):
        name: str
        lr: float
        momentum: float
        warmup_lr: float

    model: dict[str, Any]
    optimizer: Opt
    data: dict[str, Any]
    seed: int
    epochs: int


@pytest.mark.parametrize("schema", [Train, PydanticTrain])
def test_a_schema_converts_and_validates(conf: Path, schema: Any) -> None:
    cfg = runstone.config.load(conf, ["optimizer.lr='0.5'"], schema=schema)
    assert cfg.optimizer.lr == 0.5 and type(cfg.optimizer.lr) is float
    sources = provenance(cfg)
    assert sources is not None and sources.schema == f"{__name__}:{schema.__qualname__}"


@pytest.mark.parametrize("schema", [Train, PydanticTrain])
def test_schema_errors_name_the_file_that_set_the_value(conf: Path, schema: Any) -> None:
    (conf.parent / "optimizer" / "sgd.yaml").write_text(
        "name: sgd\nlr: fast\nmomentum: 0.9\nwarmup_lr: 0.1\n"
    )
    with pytest.raises(ConfigError) as info:
        runstone.config.load(conf, schema=schema)
    assert str(info.value) == "conf/optimizer/sgd.yaml: optimizer.lr: expected float, got 'fast'"
    (conf.parent / "optimizer" / "sgd.yaml").write_text("name: sgd\nlr: 0.1\nmomentum: 0.9\nwarmup_lr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        runstone.config.load(conf, ["optimizer.lr=quick"], schema=schema)
    assert str(info.value) == "override 'optimizer.lr=quick': optimizer.lr: expected float, got 'quick'"


@pytest.mark.parametrize("schema", [Train, PydanticTrain])
def test_schema_refuses_unknown_keys(conf: Path, schema: Any) -> None:
    with pytest.raises(ConfigError, match=r"override '\+extra=1': extra: not in the schema"):
        runstone.config.load(conf, ["+extra=1"], schema=schema)


def test_a_non_schema_is_refused(conf: Path) -> None:
    with pytest.raises(ConfigError, match="must be a dataclass or a pydantic model class"):
        runstone.config.load(conf, schema=dict)


def test_secret_values_in_files_are_redacted_in_the_record(workdir: Path) -> None:
    write(
        workdir,
        {
            "c.yaml": """
                api_key: sk-live-123
                password: "hunter2"
                tokenizer: bert
                token_from_env: ${oc.env:HOME}
                """
        },
    )
    sources = provenance(runstone.config.load("c.yaml"))
    assert sources is not None
    text = sources.files[0]["text"]
    assert "sk-live-123" not in text and "hunter2" not in text
    assert 'password: "<redacted>"' in text and "tokenizer: bert" in text and "${oc.env:HOME}" in text


def test_an_uncaught_config_error_prints_one_line(conf: Path, workdir: Path) -> None:
    script = workdir / "train.py"
    script.write_text(
        "import sys, runstone\n"
        "cfg = runstone.config.load('conf/train.yaml', overrides=sys.argv[1:])\n"
        "print(cfg.optimizer.lr)\n"
    )
    ok = subprocess.run(
        [sys.executable, str(script), "optimizer.lr=0.25"],
        cwd=workdir,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert ok.stdout.strip() == "0.25"
    bad = subprocess.run(
        [sys.executable, str(script), "optimizer.lrr=1"],
        cwd=workdir,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith(
        "runstone: config error: override 'optimizer.lrr=1': optimizer.lrr: is not in the config"
    )
    debug = subprocess.run(
        [sys.executable, str(script), "optimizer.lrr=1"],
        cwd=workdir,
        env=child_env(RUNSTONE_DEBUG="1"),
        capture_output=True,
        text=True,
    )
    assert "Traceback" in debug.stderr


def test_load_keeps_exact_types_for_the_record(workdir: Path) -> None:
    write(workdir, {"c.yaml": "i: 1\nf: 1.0\ns: '1'\nb: true\nn: null\ne: 1e-3\nl: [1, 1.0, '1']\n"})
    out = plain(runstone.config.load("c.yaml"))
    assert (
        json.dumps(out)
        == '{"i": 1, "f": 1.0, "s": "1", "b": true, "n": null, "e": 0.001, "l": [1, 1.0, "1"]}'
    )


def test_secrets_in_files_are_blanked_or_the_text_is_not_kept(workdir: Path) -> None:
    write(
        workdir,
        {
            "c/flow.yaml": "wandb: {api_key: wk-99999, project: p}\nservices:\n  - token: tk-11111\n",
            "c/url.toml": 'url = "postgresql://u:pw123@h/db"\n',
            "c/g.json": '{"password": "jsonpass", "lr": 1}',
            "c/block.yaml": "password: |\n  line-one\n  line-two\n",
            "c/short.yaml": "pass: ab\n",
        },
    )
    texts = {}
    for name in ("flow.yaml", "url.toml", "g.json", "block.yaml", "short.yaml"):
        sources = provenance(runstone.config.load(f"c/{name}"))
        assert sources is not None
        texts[name] = sources.files[0]
    assert (
        texts["flow.yaml"]["text"]
        == "wandb: {api_key: <redacted>, project: p}\nservices:\n  - token: <redacted>\n"
    )
    assert "pw123" not in texts["url.toml"]["text"] and "postgresql://" not in texts["url.toml"]["text"]
    assert texts["g.json"]["text"] == '{"password": "<redacted>", "lr": 1}'
    for name in ("block.yaml", "short.yaml"):  # a secret that cannot be found as written: no text at all
        assert "text" not in texts[name] and "secret" in texts[name]["skipped"]
        assert len(texts[name]["sha256"]) == 64


def test_overrides_are_recorded_without_secrets(conf: Path) -> None:
    sources = provenance(runstone.config.load(conf, ["+api_key=sk-live-123", "seed=3"]))
    assert sources is not None and sources.overrides == ("+api_key=<redacted>", "seed=3")


def test_a_missing_value_can_be_set_as_the_error_says(workdir: Path) -> None:
    write(workdir, {"c.yaml": "data:\n  path: ???\n  n: null\n"})
    assert runstone.config.load("c.yaml", ["data.path=/x", "+data.n=3"]).data == {"path": "/x", "n": 3}


def test_a_key_only_the_schema_has_can_be_set(conf: Path) -> None:
    cfg = runstone.config.load(conf, ["model.patch=4"], schema=Train)
    assert cfg.model.patch == 4
    with pytest.raises(ConfigError, match=r"override '~model.depth': model.depth: cannot be deleted"):
        runstone.config.load(conf, ["~model.depth"], schema=Train)


def test_a_loose_pydantic_schema_still_refuses_unknown_keys(conf: Path) -> None:
    class Loose(BaseModel):
        seed: int

    with pytest.raises(ConfigError, match=r"conf/model/resnet.yaml: model.name: not in the schema Loose"):
        runstone.config.load(conf, schema=Loose)


def test_uncaught_config_errors_from_init_print_one_line(workdir: Path) -> None:
    script = workdir / "t.py"
    script.write_text(
        "import runstone\nfrom omegaconf import OmegaConf\nrunstone.init(config=OmegaConf.create({'x': '???'}))\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=workdir, env=child_env(), capture_output=True, text=True
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("runstone: config error: x: has no value")
    assert len(result.stderr.strip().splitlines()) == 1


def test_now_resolver_and_duplicate_keys(workdir: Path) -> None:
    write(workdir, {"c.yaml": "day: ${now:%Y}\n", "d.yaml": "a: 1\nb: 2\na: 3\n"})
    assert len(runstone.config.load("c.yaml").day) == 4
    with pytest.raises(
        ConfigError, match=r"d.yaml: invalid YAML: found duplicate key a \(line 3, column 1\)"
    ):
        runstone.config.load("d.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("a=[1", "'[' is not closed"),
        ("a=choice(1,2)", "is a sweep"),
        ("a=int(x)", "cannot cast 'x' to int"),
    ],
)
def test_malformed_values(workdir: Path, override: str, message: str) -> None:
    write(workdir, {"c.yaml": "a: 1\n"})
    with pytest.raises(ConfigError, match=re.escape(message)):
        runstone.config.load("c.yaml", [override])
