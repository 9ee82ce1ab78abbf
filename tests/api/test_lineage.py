"""Lineage: the three-stage example (prepare -> train -> evaluate), walked up and down, in every format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import runstone
from runstone.errors import NotFoundError, UsageError
from tests.conftest import ROOT, child_env

pytestmark = pytest.mark.slow


@pytest.fixture
def pipeline(workdir: Path) -> Path:
    project = workdir / "lineage"
    shutil.copytree(ROOT / "examples" / "lineage", project)
    for stage in ("prepare", "train", "evaluate"):
        result = subprocess.run(
            [sys.executable, f"{stage}.py"],
            cwd=project,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    return project


def test_up_from_the_report_reaches_the_raw_data_with_each_runs_record(
    pipeline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pipeline)
    graph = runstone.Client().lineage("report.json")
    text = graph.to_text()
    lines = text.splitlines()
    assert lines[0].startswith("report.json@v1 (report, sha256:")
    assert (
        lines[1].startswith("└── made by run ")
        and " evaluate (finished)" in lines[1]
        and "python 3." in lines[1]
    )
    assert any("input model.npz@v1" in line for line in lines)
    assert any(" train (finished)" in line and "config sha256:" in line for line in lines)
    assert lines[-1].strip().startswith("└── input data@v1") and "(shown above)" in lines[-1]
    assert "input raw@v1 (dataset" in text and "digest only" in text
    data = graph.to_dict()
    kinds = sorted((n["type"], n["label"].split(" ")[0]) for n in data["nodes"])
    assert kinds == sorted(
        [
            ("artifact", "report.json@v1"),
            ("artifact", "model.npz@v1"),
            ("artifact", "data@v1"),
            ("artifact", "raw@v1"),
            ("run", "evaluate"),
            ("run", "train"),
            ("run", "prepare"),
        ]
    )
    assert len(data["edges"]) == 7 and {e["relation"] for e in data["edges"]} == {"consumed", "produced"}


def test_down_from_the_raw_data_and_both_ways_from_a_run(
    pipeline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pipeline)
    client = runstone.Client()
    down = client.lineage("raw", direction="down").to_text()
    assert down.splitlines()[1].startswith("└── used by run ") and "output report.json@v1" in down
    both = client.lineage("train", direction="both").to_text()
    assert (
        "came from:" in both
        and "led to:" in both
        and "input raw@v1" in both
        and "output report.json@v1" in both
    )
    shallow = client.lineage("report.json", depth=1)
    assert len(shallow.to_dict()["nodes"]) == 2
    assert shallow.to_text().splitlines()[-1].endswith("… (not followed past the depth asked for)")
    dot = client.lineage("report.json").to_dot()
    assert dot.startswith("digraph lineage {") and dot.count("->") == 7
    mermaid = client.lineage("report.json").to_mermaid()
    assert mermaid.startswith("flowchart LR") and mermaid.count("-->") == 7


def test_lineage_errors(pipeline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(pipeline)
    with pytest.raises(NotFoundError, match="No run or artifact is named 'nothing'"):
        runstone.Client().lineage("nothing")
    with pytest.raises(UsageError, match="direction must be one of"):
        runstone.Client().lineage("train", direction="sideways")


def test_the_cli_prints_every_format(pipeline: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runstone", "lineage", *args],
            cwd=pipeline,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert cli("report.json").stdout.startswith("report.json@v1")
    assert json.loads(cli("artifact:data", "--down", "--format", "json").stdout)["direction"] == "down"
    assert cli("run:prepare", "--format", "dot").stdout.startswith("digraph")
    assert cli("data@v1", "--both", "--format", "mermaid").stdout.startswith("flowchart LR")
    bad = cli("nope")
    assert bad.returncode == 3 and "No run or artifact is named 'nope'" in bad.stderr
    assert cli("train", "--depth", "0").returncode == 2


def test_a_name_that_is_both_a_run_and_an_artifact_must_be_settled(
    pipeline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runstone.errors import AmbiguousError

    monkeypatch.chdir(pipeline)
    with runstone.init(project="lineage-example", name="data", capture=False):
        pass
    with pytest.raises(
        AmbiguousError, match="names both a run and an artifact; write run:data or artifact:data"
    ):
        runstone.Client().lineage("data")
    assert runstone.Client().lineage("artifact:data").to_text().startswith("data@v1")
    assert runstone.Client().lineage("run:data").to_text().startswith("run ")
