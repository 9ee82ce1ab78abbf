"""``runstone lineage``: what a run or artifact came from, and what came of it (layer 6)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import print_json
from runstone.errors import UsageError

__all__ = ["register"]

_EXAMPLES = """\
  runstone lineage 0194f3a2                   what the run came from: inputs, the runs that made them, ...
  runstone lineage model.pt@v2                what made this model, from what data
  runstone lineage data@v1 --down             everything derived from this dataset
  runstone lineage 0194f3a2 --format dot | dot -Tsvg > lineage.svg
  runstone lineage 0194f3a2 --both --format mermaid
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "lineage",
        help="what a run or artifact came from, or what came of it",
        description="The lineage graph of a run or an artifact version: runs consume and produce "
        "artifacts. TARGET is a run (ID, prefix or name) or an artifact (name, name@vN, name@latest, "
        "sha256:...); prefix it with run: or artifact: when a name is both. --up (the default) follows "
        "inputs back to raw data and shows each run's code and environment; --down follows outputs.",
        examples=_EXAMPLES,
    )
    parser.add_argument("target", metavar="TARGET", help="a run or an artifact")
    way = parser.add_mutually_exclusive_group()
    way.add_argument(
        "--up", dest="direction", action="store_const", const="up", help="what it came from (default)"
    )
    way.add_argument("--down", dest="direction", action="store_const", const="down", help="what came of it")
    way.add_argument("--both", dest="direction", action="store_const", const="both", help="both ways")
    parser.add_argument(
        "--format", choices=["text", "dot", "mermaid", "json"], default="text", help="how to print it (text)"
    )
    parser.add_argument("--depth", type=int, metavar="N", help="follow at most N edges from TARGET")
    add_uri(parser)
    parser.set_defaults(handler=handle, direction="up")


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    if args.depth is not None and args.depth < 1:
        raise UsageError(f"--depth {args.depth}: give 1 or more")
    with Client(args.uri) as client:
        graph = client.lineage(args.target, direction=args.direction, depth=args.depth)
    if args.format == "json":
        print_json(graph.to_dict())
    else:
        render = {"text": graph.to_text, "dot": graph.to_dot, "mermaid": graph.to_mermaid}[args.format]
        sys.stdout.write(render())
    return 0
