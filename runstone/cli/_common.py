"""Helpers shared by the verb modules (layer 6)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_uri", "verb_parser"]


def verb_parser(
    verbs: Any, name: str, *, help: str, description: str, examples: str
) -> argparse.ArgumentParser:
    """A sub-command parser whose --help ends with examples."""
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
