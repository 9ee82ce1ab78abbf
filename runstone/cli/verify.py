"""``runstone verify``: compare two runs and give the verdict (layer 6)."""

from __future__ import annotations

import argparse
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._verdict import add_verdict_options, policy, print_verdict

__all__ = ["register"]

_VERIFY_EXAMPLES = """\
  runstone verify 0194f3a2                 the original against its newest reproduction
  runstone verify 0194f3a2 0194f3b7        any two runs: A is the reference
  runstone verify A B --rtol 1e-4 --atol 1e-6
  runstone verify A B --policy verify.toml per-metric tolerances, outputs to leave out
  runstone verify A B --json               the whole comparison for machines
  runstone verify A B --report report.md   (or .html) a report for people

Policy file (TOML):
  rtol = 1e-5
  atol = 1e-8
  fingerprints = "exact"        # or "report": listed, but never decide the verdict
  outputs = "exact"             # or "report"
  ignore_outputs = ["*.log"]
  timing_metrics = "ignore"     # step_time, throughput, ... are left out unless "compare"
  [metrics."val/*"]
  rtol = 1e-3
  [metrics.lr]
  ignore = true
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "verify",
        help="compare two runs: IDENTICAL, EQUIVALENT or DIVERGED, and why",
        description="Compare run B with the reference run A: every metric at every step (bit for bit, "
        "then within tolerance), every fingerprint, every output artifact's digest and, for runs that "
        "log no metrics, the captured output. A divergence names the first diverging step of each "
        "series and ranks the recorded differences between the runs as likely causes. With one run, "
        "B is its newest reproduction.",
        examples=_VERIFY_EXAMPLES,
    )
    parser.add_argument("a", metavar="RUN", help="the reference run")
    parser.add_argument(
        "b", metavar="OTHER", nargs="?", help="the run to check (default: RUN's newest reproduction)"
    )
    add_verdict_options(parser)
    add_uri(parser)
    parser.set_defaults(handler=handle_verify)


def handle_verify(args: argparse.Namespace) -> int:
    from runstone.api.client import Client
    from runstone.api.verify import verify
    from runstone.errors import NotFoundError

    with Client(args.uri) as client:
        a = client.get_run(args.a)
        b = args.b
        if b is None:
            found = client.find_runs(f"tags.reproduction_of = '{a.id}'", order_by="-started", limit=1)
            if not found:
                raise NotFoundError(
                    f"Run {a.id} has no reproductions; make one with: runstone reproduce {a.id[:12]} "
                    "(or name the run to compare with)"
                )
            b = found[0].id
        verdict = verify(client, a.id, b, policy=policy(args))
        if verdict.b.tags.get("reproduction_of") == a.id:
            client.set_tags(verdict.b.id, {"verdict": verdict.verdict})
    print_verdict(verdict, args)
    return verdict.exit_code
