"""``runstone gc``: delete objects nothing refers to (layer 6)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import print_json
from runstone.errors import UsageError

__all__ = ["register"]

_EXAMPLES = """\
  runstone gc --dry-run       what would be deleted
  runstone gc                 delete unreferenced objects older than an hour
  runstone gc --grace 0       ... of any age (no run may be storing meanwhile)
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "gc",
        help="delete objects nothing refers to",
        description="Delete stored objects that no artifact version and no run record refers to. "
        "Objects younger than the grace period are kept, so a run storing right now keeps what it "
        "stored; on a local object store gc also waits for runs that are between storing and recording.",
        examples=_EXAMPLES,
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    parser.add_argument(
        "--grace", type=float, default=3600.0, metavar="SECONDS", help="keep objects younger than this (3600)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_uri(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    if args.grace < 0:
        raise UsageError(f"--grace {args.grace}: give a number of seconds, 0 or more")
    with Client(args.uri) as client:
        report = client.gc(grace_s=args.grace, dry_run=args.dry_run)
    if args.json:
        print_json(report.to_dict())
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for digest in report.deleted:
        sys.stdout.write(f"{verb}  {digest}\n")
    sys.stdout.write(
        f"{verb} {len(report.deleted):,} objects ({report.deleted_bytes:,} bytes); kept {report.kept:,} "
        f"referenced and {report.young:,} younger than {args.grace:g} s\n"
    )
    return 0
