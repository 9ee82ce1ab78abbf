"""System capture: OS, CPU, GPUs through a real (stand-in) nvidia-smi, frameworks from imported modules."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from runstone.capture.system import capture_system, frameworks, gpus

FAKE_SMI = """#!/bin/sh
case "$1" in
  --query-gpu=*) echo "0, NVIDIA H200, GPU-1234, 143771, 580.65.06, 9.0" ;;
  *) echo "| NVIDIA-SMI 580.65.06    Driver Version: 580.65.06    CUDA Version: 13.0 |" ;;
esac
"""


def test_machine_facts() -> None:
    record = capture_system(query_gpus=False)
    assert record["os"]["system"] == "Linux"
    assert record["cpu"]["logical_cores"] >= 1
    assert record["cpu"]["memory_bytes"] > 0
    assert isinstance(record["cpu"]["numeric_flags"], list)
    assert "gpus" not in record


def test_no_gpu_is_recorded_not_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpus() == {"available": False, "reason": "nvidia-smi not found (no NVIDIA driver)"}


def test_gpus_through_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    result = gpus()
    assert result["available"] is True
    assert result["cuda_driver_version"] == "13.0"
    assert result["devices"] == [
        {
            "index": 0,
            "name": "NVIDIA H200",
            "uuid": "GPU-1234",
            "memory_mib": 143771,
            "driver": "580.65.06",
            "compute_capability": "9.0",
        }
    ]


def test_frameworks_are_read_from_imported_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(
        __version__="9.9.9",
        version=types.SimpleNamespace(cuda="13.0"),
        backends=types.SimpleNamespace(
            cudnn=types.SimpleNamespace(version=lambda: 91900, deterministic=True, benchmark=False)
        ),
        are_deterministic_algorithms_enabled=lambda: True,
        get_float32_matmul_precision=lambda: "highest",
        get_num_threads=lambda: 2,
        cuda=types.SimpleNamespace(is_initialized=lambda: False),
    )
    monkeypatch.setitem(sys.modules, "torch", fake)  # type: ignore[arg-type]
    torch = frameworks()["torch"]
    assert torch == {
        "version": "9.9.9",
        "imported": True,
        "built_with_cuda": "13.0",
        "cudnn_version": 91900,
        "cudnn_deterministic": True,
        "cudnn_benchmark": False,
        "deterministic_algorithms": True,
        "float32_matmul_precision": "highest",
        "threads": 2,
        "cuda_initialized": False,
    }
