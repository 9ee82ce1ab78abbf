"""``runstone run``: track any command without changing it (layer 6)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.errors import UsageError

__all__ = ["register"]

_EXAMPLES = """\
  runstone run -- python train.py --lr 0.1
  runstone run --project digits --name baseline --tag stage=dev -- python train.py
  runstone run -- bash -c 'make data && python train.py'
  runstone run --seed 0 --deterministic -- python train.py
  runstone run --input data/train.csv --output model.pt -- python train.py
  runstone run --resume 0194f3a2 -- python train.py   reopen a crashed run; the script
                                                      calls run.load_checkpoint(...)
  runstone run --resume latest -- python train.py     the project's newest crashed,
                                                      killed or failed run (else a new one)

The command's output is shown as usual and stored with the run (see
'runstone show RUN --log'). A script that calls runstone.init() joins this
run, so its metrics and config land here. Ctrl-C and SIGTERM reach the
command; the run is then recorded as killed. runstone exits with the
command's exit code.
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "run",
        help="run a command as a tracked run",
        description="Run COMMAND as a tracked run: its argv, working directory, times, "
        "exit status and combined stdout/stderr are recorded.",
        examples=_EXAMPLES,
    )
    parser.add_argument("--project", "-p", help="project of the run (default: the repository's name)")
    parser.add_argument("--name", help="a name for the run (default: generated)")
    parser.add_argument(
        "--tag",
        "-t",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a tag for the run; repeat for more",
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="set PYTHONHASHSEED=S for the command; a command that calls runstone.init() "
        "also seeds random, numpy, PyTorch and TensorFlow with S",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="with --seed: ask the frameworks for deterministic kernels (and set CUBLAS_WORKSPACE_CONFIG)",
    )
    parser.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or directory the command reads: recorded as an input by content digest; repeat for more",
    )
    parser.add_argument(
        "--output",
        "-o",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or directory the command writes: stored as an output when it ends; repeat for more",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN",
        help="reopen RUN (an ID, prefix or name, or 'latest') instead of starting a run: the command "
        "joins it, and run.load_checkpoint() restores its newest checkpoint",
    )
    parser.add_argument("--reproduction", metavar="JSON", help=argparse.SUPPRESS)  # set by reproduce
    add_uri(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    parser.set_defaults(handler=handle)


def parse_tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {pair!r}: write KEY=VALUE, e.g. --tag stage=dev")
        tags[key] = value
    return tags


def _reproduction(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("of"), str):
        raise UsageError("--reproduction takes the JSON object runstone reproduce passes")
    return value


def handle(args: argparse.Namespace) -> int:
    from runstone.api.launch import launch

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if args.deterministic and args.seed is None:
        raise UsageError("--deterministic goes with --seed S")
    result = launch(
        command,
        project=args.project,
        name=args.name,
        tags=parse_tags(args.tag),
        uri=args.uri,
        seed=args.seed,
        deterministic=args.deterministic,
        inputs=args.input,
        outputs=args.output,
        resume=args.resume,
        reproduction=_reproduction(args.reproduction),
    )
    sys.stderr.write(f"runstone: run {result.run_id} {result.status.value} (exit code {result.exit_code})\n")
    return result.exit_code
