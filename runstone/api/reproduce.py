"""Rebuild a recorded run and run it again: the engine behind ``runstone reproduce``.

Layer 5. For each attempt, in a fresh folder:

1. **Code**: the recorded commit is cloned from the run's repository (or
   the current one) with ``git clone --shared``, the recorded uncommitted
   changes are applied with ``git apply`` and the untracked files written
   back; a run outside git gets its source snapshot back.
2. **Inputs**: each input is put where the command reads it. Stored inputs
   come from the object store (digests checked); inputs recorded by digest
   only are checked at their path and refused when their content changed.
3. **Environment**: the current interpreter (its differences from the
   recorded environment are reported first), or a rebuilt one
   (``environments.recreate``).
4. **Settings**: the recorded numerics variables (``PYTHONHASHSEED``, thread
   counts, ``CUBLAS_WORKSPACE_CONFIG``, ...) are set exactly as recorded,
   the seed ``runstone run --seed`` passed is passed again.
5. **Rerun**: the recorded command runs under ``runstone run`` as a new run
   of the same project, with a ``reproduction`` record and the tag
   ``reproduction_of`` naming the original.

``verify`` (``api.verify``) then compares the original with the rerun.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runstone import settings as settings_mod
from runstone.api.client import Client
from runstone.api.compare import Difference, RunSide, differences, is_python, numerics_variable
from runstone.capture.env import REDACTED
from runstone.entities import ArtifactUse, Run, RunStatus
from runstone.errors import NotFoundError, ReproductionError, StateError, UsageError
from runstone.settings import ENV_ARTIFACTS, ENV_HOME, ENV_RUN_ID, ENV_URI

if TYPE_CHECKING:
    from runstone.api.verify import Verdict

__all__ = ["ENVIRONMENTS", "Reproduction", "reproduce"]

ENVIRONMENTS = ("current", "recreate")
#: the categories of differences between the recorded and the rerun's environment
_ENVIRONMENT_CATEGORIES = ("packages", "interpreter", "variables", "cpu", "gpu", "os")
_PROBE = (
    "import json, sys\n"
    "from runstone.capture.env import capture_environment\n"
    "from runstone.capture.system import capture_system\n"
    "json.dump({'environment': {'status': 'ok', **capture_environment()},"
    " 'system': {'status': 'ok', **capture_system()}}, sys.stdout)\n"
)


@dataclass
class Reproduction:
    """What ``reproduce`` did: the reruns' IDs, where, in which environment, and the verdict."""

    original: Run
    runs: list[str]
    workdirs: list[Path]
    environment: str
    python: str
    environment_differences: list[Difference] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    changed_inputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: Verdict | None = None  # when verified
    failed: bool = False  # a rerun did not end as the original did

    @property
    def exit_code(self) -> int:
        """1 when verified DIVERGED, or (unverified) when a rerun did not end as the original did."""
        if self.verdict is not None:
            return self.verdict.exit_code
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "original": self.original.id,
            "runs": list(self.runs),
            "workdirs": [str(p) for p in self.workdirs],
            "environment": self.environment,
            "python": self.python,
            "environment_differences": [d.to_dict() for d in self.environment_differences],
            "inputs": self.inputs,
            "changed_inputs": list(self.changed_inputs),
            "notes": list(self.notes),
            "failed": self.failed,
            "verdict": self.verdict.to_dict() if self.verdict is not None else None,
        }


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _git(cwd: Path | str, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    return subprocess.run(
        ["git", "-C", str(cwd), *args], input=data, capture_output=True, env=env, check=False
    )


def _has_commit(repo: Path, commit: str) -> bool:
    try:
        return _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0
    except (FileNotFoundError, NotADirectoryError):
        return False


def _code_source(code: Mapping[str, Any]) -> tuple[str, Path | None]:
    """How the code comes back: ``git`` from a repository holding the commit, or ``snapshot``."""
    git = code.get("git") or {}
    commit = git.get("commit")
    if commit:
        here = _git(Path.cwd(), "rev-parse", "--show-toplevel")
        candidates = [Path(git.get("root") or "")]
        if here.returncode == 0:
            candidates.append(Path(here.stdout.decode().strip()))
        for repo in candidates:
            if str(repo) not in ("", ".") and repo.is_dir() and _has_commit(repo, commit):
                return "git", repo
    if code.get("snapshot"):
        return "snapshot", None
    if git and not commit:
        if git.get("diff") is None and any(
            n.get("path") == "(uncommitted changes)" for n in git.get("not_captured") or []
        ):
            raise ReproductionError(
                "The run was recorded in a git repository with no commit yet and its files were not kept "
                "(over the size limit); commit before running to make runs reproducible"
            )
        return "git", None  # no commit yet: the recorded changes against the empty tree are the whole tree
    if commit:
        raise ReproductionError(
            f"Commit {commit} is not in {git.get('root')} or in the repository here, and the run kept no "
            "snapshot of its files; fetch it (git fetch --all) in either repository and try again"
        )
    raise ReproductionError("The run recorded no code to rebuild (its code record is missing or failed)")


def _materialize(
    client: Client,
    code: Mapping[str, Any],
    source: tuple[str, Path | None],
    dest: Path,
    log: Callable[[str], None],
) -> Path:
    """Put the run's exact source tree at ``dest`` (``source``: ``_code_source``'s answer).

    Returns the original root the tree stands for.
    """
    kind, repo = source
    if kind == "snapshot":
        snapshot = code["snapshot"]
        dest.mkdir(parents=True)
        for entry in snapshot.get("files") or []:
            target = dest / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.read_object(entry["digest"]))
        log(f"runstone: restored {len(snapshot.get('files') or [])} snapshotted files into {dest}")
        return Path(snapshot.get("root") or code.get("cwd") or dest)
    git = code["git"]
    if repo is None:  # a repository with no commit yet
        dest.mkdir(parents=True)
        _git(dest, "init", "--quiet")
        said = ["a repository with no commit yet"]
    else:
        _clone(repo, git["commit"], dest)
        said = [f"commit {git['commit'][:12]}"]
    if git.get("submodules"):
        sub = _git(dest, "submodule", "update", "--init", "--recursive", "--quiet")
        if sub.returncode != 0:
            raise ReproductionError(
                "The run's submodules could not be checked out: "
                + sub.stderr.decode(errors="replace").strip()
            )
    if git.get("diff"):
        patch = client.read_object(git["diff"]["digest"])
        # Staged, as `git diff COMMIT` saw them (renames and added files included); a patch the
        # index refuses (e.g. around skip-worktree files) goes to the working tree only.
        applied = _git(dest, "apply", "--index", "--binary", "--whitespace=nowarn", "-", data=patch)
        if applied.returncode != 0:
            applied = _git(dest, "apply", "--binary", "--whitespace=nowarn", "-", data=patch)
        if applied.returncode != 0:
            raise ReproductionError(
                "The run's uncommitted changes do not apply to its commit: "
                f"{applied.stderr.decode(errors='replace').strip()}"
            )
        said.append("its uncommitted changes")
    for entry in git.get("untracked") or []:
        raw = base64.b64decode(entry["path_b64"]) if entry.get("path_b64") else entry["path"].encode()
        target = Path(os.fsdecode(bytes(dest)) + os.sep + os.fsdecode(raw))
        target.parent.mkdir(parents=True, exist_ok=True)
        if "symlink" in entry:
            os.symlink(entry["symlink"], target)
            continue
        target.write_bytes(client.read_object(entry["digest"]))
        if entry.get("executable"):
            target.chmod(0o755)
    if git.get("untracked"):
        said.append(f"{len(git['untracked'])} untracked files")
    log(f"runstone: rebuilt the source tree in {dest}: {', '.join(said)}")
    return Path(git.get("root") or dest)


def _clone(repo: Path, commit: str, dest: Path) -> None:
    made = _git(dest.parent, "clone", "--quiet", "--shared", "--no-checkout", str(repo), str(dest))
    if made.returncode != 0:
        raise ReproductionError(f"git clone of {repo} failed: {made.stderr.decode(errors='replace').strip()}")
    checkout = _git(dest, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit)
    if checkout.returncode != 0:
        raise ReproductionError(
            f"git checkout of {commit} failed: {checkout.stderr.decode(errors='replace').strip()}"
        )


def _inside(path: Path, root: Path) -> Path | None:
    try:
        return path.relative_to(root)
    except ValueError:
        return None


def _digest(path: Path) -> str | None:
    from runstone.artifacts.tree import hash_path

    try:
        return hash_path(path).digest
    except NotFoundError:
        return None


def _plan_inputs(
    run: Run, uses: Sequence[ArtifactUse], root: Path, aliases: Mapping[Path, Path]
) -> list[dict[str, Any]]:
    """Each input: where it was read, whether it is stored, and whether its content changed since.

    ``aliases`` maps a folder that is gone to where its files are now: a
    reproduction's rebuilt tree to its original's project.
    """
    plan = []
    for use in uses:
        if use.direction != "input":
            continue
        artifact = use.artifact
        entry: dict[str, Any] = {
            "path": use.path,
            "name": artifact.ref,
            "digest": artifact.digest,
            "stored": artifact.stored,
        }
        if "://" in use.path and not use.path.startswith("file://"):
            entry["where"] = "url"
            if not artifact.stored:
                from runstone.api.artifacts import _hash_remote

                entry["now"] = _hash_remote(use.path).digest
            plan.append(entry)
            continue
        original = Path(use.path.removeprefix("file://"))
        original = original if original.is_absolute() else Path(run.cwd) / original
        rel = _inside(original, root)
        for gone, now in aliases.items():
            rel_gone = _inside(original, gone)
            if rel_gone is not None and not original.exists():
                original = now / rel_gone
        entry["original"] = str(original)
        entry["where"] = "tree" if rel is not None else "outside"
        if rel is not None:
            entry["relative"] = str(rel)
        if rel is None:
            entry["now"] = _digest(original)
        plan.append(entry)
    return plan


def _check_inputs(
    plan: list[dict[str, Any]], tree: Path, run_id: str, allow_changed: bool, log: Callable[[str], None]
) -> list[str]:
    """Refuse inputs whose content changed since the run and that cannot be put back; the changed paths.

    An input inside the project that the rebuilt tree already holds (a file of
    the commit), or that is stored, is fine whatever its working copy holds now.
    """
    for entry in plan:
        if entry["where"] == "tree" and not entry["stored"]:
            if _digest(tree / entry["relative"]) == entry["digest"]:
                continue
            entry["now"] = _digest(Path(entry["original"]))
    changed = [e for e in plan if "now" in e and e["now"] != e["digest"]]
    for entry in changed:
        entry["changed"] = True
        if allow_changed:
            log(
                f"runstone: warning: input {entry['path']} ({entry['name']}): recorded {entry['digest']}, "
                f"now {entry['now'] or '(missing)'}; rerunning with the changed content, as allowed"
            )
    if changed and not allow_changed:
        lines = []
        for e in changed:
            line = f"{e['path']}: recorded {e['digest']}, now {e['now'] or '(missing)'}"
            if e["stored"]:
                line += (
                    f" (stored: put it back with runstone artifacts get {run_id[:12]} {e['name']} -o PATH)"
                )
            lines.append(line)
        listed = "\n  ".join(lines)
        raise ReproductionError(
            f"{'An input has' if len(changed) == 1 else f'{len(changed)} inputs have'} changed (or gone) "
            "since the run "
            f"and cannot be put back in the rebuilt tree:\n  {listed}\n"
            "Put the recorded content back, or rerun anyway with changed inputs allowed "
            "(allow_changed_inputs=True; --allow-changed-inputs), which the verdict lists as a cause"
        )
    return [e["path"] for e in changed]


def _place_inputs(client: Client, plan: list[dict[str, Any]], tree: Path, project: str) -> None:
    """Put each input inside the rebuilt tree where the command will read it."""
    for entry in plan:
        if entry["where"] != "tree":
            continue
        target = tree / entry["relative"]
        if _digest(target) == entry["digest"]:
            entry["placed"] = "in the tree"
            continue
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry["stored"]:
            client.download(entry["digest"], target, project=project)
            entry["placed"] = "restored from the object store"
        else:
            source = Path(entry["original"])
            if source.is_dir():
                shutil.copytree(source, target, symlinks=True)
            else:
                shutil.copy2(source, target)
            entry["placed"] = "copied from its recorded path"


def _map_path(text: str, root: Path, tree: Path) -> str:
    rel = _inside(Path(text), root) if os.path.isabs(text) else None
    return str(tree / rel) if rel is not None else text


def _command(run: Run, records: Mapping[str, Any], python: str, root: Path, tree: Path) -> list[str]:
    """The recorded command, with the interpreter and paths into the source tree replaced."""
    argv = list(run.command)
    if not argv:
        raise ReproductionError(f"Run {run.id} recorded no command to rerun")
    secret = [a for a in argv if REDACTED in a]
    if secret:
        raise ReproductionError(
            f"Run {run.id}'s command held secrets that were not recorded ({', '.join(secret[:3])}); "
            "it cannot be rerun as recorded. Pass secrets through environment variables or files instead"
        )
    recorded_python = ((records.get("environment") or {}).get("python") or {}).get("executable") or ""
    recorded_bin = os.path.dirname(recorded_python)
    program = argv[0]
    candidate = os.path.join(os.path.dirname(python), os.path.basename(program))
    if is_python(program) or program == recorded_python:
        program = python
    elif recorded_bin and os.path.dirname(program) == recorded_bin and os.path.exists(candidate):
        program = candidate  # a console script of the recorded environment: the same one of this one
    else:
        program = _map_path(program, root, tree)
    return [program, *(_map_path(a, root, tree) for a in argv[1:])]


def _variables(records: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The numerics variables to set as recorded, and those to unset (recorded as absent)."""
    environment = records.get("environment") or {}
    recorded = (environment.get("variables") or {}).get("values") or {}
    redacted = set((environment.get("variables") or {}).get("redacted") or [])
    keep = {name: value for name, value in recorded.items() if numerics_variable(name)}
    if environment.get("status") != "ok":
        return keep, []
    unset = [
        name for name in os.environ if numerics_variable(name) and name not in keep and name not in redacted
    ]
    return keep, unset


def _summary(found: Sequence[Difference]) -> list[str]:
    """Environment differences for people: changed versions one by one, extra packages counted."""
    lines = [d.text for d in found if d.category != "packages" or (d.a is not None and d.b is not None)]
    for side, label in (("a", "only in the recorded environment"), ("b", "only in this one")):
        names = [
            d.key
            for d in found
            if d.category == "packages" and getattr(d, "b" if side == "a" else "a") is None
        ]
        if names:
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            lines.append(f"{len(names)} packages {label}: {shown}")
    return lines


def _probe(python: str, env: Mapping[str, str]) -> dict[str, Any]:
    done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, env=dict(env), check=False)
    if done.returncode != 0:
        return {}
    try:
        return dict(json.loads(done.stdout))
    except ValueError:
        return {}


def _wrapper_flags(records: Mapping[str, Any], root: Path, tree: Path) -> list[str]:
    """``runstone run`` options the original wrapper had: seed, inputs and outputs it declared."""
    launch = records.get("launch") or {}
    seeds = records.get("seeds") or {}
    flags: list[str] = []
    seed = launch.get("seed")
    deterministic = launch.get("deterministic")
    if seed is None and seeds.get("set_by") == "runstone run":
        seed, deterministic = seeds.get("seed"), seeds.get("deterministic")
    if seed is not None:
        flags += ["--seed", str(seed)] + (["--deterministic"] if deterministic else [])
    for path in launch.get("inputs") or []:
        flags += ["--input", _map_path(path, root, tree)]
    for path in launch.get("outputs") or []:
        flags += ["--output", _map_path(path, root, tree)]
    return flags


def reproduce(
    run_ref: str,
    *,
    uri: str | None = None,
    env: str = "current",
    repeat: int = 1,
    verify: bool = False,
    policy: Any = None,
    allow_changed_inputs: bool = False,
    workdir: str | os.PathLike[str] | None = None,
    keep: bool = False,
    log: Callable[[str], None] = _stderr,
    stdout: Any = None,
) -> Reproduction:
    """Rebuild a run from its record and run it again, ``repeat`` times; optionally verify.

    Args:
        run_ref: the run's ID, unique prefix or name.
        uri: the store (default: ``RUNSTONE_URI`` or this repository's).
        env: ``current`` (this interpreter; differences from the recorded
            environment are reported) or ``recreate`` (a virtual environment
            with exactly the recorded packages, cached by their digest).
        repeat: rerun this many times, each in a fresh tree; with 2 or more,
            the verdict says whether the reruns differ among themselves.
        verify: compare the original with the (first) rerun.
        policy: ``api.verify.Policy`` for the comparison.
        allow_changed_inputs: rerun even when an input recorded by digest
            only has changed (the verdict lists it as a cause).
        workdir: where the trees are built (default: a new temporary folder).
        keep: keep the trees afterwards (default: removed, unless a rerun failed).
        log: where progress lines go (default: stderr).
        stdout: where the reruns' output goes (default: this process's stdout).

    Raises:
        ReproductionError: the code, an input or the environment cannot be had as recorded.
        StateError: the run is still running.
    """
    if env not in ENVIRONMENTS:
        raise UsageError(f"env must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise UsageError(f"repeat must be a whole number of 1 or more, got {repeat!r}")
    store_uri = _absolute(uri or settings_mod.current().uri)
    with Client(store_uri) as client:
        job = _Job(
            client,
            client.get_run(run_ref),
            store_uri=store_uri,
            env=env,
            repeat=repeat,
            log=log,
            stdout=stdout,
        )
        job.prepare(allow_changed_inputs)
        base = _workdir(workdir, job.run.id)
        try:
            for attempt in range(1, repeat + 1):
                job.attempt(base / f"attempt-{attempt}", attempt)
        finally:
            if not keep and not job.result.failed:
                for tree in job.result.workdirs or [base / f"attempt-{n}" for n in range(1, repeat + 1)]:
                    shutil.rmtree(tree, ignore_errors=True)
                if workdir is None:
                    shutil.rmtree(base, ignore_errors=True)  # the temporary folder made for this
            elif job.result.workdirs:
                log(f"runstone: the rebuilt trees are kept in {base}")
        result = job.result
        if verify:
            from runstone.api.verify import verify as verify_runs

            result.verdict = verify_runs(
                client,
                job.run.id,
                result.runs[0],
                policy=policy,
                repeats=result.runs[1:],
                notes=result.notes,
                changed_inputs=result.changed_inputs,
            )
            client.set_tags(result.runs[0], {"verdict": result.verdict.verdict})
        return result


def _absolute(uri: str) -> str:
    """A store URI that still names the same store from another working folder."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///') :]).resolve()}"
    if "://" not in uri:
        return str(Path(uri).resolve())
    return uri


def _map_pythonpath(env: dict[str, str], records: Mapping[str, Any], root: Path, tree: Path) -> None:
    """PYTHONPATH as recorded (else as now), its folders inside the project moved into the tree."""
    recorded = ((records.get("environment") or {}).get("variables") or {}).get("values") or {}
    value = recorded.get("PYTHONPATH", env.get("PYTHONPATH"))
    if value:
        env["PYTHONPATH"] = os.pathsep.join(_map_path(p, root, tree) for p in value.split(os.pathsep))
    else:
        env.pop("PYTHONPATH", None)


def _check_snapshot(code: Mapping[str, Any], run: Run) -> None:
    """Refuse a snapshot that lacks the script the run ran (it lay outside the project)."""
    snapshot = code.get("snapshot") or {}
    entry = snapshot.get("entry")
    if code.get("git") or not entry or "-m" in run.command:  # a module (-m) is found by import
        return
    path = os.path.normpath(os.path.join(run.cwd, entry))
    kept = {os.path.join(str(snapshot.get("root")), f["path"]) for f in snapshot.get("files") or []}
    if path not in kept:
        raise ReproductionError(
            f"Run {run.id} ran {entry}, which lay outside its project folder {snapshot.get('root')}, "
            "so its snapshot does not hold it; run scripts from inside the project to make runs reproducible"
        )


def _workdir(workdir: str | os.PathLike[str] | None, run_id: str) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix=f"runstone-reproduce-{run_id[:8]}-"))
    base = Path(workdir)
    if base.exists() and (not base.is_dir() or any(base.iterdir())):
        raise UsageError(f"The work folder {base} is not an empty folder; name a new or empty one")
    base.mkdir(parents=True, exist_ok=True)
    return base


class _Job:
    """One reproduction: the original's record, and the reruns made so far."""

    def __init__(
        self,
        client: Client,
        run: Run,
        *,
        store_uri: str,
        env: str,
        repeat: int,
        log: Callable[[str], None],
        stdout: Any,
    ) -> None:
        if run.status is RunStatus.RUNNING:
            raise StateError(f"Run {run.id} is still running; reproduce it once it has ended")
        self.client, self.run, self.store_uri, self.env, self.repeat = client, run, store_uri, env, repeat
        self.log, self.stdout = log, stdout
        self.records = client.get_records(run.id)
        self.code = self.records.get("code") or {}
        if self.code.get("status", "ok") != "ok":
            raise ReproductionError(
                f"Run {run.id}'s code was not captured ({self.code.get('error')}); it cannot be rebuilt"
            )
        self.source = _code_source(self.code)  # refuses early, before anything is built
        git = self.code.get("git") or {}
        self.root = Path(git.get("root") or (self.code.get("snapshot") or {}).get("root") or run.cwd)
        self.result = Reproduction(run, [], [], env, sys.executable)
        self.plan: list[dict[str, Any]] = []
        self.python = sys.executable
        self.child_env: dict[str, str] = {}
        self.allow_changed_inputs = False
        self.built: dict[str, Any] | None = None
        made = client.count_runs(f"tags.reproduction_of = '{run.id}'")
        self.first_number = made + 1  # names <name>-repro<N> count on from earlier reproductions

    def prepare(self, allow_changed_inputs: bool) -> None:
        """Check what can be checked and say what the record lacks, before anything is built."""
        git = self.code.get("git") or {}
        if any(n.get("path") == "(uncommitted changes)" for n in git.get("not_captured") or []):
            raise ReproductionError(
                f"Run {self.run.id}'s uncommitted changes were not kept (over the size limit, "
                "RUNSTONE_CAPTURE_DIFF_MAX_BYTES), so the code it ran cannot be rebuilt"
            )
        _check_snapshot(self.code, self.run)
        self.allow_changed_inputs = allow_changed_inputs
        self.plan = _plan_inputs(self.run, self.client.artifacts(self.run.id), self.root, self._aliases())
        self.result.inputs = self.plan
        notes = [
            f"not kept with the original run: {n.get('path')}: {n.get('reason')}"
            for n in git.get("not_captured") or []
        ]
        if git.get("untracked_skipped"):
            notes.append(
                f"{len(git['untracked_skipped'])} untracked files were over the size limit and not kept"
            )
        for line in notes:
            self.log(f"runstone: warning: {line}")
        self.result.notes = notes
        variables, unset = _variables(self.records)
        self.child_env = {k: v for k, v in os.environ.items() if k not in unset and k != ENV_RUN_ID}
        self.child_env.update(variables)
        # The reruns write to this store and its object store, wherever their trees are.
        settings = settings_mod.for_store(settings_mod.current(), self.store_uri)
        self.child_env.update(
            {ENV_URI: self.store_uri, ENV_HOME: str(settings.home), ENV_ARTIFACTS: settings.artifacts}
        )

    def _aliases(self) -> dict[Path, Path]:
        """For a reproduction being reproduced: its (removed) tree stands for its original's project."""
        made = self.records.get("reproduction") or {}
        if not made.get("workdir") or not made.get("of"):
            return {}
        try:
            code = self.client.get_records(made["of"]).get("code") or {}
        except NotFoundError:
            return {}
        root = (code.get("git") or {}).get("root") or (code.get("snapshot") or {}).get("root")
        return {Path(made["workdir"]): Path(root)} if root else {}

    def attempt(self, tree: Path, attempt: int) -> bool:
        """Rebuild the tree and rerun the command once; whether the rerun ended as the original did."""
        original_root = _materialize(self.client, self.code, self.source, tree, self.log)
        if attempt == 1:
            self.result.changed_inputs = _check_inputs(
                self.plan, tree, self.run.id, self.allow_changed_inputs, self.log
            )
        _place_inputs(self.client, self.plan, tree, self.run.project)
        cwd_rel = _inside(Path(self.run.cwd), original_root)
        cwd = tree / cwd_rel if cwd_rel is not None else tree
        cwd.mkdir(parents=True, exist_ok=True)
        env = dict(self.child_env)
        _map_pythonpath(env, self.records, original_root, tree)
        with self._environment(original_root, tree, env, report=attempt == 1):
            new_id = self._rerun(original_root, tree, cwd, attempt, env)
        self.result.runs.append(new_id)
        self.result.workdirs.append(tree)
        rerun = self.client.get_run(new_id)
        # a direct run (python train.py) records no exit code; its rerun under `runstone run` records 0
        ended_alike = rerun.status is self.run.status and (rerun.exit_code or 0) == (self.run.exit_code or 0)
        self.result.failed = self.result.failed or not ended_alike
        return ended_alike

    @contextlib.contextmanager
    def _environment(
        self, original_root: Path, tree: Path, env: dict[str, str], *, report: bool
    ) -> Iterator[None]:
        """Pick the interpreter (``self.python``); the first time, report how it differs from the record."""
        environment = self.records.get("environment") or {}
        with contextlib.ExitStack() as stack:
            if self.env == "recreate":
                if environment.get("status") != "ok":
                    raise ReproductionError(
                        "The run's environment was not captured "
                        f"({environment.get('error', 'no record')}), "
                        "so it cannot be recreated; reproduce it in the current environment instead"
                    )
                from runstone.api.environments import recreate

                log = self.log if report else (lambda _: None)
                built = stack.enter_context(
                    recreate(environment, project_paths={str(original_root): str(tree)}, log=log)
                )
                self.python = str(built.python)
                self.built = {"digest": built.digest, "cached": built.cached, "installer": built.installer}
                env["PATH"] = str(built.python.parent) + os.pathsep + env.get("PATH", "")
                env["VIRTUAL_ENV"] = str(built.path)
            else:
                self.python = sys.executable
            self.result.python = self.python
            if report:
                self._report(env)
            yield

    def _report(self, env: dict[str, str]) -> None:
        now = _probe(self.python, env)
        if not now:
            line = f"the {self.env} environment could not be inspected ({self.python} could not run runstone)"
            self.result.notes.append(line)
            self.log(f"runstone: warning: {line}")
            return
        kept = {k: v for k, v in self.records.items() if k in ("environment", "system")}
        found = differences(RunSide(self.run, kept), RunSide(self.run, now))
        self.result.environment_differences = [d for d in found if d.category in _ENVIRONMENT_CATEGORIES]
        changed = [d for d in found if d.category == "packages" and d.a is not None and d.b is not None]
        if self.env == "recreate" and changed:
            raise ReproductionError(
                "The recreated environment does not have the recorded versions of "
                + ", ".join(d.text for d in changed)
                + " (installed from a path whose contents have changed since the run?)"
            )
        found_differences = self.result.environment_differences
        if found_differences:
            self.log(
                f"runstone: the {self.env} environment differs from the recorded one "
                f"in {len(found_differences)} way{'s' if len(found_differences) != 1 else ''}:"
            )
            for line in _summary(found_differences):
                self.log(f"  {line}")
        else:
            self.log(f"runstone: the {self.env} environment matches the recorded one")

    def _rerun(self, root: Path, tree: Path, cwd: Path, attempt: int, env: dict[str, str]) -> str:
        run, token = self.run, uuid.uuid4().hex
        command = _command(run, self.records, self.python, root, tree)
        meta = {
            "of": run.id,
            "attempt": attempt,
            "attempts": self.repeat,
            "env": self.env,
            "python": self.python,
            "workdir": str(tree),
            "recreated": self.built,  # the cached environment used (None: the current one)
            "token": token,
            "changed_inputs": self.result.changed_inputs,
            "environment_differences": [d.text for d in self.result.environment_differences],
        }
        argv = [
            self.python, "-m", "runstone", "run",
            "--project", run.project,
            "--name", f"{run.name}-repro{self.first_number + attempt - 1}",
            "--reproduction", json.dumps(meta),
            *_wrapper_flags(self.records, root, tree),
            "--", *command,
        ]  # fmt: skip
        self.log(f"runstone: rerunning ({attempt}/{self.repeat}) in {cwd}: {' '.join(command)}")
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=self.stdout, check=False)
        for found in self.client.find_runs(
            f"tags.reproduction_of = '{run.id}'", order_by="-started", limit=50
        ):
            if (self.client.get_records(found.id).get("reproduction") or {}).get("token") == token:
                self.log(
                    f"runstone: rerun {attempt} is run {found.id} "
                    f"({found.status}, exit code {found.exit_code})"
                )
                return found.id
        raise ReproductionError(
            f"The rerun did not start a run (runstone run exited with code {done.returncode}); "
            "see its output above"
        )
