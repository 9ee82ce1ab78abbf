"""``runstone artifacts``, ``run --input/--output``, ``fsck`` and ``gc`` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import runstone
from tests.conftest import child_env, runstone_cmd


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*runstone_cmd(), *args],
        cwd=cwd,
        env=child_env(RUNSTONE_FLUSH_INTERVAL_S="0.2"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_wrapped_command_records_its_inputs_and_stores_its_outputs(workdir: Path) -> None:
    (workdir / "data").mkdir()
    (workdir / "data" / "train.csv").write_text("x,y\n1,2\n")
    (workdir / "train.py").write_text(
        "import pathlib\n"
        "rows = pathlib.Path('data/train.csv').read_text().count('\\n')\n"
        "pathlib.Path('out').mkdir()\n"
        "pathlib.Path('out/model.txt').write_text(f'rows={rows}')\n"
    )
    result = cli(
        "run",
        "--input",
        "data",
        "--output",
        "out",
        "--output",
        "never.txt",
        "--",
        sys.executable,
        "train.py",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr
    assert "--output never.txt was not written by the command" in result.stderr
    [run] = runstone.Client().find_runs()
    listed = json.loads(cli("artifacts", "ls", run.id, "--json", cwd=workdir).stdout)["artifacts"]
    assert [(a["ref"], a["direction"], a["stored"]) for a in listed] == [
        ("data@v1", "input", False),
        ("out@v1", "output", True),
    ]
    assert "artifacts  in: data@v1; out: out@v1" in cli("show", run.id, cwd=workdir).stdout
    table = cli("artifacts", "ls", run.id, cwd=workdir).stdout
    assert "out@v1" in table and "digest only" in table
    got = cli("artifacts", "get", run.id, "out", "-o", "fetched", cwd=workdir)
    assert got.returncode == 0, got.stderr
    assert (workdir / "fetched" / "model.txt").read_text() == "rows=2"
    again = cli("artifacts", "get", run.id, "out", "-o", "fetched", cwd=workdir)  # never nested, never merged
    assert again.returncode == 2 and "fetched already exists" in again.stderr
    (workdir / "precious.txt").write_text("keep me")
    refused = cli("artifacts", "get", run.id, "out@v1", "-o", "precious.txt", cwd=workdir)
    assert refused.returncode == 2 and "already exists" in refused.stderr
    assert (workdir / "precious.txt").read_text() == "keep me"
    missing = cli("artifacts", "get", run.id, "nope", cwd=workdir)
    assert missing.returncode == 3 and "its artifacts: data@v1, out@v1" in missing.stderr
    digest_only = cli("artifacts", "get", run.id, "data", cwd=workdir)
    assert digest_only.returncode == 4 and "recorded by digest only" in digest_only.stderr
    bad_input = cli("run", "--input", "nothing-here", "--", "true", cwd=workdir)
    assert bad_input.returncode == 2 and "no run was created" in bad_input.stderr
    assert len(runstone.Client().find_runs()) == 1


def test_fsck_and_gc(workdir: Path) -> None:
    (workdir / "m.bin").write_bytes(b"model")
    with runstone.init(project="p", capture=False) as run:
        artifact = run.log_artifact(workdir / "m.bin")
    ok = cli("fsck", cwd=workdir)
    assert ok.returncode == 0 and ok.stdout.endswith("ok\n")
    path = workdir / ".runstone" / "objects" / "sha256" / artifact.digest[7:9] / artifact.digest[9:]
    path.unlink()
    broken = cli("fsck", "--json", cwd=workdir)
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["missing"] == [
        {"digest": artifact.digest, "referred_to_by": "artifact p/m.bin@v1"}
    ]
    gc = cli("gc", "--dry-run", "--grace", "0", cwd=workdir)
    assert gc.returncode == 0 and "would delete 0 objects" in gc.stdout
    assert cli("gc", "--grace", "-1", cwd=workdir).returncode == 2


def test_a_store_named_by_uri_keeps_its_objects_beside_it(workdir: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "f.txt").write_text("theirs")
    uri = f"sqlite:///{other / '.runstone' / 'runstone.db'}"
    with runstone.init(project="p", uri=uri) as run:
        run.log_artifact(other / "f.txt")
    assert list((other / ".runstone" / "objects").rglob("*")) and not (workdir / ".runstone").exists()
    (workdir / "mine.txt").write_text("mine")
    with runstone.init(project="p", capture=False) as mine:
        mine.log_artifact(workdir / "mine.txt")
    gc = cli("gc", "--dry-run", "--grace", "0", "--uri", uri, cwd=workdir)
    assert gc.returncode == 0 and "would delete 0 objects" in gc.stdout, gc.stdout
    assert cli("fsck", "--uri", uri, cwd=workdir).returncode == 0
    got = cli("artifacts", "get", run.id, "f.txt", "-o", "copy.txt", "--uri", uri, cwd=workdir)
    assert got.returncode == 0, got.stderr
    assert (workdir / "copy.txt").read_text() == "theirs"
