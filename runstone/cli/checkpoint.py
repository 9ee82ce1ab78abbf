"""``runstone checkpoint ls``: a run's checkpoints, with the metric values at their steps (layer 6)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import fmt_number, fmt_size, fmt_time, print_json, print_table

__all__ = ["register"]

_LS_EXAMPLES = """\
  runstone checkpoint ls 0194f3a2            step, epoch, size, digest and metrics at that step
  runstone checkpoint ls 0194f3a2 --json     {"id": ..., "checkpoints": [one object each]}
  runstone run --resume 0194f3a2 -- python train.py   resume the run from its newest checkpoint
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "checkpoint",
        help="list a run's checkpoints",
        description="A run's checkpoints: the whole training state (model, optimizer, random-number "
        "states, ...) saved by run.save_checkpoint(step, ...), one artifact version each.",
        examples=_LS_EXAMPLES,
    )
    actions = parser.add_subparsers(dest="checkpoint_action", metavar="ACTION", required=True)
    ls = actions.add_parser(
        "ls",
        help="a run's checkpoints",
        description="List a run's checkpoints, oldest first: step, epoch, size, digest, the metric "
        "values logged at that step, and the artifact reference that loads it "
        "(run.load_checkpoint(ref=...)). Checkpoints removed by keep_last/keep_best are not listed.",
        epilog="examples:\n" + _LS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument("run", metavar="RUN", help="a run ID, unique prefix or unique name")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_uri(ls)
    ls.set_defaults(handler=handle_ls)


def handle_ls(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    with Client(args.uri) as client:
        run = client.get_run(args.run)
        found = client.checkpoints(run.id)
    if args.json:
        print_json({"id": run.id, "checkpoints": [c.to_dict() for c in found]})
        return 0
    if not found:
        sys.stderr.write(
            f"Run {run.id} ({run.name}) has no checkpoints; save them with "
            "run.save_checkpoint(step, model=..., optimizer=...).\n"
        )
        return 0
    keys = sorted({k for c in found for k in c.metrics})
    rows = [
        [
            str(c.step),
            "-" if c.epoch is None else str(c.epoch),
            fmt_size(c.size_bytes),
            c.digest.removeprefix("sha256:")[:12],
            fmt_time(c.created_ms),
            *[fmt_number(c.metrics[k]) if k in c.metrics else "-" for k in keys],
            f"@v{c.artifact.version}",
        ]
        for c in found
    ]
    count = f"{len(found)} checkpoint{'s' if len(found) != 1 else ''}"
    sys.stdout.write(f"run {run.id} ({run.name}): {count} of {found[0].artifact.name}\n")
    sys.stdout.flush()
    print_table(["step", "epoch", "size", "digest", "saved", *keys, "version"], rows)
    return 0
