"""``runstone reproduce``: real git repositories, real subprocesses, real virtual environments."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import runstone
from tests.reproduce.conftest import git, reproduce_json, small_venv, wrapped
from tests.reproduce.conftest import runstone as rs

pytestmark = pytest.mark.slow


def test_a_dirty_tree_is_rebuilt_after_a_reset_and_the_rerun_is_identical(repo: Path) -> None:
    # Run with an uncommitted change and an untracked helper module, then throw both away.
    (repo / "train.py").write_text(
        'CHANGED = "with the uncommitted change"\n' + (repo / "train.py").read_text()
    )
    (repo / "helper.py").write_text("SCALE = 0.5\n")
    original = wrapped(repo, [sys.executable, "train.py", "6"])
    git(repo, "checkout", "--", "train.py")
    (repo / "helper.py").unlink()
    assert "CHANGED = " not in (repo / "train.py").read_text()

    code, data, err = reproduce_json(repo, original[:10], "--verify")
    assert code == 0, err
    verdict = data["verdict"]
    assert verdict["verdict"] == "IDENTICAL"
    assert [m["status"] for m in verdict["metrics"] if m["key"] == "loss"] == ["identical"]
    assert [m["status"] for m in verdict["metrics"] if m["key"] == "step_time"] == ["ignored"]
    assert (
        "rebuilt the source tree" in err and "its uncommitted changes" in err and "1 untracked files" in err
    )
    [rerun] = data["runs"]
    with runstone.Client() as client:
        output = client.read_output(rerun).decode()
        records = client.get_records(rerun)
        linked = client.find_runs(f"tags.reproduction_of = '{original}'")
        again = client.get_run(rerun)
    assert "trained with the uncommitted change" in output  # the changed code ran, not the reset one
    assert records["reproduction"]["of"] == original
    assert [r.id for r in linked] == [rerun]
    assert again.tags["verdict"] == "IDENTICAL"
    # The rerun's own code record is the original's: same commit, same diff, same untracked file.
    with runstone.Client() as client:
        a, b = client.get_records(original)["code"]["git"], records["code"]["git"]
    assert (a["commit"], a["diff"]["digest"]) == (b["commit"], b["diff"]["digest"])
    assert [u["digest"] for u in a["untracked"]] == [u["digest"] for u in b["untracked"]]
    assert not Path(data["workdirs"][0]).exists()  # removed after a good rerun


def test_the_recorded_environment_is_recreated_and_cached(repo: Path, tmp_path: Path) -> None:
    # The repository is itself a package (its helper module), installed editable into the run's venv.
    (repo / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "demo-train"\nversion = "0.1"\n[tool.setuptools]\npy-modules = ["helper"]\n'
    )
    (repo / "helper.py").write_text("SCALE = 0.25\n")
    git(repo, "add", "pyproject.toml", "helper.py")
    git(repo, "commit", "-qm", "package")
    python = small_venv(tmp_path / "venv-a", "numpy==1.26.4", "-e", str(repo))
    original = wrapped(repo, [str(python), "train.py", "5"])
    cache = tmp_path / "envs"
    code, data, err = reproduce_json(
        repo, original, "--env", "recreate", "--verify", RUNSTONE_ENV_CACHE=str(cache)
    )
    assert code == 0, err
    assert data["verdict"]["verdict"] == "IDENTICAL"
    assert "building an environment" in err
    assert data["python"].startswith(str(cache))
    assert data["environment_differences"] == []
    with runstone.Client() as client:
        env = client.get_records(data["runs"][0])["environment"]
    versions = {d["name"]: d["version"] for d in env["distributions"]}
    assert versions["numpy"] == "1.26.4"
    # The project came from the rebuilt tree, editable, as it was installed for the original run.
    [project] = [d for d in env["distributions"] if d["name"].replace("_", "-") == "demo-train"]
    assert project["source"]["kind"] == "editable" and "attempt-1" in project["source"]["url"]
    assert env["python"]["executable"].startswith(str(cache))
    with runstone.Client() as client:
        made = client.get_records(data["runs"][0])["reproduction"]["recreated"]
    assert made["cached"] is False and made["installer"] == "uv" and (cache / made["digest"]).is_dir()
    # A second reproduction reuses the environment built for this package set.
    code, data, err = reproduce_json(
        repo, original, "--env", "recreate", "--verify", RUNSTONE_ENV_CACHE=str(cache)
    )
    assert code == 0, err
    assert "reusing the environment" in err and "building" not in err
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1


def test_environment_drift_names_the_package_and_both_versions(repo: Path, tmp_path: Path) -> None:
    # NumPy 2 changed how a float32 scalar combines with a Python float (NEP 50): the same
    # script computes other bits. Record with numpy 1.26.4; reproduce here, with numpy 2.
    (repo / "drift.py").write_text(
        "import numpy as np, runstone\n"
        "with runstone.init(seed=0) as run:\n"
        "    w = np.float32(1.0)\n"
        "    for step in range(5):\n"
        "        w = w * 0.9 + 0.01\n"
        "        run.log({'w': float(w)}, step=step)\n"
    )
    git(repo, "add", "drift.py")
    git(repo, "commit", "-qm", "drift")
    python = small_venv(tmp_path / "venv-old", "numpy==1.26.4")
    original = wrapped(repo, [str(python), "drift.py"])
    code, data, err = reproduce_json(repo, original, "--verify")
    assert code == 0, err  # float32 rounding: within the default tolerance
    assert data["verdict"]["verdict"] == "EQUIVALENT"
    code, data, err = reproduce_json(repo, original, "--verify", "--rtol", "0", "--atol", "0")
    assert code == 1, err
    verdict = data["verdict"]
    assert verdict["verdict"] == "DIVERGED" and verdict["first_divergence"] == 0
    import numpy

    assert f"numpy 1.26.4 → {numpy.__version__}" in err  # reported before the rerun
    top = verdict["causes"][:3]
    assert any("numpy 1.26.4 → " + numpy.__version__ in c["evidence"] for c in top), top
    assert top[0]["title"] == "a numerics package version differs", top


def test_an_unseeded_script_diverges_at_its_first_step_and_repeat_shows_nondeterminism(repo: Path) -> None:
    original = wrapped(repo, [sys.executable, "train.py", "4", "--unseeded"])
    code, data, err = reproduce_json(repo, original, "--repeat", "2")
    assert code == 1, err
    verdict = data["verdict"]
    assert verdict["verdict"] == "DIVERGED" and verdict["first_divergence"] == 0
    assert len(data["runs"]) == 2
    assert verdict["repeat"]["self_consistent"] is False
    assert "intrinsic nondeterminism" in verdict["repeat"]["conclusion"]
    titles = [c["title"] for c in verdict["causes"][:2]]
    assert set(titles) == {"intrinsic nondeterminism", "unseeded randomness"}, verdict["causes"]


DATA = "1,2,3\n4,5,6\n7,8,9\n1,0,1\n"


def test_a_changed_input_is_refused_naming_the_file_and_both_digests(repo: Path) -> None:
    (repo / "data.csv").write_text(DATA)
    original = wrapped(repo, [sys.executable, "train.py", "3"], "--input", "data.csv")
    with runstone.Client() as client:
        [used] = [u for u in client.artifacts(original) if u.direction == "input"]
    (repo / "data.csv").write_text("1,1,1\n")
    done = rs(repo, "reproduce", original)
    assert done.returncode == 2, done.stderr
    assert "data.csv" in done.stderr and used.artifact.digest in done.stderr
    from runstone.artifacts.tree import hash_path

    assert hash_path(repo / "data.csv").digest in done.stderr
    with runstone.Client() as client:
        assert client.count_runs() == 1  # nothing was rerun
    code, data, err = reproduce_json(repo, original, "--verify", "--allow-changed-inputs")
    assert code == 1, err
    causes = data["verdict"]["causes"]
    assert any(c["title"] == "a changed input" and "data.csv" in c["evidence"] for c in causes), causes


def test_an_unchanged_ignored_input_is_copied_into_the_rebuilt_tree(repo: Path) -> None:
    (repo / "data.csv").write_text(DATA)
    original = wrapped(repo, [sys.executable, "train.py", "3"], "--input", "data.csv", "--seed", "7")
    code, data, err = reproduce_json(repo, original, "--verify", "--keep")
    assert code == 0, err
    assert data["verdict"]["verdict"] == "IDENTICAL"
    [entry] = data["inputs"]
    assert entry["placed"] == "copied from its recorded path"
    tree = Path(data["workdirs"][0])
    assert (tree / "data.csv").read_text() == (repo / "data.csv").read_text()  # kept with --keep
    with runstone.Client() as client:
        rerun = client.get_run(data["runs"][0])
        records = client.get_records(rerun.id)
    assert records["launch"]["seed"] == 7 and records["launch"]["inputs"] == ["data.csv"]
    assert records["environment"]["variables"]["values"]["PYTHONHASHSEED"] == "7"


def test_a_run_outside_git_is_rebuilt_from_its_snapshot(workdir: Path) -> None:
    from tests.reproduce.conftest import TRAIN

    (workdir / "train.py").write_text(TRAIN)
    (workdir / "helper.py").write_text("SCALE = 2.0\n")
    original = wrapped(workdir, [sys.executable, "train.py", "3"])
    (workdir / "helper.py").write_text("SCALE = 3.0\n")  # changed since: the snapshot has the old one
    code, data, err = reproduce_json(workdir, original, "--verify")
    assert code == 0, err
    assert data["verdict"]["verdict"] == "IDENTICAL"
    assert "snapshotted files" in err


def test_an_unreachable_commit_without_a_snapshot_is_refused(repo: Path, tmp_path: Path) -> None:
    original = wrapped(repo, [sys.executable, "train.py", "2"])
    (repo / ".git").rename(tmp_path / "moved.git")
    done = rs(repo, "reproduce", original, RUNSTONE_URI=f"sqlite:///{repo}/.runstone/runstone.db")
    assert done.returncode == 2
    assert "is not in" in done.stderr and "snapshot" in done.stderr and "git fetch" in done.stderr


def test_a_wrapped_script_that_logs_nothing_is_compared_by_its_output(repo: Path) -> None:
    (repo / "plain.py").write_text(
        "import datetime, sys, time, random\n"
        "t = time.time()\n"
        "print('started at', datetime.datetime.now().isoformat())\n"
        "print('answer', 42 if '--random' not in sys.argv else random.random())\n"
        "print(f'took {time.time() - t:.3f}s')\n"
    )
    git(repo, "add", "plain.py")
    git(repo, "commit", "-qm", "plain")
    steady = wrapped(repo, [sys.executable, "plain.py"])
    code, data, err = reproduce_json(repo, steady, "--verify")
    assert code == 0, err
    log = data["verdict"]["log"]
    assert data["verdict"]["verdict"] == "IDENTICAL" and log["decisive"] and log["status"] == "same"
    assert log["normalized"]["timestamps"] >= 2 and log["normalized"]["durations"] >= 2
    noisy = wrapped(repo, [sys.executable, "plain.py", "--random"])
    code, data, err = reproduce_json(repo, noisy, "--verify")
    assert code == 1
    assert data["verdict"]["log"]["first_line"] == 2
    assert data["verdict"]["causes"][0]["title"] == "unseeded randomness"


def test_verify_reports_and_finds_the_newest_reproduction(repo: Path, tmp_path: Path) -> None:
    original = wrapped(repo, [sys.executable, "train.py", "3"])
    done = rs(repo, "verify", original)
    assert done.returncode == 3 and "no reproductions" in done.stderr
    assert rs(repo, "reproduce", original).returncode == 0
    report = tmp_path / "verdict.html"
    done = rs(repo, "verify", original, "--report", str(report))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("IDENTICAL")
    page = report.read_text()
    assert "<title>runstone verify: IDENTICAL</title>" in page and original in page
    markdown = tmp_path / "verdict.md"
    assert rs(repo, "verify", original, "--report", str(markdown)).returncode == 0
    assert markdown.read_text().startswith("# IDENTICAL")


def test_python_api_reproduce(repo: Path) -> None:
    from runstone.api.reproduce import reproduce

    original = wrapped(repo, [sys.executable, "train.py", "3"])
    lines: list[str] = []
    with open(os.devnull, "w") as devnull:
        result = reproduce(original, verify=True, log=lines.append, stdout=devnull)
    assert result.verdict.verdict == "IDENTICAL" and result.exit_code == 0
    assert any("rerunning (1/1)" in line for line in lines)
    assert json.loads(json.dumps(result.to_dict()))["original"] == original


def test_quickstart_ends_with_an_identical_reproduction(workdir: Path) -> None:
    done = rs(workdir, "quickstart", "--steps", "20")
    assert done.returncode == 0, done.stderr
    assert (
        "Reproduced as run " in done.stdout and "IDENTICAL: every compared value is bit-equal" in done.stdout
    )
    with runstone.Client() as client:
        runs = client.find_runs(project="quickstart")
    assert len(runs) == 2 and runs[0].tags["reproduction_of"] == runs[1].id
    assert runs[0].tags["verdict"] == "IDENTICAL"


def test_recreate_names_what_it_cannot_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    from runstone.api.environments import recreate
    from runstone.errors import ReproductionError

    monkeypatch.setenv("RUNSTONE_ENV_CACHE", str(tmp_path / "envs"))
    record = {
        "python": {"version": platform.python_version()},
        "distributions": [{"name": "numpy", "version": "0.0.0.1"}],
    }
    with pytest.raises(ReproductionError, match=r"numpy==0\.0\.0\.1 cannot be installed"), recreate(record):
        pass
    assert not [p for p in (tmp_path / "envs").iterdir() if p.is_dir()]  # no half-built environment left
    with (
        pytest.raises(ReproductionError, match=r"Python 3\.99\.1"),
        recreate({"python": {"version": "3.99.1"}, "distributions": []}),
    ):
        pass
    gone = {
        "name": "mylib",
        "version": "1.0",
        "source": {"kind": "editable", "url": f"file://{tmp_path}/gone"},
    }
    with (
        pytest.raises(ReproductionError, match="no longer exists"),
        recreate({"python": {"version": platform.python_version()}, "distributions": [gone]}),
    ):
        pass


def test_absolute_paths_a_relative_store_and_an_edited_tracked_input(repo: Path) -> None:
    (repo / "table.csv").write_text("1,2,3\n")
    git(repo, "add", "table.csv")
    git(repo, "commit", "-qm", "table")
    # Absolute paths into the project, in the command and as an input.
    original = wrapped(
        repo, [sys.executable, str(repo / "train.py"), "3"], "--input", str(repo / "table.csv")
    )
    (repo / "table.csv").write_text(
        "9,9,9\n"
    )  # edited in the working copy; the commit holds the recorded one
    done = rs(repo, "reproduce", original, "--verify", "--json", "--uri", ".runstone/runstone.db")
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)["verdict"]
    assert verdict["verdict"] == "IDENTICAL"
    assert verdict["differences"] == []  # the rebuilt tree's paths are the project's paths
    assert verdict["causes"] == []


def test_a_rerun_that_fails_fails_reproduce_and_the_tree_is_kept(repo: Path) -> None:
    (repo / "flaky.py").write_text("import os, sys\nsys.exit(0 if os.path.exists('marker') else 3)\n")
    git(repo, "add", "flaky.py")
    git(repo, "commit", "-qm", "flaky")
    (repo / "marker").write_text("")
    original = wrapped(repo, [sys.executable, "flaky.py"])  # marker is untracked: kept with the run
    with runstone.Client() as client:
        records = client.get_records(original)
    assert [u["path"] for u in records["code"]["git"]["untracked"]] == ["marker"]
    (repo / ".gitignore").write_text("data.csv\nmarker\n")  # ignore it from now on; the record has it
    code, data, err = reproduce_json(repo, original)
    assert code == 0, err
    # Without the marker (an ignored file the run did not declare) the rerun exits 3.
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore marker")
    original = wrapped(repo, [sys.executable, "flaky.py"])
    code, data, err = reproduce_json(repo, original)
    assert code == 1 and data["failed"] is True, err
    assert Path(data["workdirs"][0]).exists()  # kept for a look
    assert "the rebuilt trees are kept in" in err


def test_too_large_uncommitted_changes_are_refused(repo: Path) -> None:
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\n# an edit\n")
    original = wrapped(repo, [sys.executable, "train.py", "2"], RUNSTONE_CAPTURE_DIFF_MAX_BYTES="1")
    done = rs(repo, "reproduce", original)
    assert done.returncode == 2
    assert "uncommitted changes were not kept" in done.stderr


def test_pythonpath_into_the_project_follows_the_rebuilt_tree(repo: Path) -> None:
    (repo / "src").mkdir()
    (repo / "src" / "helper.py").write_text("SCALE = 0.5\n")
    git(repo, "add", "src")
    git(repo, "commit", "-qm", "src layout")
    original = wrapped(repo, [sys.executable, "train.py", "3"], PYTHONPATH=str(repo / "src"))
    (repo / "src" / "helper.py").write_text("SCALE = 9.0\n")  # the working copy moves on
    code, data, err = reproduce_json(repo, original, "--verify", PYTHONPATH=str(repo / "src"))
    assert code == 0, err
    assert data["verdict"]["verdict"] == "IDENTICAL"


def test_a_command_that_held_a_secret_is_refused(repo: Path) -> None:
    original = wrapped(repo, [sys.executable, "train.py", "2", "postgres://me:hunter2@db/x"])
    done = rs(repo, "reproduce", original)
    assert done.returncode == 2
    assert (
        "held secrets that were not recorded" in done.stderr and "postgres://<redacted>@db/x" in done.stderr
    )
    assert "hunter2" not in done.stderr


def test_direct_runs_and_modules_reproduce_identically(repo: Path) -> None:
    import subprocess

    from tests.reproduce.conftest import env

    (repo / "pkg").mkdir()
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "util.py").write_text("STEPS = 3\n")
    (repo / "pkg" / "train.py").write_text(
        "import runstone\nfrom . import util\n"
        "with runstone.init(seed=0) as run:\n"
        "    for step in range(util.STEPS):\n"
        "        run.log({'x': step / 3}, step=step)\n"
    )
    git(repo, "add", "pkg")
    git(repo, "commit", "-qm", "pkg")
    for command in ([sys.executable, "train.py", "3"], [sys.executable, "-m", "pkg.train"]):
        subprocess.run(command, cwd=repo, env=env(), check=True, timeout=120)  # not wrapped
        with runstone.Client() as client:
            original = client.find_runs()[0]
        assert "-m" not in command or original.command[1:3] == ("-m", "pkg.train")
        code, data, err = reproduce_json(repo, original.id, "--verify")
        assert code == 0, err
        assert data["verdict"]["verdict"] == "IDENTICAL" and data["failed"] is False, data["verdict"]["notes"]
        assert not Path(data["workdirs"][0]).exists()


def test_reproductions_are_numbered_and_can_be_reproduced_themselves(repo: Path, tmp_path: Path) -> None:
    (repo / "data.csv").write_text(DATA)
    original = wrapped(repo, [sys.executable, "train.py", "2"], "--input", "data.csv")
    own = tmp_path / "mine"
    own.mkdir()
    code, first, err = reproduce_json(repo, original, "--workdir", str(own))
    assert code == 0, err
    assert own.is_dir() and not list(own.iterdir())  # the user's folder stays; the trees go
    code, second, err = reproduce_json(repo, first["runs"][0], "--verify")  # a reproduction of it
    assert code == 0, err
    assert second["verdict"]["verdict"] == "IDENTICAL"
    code, third, err = reproduce_json(repo, original)
    with runstone.Client() as client:
        names = [client.get_run(r).name for r in (first["runs"][0], third["runs"][0])]
        base = client.get_run(original).name
    assert names == [f"{base}-repro1", f"{base}-repro2"]


def test_repeat_finds_nondeterminism_below_the_tolerance(repo: Path) -> None:
    (repo / "noise.py").write_text(
        "import numpy as np, runstone\n"
        "with runstone.init(seed=0) as run:\n"
        "    noise = np.random.default_rng()\n"  # no seed reaches this generator
        "    for step in range(4):\n"
        "        run.log({'loss': 1.0 / (step + 1) + noise.normal() * 1e-12}, step=step)\n"
    )
    git(repo, "add", "noise.py")
    git(repo, "commit", "-qm", "noise")
    original = wrapped(repo, [sys.executable, "noise.py"])
    code, data, err = reproduce_json(repo, original, "--repeat", "2")
    assert code == 0, err  # within tolerance of the original...
    verdict = data["verdict"]
    assert verdict["verdict"] == "EQUIVALENT"
    assert verdict["repeat"]["self_consistent"] is False  # ...but the reruns differ from each other in bits
    assert verdict["causes"][0]["title"] == "intrinsic nondeterminism"
