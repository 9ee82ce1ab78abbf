"""Helpers shared by the verb modules (layer 6)."""

from __future__ import annotations

import argparse
import shutil
import textwrap
from typing import Any

__all__ = ["add_uri", "verb_parser"]


def verb_parser(
    verbs: Any, name: str, *, help: str, description: str, examples: str
) -> argparse.ArgumentParser:
    """A sub-command parser whose --help ends with examples."""
    if "\n" not in description:  # one paragraph: wrapped to the terminal (the examples keep their lines)
        description = textwrap.fill(description, width=min(100, shutil.get_terminal_size().columns - 2))
    parser: argparse.ArgumentParser = verbs.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + examples.rstrip() + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uri",
        metavar="URI",
        help="the store to use (default: RUNSTONE_URI, else .runstone/ at the repository root)",
    )
