"""``runstone env export``: a run's environment as a file another machine can install (layer 6)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.errors import StoreError

__all__ = ["register"]

_EXAMPLES = """\
  runstone env export 0194f3a2 > requirements.txt
  runstone env export 0194f3a2 --format requirements -o requirements.txt
  pip install -r requirements.txt          (or: uv pip install -r requirements.txt)
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "env",
        help="export a run's recorded environment",
        description="Work with a run's recorded environment.",
        examples=_EXAMPLES,
    )
    actions = parser.add_subparsers(dest="env_action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write the run's Python packages, pinned",
        description="Write the distributions the run had installed as a pinned requirements file.",
        epilog="examples:\n" + _EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("run", metavar="RUN", help="a run ID, unique prefix or unique name")
    export.add_argument("--format", choices=["requirements"], default="requirements", help="the file format")
    export.add_argument("-o", "--output", metavar="PATH", help="write to PATH instead of stdout")
    add_uri(export)
    export.set_defaults(handler=handle_export)


def handle_export(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    with Client(args.uri) as client:
        text = client.requirements(args.run)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as e:
            raise StoreError(f"Cannot write {args.output}: {e.strerror or e}") from e
        sys.stderr.write(f"Wrote {text.count(chr(10)) - 1} requirements to {args.output}\n")
    else:
        sys.stdout.write(text)
    return 0
