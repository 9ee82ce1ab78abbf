"""A config handed to a run: stored whole and exactly, searchable, redacted, diffed, given back."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import math
import pathlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict

import runstone
from runstone._json import diff_trees
from runstone.capture.secrets import is_secret_key
from runstone.entities import ConfigChange
from runstone.errors import ConfigError, UsageError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Opt:
    lr: float = 0.1
    steps: int = 10


@dataclasses.dataclass
class Train:
    opt: Opt = dataclasses.field(default_factory=Opt)
    name: str = "x"
    color: Color = Color.RED
    out: pathlib.Path = pathlib.Path("runs")


class PTrain(BaseModel):
    lr: float = 0.1
    layers: list[int] = [1, 2]
    color: Color = Color.BLUE


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float


def start(config: Any) -> str:
    with runstone.init(config=config, capture=False) as run:
        pass
    return run.id


def deep_same(a: Any, b: Any) -> bool:
    """Equal with types, keys included: 1, 1.0, True and "1" all differ; NaN equals NaN; -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        keys_a = sorted((repr(k), type(k).__name__) for k in a)
        keys_b = sorted((repr(k), type(k).__name__) for k in b)
        return keys_a == keys_b and all(deep_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(deep_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def test_a_dict_is_stored_whole_hashed_and_searchable(workdir: Path) -> None:
    run_id = start({"optimizer": {"lr": 0.01, "name": "sgd"}, "epochs": 3})
    client = runstone.Client()
    run = client.get_run(run_id)
    assert run.config == {"epochs": 3, "optimizer": {"lr": 0.01, "name": "sgd"}}
    assert run.params == {"epochs": 3, "optimizer.lr": 0.01, "optimizer.name": "sgd"}
    record = runstone.config.record_of(run_id)
    assert record["source"] == "dict" and record["digest"] == run.config_digest
    assert record["digest"].startswith("sha256:")
    start({"optimizer": {"lr": 0.1}})
    found = client.find_runs("params.optimizer.lr = 0.01")
    assert [r.id for r in found] == [run_id]


def test_omegaconf_from_load_records_files_and_overrides(workdir: Path) -> None:
    (workdir / "conf" / "opt").mkdir(parents=True)
    (workdir / "conf" / "train.yaml").write_text("defaults:\n  - opt: sgd\nepochs: 2\n")
    (workdir / "conf" / "opt" / "sgd.yaml").write_text("lr: 0.1\n")
    cfg = runstone.config.load("conf/train.yaml", ["opt.lr=0.01"])
    run_id = start(cfg)
    record = runstone.config.record_of(run_id)
    assert record["source"] == "runstone.config.load"
    assert record["overrides"] == ["opt.lr=0.01"]
    assert [f["path"] for f in record["files"]] == ["conf/train.yaml", "conf/opt/sgd.yaml"]
    assert record["files"][1]["text"] == "lr: 0.1\n"
    assert record["choices"] == {"opt": "sgd"} and record["primary"] == "conf/train.yaml"
    back = runstone.config.of_run(run_id)
    assert isinstance(back, DictConfig) and back == OmegaConf.create({"epochs": 2, "opt": {"lr": 0.01}})


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        (Train(), "dataclass"),
        (PTrain(), "pydantic"),
        (argparse.Namespace(lr=0.1, epochs=3, name="1"), "namespace"),
        (OmegaConf.create({"a": {"b": 1.0}, "c": "${a.b}"}), "omegaconf"),
        (OmegaConf.structured(Opt), "omegaconf"),
    ],
)
def test_every_config_kind_comes_back_as_itself(workdir: Path, config: Any, kind: str) -> None:
    run_id = start(config)
    record = runstone.config.record_of(run_id)
    assert record["source"] == kind
    back = runstone.config.of_run(run_id)
    if kind == "omegaconf":
        assert isinstance(back, DictConfig)
        expected = OmegaConf.to_container(config, resolve=True, enum_to_str=True)
        assert deep_same(OmegaConf.to_container(back), expected)
    elif kind == "dataclass":
        assert back == Train()  # paths and enums are stored as text and built back
        assert isinstance(back.opt, Opt) and back.color is Color.RED and isinstance(back.out, pathlib.Path)
    else:
        assert type(back) is type(config) and back == config


def test_a_class_that_cannot_be_imported_gives_a_dict_or_uses_the_schema_passed(workdir: Path) -> None:
    run_id = start(Opt(lr=0.5))
    record = runstone.config.record_of(run_id)
    assert record["type"] == f"{__name__}:Opt" and record["schema"] == f"{__name__}:Opt"
    assert runstone.config.of_run(run_id, schema=Opt) == Opt(lr=0.5)
    with pytest.raises(ConfigError, match="does not fit"):
        runstone.config.of_run(run_id, schema=Strict)

    @dataclasses.dataclass
    class Local:  # its module cannot give it back by name
        lr: float = 0.25

    local_id = start(Local())
    assert runstone.config.of_run(local_id) == {"lr": 0.25}
    assert runstone.config.of_run(local_id, schema=Local) == Local()


def test_values_under_secret_keys_are_redacted(workdir: Path) -> None:
    run_id = start(
        {
            "api_key": "sk-123",
            "db": {"password": "hunter2", "url": "postgresql://me:pw@host/db"},
            "tokenizer": "bert",
            "max_tokens": 512,
            "use_auth_token": True,
        }
    )
    run = runstone.Client().get_run(run_id)
    assert run.config["api_key"] == "<redacted>" and run.config["db"]["password"] == "<redacted>"
    assert run.config["db"]["url"] == "postgresql://host/db"
    assert run.config["tokenizer"] == "bert" and run.config["max_tokens"] == 512
    assert run.config["use_auth_token"] is True
    assert runstone.config.record_of(run_id)["redacted"] == ["api_key", "db.password", "db.url"]


def test_unstorable_configs_are_refused_before_a_run_exists(workdir: Path) -> None:
    with pytest.raises(UsageError, match="config must be a mapping"):
        runstone.init(config=[1, 2], capture=False)
    with pytest.raises(UsageError, match="both param 'a.b'"):
        runstone.init(config={"a.b": 1, "a": {"b": 2}}, capture=False)
    with pytest.raises(ConfigError, match="x: has no value"):
        runstone.init(config=OmegaConf.create({"x": "???"}), capture=False)
    assert runstone.Client().count_runs() == 0


def test_log_params_that_collide_are_refused_and_the_run_goes_on(workdir: Path) -> None:
    with runstone.init(config={"a": {"b": 1}}, capture=False) as run:
        with pytest.raises(UsageError, match="both param 'a.b'"):
            run.log_params({"a.b": 2})
        run.log_params({"c": 3})
    assert runstone.Client().get_run(run.id).params == {"a.b": 1, "c": 3}


def test_diff_by_run_and_by_config(workdir: Path) -> None:
    a = start({"lr": 1, "opt": {"name": "sgd", "m": 0.9}, "gone": True, "nan": float("nan")})
    b = start({"lr": 1.0, "opt": {"name": "adam", "m": 0.9}, "new": "1", "nan": float("nan")})
    expected = [
        ConfigChange("gone", "removed", old=True),
        ConfigChange("lr", "changed", old=1, new=1.0),
        ConfigChange("new", "added", new="1"),
        ConfigChange("opt.name", "changed", old="sgd", new="adam"),
    ]
    assert runstone.config.diff(a, b) == expected
    assert runstone.config.diff({"x": 1}, OmegaConf.create({"x": "1"})) == [
        ConfigChange("x", "changed", 1, "1")
    ]
    assert runstone.config.diff(a, a) == []
    assert expected[0].to_dict() == {"key": "gone", "kind": "removed", "old": True, "new": None}


def test_diff_flattens_a_mapping_replaced_by_a_value() -> None:
    assert diff_trees({"a": {"b": 1, "c": 2}}, {"a": 3}) == [
        ConfigChange("a", "added", new=3),
        ConfigChange("a.b", "removed", old=1),
        ConfigChange("a.c", "removed", old=2),
    ]


# --- the round trip, property-tested ------------------------------------------

_keys = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00."), min_size=1, max_size=8
).filter(lambda k: not is_secret_key(k))
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
)
_trees = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(_keys | st.integers(min_value=-5, max_value=5), children, max_size=4)
    ),
    max_leaves=12,
)
_configs = st.dictionaries(_keys, _trees, max_size=5)


def _no_key_clash(tree: Any) -> bool:
    """Integer and text keys that read alike ({1: .., "1": ..}) cannot both be stored."""
    if isinstance(tree, dict):
        return len({str(k) for k in tree}) == len(tree) and all(_no_key_clash(v) for v in tree.values())
    if isinstance(tree, list):
        return all(_no_key_clash(v) for v in tree)
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=_configs.filter(_no_key_clash))
def test_of_run_gives_back_exactly_the_dict_it_was_given(workdir: Path, config: dict[str, Any]) -> None:
    run_id = start(config)
    back = runstone.config.of_run(run_id)
    assert deep_same(config, back), (config, back)
    assert runstone.Client().get_run(run_id).config_digest == runstone.config.record_of(run_id)["digest"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(_keys, _leaves | st.lists(_leaves, max_size=3), max_size=5))
def test_of_run_gives_back_an_omegaconf_config_with_the_same_types(
    workdir: Path, config: dict[str, Any]
) -> None:
    given_cfg = OmegaConf.create(config)
    run_id = start(given_cfg)
    back = runstone.config.of_run(run_id)
    assert isinstance(back, DictConfig)
    assert deep_same(OmegaConf.to_container(back), OmegaConf.to_container(given_cfg))


class Mode(enum.Enum):
    FAST = 1
    SLOW = 2


@dataclasses.dataclass
class Inner:
    lr: float = 0.1


@dataclasses.dataclass
class Rich:
    inner: Inner = dataclasses.field(default_factory=Inner)
    maybe: Inner | None = dataclasses.field(default_factory=Inner)
    nothing: Inner | None = None
    many: list[Inner] = dataclasses.field(default_factory=lambda: [Inner(0.5), Inner()])
    shape: tuple[int, int] = (3, 4)
    modes: list[Mode] = dataclasses.field(default_factory=lambda: [Mode.SLOW])
    by_name: dict[str, Inner] = dataclasses.field(default_factory=lambda: {"a": Inner(2.0)})
    derived: int = dataclasses.field(init=False, default=7)


def test_dataclasses_come_back_whole(workdir: Path) -> None:
    run_id = start(Rich())
    back = runstone.config.of_run(run_id)
    assert back == Rich()
    assert isinstance(back.many[0], Inner) and back.shape == (3, 4) and back.modes == [Mode.SLOW]
    assert runstone.config.of_run(run_id, schema=dict)["shape"] == [3, 4]


def test_secret_types_and_uuids_from_pydantic(workdir: Path) -> None:
    import uuid

    from pydantic import SecretStr

    class WithSecret(BaseModel):
        api: SecretStr
        plain_field: SecretStr
        id: uuid.UUID

    ident = uuid.uuid4()
    run_id = start(WithSecret(api=SecretStr("sk-1"), plain_field=SecretStr("x"), id=ident))
    assert runstone.Client().get_run(run_id).config == {
        "api": "<redacted>",
        "id": str(ident),
        "plain_field": "<redacted>",
    }
    assert runstone.config.record_of(run_id)["redacted"] == ["api", "plain_field"]


def test_keys_that_would_be_stored_alike_are_refused(workdir: Path) -> None:
    with pytest.raises(UsageError, match="at a hold both the integer 1 and the text '1'"):
        runstone.init(config={"a": {1: "x", "1": "y"}}, capture=False)
    with pytest.raises(UsageError, match="Config key True at the top level is of type bool"):
        runstone.init(config={True: 1}, capture=False)


def test_integer_keys_replaced_later_by_log_params(workdir: Path) -> None:
    with runstone.init(config={"a": {"b": {1: "x"}}, "c": {2: "y"}}, capture=False) as run:
        run.log_params({"a": 5})
    assert runstone.config.of_run(run.id) == {"a": 5, "c": {2: "y"}}
