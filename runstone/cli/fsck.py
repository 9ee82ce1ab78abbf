"""``runstone fsck``: verify every stored object and every reference to one (layer 6)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import print_json

__all__ = ["register"]

_EXAMPLES = """\
  runstone fsck               hash every object again, follow every reference
  runstone fsck --json
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "fsck",
        help="verify the object store and the references to it",
        description="Re-hash every stored object and follow every reference (artifact versions, and the "
        "diffs, untracked files and snapshots in run records) through directory manifests, and rebuild "
        "every ended run's manifest to check its stored data still matches. Reports corrupt objects, "
        "missing ones with what refers to them, and changed runs with what changed; exit code 1 when "
        "there is any.",
        examples=_EXAMPLES,
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_uri(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    with Client(args.uri) as client:
        report = client.fsck()
    if args.json:
        print_json(report.to_dict())
        return 0 if report.ok else 1
    out = sys.stdout
    out.write(
        f"{report.objects:,} objects ({report.bytes:,} bytes) checked; {report.references:,} references\n"
    )
    for digest in report.corrupt:
        out.write(f"corrupt  {digest}: its content no longer matches its digest\n")
    for item in report.missing:
        out.write(f"missing  {item['digest']}: referred to by {item['referred_to_by']}\n")
    out.write(f"{report.runs:,} runs, {report.sealed:,} sealed with a manifest\n")
    for item in report.tampered:
        out.write(
            f"changed  run {item['run']}: no longer matches its manifest ({', '.join(item['changed'])})\n"
        )
    problems = (
        f"{len(report.corrupt)} corrupt, {len(report.missing)} missing, {len(report.tampered)} runs changed"
    )
    out.write("ok\n" if report.ok else problems + "\n")
    return 0 if report.ok else 1
