"""``runstone quickstart``: track a small bundled training run and say where to look (layer 6)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import fmt_duration, fmt_number
from runstone.errors import UsageError

__all__ = ["register"]

_EXAMPLES = """\
  runstone quickstart
  runstone quickstart --steps 500 --lr 0.05

It runs 'python -m runstone.examples.quickstart' (softmax regression in
numpy on a generated data set; no downloads) under 'runstone run', so the
run records the command, its output, its config and its metrics. Then it
reproduces the run from its record ('runstone reproduce RUN --verify') and
prints the verdict: IDENTICAL when the rerun matched bit for bit.
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "quickstart",
        help="track a small bundled example training run",
        description="Train a small bundled example under tracking, then show where to look.",
        examples=_EXAMPLES,
    )
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--lr", type=float, default=0.5, help="learning rate (default 0.5)")
    parser.add_argument("--project", "-p", default="quickstart", help="project (default quickstart)")
    add_uri(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    if args.steps < 1:
        raise UsageError(f"--steps {args.steps}: give a positive number of training steps")
    if not args.lr > 0:
        raise UsageError(f"--lr {args.lr}: give a positive learning rate")
    from runstone.api.launch import launch

    command = [
        sys.executable,
        "-m",
        "runstone.examples.quickstart",
        "--steps",
        str(args.steps),
        "--lr",
        str(args.lr),
    ]
    result = launch(command, project=args.project, uri=args.uri)
    with Client(args.uri) as client:
        run = client.get_run(result.run_id)
        short = run.id[: client.unique_prefix_length()]
    metrics = ", ".join(f"{m.key} {fmt_number(m.last_value)}" for m in run.metrics.values())
    out = sys.stdout
    out.write(
        f"\nTracked run {run.id} ({run.name}): {run.status.value} in "
        f"{fmt_duration(run.duration_s)}; {metrics or 'no metrics'}.\n"
        f"Store: {client.uri}\n"
    )
    if result.exit_code != 0:
        return result.exit_code
    out.write("\nReproducing it from its record (code, config, seeds, environment) and verifying...\n")
    out.flush()
    from runstone.api.reproduce import reproduce

    with open(os.devnull, "wb") as sink:
        again = reproduce(run.id, uri=args.uri, verify=True, log=lambda _: None, stdout=sink)
    verdict = again.verdict
    assert verdict is not None
    with Client(args.uri) as client:  # the reproduction made the prefix longer, maybe
        short = run.id[: client.unique_prefix_length()]
    out.write(f"Reproduced as run {again.runs[0][: len(short)]}: {verdict.headline()}\n")
    nxt = [
        ("runstone ls", "your runs"),
        (f"runstone show {short}", "this run's record"),
        (f"runstone show {short} --metrics", "its metrics"),
        (f"runstone show {short} --log", "its stored output"),
        (f"runstone verify {short}", "the verdict on its reproduction, in full"),
        (f"runstone reproduce {short} --verify", "reproduce it again"),
    ]
    width = max(len(cmd) for cmd, _ in nxt)
    out.write("\nLook next:\n" + "".join(f"  {cmd:<{width}}  {what}\n" for cmd, what in nxt))
    return verdict.exit_code
