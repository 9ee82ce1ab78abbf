"""``runstone show``: one run's record, config, metrics, history or captured output (layer 6)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import fmt_duration, fmt_number, fmt_time, print_json, print_table, write_csv
from runstone.errors import UsageError

__all__ = ["register"]

_EXAMPLES = """\
  runstone show 0194f3a2              overview (any unique ID prefix, or a unique name)
  runstone show 0194f3a2 --config     the resolved config as YAML (see: runstone config --help)
  runstone show 0194f3a2 --metrics    last, min, max and count of every metric
  runstone show 0194f3a2 --history loss --csv > loss.csv
  runstone show 0194f3a2 --log        the command's stored stdout/stderr
  runstone show 0194f3a2 --code       commit, branch, uncommitted changes, untracked files
  runstone show 0194f3a2 --diff > changes.patch
  runstone show 0194f3a2 --env        Python, packages, OS, CPU, GPUs, frameworks, seeds
  runstone show 0194f3a2 --json       everything, as JSON
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "show",
        help="show one run",
        description="Show a run: status, times, command, config, params, tags, metrics.",
        examples=_EXAMPLES,
    )
    parser.add_argument("run", metavar="RUN", help="a run ID, any unique prefix of one, or a unique run name")
    part = parser.add_mutually_exclusive_group()
    part.add_argument(
        "--config", action="store_true", help="only the resolved config, as YAML (JSON with --json)"
    )
    part.add_argument("--params", action="store_true", help="only the flattened params")
    part.add_argument("--metrics", action="store_true", help="only the metric summaries")
    part.add_argument("--history", metavar="KEY", help="every point of one metric")
    part.add_argument("--log", action="store_true", help="the stored stdout/stderr of the command")
    part.add_argument("--code", action="store_true", help="the code record: commit, changes, untracked files")
    part.add_argument(
        "--diff", action="store_true", help="the stored diff of uncommitted changes (git apply takes it)"
    )
    part.add_argument(
        "--env", action="store_true", help="the environment: Python, packages, system, GPUs, seeds, variables"
    )
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON")
    form.add_argument("--csv", action="store_true", help="print CSV (with --history, --metrics, --params)")
    add_uri(parser)
    parser.set_defaults(handler=handle)


def _emit(args: argparse.Namespace, header: list[str], rows: list[list[Any]], data: Any) -> None:
    if args.json:
        print_json(data)
    elif args.csv:
        write_csv(header, rows)
    else:
        print_table(header, [[fmt_number(v) for v in row] for row in rows])


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    if args.csv and not (args.history is not None or args.metrics or args.params):
        raise UsageError("--csv goes with --history KEY, --metrics or --params")
    if args.history is not None and not args.history:
        raise UsageError("--history needs a metric name, e.g. --history loss")
    with Client(args.uri) as client:
        run = client.get_run(args.run)
        if args.log:
            output = client.read_output(run.id)
            if not output and not args.json:
                sys.stderr.write(
                    f"Run {run.id} has no stored output (runstone run stores the output of the "
                    "command it runs; runstone.init() alone does not capture it).\n"
                )
            if args.json:
                print_json({"id": run.id, "output": output.decode("utf-8", "replace")})
            else:
                sys.stdout.flush()
                sys.stdout.buffer.write(output)
                sys.stdout.buffer.flush()
            return 0
        if args.config:
            from runstone.cli.config import print_config

            print_config(run, client.get_records(run.id), as_json=args.json)
            return 0
        if args.code or args.env or args.diff:
            records = client.get_records(run.id)
            if args.diff:
                git = records.get("code", {}).get("git") or {}
                diff = git.get("diff")
                if diff:
                    sys.stdout.flush()
                    sys.stdout.buffer.write(client.read_object(diff["digest"]))
                    sys.stdout.buffer.flush()
                else:
                    sys.stderr.write(f"Run {run.id} recorded no uncommitted changes.\n")
                return 0
            if args.json:
                keys = ("code",) if args.code else ("environment", "system", "seeds")
                print_json({k: records.get(k) for k in keys})
            elif args.code:
                from runstone.cli._records import print_code

                print_code(records.get("code"))
            else:
                from runstone.cli._records import print_env

                print_env(records)
            return 0
        if args.history:
            history = client.metric_history(run.id, args.history)
            steps, values, stamps = (
                history.steps.tolist(),
                history.values.tolist(),
                history.timestamps_ms.tolist(),
            )
            rows = [list(row) for row in zip(steps, values, stamps, strict=True)]
            data = {
                "id": run.id,
                "key": history.key,
                "steps": steps,
                "values": values,
                "timestamps_ms": stamps,
            }
            _emit(args, ["step", "value", "timestamp_ms"], rows, data)
            return 0
        records = {} if args.json else client.get_records(run.id)
        config_record = records.get("config")
        manifest = (records.get("manifest") or {}).get("digest")
        uses = [] if args.json else client.artifacts(run.id)
        resumes = (records.get("resumes") or {}).get("resumes") or []
    if args.params:
        rows = [[k, v] for k, v in run.params.items()]
        _emit(args, ["param", "value"], rows, dict(run.params))
        return 0
    if args.metrics:
        rows = [
            [m.key, m.last_value, m.last_step, m.min_value, m.max_value, m.count]
            for m in run.metrics.values()
        ]
        _emit(args, ["metric", "last", "step", "min", "max", "count"], rows, run.to_dict()["metrics"])
        return 0
    if args.json:
        print_json(run.to_dict())
        return 0
    _overview(run, config_record, manifest, uses, resumes)
    return 0


def _config_line(run: Any, record: dict[str, Any] | None) -> str:
    if not run.config and not record:
        return "(none)"
    line = f"{run.config_digest} ({len(run.params)} params)"
    if not record:
        return line
    source = record.get("primary") or {"hydra": "Hydra"}.get(str(record.get("source")), record.get("source"))
    line += f" from {source}"
    if record.get("overrides"):
        line += ", overrides: " + shlex.join(record["overrides"])
    return line


def _resumed_line(resumes: list[dict[str, Any]]) -> str:
    last = resumes[-1]
    times = "once" if len(resumes) == 1 else f"{len(resumes)} times"
    text = f"{times}; last at {fmt_time(last.get('time_ms'))}" if last.get("time_ms") else times
    previous = last.get("previous") or {}
    if last.get("previous") is None:
        text = "restored its own checkpoint in the same process"
    if previous.get("status"):
        had = {"killed": "been killed", "finished": "finished"}.get(previous["status"], previous["status"])
        text += f" after it had {had}"
        if previous.get("end_time_ms"):
            text += f" at {fmt_time(previous['end_time_ms'])}"
    if last.get("checkpoint"):
        text += f", from {last['checkpoint']} (step {last.get('step')})"
    dropped = sum((last.get("superseded_points") or {}).values())
    if dropped:
        text += f"; {dropped} points logged after that step were superseded"
    return text


def _overview(
    run: Any,
    config_record: dict[str, Any] | None = None,
    manifest: str | None = None,
    uses: Any = (),
    resumes: list[dict[str, Any]] | None = None,
) -> None:
    from runstone.api.checkpoints import Checkpoint
    from runstone.api.fingerprint import FINGERPRINT_PREFIX, from_value

    out = sys.stdout
    status = run.status.value
    if run.exit_code is not None:
        status += f" (exit code {run.exit_code})"
    if run.error:
        status += f": {run.error}"
    lines = [
        ("run", f"{run.id}  {run.name}"),
        ("project", run.project),
        ("status", status),
        ("started", fmt_time(run.start_time_ms)),
        ("ended", fmt_time(run.end_time_ms) if run.end_time_ms else "-"),
        ("duration", fmt_duration(run.duration_s)),
        ("command", shlex.join(run.command) if run.command else "-"),
        ("cwd", run.cwd or "-"),
        ("host", f"{run.host} (user {run.user}, pid {run.pid})"),
        ("config", _config_line(run, config_record)),
        (
            "manifest",
            manifest or ("(written when the run ends)" if run.status.value == "running" else "(none)"),
        ),
    ]
    if resumes:
        lines.append(("resumed", _resumed_line(resumes)))
    checkpoints = [
        u for u in uses if u.direction == "output" and Checkpoint.from_artifact(u.artifact) is not None
    ]
    if checkpoints:
        lines.append(
            (
                "checkpoints",
                f"{len(checkpoints)}, newest {checkpoints[-1].artifact.ref} (runstone checkpoint ls)",
            )
        )
    uses = [u for u in uses if u not in checkpoints]
    if uses:
        inputs = [u.artifact.ref for u in uses if u.direction == "input"]
        outputs = [u.artifact.ref for u in uses if u.direction == "output"]
        shown = [
            f"in: {', '.join(inputs)}" if inputs else "",
            f"out: {', '.join(outputs)}" if outputs else "",
        ]
        lines.append(("artifacts", "; ".join(p for p in shown if p) + " (runstone artifacts ls shows more)"))
    fingerprints = [m for m in run.metrics.values() if m.key.startswith(FINGERPRINT_PREFIX)]
    if fingerprints:
        lines.append(
            (
                "fingerprints",
                ", ".join(
                    f"{m.key.removeprefix(FINGERPRINT_PREFIX)}: {m.count} step{'s' if m.count != 1 else ''}, "
                    f"{from_value(m.last_value)} at step {m.last_step}"
                    for m in fingerprints
                ),
            )
        )
    if run.tags:
        lines.append(("tags", ", ".join(f"{k}={v}" for k, v in run.tags.items())))
    if run.output_size_bytes:
        lines.append(("output", f"{run.output_size_bytes:,} bytes stored (--log shows it)"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        out.write(f"{key.ljust(width)}  {value}\n")
    if run.params:
        out.write("\nparams\n")
        pwidth = max(len(k) for k in run.params)
        for key, value in run.params.items():
            out.write(f"  {key.ljust(pwidth)}  {fmt_number(value)}\n")
    metrics = [m for m in run.metrics.values() if not m.key.startswith(FINGERPRINT_PREFIX)]
    if metrics:
        out.write("\nmetrics\n")
        rows = [
            [
                m.key,
                fmt_number(m.last_value),
                str(m.last_step),
                fmt_number(m.min_value),
                fmt_number(m.max_value),
                str(m.count),
            ]
            for m in metrics
        ]
        out.flush()
        print_table(
            ["  metric", "last", "step", "min", "max", "count"], [["  " + r[0], *r[1:]] for r in rows]
        )
