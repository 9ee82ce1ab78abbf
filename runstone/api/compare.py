"""What differs between two runs' records: code, config, command, packages, machine, seeds, inputs.

Layer 5, standard library only. ``differences`` reads two runs, their
records and their inputs (as ``Client`` gives them) and lists every
recorded difference that can change a result, each with a category, the
values on both sides and a one-line description. ``runstone diff`` prints
them; ``verify`` ranks them as likely causes of a divergence.

Things that always differ between two runs and never change numbers are
left out: IDs, times, process IDs, the working folder, the interpreter's
path, and where an editable project is installed from.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runstone.capture.env import NUMERIC_VARIABLES
from runstone.entities import ArtifactUse, Run

__all__ = [
    "CATEGORIES",
    "NUMERIC_PACKAGES",
    "Difference",
    "RunSide",
    "differences",
    "is_python",
    "normalize_name",
    "numerics_variable",
]

#: the order categories are listed in
CATEGORIES = (
    "code",
    "command",
    "config",
    "inputs",
    "seeds",
    "determinism",
    "packages",
    "interpreter",
    "variables",
    "blas",
    "frameworks",
    "gpu",
    "cpu",
    "os",
    "runstone",
)

#: distributions whose version changes numbers (globs over PEP 503 names)
NUMERIC_PACKAGES = (
    "numpy",
    "scipy",
    "torch",
    "torchvision",
    "torchaudio",
    "triton",
    "tensorflow*",
    "keras",
    "jax",
    "jaxlib",
    "scikit-learn",
    "pandas",
    "numba",
    "llvmlite",
    "numexpr",
    "bottleneck",
    "mkl*",
    "intel-openmp",
    "openblas*",
    "scipy-openblas*",
    "nvidia-*",
    "cupy*",
    "xgboost",
    "lightgbm",
    "catboost",
    "onnxruntime*",
    "transformers",
    "accelerate",
    "statsmodels",
)
#: variables that change numbers besides NUMERIC_VARIABLES: the seed runstone run passes on
_SEED_VARIABLES = ("RUNSTONE_SEED", "RUNSTONE_DETERMINISTIC")


def numerics_variable(name: str) -> bool:
    """Whether an environment variable changes numbers (thread counts, seeds, CUDA settings, ...)."""
    return name in _SEED_VARIABLES or any(fnmatch.fnmatchcase(name, p) for p in NUMERIC_VARIABLES)


@dataclass(frozen=True)
class RunSide:
    """What ``differences`` reads about one run."""

    run: Run
    records: Mapping[str, Mapping[str, Any]]
    artifacts: Sequence[ArtifactUse] = ()


@dataclass(frozen=True)
class Difference:
    """One recorded difference between run A and run B.

    Attributes:
        category: one of ``CATEGORIES``.
        key: what differs within it (``numpy``, ``lr``, ``commit``, ...).
        a, b: the values (None: absent on that side).
        numeric: for packages, whether it is one that changes numbers.
    """

    category: str
    key: str
    a: Any
    b: Any
    numeric: bool = False

    @property
    def text(self) -> str:
        """``numpy 1.26.4 → 2.1.0``; ``config lr: 0.1 → 0.2``; ``… added``/``removed``."""
        label = self.key if self.category in ("packages", "code", "inputs") else f"{self.category} {self.key}"
        if self.a is None:
            return f"{label}: only in B ({_show(self.b)})"
        if self.b is None:
            return f"{label}: only in A ({_show(self.a)})"
        return f"{label} {_show(self.a)} → {_show(self.b)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "key": self.key,
            "a": self.a,
            "b": self.b,
            "numeric": self.numeric,
            "text": self.text,
        }


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def normalize_name(name: str) -> str:
    """A distribution's PEP 503 name (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_python(program: str) -> bool:
    """Whether a command's program is a Python interpreter (``python``, ``python3.11``, a path to one)."""
    return re.fullmatch(r"python(\d+(\.\d+)?)?", program.rsplit("/", 1)[-1]) is not None


def _ok(records: Mapping[str, Mapping[str, Any]], part: str) -> Mapping[str, Any]:
    record = records.get(part) or {}
    return record if record.get("status", "ok") == "ok" else {}


def _compare(out: list[Difference], category: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(Difference(category, key, a.get(key), b.get(key)))


def _code(a: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of a code record that decide what ran, with locations left out."""
    facts: dict[str, Any] = {"kind": a.get("kind")} if a else {}
    git = a.get("git") or {}
    if git:
        facts["commit"] = git.get("commit")
        facts["uncommitted changes"] = (git.get("diff") or {}).get("digest")
        for entry in git.get("untracked") or []:
            facts[f"untracked file {entry.get('path')}"] = entry.get("digest") or entry.get("symlink")
        facts.update({f"submodule {s.get('path')}": s.get("commit") for s in git.get("submodules") or []})
    snapshot = a.get("snapshot") or {}
    if snapshot and not git:
        for entry in snapshot.get("files") or []:
            facts[f"file {entry.get('path')}"] = entry.get("digest")
    return facts


def _packages(environment: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for dist in environment.get("distributions") or []:
        source = dist.get("source") or {}
        kind = source.get("kind")
        label = dist.get("version")
        if kind == "vcs":
            label = f"{label} ({source.get('vcs', 'git')} {str(source.get('commit'))[:12]})"
        elif kind in ("editable", "local"):
            label = f"{label} ({kind})"
        found[normalize_name(str(dist.get("name")))] = {"label": label}
    return found


def _numeric(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in NUMERIC_PACKAGES)


def _variables(environment: Mapping[str, Any]) -> dict[str, Any]:
    values = (environment.get("variables") or {}).get("values") or {}
    return {name: value for name, value in values.items() if numerics_variable(name)}


def _blas(system: Mapping[str, Any]) -> dict[str, Any]:
    libraries = ((system.get("frameworks") or {}).get("numpy") or {}).get("blas")
    facts: dict[str, Any] = {}
    if isinstance(libraries, list):  # in no fixed order: gather each vendor's versions, sorted
        for lib in libraries:
            if not isinstance(lib, dict):
                continue
            api = lib.get("internal_api") or lib.get("user_api") or "library"
            for key, label in (
                ("version", "version"),
                ("num_threads", "threads"),
                ("architecture", "architecture"),
            ):
                facts.setdefault(f"{api} {label}", set()).add(str(lib.get(key)))
    return {k: ", ".join(sorted(v)) for k, v in facts.items()}


def _frameworks(system: Mapping[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name, info in (system.get("frameworks") or {}).items():
        if not isinstance(info, dict):
            continue
        for key in ("built_with_cuda", "cudnn_version", "float32_matmul_precision", "threads"):
            if key in info:
                facts[f"{name} {key.replace('_', ' ')}"] = info[key]
    return facts


def _determinism(system: Mapping[str, Any], seeds: Mapping[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {"deterministic": bool(seeds.get("deterministic"))} if seeds else {}
    torch = (system.get("frameworks") or {}).get("torch") or {}
    for key in ("deterministic_algorithms", "cudnn_deterministic", "cudnn_benchmark"):
        if key in torch:
            facts[key.replace("_", " ")] = torch[key]
    for key, value in (seeds.get("settings") or {}).items():
        facts[key] = value
    return facts


def _gpu(system: Mapping[str, Any]) -> dict[str, Any]:
    gpus = system.get("gpus") or {}
    facts: dict[str, Any] = {"available": bool(gpus.get("available"))} if gpus else {}
    devices = gpus.get("devices") or []
    if devices:
        facts["devices"] = ", ".join(sorted(str(d.get("name")) for d in devices))
        facts["driver"] = devices[0].get("driver")
        facts["cuda driver version"] = gpus.get("cuda_driver_version")
    return facts


def _cpu(system: Mapping[str, Any]) -> dict[str, Any]:
    cpu = system.get("cpu") or {}
    keys = ("model", "machine", "usable_cores")
    facts: dict[str, Any] = {k.replace("_", " "): cpu.get(k) for k in keys if k in cpu}
    if "numeric_flags" in cpu:
        facts["numeric flags"] = " ".join(cpu.get("numeric_flags") or [])
    return facts


def _os(system: Mapping[str, Any]) -> dict[str, Any]:
    info = system.get("os") or {}
    distribution = info.get("distribution") or {}
    facts = {"system": info.get("system"), "libc": info.get("libc")}
    if distribution:
        facts["distribution"] = distribution.get("pretty_name")
    return {k: v for k, v in facts.items() if v is not None}


def _root(side: RunSide) -> str:
    """The run's source root: its repository's top, its snapshot's root, else its working folder."""
    code = side.records.get("code") or {}
    root = (code.get("git") or {}).get("root") or (code.get("snapshot") or {}).get("root") or side.run.cwd
    return str(root).rstrip("/")


def _in_project(path: str, root: str) -> str:
    """An absolute path inside the source root written as ``<project>/...`` (a rebuilt tree moves it)."""
    if root and (path == root or path.startswith(root + "/")):
        return "<project>" + path[len(root) :]
    return path


def _command(side: RunSide) -> list[str]:
    """The arguments that decide what runs: the program's name (not its path) and the rest."""
    argv = list(side.run.command)
    if argv and is_python(argv[0]):
        argv[0] = "python"
    elif argv:
        argv[0] = argv[0].rsplit("/", 1)[-1]
    root = _root(side)
    return [_in_project(a, root) for a in argv]


def _inputs(side: RunSide) -> dict[str, str]:
    root = _root(side)
    uses = [use for use in side.artifacts if use.direction == "input"]
    return {f"input {_in_project(use.path, root)}": use.artifact.digest for use in uses}


def _seeds(seeds: Mapping[str, Any]) -> dict[str, Any]:
    if not seeds:
        return {"seed": None}
    return {"seed": seeds.get("seed"), "seeded": ", ".join(seeds.get("seeded") or []) or None}


def differences(a: RunSide, b: RunSide) -> list[Difference]:
    """Every recorded difference between two runs that can change what they compute.

    Parts that were not captured on either side are skipped (nothing to say);
    a part captured on one side only shows as values present on one side.
    """
    out: list[Difference] = []
    code_a, code_b = _ok(a.records, "code"), _ok(b.records, "code")
    if code_a and code_b:
        _compare(out, "code", _code(code_a), _code(code_b))
    if _command(a) != _command(b):
        out.append(Difference("command", "arguments", " ".join(_command(a)), " ".join(_command(b))))
    _compare(out, "config", dict(a.run.params), dict(b.run.params))
    _compare(out, "inputs", _inputs(a), _inputs(b))
    seeds_a, seeds_b = _ok(a.records, "seeds"), _ok(b.records, "seeds")
    _compare(out, "seeds", _seeds(seeds_a), _seeds(seeds_b))
    system_a, system_b = _ok(a.records, "system"), _ok(b.records, "system")
    _compare(out, "determinism", _determinism(system_a, seeds_a), _determinism(system_b, seeds_b))
    env_a, env_b = _ok(a.records, "environment"), _ok(b.records, "environment")
    if env_a and env_b:
        packages_a, packages_b = _packages(env_a), _packages(env_b)
        for name in sorted(set(packages_a) | set(packages_b)):
            left, right = packages_a.get(name, {}).get("label"), packages_b.get(name, {}).get("label")
            if left != right:
                out.append(Difference("packages", name, left, right, numeric=_numeric(name)))
        python_a, python_b = env_a.get("python") or {}, env_b.get("python") or {}
        keys = ("implementation", "version")
        _compare(out, "interpreter", {k: python_a.get(k) for k in keys}, {k: python_b.get(k) for k in keys})
        _compare(out, "variables", _variables(env_a), _variables(env_b))
    if system_a and system_b:
        _compare(out, "blas", _blas(system_a), _blas(system_b))
        _compare(out, "frameworks", _frameworks(system_a), _frameworks(system_b))
        _compare(out, "gpu", _gpu(system_a), _gpu(system_b))
        _compare(out, "cpu", _cpu(system_a), _cpu(system_b))
        _compare(out, "os", _os(system_a), _os(system_b))
    if a.run.runstone_version != b.run.runstone_version:
        out.append(Difference("runstone", "version", a.run.runstone_version, b.run.runstone_version))
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(out, key=lambda d: order.get(d.category, len(order)))
