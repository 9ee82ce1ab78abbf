"""Exports in standard formats, each read back by its standard's own library."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import runstone
from runstone.errors import UsageError
from tests.conftest import child_env


@pytest.fixture
def run_id(workdir: Path) -> str:
    (workdir / "raw.csv").write_text("a,b\n1,2\n")
    (workdir / "model.bin").write_bytes(b"weights")
    with runstone.init(project="exports", name="train", config={"lr": 0.1}) as run:
        run.use_dataset(workdir / "raw.csv")
        run.log_artifact(workdir / "model.bin", kind="model")
        run.log({"loss": 0.5})
    return run.id


def test_openlineage_events_are_valid_client_models(run_id: str) -> None:
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.serde import Serde

    text = runstone.Client().export(run_id, "openlineage")
    assert text is not None
    events = [json.loads(line) for line in text.splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        model = RunEvent(
            eventType=RunState(event["eventType"]),
            eventTime=event["eventTime"],
            run=Run(runId=event["run"]["runId"]),  # the client checks it is a UUID
            job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
            producer=event["producer"],
            inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in event["inputs"]],
            outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in event["outputs"]],
        )
        back = Serde.to_dict(model)
        assert back["run"]["runId"] == event["run"]["runId"]
        assert {k: back["job"][k] for k in ("namespace", "name")} == event["job"]
        assert back["eventType"] == event["eventType"]
        for dataset in event["inputs"] + event["outputs"]:
            for facet in dataset["facets"].values():
                assert facet["_producer"].startswith("https://") and facet["_schemaURL"].startswith(
                    "https://"
                )
    assert events[0]["job"]["namespace"] == "exports"
    assert [(d["namespace"], d["name"]) for d in events[1]["outputs"]] == [
        ("runstone://exports", "model.bin")
    ]
    assert [d["facets"]["runstone"]["name"] for d in events[1]["outputs"]] == ["model.bin"]
    assert events[1]["inputs"][0]["facets"]["runstone"]["stored"] is False


def test_prov_loads_in_the_prov_package(run_id: str, workdir: Path) -> None:
    from prov.model import ProvActivity, ProvAgent, ProvDocument, ProvEntity, ProvGeneration, ProvUsage

    runstone.Client().export(run_id, "prov", workdir / "run.prov.json")
    document = ProvDocument.deserialize(source=str(workdir / "run.prov.json"), format="json")
    records = list(document.get_records())
    kinds = [type(r) for r in records]
    assert kinds.count(ProvActivity) == 1 and kinds.count(ProvAgent) == 2
    assert kinds.count(ProvEntity) == 2 + 3  # the two artifacts; the code, environment and config records
    assert kinds.count(ProvGeneration) == 1 and kinds.count(ProvUsage) == 1 + 3
    [activity] = [r for r in records if isinstance(r, ProvActivity)]
    assert str(activity.identifier) == f"run:{run_id}"


def test_ro_crate_reads_in_rocrate(run_id: str, workdir: Path) -> None:
    from rocrate.rocrate import ROCrate

    result = subprocess.run(
        [sys.executable, "-m", "runstone", "export", run_id, "--format", "ro-crate", "-o", "crate"],
        cwd=workdir,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    crate = ROCrate(str(workdir / "crate"))
    root = crate.root_dataset
    assert root["conformsTo"].id == "https://w3id.org/ro/wfrun/process/0.5"
    [action] = [e for e in crate.get_entities() if e.type == "CreateAction"]
    [result_file] = action["result"]
    assert result_file.id == "outputs/model.bin"
    assert (workdir / "crate" / "outputs" / "model.bin").read_bytes() == b"weights"
    assert result_file["identifier"] == "sha256:" + hashlib.sha256(b"weights").hexdigest()
    [used] = action["object"]
    assert used.id.startswith("#artifact-") and "by digest only" in used["description"]
    again = subprocess.run(
        [sys.executable, "-m", "runstone", "export", run_id, "--format", "ro-crate", "-o", "crate"],
        cwd=workdir,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "already exists" in again.stderr


def test_export_errors(run_id: str) -> None:
    with pytest.raises(UsageError, match="Unknown export format"):
        runstone.Client().export(run_id, "xml")
    with pytest.raises(UsageError, match="An RO-Crate is a folder"):
        runstone.Client().export(run_id, "ro-crate")
