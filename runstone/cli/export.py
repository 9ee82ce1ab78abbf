"""``runstone export``: a run's provenance as OpenLineage, W3C PROV or an RO-Crate (layer 6)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runstone.cli._common import add_uri, verb_parser

__all__ = ["register"]

_EXAMPLES = """\
  runstone export 0194f3a2 --format openlineage            START and COMPLETE RunEvents, one JSON per line
  runstone export 0194f3a2 --format prov -o run.prov.json  W3C PROV-JSON
  runstone export 0194f3a2 --format ro-crate -o run-crate  a Process Run Crate folder, artifacts included
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "export",
        help="a run's provenance as OpenLineage, W3C PROV or an RO-Crate",
        description="Export a run's provenance in a standard format: OpenLineage RunEvents (START, then "
        "COMPLETE/FAIL/ABORT, with input and output datasets and their digests), W3C PROV-JSON (the run "
        "as an activity, artifacts and records as entities, user and host as agents), or an RO-Crate "
        "folder following the Process Run Crate profile, with the stored artifacts copied in.",
        examples=_EXAMPLES,
    )
    parser.add_argument("run", metavar="RUN", help="a run ID, unique prefix or unique name")
    parser.add_argument(
        "--format", required=True, choices=["openlineage", "prov", "ro-crate"], help="the standard"
    )
    parser.add_argument(
        "-o", "--output", metavar="PATH", help="where to write it (a new folder for ro-crate)"
    )
    add_uri(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    with Client(args.uri) as client:
        text = client.export(args.run, args.format, None if args.output is None else Path(args.output))
    if text is not None:
        sys.stdout.write(text)
    else:
        sys.stderr.write(f"Wrote {args.format} to {args.output}\n")
    return 0
