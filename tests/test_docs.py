"""The docs are tested: their Python examples run, their commands parse, CI runs the README's command."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runstone.cli import build_parser, parse_args
from tests.conftest import ROOT, child_env

DOCS = ["README.md", "docs/python-api.md", "docs/config.md"]
#: examples that run inside an example project (a copy of it)
PROJECT = {"README.md": ROOT / "examples" / "config", "docs/config.md": ROOT / "examples" / "config"}


def _blocks(path: str, lang: str) -> list[str]:
    text = (ROOT / path).read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("doc", DOCS)
def test_python_examples_run(doc: str, tmp_path: Path) -> None:
    blocks = _blocks(doc, "python")
    assert blocks, f"{doc} has no python examples"
    cwd = tmp_path
    if doc in PROJECT:
        cwd = tmp_path / "project"
        shutil.copytree(PROJECT[doc], cwd)
    for i, code in enumerate(blocks):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=cwd,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{doc} example {i + 1} failed:\n{code}\n{result.stderr}"


@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md", "docs/config.md", "docs/ui.md"])
def test_shell_examples_parse(doc: str) -> None:
    parser = build_parser()
    lines = [
        line.strip()
        for block in _blocks(doc, "sh")
        for line in block.splitlines()
        if line.strip().startswith("runstone ")
    ]
    assert lines
    for line in lines:
        if "[" in line:  # a synopsis, not an example
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = []
        for word in lexer:  # up to a redirection or pipe; comments are dropped by the lexer
            if word in (">", ">>", "|", "<"):
                break
            words.append(word)
        try:
            parse_args(parser, words[1:])
        except SystemExit as e:
            pytest.fail(f"{doc}: {line!r} does not parse ({e})")


@pytest.mark.parametrize(
    "doc", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
)
def test_relative_links_and_images_exist(doc: str) -> None:
    text = (ROOT / doc).read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert all((ROOT / doc).parent.joinpath(t).exists() for t in local if t), [
        t for t in local if t and not (ROOT / doc).parent.joinpath(t).exists()
    ]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command[^>]*-->\n```sh\n(.+?)\n```", readme)
    assert match, "README.md lost its marked test command"
    extracted = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print-test-command"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert extracted == match.group(1)


@pytest.mark.slow
def test_the_config_guide_commands_run_in_the_example_project(tmp_path: Path) -> None:
    """Every ``python ...`` and runnable ``runstone ...`` line of docs/config.md, in examples/config."""
    project = tmp_path / "config"
    shutil.copytree(ROOT / "examples" / "config", project)
    ran = 0
    for block in _blocks("docs/config.md", "sh"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            env = child_env()
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            if not words or words[0] not in ("python", "runstone") or "RUN" in line or ">" in line:
                continue
            command = (
                [sys.executable, *words[1:]]
                if words[0] == "python"
                else [sys.executable, "-m", "runstone", *words[1:]]
            )
            result = subprocess.run(
                command, cwd=project, env=env, capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
            ran += 1
    assert ran >= 8
    runs = subprocess.run(
        [sys.executable, "-m", "runstone", "ls", "--json"],
        cwd=project,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert runs.stdout.count('"status": "finished"') >= 7, runs.stdout
