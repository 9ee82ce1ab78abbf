"""``runstone artifacts ls|get``: a run's inputs and outputs, and fetching one (layer 6)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import fmt_size, fmt_time, print_json, print_table
from runstone.errors import NotFoundError, UsageError

__all__ = ["register"]

_LS_EXAMPLES = """\
  runstone artifacts ls 0194f3a2                inputs and outputs: version, kind, size, digest
  runstone artifacts ls 0194f3a2 --json
"""
_GET_EXAMPLES = """\
  runstone artifacts get 0194f3a2 model.pt              into ./model.pt
  runstone artifacts get 0194f3a2 data -o /tmp/data     a directory, rebuilt and checked
  runstone artifacts get 0194f3a2 model.pt@v1 -o old.pt a version by name@vN, @latest or @digest
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "artifacts",
        help="list a run's inputs and outputs, or fetch one",
        description="A run's artifacts: the files and directories it used (inputs) and made (outputs), "
        "stored by content digest.",
        examples=_LS_EXAMPLES + _GET_EXAMPLES,
    )
    actions = parser.add_subparsers(dest="artifacts_action", metavar="ACTION", required=True)
    ls = actions.add_parser(
        "ls",
        help="a run's inputs and outputs",
        description="List a run's inputs and outputs: name and version, kind, size, files, digest, "
        "whether the bytes are stored (an input recorded by digest only is not).",
        epilog="examples:\n" + _LS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument("run", metavar="RUN", help="a run ID, unique prefix or unique name")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_uri(ls)
    ls.set_defaults(handler=handle_ls)
    get = actions.add_parser(
        "get",
        help="fetch an artifact of a run",
        description="Copy one of a run's artifacts out of the object store, checking every digest. "
        "NAME is the artifact's name in the run, or any reference: name@vN, name@latest, "
        "name@<digest prefix>, sha256:<digest>.",
        epilog="examples:\n" + _GET_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    get.add_argument("run", metavar="RUN", help="a run ID, unique prefix or unique name")
    get.add_argument("name", metavar="NAME", help="the artifact")
    get.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where to put it (default: its name, here; into PATH if a folder)",
    )
    get.add_argument("--force", action="store_true", help="replace an existing file at PATH")
    add_uri(get)
    get.set_defaults(handler=handle_get)


def handle_ls(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    with Client(args.uri) as client:
        run = client.get_run(args.run)
        uses = client.artifacts(run.id)
    if args.json:
        print_json({"id": run.id, "artifacts": [u.to_dict() for u in uses]})
        return 0
    if not uses:
        sys.stderr.write(f"Run {run.id} recorded no artifacts.\n")
        return 0
    rows = [
        [
            u.direction,
            u.artifact.ref,
            u.artifact.kind,
            fmt_size(u.artifact.size_bytes),
            str(u.artifact.file_count),
            u.artifact.digest[:19],
            "yes" if u.artifact.stored else "digest only",
            fmt_time(u.time_ms),
        ]
        for u in uses
    ]
    print_table(["direction", "artifact", "kind", "size", "files", "digest", "stored", "time"], rows)
    return 0


def handle_get(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    with Client(args.uri) as client:
        run = client.get_run(args.run)
        uses = client.artifacts(run.id)
        named = [u.artifact for u in uses if args.name in (u.artifact.name, u.artifact.ref)]
        if named:
            artifact = named[-1]  # the run's latest use of that name
        else:
            try:
                artifact = client.get_artifact(args.name, project=run.project)
            except NotFoundError:
                known = ", ".join(sorted({u.artifact.ref for u in uses})) or "none"
                raise NotFoundError(
                    f"Run {run.id} has no artifact {args.name!r} (its artifacts: {known})"
                ) from None
        from runstone.api.artifacts import check_stored

        check_stored(artifact)  # a digest-only input says so before anything about where it would go
        dest = Path(args.output) if args.output else Path(artifact.name)
        if dest.is_dir() and not artifact.is_dir:
            dest = dest / artifact.name  # a file goes into an existing folder
        if dest.exists() and not (args.force and dest.is_file() and not artifact.is_dir):
            hint = "; add --force to replace it" if dest.is_file() and not artifact.is_dir else ""
            raise UsageError(f"{dest} already exists{hint}")
        client.download(artifact, dest)
    kind = "directory" if artifact.is_dir else "file"
    sys.stderr.write(f"Wrote {artifact.ref} ({kind}, {fmt_size(artifact.size_bytes)}) to {dest}\n")
    return 0
