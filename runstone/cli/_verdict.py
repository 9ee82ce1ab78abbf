"""Options and output shared by ``runstone reproduce`` and ``runstone verify`` (layer 6)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runstone.cli._output import print_json
from runstone.errors import StoreError, UsageError

__all__ = ["add_verdict_options", "policy", "print_verdict", "write_report"]


def add_verdict_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rtol", type=float, metavar="X", help="relative tolerance (default 1e-5)")
    parser.add_argument("--atol", type=float, metavar="X", help="absolute tolerance (default 1e-8)")
    parser.add_argument("--policy", metavar="FILE", help="a TOML file of tolerances (see examples)")
    parser.add_argument("--json", action="store_true", help="print JSON (the reruns' output goes to stderr)")
    parser.add_argument(
        "--report", metavar="PATH", help="also write the report as Markdown (.md) or HTML (.html)"
    )


def policy(args: argparse.Namespace) -> Any:
    from runstone.api.verify import Policy

    if args.policy:
        return Policy.load(args.policy, rtol=args.rtol, atol=args.atol)
    return Policy().with_tolerance(rtol=args.rtol, atol=args.atol)


def write_report(verdict: Any, path: str) -> None:
    if not path.endswith((".html", ".htm", ".md", ".markdown")):
        raise UsageError(f"--report {path}: name a .md (Markdown) or .html file")
    text = verdict.to_html() if path.endswith((".html", ".htm")) else verdict.to_markdown()
    try:
        Path(path).write_text(text)
    except OSError as e:
        raise StoreError(f"Cannot write the report to {path}: {e.strerror or e}") from e
    sys.stderr.write(f"runstone: wrote the report to {path}\n")


def print_verdict(verdict: Any, args: argparse.Namespace) -> None:
    if args.report:
        write_report(verdict, args.report)
    if args.json:
        print_json(verdict.to_dict())
    else:
        sys.stdout.write(verdict.to_text())
