"""Printing a run's record (code, environment, system, seeds) for people (layer 6)."""

from __future__ import annotations

import sys
from typing import Any

from runstone.cli._output import fmt_size

__all__ = ["print_code", "print_env"]


def _line(key: str, value: Any, width: int = 12) -> None:
    sys.stdout.write(f"{key.ljust(width)}  {value}\n")


def _failed(part: str, record: dict[str, Any] | None) -> bool:
    if not record:
        sys.stdout.write(f"{part}: not recorded\n")
        return True
    if record.get("status") != "ok":
        sys.stdout.write(f"{part}: capture failed: {record.get('error')}\n")
        return True
    return False


def _yes_no(value: Any) -> Any:
    return ("yes" if value else "no") if isinstance(value, bool) else value


def _size(n: int) -> str:
    return fmt_size(n, "bytes")


def print_code(record: dict[str, Any] | None) -> None:
    if _failed("code", record):
        return
    assert record is not None
    git = record.get("git")
    if git:
        _line("repository", git["root"])
        _line("commit", git["commit"] or "(no commits yet)")
        _line("branch", git["branch"] or ("(detached HEAD)" if git["detached"] else "-"))
        for name, url in git["remotes"].items():
            _line("remote", f"{name} {url}")
        _line("dirty", "yes" if git["dirty"] else "no")
        if git["diff"]:
            _line("changes", f"{_size(git['diff']['size_bytes'])} of diff (show --diff prints it)")
        if git["untracked"]:
            total = sum(f["size_bytes"] for f in git["untracked"])
            _line("untracked", f"{len(git['untracked'])} files kept, {_size(total)}")
            for item in git["untracked"][:20]:
                sys.stdout.write(f"{'':14}{item['path']}  ({_size(item['size_bytes'])})\n")
            if len(git["untracked"]) > 20:
                sys.stdout.write(f"{'':14}... and {len(git['untracked']) - 20} more\n")
        if git["untracked_skipped"]:
            _line(
                "not kept",
                f"{len(git['untracked_skipped'])} untracked files over the "
                f"{_size(git['untracked_limit_bytes'])} limit (RUNSTONE_CAPTURE_UNTRACKED_MAX_BYTES)",
            )
        for sub in git["submodules"]:
            _line("submodule", f"{sub['path']} at {sub['commit']}")
    snapshot = record.get("snapshot")
    if snapshot:
        total = sum(f["size_bytes"] for f in snapshot["files"])
        _line("snapshot", f"{len(snapshot['files'])} files under {snapshot['root']}, {_size(total)}")
        for item in snapshot["files"][:20]:
            sys.stdout.write(f"{'':14}{item['path']}\n")
    _line("captured in", f"{record.get('capture_ms', '?')} ms")


def print_env(records: dict[str, Any]) -> None:
    env = records.get("environment")
    if not _failed("environment", env):
        assert env is not None
        py = env["python"]
        _line("python", f"{py['implementation']} {py['version']} ({py['executable']})")
        _line("environment", f"{py['environment_kind']} at {py['prefix']}")
        dists = env["distributions"]
        special = [d for d in dists if d.get("source")]
        _line("packages", f"{len(dists)} installed ('runstone env export RUN' writes them pinned)")
        for dist in special:
            source = dist["source"]
            sys.stdout.write(
                f"{'':14}{dist['name']} {dist['version']}: {source['kind']} {source.get('url', '')}\n"
            )
        if "conda" in env:
            _line("conda", f"{len(env['conda']['explicit'])} packages in {env['conda']['prefix']}")
        variables = env["variables"]
        _line(
            "variables", f"{len(variables['values'])} kept, {len(variables['redacted'])} redacted (secrets)"
        )
    system = records.get("system")
    if not _failed("system", system):
        assert system is not None
        os_info = system.get("os", {})
        distro = os_info.get("distribution", {}).get("pretty_name")
        _line("os", f"{os_info.get('system')} {os_info.get('release')}" + (f" ({distro})" if distro else ""))
        _line("libc", os_info.get("libc") or "-")
        if os_info.get("container"):
            _line("container", os_info["container"])
        cpu = system.get("cpu", {})
        memory = cpu.get("memory_bytes")
        _line(
            "cpu",
            f"{cpu.get('model', '?')}, {cpu.get('usable_cores', cpu.get('logical_cores'))} usable cores"
            + (f", {_size(memory)} memory" if memory else ""),
        )
        _line("cpu flags", " ".join(cpu.get("numeric_flags", [])) or "-")
        gpus = system.get("gpus", {})
        if gpus.get("available"):
            for dev in gpus["devices"]:
                _line(
                    "gpu",
                    f"{dev['index']}: {dev['name']}, {dev['memory_mib']} MiB, driver {dev['driver']}, "
                    f"compute {dev['compute_capability']}, CUDA driver {gpus.get('cuda_driver_version')}",
                )
        else:
            _line("gpu", f"none ({gpus.get('reason') or gpus.get('error') or 'not queried'})")
        for name, info in system.get("frameworks", {}).items():
            details = ", ".join(
                f"{k.replace('_', ' ')}: {_yes_no(v)}"
                for k, v in info.items()
                if k not in ("version", "blas")
            )
            blas = info.get("blas")
            if isinstance(blas, list) and blas:
                details += "; BLAS " + ", ".join(
                    f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('num_threads')} threads)"
                    for lib in blas
                )
            _line(name, f"{info.get('version')} ({details})")
    seeds = records.get("seeds")
    if seeds:
        settings = ", ".join(f"{k}={v}" for k, v in seeds.get("settings", {}).items())
        _line(
            "seed",
            f"{seeds['seed']} (seeded: {', '.join(seeds.get('seeded', [])) or 'nothing in this process'}; "
            f"deterministic: {'yes' if seeds.get('deterministic') else 'no'}"
            + (f"; {settings}" if settings else "")
            + ")",
        )
    else:
        _line("seed", "none recorded (runstone.init(seed=...) or runstone run --seed S)")
