"""``runstone ls``: list and search runs (layer 6)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import (
    fmt_duration,
    fmt_number,
    fmt_time,
    iso_time,
    print_json,
    print_table,
    write_csv,
)
from runstone.errors import UsageError

__all__ = ["register"]

_EXAMPLES = """\
  runstone ls
  runstone ls --filter 'metrics.acc > 0.9 and params.lr = 0.01' --sort -metrics.acc
  runstone ls --filter "status = failed and started > '-1d'"
  runstone ls --filter "tags.stage = 'dev' or name like 'resnet%'" --limit 0
  runstone ls --columns 'params.model.depth,min(metrics.loss)' --csv > runs.csv

filter language:
  fields       params.KEY, metrics.KEY (last value), min(metrics.KEY),
               (param., metric., tag. work too)
               max(metrics.KEY), count(metrics.KEY), tags.KEY, id, name,
               project, status, started, ended, duration_s, exit_code, host, user
  comparisons  = != < <= > >=, like '%pattern%' (ignores case),
               in (a, b), not in (...), is null, is not null
  values       numbers, 'quoted strings', true, false, null, inf;
               times as '2026-11-01', '2026-11-01T12:00Z' or relative '-2h', '-7d'
  combine      and, or, not, parentheses; quote odd keys: metrics.`val loss`
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "ls",
        help="list and search runs",
        description="List runs, newest first, optionally filtered and sorted.",
        examples=_EXAMPLES,
    )
    parser.add_argument("--filter", "-f", default="", metavar="EXPR", help="which runs to list")
    parser.add_argument(
        "--sort", "-s", default="", metavar="FIELDS", help="comma-separated fields, '-' for descending"
    )
    parser.add_argument(
        "--limit", "-n", type=int, default=50, metavar="N", help="at most N runs (default 50; 0: all)"
    )
    parser.add_argument("--project", "-p", help="only this project's runs")
    parser.add_argument(
        "--columns",
        "-c",
        action="append",
        default=[],
        metavar="FIELDS",
        help="extra columns, e.g. params.lr,metrics.acc,exit_code (repeatable)",
    )
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print the runs as JSON")
    form.add_argument("--csv", action="store_true", help="print the runs as CSV")
    add_uri(parser)
    parser.set_defaults(handler=handle)


def _field_value(run: Any, field: Any) -> Any:
    from runstone.store.query import field_value

    value = field_value(run, field)
    if field.kind == "attr" and field.name in ("started", "ended") and value is not None:
        return fmt_time(value)
    return value


def _extra_fields(args: argparse.Namespace, runs: list[Any]) -> list[Any]:
    """Columns: the ones asked for, then fields the filter and sort mention, else common metrics."""
    from runstone.store.query import And, Compare, Field, In, IsNull, Not, Or, parse_filter, parse_order

    fields: list[Field] = []

    def add(field: Field, *, asked: bool = False) -> None:
        # attributes already shown (id, name, status, started, ...) are not repeated
        if field in fields or (field.kind == "attr" and (not asked or field.name in _SHOWN)):
            return
        fields.append(field)

    for text in args.columns:
        for key in parse_order(text, what="columns"):
            add(key.field, asked=True)

    def walk(expr: Any) -> None:
        if isinstance(expr, (Compare, In, IsNull)):
            add(expr.field)
        elif isinstance(expr, Not):
            walk(expr.item)
        elif isinstance(expr, (And, Or)):
            for item in expr.items:
                walk(item)

    if args.filter.strip():
        walk(parse_filter(args.filter))
    if args.sort.strip():
        for key in parse_order(args.sort):
            add(key.field)
    if not fields:
        # runstone's own series (fingerprints) are not shown unless asked for
        counts = Counter(key for run in runs for key in run.metrics if not key.startswith("runstone."))
        for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:4]:
            add(Field("metric", key))
    return fields


_SHOWN = {"id", "name", "project", "status", "started"}

_STATUS_STYLE = {
    "running": "bold cyan",
    "finished": "green",
    "failed": "bold red",
    "killed": "yellow",
    "crashed": "bold magenta",
}


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    if args.limit < 0:
        raise UsageError(f"--limit {args.limit}: give 0 (all runs) or a positive number")
    client = Client(args.uri)
    limit = None if args.limit == 0 else args.limit
    runs = client.find_runs(
        args.filter or None, order_by=args.sort or None, limit=limit, project=args.project
    )
    if args.json:
        print_json([run.to_dict() for run in runs])
        _note_limit(client, args, limit, len(runs))
        return 0
    fields = _extra_fields(args, runs)
    if args.csv:
        header = [
            "id",
            "name",
            "project",
            "status",
            "started",
            "ended",
            "duration_s",
            "exit_code",
        ]  # times ISO-8601
        header += [f.to_text() for f in fields]
        rows = [
            [
                r.id,
                r.name,
                r.project,
                r.status.value,
                iso_time(r.start_time_ms),
                iso_time(r.end_time_ms),
                r.duration_s,
                r.exit_code,
                *[fmt_number(_field_value(r, f)) for f in fields],
            ]
            for r in runs
        ]
        write_csv(header, rows)
        _note_limit(client, args, limit, len(runs))
        return 0
    if not runs:
        if not client.has_store():
            sys.stderr.write(
                f"No runstone store at {client.uri} yet. Track a run with "
                "'runstone run -- COMMAND' or runstone.init() in Python.\n"
            )
        elif (total := client.count_runs()) == 0:
            sys.stderr.write("No runs yet. Track one with 'runstone run -- COMMAND'.\n")
        else:
            sys.stderr.write(f"No runs match (the store has {total}).{_missing_keys(client, args)}\n")
        return 0
    width = client.unique_prefix_length()
    projects = {r.project for r in runs}
    header = ["ID", "NAME"] + (["PROJECT"] if len(projects) > 1 else [])
    header += ["STATUS", "STARTED", "DURATION"] + [f.to_text() for f in fields]
    table_rows: list[list[str]] = []
    for r in runs:
        row = [r.id[:width], r.name] + ([r.project] if len(projects) > 1 else [])
        row += [r.status.value, fmt_time(r.start_time_ms), fmt_duration(r.duration_s)]
        row += [fmt_number(_field_value(r, f)) for f in fields]
        table_rows.append(row)
    print_table(header, table_rows, style=_style)
    _note_limit(client, args, limit, len(runs))
    client.close()
    return 0


def _missing_keys(client: Any, args: argparse.Namespace) -> str:
    """A hint naming filter fields that no run has (a typo, most likely)."""
    from runstone.store.query import Field, IsNull

    if not args.filter.strip():
        return ""
    missing = []
    for field in _extra_fields(argparse.Namespace(columns=[], filter=args.filter, sort=""), []):
        if (
            field.kind != "attr"
            and client.count_runs(IsNull(Field(field.kind, field.name), negated=True)) == 0
        ):
            missing.append(field.to_text())
    return f" No run has {', '.join(missing)}." if missing else ""


def _note_limit(client: Any, args: argparse.Namespace, limit: int | None, shown: int) -> None:
    if limit is not None and shown == limit:
        total = client.count_runs(args.filter or None, project=args.project)
        if total > limit:
            sys.stderr.write(f"Showing {limit} of {total} runs; --limit 0 shows all.\n")


def _style(column: str, value: str) -> str | None:
    if column == "STATUS":
        return _STATUS_STYLE.get(value)
    return "cyan" if column == "ID" else None
