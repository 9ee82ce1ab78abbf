"""``runstone reproduce``: rebuild a past run from its record and rerun it (layer 6)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import print_json
from runstone.cli._verdict import add_verdict_options, policy, write_report
from runstone.errors import UsageError

__all__ = ["register"]

_REPRODUCE_EXAMPLES = """\
  runstone reproduce 0194f3a2                      rebuild the run's code and inputs, rerun it here
  runstone reproduce 0194f3a2 --verify             ... and compare: exit 0 IDENTICAL/EQUIVALENT, 1 DIVERGED
  runstone reproduce 0194f3a2 --env recreate --verify
                                                   in a fresh virtual environment with the exact
                                                   recorded package versions (cached by their digest)
  runstone reproduce 0194f3a2 --repeat 2 --verify  rerun twice: nondeterminism or environment drift?
  runstone reproduce 0194f3a2 --verify --rtol 1e-4 --report verdict.html

The rerun is a new run of the same project, tagged reproduction_of=<original ID>
(runstone ls --filter "tags.reproduction_of = '0194f3a2...'" lists them).
Exit codes: 0 reproduced (IDENTICAL or EQUIVALENT with --verify), 1 DIVERGED,
2 the run cannot be rebuilt (unreachable commit, changed input, missing package).
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "reproduce",
        help="rebuild a past run and rerun it; --verify says whether it matched",
        description="Rebuild RUN from its record (its commit with the uncommitted changes and untracked "
        "files, its inputs by digest, its seeds and numerics variables), rerun its command as a new "
        "run linked to it, and with --verify compare the two.",
        examples=_REPRODUCE_EXAMPLES,
    )
    parser.add_argument("run", metavar="RUN", help="a run ID, unique prefix or unique name")
    parser.add_argument(
        "--env",
        choices=["current", "recreate"],
        default="current",
        help="current: this interpreter, its differences from the recorded environment reported "
        "first (default); recreate: a fresh virtual environment with the exact recorded packages",
    )
    parser.add_argument("--verify", action="store_true", help="compare the rerun with the original")
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="rerun N times (implies comparing the reruns)"
    )
    parser.add_argument(
        "--allow-changed-inputs",
        action="store_true",
        help="rerun even if an input recorded by digest only has changed (listed as a cause)",
    )
    parser.add_argument(
        "--workdir", metavar="PATH", help="build the source trees here (default: a temp folder)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the rebuilt source trees afterwards")
    add_verdict_options(parser)
    add_uri(parser)
    parser.set_defaults(handler=handle_reproduce)


def handle_reproduce(args: argparse.Namespace) -> int:
    from runstone.api.reproduce import reproduce

    if args.repeat < 1:
        raise UsageError(f"--repeat {args.repeat}: give 1 or more")
    verify = args.verify or args.repeat > 1
    if args.report and not verify:
        raise UsageError("--report writes the verdict: add --verify")
    result = reproduce(
        args.run,
        uri=args.uri,
        env=args.env,
        repeat=args.repeat,
        verify=verify,
        policy=policy(args),
        allow_changed_inputs=args.allow_changed_inputs,
        workdir=args.workdir,
        keep=args.keep,
        stdout=sys.stderr.fileno() if args.json else None,
    )
    if result.verdict is not None and args.report:
        write_report(result.verdict, args.report)
    if args.json:
        print_json(result.to_dict())
    elif result.verdict is not None:
        sys.stdout.write(result.verdict.to_text())
    else:
        sys.stdout.write(f"reproduced {result.original.id} as {', '.join(result.runs)}\n")
        sys.stdout.write(f"compare them with: runstone verify {result.original.id} {result.runs[0]}\n")
    return result.exit_code
