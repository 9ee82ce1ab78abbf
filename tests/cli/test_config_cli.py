"""``runstone config load|show|diff`` and ``show --config``, through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import runstone
from tests.conftest import child_env, runstone_cmd


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*runstone_cmd(), *args], cwd=cwd, env=child_env(**env), capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def conf(workdir: Path) -> Path:
    (workdir / "conf" / "opt").mkdir(parents=True)
    (workdir / "conf" / "train.yaml").write_text(
        "defaults:\n  - opt: sgd\n  - _self_\nepochs: 2\nname: '1'\napi_key: sk-1\n"
    )
    (workdir / "conf" / "opt" / "sgd.yaml").write_text("lr: 0.1\nm: 0.9\n")
    (workdir / "conf" / "opt" / "adam.yaml").write_text("lr: 0.001\n")
    (workdir / "schema.py").write_text(
        "import dataclasses\n"
        "@dataclasses.dataclass\nclass Opt:\n    lr: float = 0.1\n    m: float = 0.0\n"
        "@dataclasses.dataclass\nclass Train:\n"
        "    opt: Opt = dataclasses.field(default_factory=Opt)\n    epochs: int = 1\n"
        "    name: str = ''\n    api_key: str = ''\n"
    )
    return workdir / "conf" / "train.yaml"


def two_runs(conf: Path) -> tuple[str, str]:
    with runstone.init(config=runstone.config.load(conf), capture=False) as a:
        pass
    with runstone.init(config=runstone.config.load(conf, ["opt=adam", "epochs=2.0"]), capture=False) as b:
        pass
    return a.id, b.id


def test_load_prints_the_composed_config(conf: Path, workdir: Path) -> None:
    result = cli("config", "load", "conf/train.yaml", "opt.lr=0.5", "+extra=[1,2]", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == {
        "opt": {"lr": 0.5, "m": 0.9},
        "epochs": 2,
        "name": "1",
        "api_key": "sk-1",
        "extra": [1, 2],
    }
    as_json = json.loads(cli("config", "load", "conf/train.yaml", "--json", "--sources", cwd=workdir).stdout)
    assert as_json["files"] == ["conf/train.yaml", "conf/opt/sgd.yaml"]
    after_options = cli("config", "load", "conf/train.yaml", "--json", "opt.lr=0.5", "epochs=3", cwd=workdir)
    assert (
        json.loads(after_options.stdout)["opt"]["lr"] == 0.5
        and json.loads(after_options.stdout)["epochs"] == 3
    )
    unknown = cli("config", "load", "conf/train.yaml", "--nope", cwd=workdir)
    assert unknown.returncode == 2 and "unrecognized arguments: --nope" in unknown.stderr


def test_load_errors_are_one_line_without_a_traceback(conf: Path, workdir: Path) -> None:
    for args, message in [
        (
            ["opt.lr=fast", "--schema", "schema:Train"],
            "override 'opt.lr=fast': opt.lr: expected float, got 'fast'",
        ),
        (["opt=rmsprop"], "no option 'rmsprop' in config group 'opt' (choices: adam, sgd)"),
        (["--schema", "schema:Nope"], "--schema schema:Nope: schema has no class Nope"),
        (["--schema", "nomodule:X"], "cannot import nomodule"),
    ]:
        result = cli("config", "load", "conf/train.yaml", *args, cwd=workdir)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    missing = cli("config", "load", "conf/nope.yaml", cwd=workdir)
    assert (
        missing.returncode == 2 and missing.stderr == "runstone: error: conf/nope.yaml: no such config file\n"
    )


def test_show_config_is_yaml_with_its_sources_and_json_on_request(conf: Path, workdir: Path) -> None:
    _, b = two_runs(conf)
    for args in (["show", b, "--config"], ["config", "show", b]):
        result = cli(*args, cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert yaml.safe_load(result.stdout) == {
            "api_key": "<redacted>",
            "epochs": 2.0,
            "name": "1",
            "opt": {"lr": 0.001},
        }
        assert "epochs: 2.0\n" in result.stdout and "name: '1'\n" in result.stdout  # types show
        assert "# overrides: opt=adam epochs=2.0\n" in result.stdout
        assert "# secrets redacted: api_key\n" in result.stdout
    assert json.loads(cli("config", "show", b, "--json", cwd=workdir).stdout)["opt"] == {"lr": 0.001}
    overview = cli("show", b, cwd=workdir).stdout
    assert "(4 params) from conf/train.yaml, overrides: opt=adam epochs=2.0\n" in overview
    sources = cli("config", "show", b, "--sources", cwd=workdir).stdout
    assert "runstone.config.load" in sources and "conf/opt/adam.yaml" in sources and "opt=adam" in sources
    text = cli("config", "show", b, "--file", "conf/train.yaml", cwd=workdir).stdout
    assert text.startswith("defaults:") and "api_key: <redacted>" in text
    nofile = cli("config", "show", b, "--file", "x.yaml", cwd=workdir)
    assert nofile.returncode == 3 and "recorded: conf/train.yaml, conf/opt/adam.yaml" in nofile.stderr


def test_diff_shows_changes_with_types(conf: Path, workdir: Path) -> None:
    a, b = two_runs(conf)
    table = cli("config", "diff", a, b, cwd=workdir)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].split() == ["epochs", "changed", "2", "2.0"]
    assert lines[2].split() == ["opt.lr", "changed", "0.1", "0.001"]
    assert lines[3].split() == ["opt.m", "removed", "0.9"]
    data = json.loads(cli("config", "diff", a, b, "--json", cwd=workdir).stdout)
    assert data["changes"][0] == {"key": "epochs", "kind": "changed", "old": 2, "new": 2.0}
    assert cli("config", "diff", a, b, "--exit-code", cwd=workdir).returncode == 1
    same = cli("config", "diff", a, a, "--exit-code", cwd=workdir)
    assert same.returncode == 0 and "are the same" in same.stdout
    unknown = cli("config", "diff", a, "ffff", cwd=workdir)
    assert unknown.returncode == 3 and "Traceback" not in unknown.stderr


@pytest.mark.slow
def test_a_wrapped_script_that_never_calls_runstone_has_its_overrides_recorded(workdir: Path) -> None:
    (workdir / "train.py").write_text("import sys\nprint(sys.argv[1:])\n")
    result = subprocess.run(
        [
            *runstone_cmd(),
            "run",
            "--",
            sys.executable,
            "train.py",
            "optimizer.lr=0.01",
            "--epochs",
            "3",
            "+x='1'",
            "--api-key",
            "sk-secret-1",
            "hf_token=hf_abc",
        ],
        cwd=workdir,
        env=child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    [run] = runstone.Client().find_runs()
    cmdline = runstone.Client().get_records(run.id)["cmdline"]
    assert result.stdout.strip().endswith("'sk-secret-1', 'hf_token=hf_abc']")  # the command gets them
    assert "sk-secret-1" not in json.dumps(run.command)
    assert run.command[-3:] == ("--api-key", "<redacted>", "hf_token=<redacted>")
    assert cmdline["params"] == {
        "optimizer": {"lr": 0.01},
        "epochs": 3,
        "x": "1",
        "api_key": "<redacted>",
        "hf_token": "<redacted>",
    }
    assert cmdline["overrides"] == ["optimizer.lr=0.01", "+x='1'", "hf_token=<redacted>"]
    assert cmdline["parsed_from"] == "command line"
    shown = cli("show", run.id, "--config", cwd=workdir).stdout
    assert "# no config was recorded; parsed from the command line (best effort):" in shown
    assert yaml.safe_load(shown)["optimizer"] == {"lr": 0.01}
    assert (
        "parsed from the command line, best effort"
        in cli("config", "show", run.id, "--sources", cwd=workdir).stdout
    )


@pytest.mark.slow
def test_a_wrapped_script_that_loads_its_config_records_it_in_the_wrappers_run(
    conf: Path, workdir: Path
) -> None:
    (workdir / "train.py").write_text(
        "import sys, runstone\n"
        "cfg = runstone.config.load('conf/train.yaml', sys.argv[1:])\n"
        "with runstone.init(config=cfg) as run:\n"
        "    run.log({'lr': cfg.opt.lr})\n"
    )
    result = subprocess.run(
        [*runstone_cmd(), "run", "--", sys.executable, "train.py", "opt.lr=0.25"],
        cwd=workdir,
        env=child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    [run] = runstone.Client().find_runs()
    assert run.params["opt.lr"] == 0.25 and run.metrics["lr"].last_value == 0.25
    record = runstone.config.record_of(run.id)
    assert record["overrides"] == ["opt.lr=0.25"] and record["source"] == "runstone.config.load"
    assert runstone.Client().find_runs("params.opt.lr = 0.25")[0].id == run.id


def test_a_run_without_a_config_says_so(workdir: Path) -> None:
    with runstone.init(capture=False) as run:
        pass
    shown = cli("config", "show", run.id, cwd=workdir).stdout
    assert "no config was given to runstone.init" in shown and "sha256" not in shown
    sources = cli("config", "show", run.id, "--sources", cwd=workdir).stdout
    assert "digest" not in sources and "no config was given" in sources
    assert "config    (none)\n" in cli("show", run.id, cwd=workdir).stdout


def test_without_omegaconf_load_names_the_extra_and_show_still_works(conf: Path, workdir: Path) -> None:
    with runstone.init(config={"lr": 0.1}, capture=False) as run:
        pass
    blocked = "import sys; sys.modules['omegaconf'] = None; from runstone.cli import main; sys.exit(main(sys.argv[1:]))"

    def without(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", blocked, *args],
            cwd=workdir,
            env=child_env(),
            capture_output=True,
            text=True,
        )

    load = without("config", "load", "conf/train.yaml")
    assert (
        load.returncode == 7
        and "pip install 'runstone[config]'" in load.stderr
        and "Traceback" not in load.stderr
    )
    shown = without("config", "show", run.id)
    assert shown.returncode == 0 and "lr: 0.1" in shown.stdout
