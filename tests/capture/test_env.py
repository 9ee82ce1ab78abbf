"""Environment capture: distributions, requirements export, variables and secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import runstone
from runstone.capture.env import capture_environment, distributions, environment_variables, requirements_txt
from tests.conftest import child_env


def _dist(site: Path, folder: str, direct_url: dict | None = None, installer: str | None = None) -> None:
    meta = site / folder
    meta.mkdir(parents=True)
    if direct_url is not None:
        (meta / "direct_url.json").write_text(json.dumps(direct_url))
    if installer is not None:
        (meta / "INSTALLER").write_text(installer + "\n")


def test_distributions_and_how_they_were_installed(tmp_path: Path) -> None:
    site, other = tmp_path / "site", tmp_path / "other"
    _dist(site, "numpy-2.4.6.dist-info", installer="uv")
    _dist(site, "my_pkg-0.3.dist-info", {"url": "file:///src/my-pkg", "dir_info": {"editable": True}})
    _dist(
        site,
        "tool-1.0.dist-info",
        {
            "url": "https://tok@git.example.invalid/tool.git",
            "vcs_info": {"vcs": "git", "commit_id": "abc123"},
        },
    )
    _dist(
        site,
        "wheelish-2.0.dist-info",
        {"url": "file:///wheels/wheelish-2.0-py3-none-any.whl", "archive_info": {}},
    )
    _dist(site, "Old_Egg-0.9-py3.11.egg-info")
    _dist(other, "numpy-1.0.dist-info")  # shadowed: the first on the path wins
    found = {d["name"]: d for d in distributions([str(site), str(other)])}
    assert found["numpy"] == {"name": "numpy", "version": "2.4.6", "installer": "uv"}
    assert found["my_pkg"]["source"] == {"kind": "editable", "url": "file:///src/my-pkg"}
    assert found["tool"]["source"]["url"] == "https://git.example.invalid/tool.git"
    assert found["Old_Egg"]["version"] == "0.9"
    text = requirements_txt({"python": {"version": "3.11.7"}, "distributions": list(found.values())})
    lines = text.splitlines()
    assert "-e /src/my-pkg" in lines
    assert "tool @ git+https://git.example.invalid/tool.git@abc123" in lines
    assert "numpy==2.4.6" in lines
    for line in lines:  # every other line is a valid pip requirement
        if line and not line.startswith(("#", "-e ")):
            Requirement(line)


def test_this_environment_exports_every_installed_distribution() -> None:
    from importlib import metadata

    record = capture_environment()
    names = {d["name"].lower().replace("_", "-") for d in record["distributions"]}
    installed = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()}
    assert installed <= names
    assert record["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert record["python"]["environment_kind"] in ("venv", "system", "conda")


def test_variables_policy_and_redaction() -> None:
    env = {
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "4",
        "MY_API_TOKEN": "tok-123",
        "AWS_SECRET_ACCESS_KEY": "abc",
        "DB_PASSWORD": "pw",
        "DATABASE_URL": "postgresql://bob:pw@db:5432/x",
        "EDITOR": "vim",
        "RUNSTONE_CAPTURE_ENV_DENY": "EDITOR,OMP_*",
    }
    variables = environment_variables(env)
    assert variables["values"]["PYTHONHASHSEED"] == "0"
    assert variables["values"]["OMP_NUM_THREADS"] == "4"  # numeric variables are always kept
    assert "EDITOR" not in variables["values"]
    assert variables["values"]["DATABASE_URL"] == "postgresql://db:5432/x"
    assert sorted(variables["redacted"]) == ["AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "MY_API_TOKEN"]
    allow_only = environment_variables({"A": "1", "B": "2", "RUNSTONE_CAPTURE_ENV_ALLOW": "A"})
    assert set(allow_only["values"]) == {"A"}


def test_a_secret_in_the_environment_never_reaches_the_store(workdir: Path) -> None:
    code = "import runstone\nwith runstone.init() as run:\n    run.log({'x': 1.0})\n"
    secret = "sk-live-0123456789abcdef"
    env = child_env(OPENAI_API_KEY=secret, SERVICE_URL=f"https://user:{secret}@api.example.invalid/v1")
    subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, check=True)
    stored = b"".join(p.read_bytes() for p in (workdir / ".runstone").rglob("*") if p.is_file())
    assert secret.encode() not in stored
    [run] = runstone.Client().find_runs()
    variables = runstone.Client().get_records(run.id)["environment"]["variables"]
    assert "OPENAI_API_KEY" in variables["redacted"]
    assert variables["values"]["SERVICE_URL"] == "https://api.example.invalid/v1"


@pytest.mark.parametrize("module", ["numpy", "pandas"])
def test_capture_imports_nothing_the_program_did_not(workdir: Path, module: str) -> None:
    code = f"import sys, runstone\nrun = runstone.init()\nrun.finish()\nprint({module!r} in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=child_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_conda_explicit_package_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = tmp_path / "conda-meta"
    meta.mkdir()
    (meta / "zlib-1.3-h0.json").write_text(
        json.dumps({"url": "https://conda.example.invalid/linux-64/zlib-1.3-h0.conda"})
    )
    (meta / "history").write_text("")
    monkeypatch.setenv("CONDA_PREFIX", str(tmp_path))
    record = capture_environment()
    assert record["conda"] == {
        "prefix": str(tmp_path),
        "explicit": ["https://conda.example.invalid/linux-64/zlib-1.3-h0.conda"],
    }


def test_harder_secrets_are_redacted() -> None:
    env = {
        "GH_PAT": "s1",
        "MYSQL_PWD": "s2",
        "SSHPASS": "s3",
        "CI_JOB_JWT": "s4",
        "SLACK_WEBHOOK_URL": "https://hooks.example.invalid/services/s5",
        "SQL_CONN": "Server=x;Password=s6;",
        "AZURE_STORAGE": "DefaultEndpointsProtocol=https;AccountKey=s7",
        "HTTPS_PROXY": "http://u:p@ss:s8@proxy:80",
        "MONGO_URI": "mongodb://bob:s/9@db/x",
        "PLAIN_URL": "https://example.invalid/a/b",
    }
    variables = environment_variables(env)
    assert "s" not in "".join(v for k, v in variables["values"].items() if k != "PLAIN_URL").replace(
        "https", ""
    )
    assert set(variables["values"]) == {"HTTPS_PROXY", "PLAIN_URL"}
    assert variables["values"]["HTTPS_PROXY"] == "http://proxy:80"


def test_egg_info_names(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "baz-2.0-py3.11-linux-x86_64.egg-info")
    (site / "foo.egg-info").mkdir()
    (site / "foo.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: foo\nVersion: 0.4.2\n")
    found = {d["name"]: d["version"] for d in distributions([str(site)])}
    assert found == {"baz": "2.0", "foo": "0.4.2"}


def test_an_installed_dist_info_wins_over_a_build_egg_info_in_the_checkout(tmp_path: Path) -> None:
    checkout, site = tmp_path / "checkout", tmp_path / "site-packages"
    (checkout / "demo.egg-info").mkdir(parents=True)
    (checkout / "demo.egg-info" / "PKG-INFO").write_text("Name: demo\nVersion: 0.1\n")
    meta = site / "demo-0.1.dist-info"
    meta.mkdir(parents=True)
    url = f"file://{checkout}"
    (meta / "direct_url.json").write_text(json.dumps({"url": url, "dir_info": {"editable": True}}))
    [dist] = distributions([str(checkout), str(site)])  # the checkout comes first, as a script's folder does
    assert dist == {"name": "demo", "version": "0.1", "source": {"kind": "editable", "url": url}}
    (site / "demo-0.1.dist-info" / "direct_url.json").unlink()
    (meta).rmdir()
    [dist] = distributions([str(checkout), str(site)])  # a `setup.py develop` install has only the egg-info
    assert dist == {"name": "demo", "version": "0.1"}
