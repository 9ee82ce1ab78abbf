"""The machine and the numeric runtimes: OS, CPU, memory, GPUs, frameworks, BLAS.

Layer 3, standard library only. Nothing here changes the program it observes:
frameworks (PyTorch, TensorFlow, JAX) are described from the modules the
program already imported, else from installed metadata only — never imported,
and CUDA is never initialized (that would take GPU memory and break
fork-based data-loader workers). GPUs are queried through ``nvidia-smi``,
which has no side effects on this process; its absence is recorded, not an
error.
"""

from __future__ import annotations

import locale
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["capture_system", "cpu", "frameworks", "gpus"]

#: CPU flags that change which kernels numeric libraries pick
_NUMERIC_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "sha_ni",
    "neon",
    "asimd",
    "sve",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "logical_cores": os.cpu_count()}
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    text = _read("/proc/cpuinfo")
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and "model" not in info:
            info["model"] = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "physical id":
            info.setdefault("_sockets", set()).add(value.strip())
    if "_sockets" in info:
        info["sockets"] = len(info.pop("_sockets"))
    info["numeric_flags"] = [f for f in _NUMERIC_FLAGS if f in flags]
    meminfo = _read("/proc/meminfo")
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            info["memory_bytes"] = int(line.split()[1]) * 1024
    return info


def _container() -> str | None:
    if Path("/.dockerenv").exists():
        return "docker"
    if Path("/run/.containerenv").exists():
        return "podman"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    cgroup = _read("/proc/1/cgroup")
    for name in ("docker", "kubepods", "containerd", "lxc"):
        if name in cgroup:
            return name
    return None


def _os() -> dict[str, Any]:
    uname = platform.uname()
    libc_name, libc_version = platform.libc_ver()
    release: dict[str, str] = {}
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key in ("NAME", "VERSION_ID", "PRETTY_NAME"):
            release[key.lower()] = value.strip().strip('"')
    return {
        "system": uname.system,
        "release": uname.release,
        "version": uname.version,
        "distribution": release,
        "libc": f"{libc_name} {libc_version}".strip() or None,
        "locale": ".".join(filter(None, locale.getlocale())) or None,
        "preferred_encoding": locale.getpreferredencoding(False),
        "timezone": time.tzname[0] if time.tzname else None,
        "utc_offset_s": -time.timezone,
        "container": _container(),
        "hostname": uname.node,
    }


def gpus(timeout_s: float = 5.0) -> dict[str, Any]:
    """NVIDIA GPUs through ``nvidia-smi``: name, memory, driver, compute capability, CUDA driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"available": False, "reason": "nvidia-smi not found (no NVIDIA driver)"}
    fields = "index,name,uuid,memory.total,driver_version,compute_cap"
    result = subprocess.run(
        [exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        return {"available": False, "reason": (result.stderr or result.stdout).strip()[:300]}
    devices = []
    for line in result.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 6:
            devices.append(
                {
                    "index": int(parts[0]),
                    "name": parts[1],
                    "uuid": parts[2],
                    "memory_mib": int(float(parts[3])) if parts[3].replace(".", "").isdigit() else parts[3],
                    "driver": parts[4],
                    "compute_capability": parts[5],
                }
            )
    cuda_driver = None
    header = subprocess.run([exe], capture_output=True, text=True, timeout=timeout_s, check=False)
    for token in header.stdout.split("|"):
        if "CUDA Version:" in token:
            cuda_driver = token.split("CUDA Version:")[1].strip().split()[0]
    return {"available": bool(devices), "devices": devices, "cuda_driver_version": cuda_driver}


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def frameworks() -> dict[str, Any]:
    """PyTorch, TensorFlow, JAX and numpy: from the imported modules, else installed versions."""
    out: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        info: dict[str, Any] = {"version": str(getattr(torch, "__version__", "?")), "imported": True}
        version = getattr(torch, "version", None)
        info["built_with_cuda"] = getattr(version, "cuda", None)
        try:
            backends = torch.backends
            info["cudnn_version"] = backends.cudnn.version()  # reads the library; no CUDA init
            info["cudnn_deterministic"] = bool(backends.cudnn.deterministic)
            info["cudnn_benchmark"] = bool(backends.cudnn.benchmark)
            info["deterministic_algorithms"] = bool(torch.are_deterministic_algorithms_enabled())
            info["float32_matmul_precision"] = torch.get_float32_matmul_precision()
            info["threads"] = torch.get_num_threads()
            info["cuda_initialized"] = bool(torch.cuda.is_initialized())
        except Exception as e:  # an odd build: keep what we have
            info["error"] = f"{type(e).__name__}: {e}"
        out["torch"] = info
    elif (v := _installed_version("torch")) is not None:
        out["torch"] = {"version": v, "imported": False}
    for module, dist in (("tensorflow", "tensorflow"), ("jax", "jax"), ("jaxlib", "jaxlib")):
        mod = sys.modules.get(module)
        if mod is not None:
            out[module] = {"version": str(getattr(mod, "__version__", "?")), "imported": True}
        elif (v := _installed_version(dist)) is not None:
            out[module] = {"version": v, "imported": False}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        out["numpy"] = {"version": numpy.__version__, "imported": True}
    elif (v := _installed_version("numpy")) is not None:
        out["numpy"] = {"version": v, "imported": False}
    return out


_static: dict[str, Any] = {}


def capture_system(*, query_gpus: bool = True) -> dict[str, Any]:
    """OS, CPU, memory, GPUs and numeric runtimes; parts that fail say why.

    The machine's facts (OS, CPU, GPUs) are asked once per process; the
    frameworks, which depend on what the program has imported, every time.
    """
    record: dict[str, Any] = {}
    probes = [("os", _os, True), ("cpu", cpu, True), ("frameworks", frameworks, False)]
    if query_gpus:
        probes.append(("gpus", gpus, True))
    for name, probe, static in probes:
        if static and name in _static:
            record[name] = _static[name]
            continue
        try:
            record[name] = probe()
            if static:
                _static[name] = record[name]
        except Exception as e:  # capture never fails the run: record why
            record[name] = {"error": f"{type(e).__name__}: {e}"}
            if name == "gpus":
                record[name]["available"] = False
    return record
