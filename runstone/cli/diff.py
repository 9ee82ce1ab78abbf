"""``runstone diff``: every recorded difference between two runs (layer 6)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import print_json

__all__ = ["register"]

_DIFF_EXAMPLES = """\
  runstone diff 0194f3a2 0194f3b7          code, command, config, inputs, seeds, packages, machine
  runstone diff 0194f3a2 0194f3b7 --json
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "diff",
        help="every recorded difference between two runs",
        description="List what differs between two runs' records: code (commit, uncommitted changes, "
        "untracked files), command, config, inputs, seeds, determinism settings, packages, "
        "interpreter, numerics variables, BLAS, frameworks, GPU, CPU and OS; and which metrics "
        "differ from which step. No verdict: see 'runstone verify'.",
        examples=_DIFF_EXAMPLES,
    )
    parser.add_argument("a", metavar="RUN_A")
    parser.add_argument("b", metavar="RUN_B")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_uri(parser)
    parser.set_defaults(handler=handle_diff)


def handle_diff(args: argparse.Namespace) -> int:
    from runstone.api.client import Client
    from runstone.api.verify import verify

    with Client(args.uri) as client:
        compared = verify(client, args.a, args.b)
    if args.json:
        data = compared.to_dict()
        print_json(
            {k: data[k] for k in ("a", "b", "differences", "metrics", "fingerprints", "outputs", "log")}
        )
        return 0
    out = [f"A: {compared.a.id} ({compared.a.name})", f"B: {compared.b.id} ({compared.b.name})", ""]
    if compared.differences:
        category = None
        for d in compared.differences:
            if d.category != category:
                category = d.category
                out.append(f"{category}:")
            out.append(f"  {d.text}")
    else:
        out.append("no recorded difference in code, command, config, inputs, seeds, environment or machine")
    series = [m for m in [*compared.metrics, *compared.fingerprints] if m.status != "ignored"]
    if series:
        out += ["", "results:"]
        for m in series:
            label = m.key if m.kind == "metric" else f"fingerprint {m.key}"
            if m.status == "identical":
                out.append(f"  {label}: the same at all {m.steps} steps")
            elif m.reason and m.first_difference is None:
                out.append(f"  {label}: {m.reason}")
            else:
                out.append(f"  {label}: differs from step {m.first_difference}")
    for o in compared.outputs:
        if o.status != "same":
            out.append(f"  output {o.name}: {o.status}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0
