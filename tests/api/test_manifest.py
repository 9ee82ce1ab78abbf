"""Manifests: an ended run is sealed with the digest of its content; fsck names what changed since."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import runstone
from runstone.api.manifest import build_manifest, manifest_digest


def finished_run(workdir: Path) -> str:
    (workdir / "m.bin").write_bytes(b"model")
    with runstone.init(project="p", config={"lr": 0.1}, capture=False) as run:
        for i in range(5):
            run.log({"loss": 1 / (i + 1)}, step=i)
        run.log_artifact(workdir / "m.bin")
    return run.id


def test_a_finished_run_is_sealed_and_fsck_agrees(workdir: Path) -> None:
    run_id = finished_run(workdir)
    client = runstone.Client()
    sealed = client.get_records(run_id)["manifest"]
    manifest = sealed["manifest"]
    assert (
        sealed["digest"]
        == manifest_digest(manifest)
        == manifest_digest(build_manifest(client._open(), run_id))
    )
    assert manifest["run"]["status"] == "finished" and manifest["config"]["tree"].startswith("sha256:")
    assert manifest["metrics"]["loss"]["count"] == 5
    assert [o["name"] for o in manifest["outputs"]] == ["m.bin"]
    client.set_tags(run_id, {"note": "tags may change"})
    report = client.fsck()
    assert report.ok and report.sealed == 1
    shown = subprocess.run(
        [sys.executable, "-m", "runstone", "show", run_id], cwd=workdir, capture_output=True, text=True
    )
    assert re.search(rf"^manifest +{sealed['digest']}$", shown.stdout, re.M)


def test_fsck_names_what_changed_in_a_sealed_run(workdir: Path) -> None:
    run_id = finished_run(workdir)
    db = sqlite3.connect(workdir / ".runstone" / "runstone.db")
    db.execute("UPDATE metric_chunks SET vals = ? WHERE key = 'loss'", (b"\x00" * 40,))
    db.execute("UPDATE runs SET exit_code = 3")
    db.commit()
    db.close()
    report = runstone.Client().fsck()
    assert not report.ok
    assert report.tampered == [{"run": run_id, "changed": ["metrics.loss", "run.exit_code"]}]


def test_a_running_or_crashed_run_has_no_manifest(workdir: Path) -> None:
    run = runstone.init(project="p", capture=False)
    assert "manifest" not in runstone.Client().get_records(run.id)
    run.finish()
    assert "manifest" in runstone.Client().get_records(run.id)


def test_fsck_sees_forged_params_config_summaries_and_artifact_metadata(workdir: Path) -> None:
    run_id = finished_run(workdir)
    db = sqlite3.connect(workdir / ".runstone" / "runstone.db")
    db.execute("UPDATE params SET value_json = '0.9', value_num = 0.9, value_text = '0.9' WHERE key = 'lr'")
    db.execute("UPDATE runs SET config_json = '{\"lr\":0.9}'")
    db.execute("UPDATE metric_summary SET last_value = 0.0001")
    db.execute("UPDATE artifacts SET metadata_json = '{\"acc\":1.0}', kind = 'forged'")
    db.commit()
    db.close()
    [tampered] = runstone.Client().fsck().tampered
    assert tampered["run"] == run_id
    assert tampered["changed"] == ["config.params", "config.tree", "metric_summaries", "outputs"]
