"""The command line: listing, showing, output formats, and errors without tracebacks."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

import runstone
from runstone.cli import VERBS, build_parser
from runstone.store.sql.schema import SCHEMA_VERSION
from tests.conftest import ROOT, child_env, runstone_cmd


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*runstone_cmd(), *args], cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def three_runs(workdir: Path) -> list[str]:
    ids = []
    for lr, acc, stage in [(0.1, 0.95, "dev"), (0.01, 0.80, "prod"), (0.01, 0.99, "dev")]:
        with runstone.init(
            project="demo", config={"lr": lr, "model": {"depth": 3}}, tags={"stage": stage}
        ) as run:
            run.log({"acc": 0.5, "loss": 1.0}, step=0)
            run.log({"acc": acc, "loss": 1 - acc}, step=1)
        ids.append(run.id)
    return ids


def test_ls_plain_table(workdir: Path, three_runs: list[str]) -> None:
    result = cli("ls", cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "STARTED", "DURATION", "metrics.acc", "metrics.loss"]
    assert len(lines) == 4
    assert lines[1].split()[0] == three_runs[2][: len(lines[1].split()[0])]  # newest first, a unique prefix
    assert "0.99" in lines[1]


def test_ls_filter_sort_limit_json(workdir: Path, three_runs: list[str]) -> None:
    result = cli("ls", "--filter", "metrics.acc > 0.9 and params.lr = 0.01", "--json", cwd=workdir)
    assert [r["id"] for r in json.loads(result.stdout)] == [three_runs[2]]
    result = cli("ls", "--sort", "-metrics.acc", "--limit", "2", "--json", cwd=workdir)
    assert [r["id"] for r in json.loads(result.stdout)] == [three_runs[2], three_runs[0]]
    assert "Showing 2 of 3 runs" in result.stderr
    result = cli(
        "ls", "-f", "tags.stage = dev", "-s", "metrics.acc", "--columns", "params.model.depth", cwd=workdir
    )
    lines = result.stdout.splitlines()
    assert lines[0].split()[-3:] == ["params.model.depth", "tags.stage", "metrics.acc"]
    assert [line.split()[-1] for line in lines[1:]] == ["0.95", "0.99"]


def test_ls_csv(workdir: Path, three_runs: list[str]) -> None:
    result = cli("ls", "--csv", "--columns", "params.lr,min(metrics.loss)", cwd=workdir)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in rows] == three_runs[::-1]
    assert [r["params.lr"] for r in rows] == ["0.01", "0.01", "0.1"]
    assert rows[0]["min(metrics.loss)"] == "0.01"


def test_ls_without_store_or_matches(workdir: Path) -> None:
    result = cli("ls", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "")
    assert "No runstone store" in result.stderr
    assert not (workdir / ".runstone").exists()


def test_show_overview_and_parts(workdir: Path, three_runs: list[str]) -> None:
    run_id = three_runs[0]
    result = cli("show", run_id[:12], cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert run_id in result.stdout and "finished" in result.stdout and "model.depth" in result.stdout
    config = json.loads(cli("show", run_id, "--config", "--json", cwd=workdir).stdout)
    assert config == {"lr": 0.1, "model": {"depth": 3}}
    yaml_text = cli("show", run_id, "--config", cwd=workdir).stdout
    assert yaml.safe_load(yaml_text) == config and "lr: 0.1\nmodel:\n  depth: 3\n" in yaml_text
    metrics = json.loads(cli("show", run_id, "--metrics", "--json", cwd=workdir).stdout)
    assert metrics["acc"]["last"] == 0.95 and metrics["acc"]["count"] == 2
    history = cli("show", run_id, "--history", "acc", "--csv", cwd=workdir).stdout.splitlines()
    assert history[0] == "step,value,timestamp_ms" and history[2].startswith("1,0.95,")
    full = json.loads(cli("show", run_id, "--json", cwd=workdir).stdout)
    assert full["params"] == {"lr": 0.1, "model.depth": 3} and full["tags"] == {"stage": "dev"}


def test_json_output_is_strict_json_even_with_nan(workdir: Path) -> None:
    with runstone.init() as run:
        run.log({"v": float("nan"), "w": float("inf")})
    out = cli("ls", "--json", cwd=workdir).stdout
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data[0]["metrics"]["v"]["last"] == "NaN"
    assert data[0]["metrics"]["w"]["last"] == "Infinity"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ls", "--filter", "metrics.acc > and"], 2, "Invalid filter at column 15: expected a value"),
        (["ls", "--filter", "params.lr = 0.1 adn x"], 2, "expected 'and', 'or' or the end"),
        (["ls", "--filter", "foo = 1"], 2, "unknown field 'foo'"),
        (["ls", "--filter", "status = done"], 2, "unknown status 'done'"),
        (["ls", "--sort", "nope"], 2, "unknown field 'nope'"),
        (["show", "ffff"], 3, "No run in"),
        (["show", "xyz"], 3, "has an ID starting with, or the name, 'xyz'"),
        (["show", "RUN", "--config", "--metrics"], 2, "not allowed with argument"),
        (["show", "{id}", "--history", "nope"], 3, "has no metric 'nope'; its metrics: 'acc', 'loss'"),
        (["nosuchverb"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_line_without_traceback(
    workdir: Path, three_runs: list[str], args: list[str], code: int, message: str
) -> None:
    args = [a.replace("{id}", three_runs[0]) for a in args]
    result = cli(*args, cwd=workdir)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_filter_error_points_at_the_token(workdir: Path, three_runs: list[str]) -> None:
    result = cli("ls", "--filter", "metrics.acc > and", cwd=workdir)
    assert result.stderr.splitlines()[-2:] == ["  metrics.acc > and", "                ^"]


def test_ambiguous_prefix(workdir: Path, three_runs: list[str]) -> None:
    common = three_runs[0][:4]  # created within a second: they share their time prefix
    result = cli("show", common, cwd=workdir)
    assert result.returncode == 2
    assert "matches 3 runs" in result.stderr and "give more digits" in result.stderr


def test_store_from_a_newer_version(workdir: Path, three_runs: list[str]) -> None:
    db = workdir / ".runstone" / "runstone.db"
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_info SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    result = cli("ls", cwd=workdir)
    assert result.returncode == 6
    assert "written by a newer runstone" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_every_verb_has_help_with_examples_and_is_documented() -> None:
    parser = build_parser()
    docs = (ROOT / "docs" / "cli.md").read_text()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    names = sorted(subparsers.choices)  # type: ignore[attr-defined]
    assert names == sorted(
        [
            "quickstart",
            "run",
            "ls",
            "show",
            "diff",
            "reproduce",
            "verify",
            "ui",
            "server",
            "token",
            "sync",
            "config",
            "artifacts",
            "checkpoint",
            "lineage",
            "export",
            "env",
            "fsck",
            "gc",
        ]
    )
    assert len(VERBS) == len(names)
    for name in names:
        text = subparsers.choices[name].format_help()  # type: ignore[attr-defined]
        assert "examples:" in text, name
        assert f"## runstone {name}" in docs, f"docs/cli.md does not document {name}"
    assert "examples:" in parser.format_help()


def test_version_and_module_entry(workdir: Path) -> None:
    result = cli("--version", cwd=workdir)
    assert result.stdout.strip() == f"runstone {runstone.__version__}"
    assert cli(cwd=workdir).returncode == 2  # no verb: help and a usage error


def test_ls_columns_take_attributes_and_repeat(workdir: Path, three_runs: list[str]) -> None:
    result = cli("ls", "--columns", "params.lr", "--columns", "exit_code,host,status", "--csv", cwd=workdir)
    header = result.stdout.splitlines()[0].split(",")
    assert header[-3:] == ["params.lr", "exit_code", "host"]  # status is already a column


def test_ls_hints(workdir: Path, three_runs: list[str]) -> None:
    result = cli("ls", "--filter", "metrics.los > 1 and params.lr = 0.1", cwd=workdir)
    assert result.returncode == 0
    assert "No runs match (the store has 3). No run has metrics.los." in result.stderr
    assert cli("ls", "--filter", "status = FINISHED", "--json", cwd=workdir).returncode == 0
    bad = cli("ls", "--filter", "name like res%", cwd=workdir)
    assert bad.returncode == 2 and "quote patterns" in bad.stderr
    limit = cli("ls", "--limit", "-1", cwd=workdir)
    assert limit.returncode == 2 and "Invalid filter" not in limit.stderr and "--limit -1" in limit.stderr
    columns = cli("ls", "--columns", "bogus", cwd=workdir)
    assert "Invalid columns at column 1: unknown field 'bogus'" in columns.stderr


def test_show_by_name_and_option_checks(workdir: Path, three_runs: list[str]) -> None:
    with runstone.init(name="unique-name") as run:
        run.log({"x": 1.0})
    assert run.id in cli("show", "unique-name", cwd=workdir).stdout
    assert cli("show", run.id, "--csv", cwd=workdir).returncode == 2
    assert "--history needs a metric name" in cli("show", run.id, "--history", "", cwd=workdir).stderr
    empty = cli("show", run.id, "--log", cwd=workdir)
    assert empty.returncode == 0 and empty.stdout == "" and "no stored output" in empty.stderr


def test_plain_path_as_store_uri(workdir: Path) -> None:
    with runstone.init(uri=str(workdir / "elsewhere.db")) as run:
        run.log({"x": 1.0})
    result = cli("ls", "--uri", "elsewhere.db", "--json", cwd=workdir)
    assert [r["id"] for r in json.loads(result.stdout)] == [run.id]


def test_store_home_that_is_a_file(workdir: Path) -> None:
    (workdir / "afile").write_text("x")
    result = subprocess.run(
        [*runstone_cmd(), "ls"],
        cwd=workdir,
        env=child_env(RUNSTONE_HOME=str(workdir / "afile")),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 5
    assert "is a file, not a directory" in result.stderr


def test_show_code_env_diff_and_env_export(workdir: Path) -> None:
    import os

    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["commit", "-q", "--allow-empty", "-m", "first"],
    ):
        subprocess.run(["git", *args], cwd=workdir, env=env, check=True, capture_output=True)
    (workdir / "train.py").write_text("print(1)\n")
    subprocess.run(["git", "add", "train.py"], cwd=workdir, check=True)
    with runstone.init(seed=1) as run:
        run.log({"x": 1.0})
    code = cli("show", run.id, "--code", cwd=workdir)
    assert code.returncode == 0 and "branch        main" in code.stdout and "dirty         yes" in code.stdout
    assert "+print(1)" in cli("show", run.id, "--diff", cwd=workdir).stdout
    text = cli("show", run.id, "--env", cwd=workdir).stdout
    assert "python" in text and "packages" in text and "seed          1" in text
    records = json.loads(cli("show", run.id, "--env", "--json", cwd=workdir).stdout)
    assert set(records) == {"environment", "system", "seeds"}
    assert (
        json.loads(cli("show", run.id, "--code", "--json", cwd=workdir).stdout)["code"]["git"]["branch"]
        == "main"
    )
    exported = cli("env", "export", run.id, cwd=workdir).stdout.splitlines()
    assert exported[0].startswith("# Python ") and any(line.startswith("numpy==") for line in exported)
    assert cli("env", "export", run.id, "-o", "req.txt", cwd=workdir).returncode == 0
    assert (workdir / "req.txt").read_text().splitlines() == exported


def test_capture_failures_are_recorded_and_the_run_goes_on(workdir: Path) -> None:
    env = child_env(RUNSTONE_ARTIFACTS="nosuchprotocol://bucket/prefix")
    code = "import runstone\nwith runstone.init() as run:\n    run.log({'x': 1.0})\n"
    result = subprocess.run(
        [*runstone_cmd()[:1], "-c", code], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "could not record the run's code" in result.stderr
    [run] = runstone.Client().find_runs()
    record = runstone.Client().get_records(run.id)
    assert record["code"]["status"] == "failed" and "nosuchprotocol" in record["code"]["error"]
    assert record["environment"]["status"] == "ok"
    assert run.status.value == "finished" and run.metrics["x"].count == 1
