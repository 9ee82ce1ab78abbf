"""The docs are tested: their Python examples run, their commands parse, CI runs the README's command."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from runstone.cli import build_parser, parse_args
from tests.conftest import ROOT, child_env

DOCS = ["README.md", "docs/python-api.md"]


def _blocks(path: str, lang: str) -> list[str]:
    text = (ROOT / path).read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("doc", DOCS)
def test_python_examples_run(doc: str, tmp_path: Path) -> None:
    blocks = _blocks(doc, "python")
    assert blocks, f"{doc} has no python examples"
    for i, code in enumerate(blocks):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{doc} example {i + 1} failed:\n{code}\n{result.stderr}"


@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md"])
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
