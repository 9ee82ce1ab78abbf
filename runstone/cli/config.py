"""``runstone config load|show|diff``: compose a config; a run's config and its sources; two compared.

Layer 6. ``runstone show RUN --config`` is ``runstone config show RUN``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from runstone._json import canonical_json, flatten
from runstone.cli._common import add_uri, verb_parser
from runstone.cli._output import print_json, print_table
from runstone.errors import NotFoundError, UsageError

__all__ = ["print_config", "register"]

_LOAD_EXAMPLES = """\
  runstone config load conf/train.yaml                          the composed config, as YAML
  runstone config load conf/train.yaml model=vit optimizer.lr=0.01 '+tags=[a,b]' '~data.cache'
  runstone config load conf/train.yaml --schema myproject.config:TrainConfig --json
"""
_SHOW_EXAMPLES = """\
  runstone config show 0194f3a2                 the resolved config, as YAML
  runstone config show 0194f3a2 --json | jq .optimizer.lr
  runstone config show 0194f3a2 --sources       files, overrides, schema, digest, Hydra's output dir
  runstone config show 0194f3a2 --file conf/train.yaml > train.yaml
"""
_DIFF_EXAMPLES = """\
  runstone config diff 0194f3a2 0194f3b7        added, removed and changed keys
  runstone config diff 0194f3a2 0194f3b7 --json
  runstone config diff 0194f3a2 0194f3b7 --exit-code || echo "configs differ"
"""
_EXAMPLES = _LOAD_EXAMPLES + _SHOW_EXAMPLES + _DIFF_EXAMPLES


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "config",
        help="compose a config from files; show a run's config; compare two",
        description=(
            "A run's resolved config and where it came from (files, overrides, schema), "
            "or the differences between two runs' configs."
        ),
        examples=_EXAMPLES,
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    load = actions.add_parser(
        "load",
        help="compose a config from files and overrides, and print it",
        description=(
            "Load a config file (YAML, JSON or TOML), compose its defaults list, apply the "
            "overrides, resolve interpolations and check it against a schema, as "
            "runstone.config.load does in a script; print the result as YAML. Overrides (quote "
            "them for the shell): key=value changes a key, +new.key=value adds one, ++key=value "
            "sets or adds, ~key deletes; group=option picks a config group's option, +group=option "
            "adds a group, ~group drops one. Errors print one line (exit code 2)."
        ),
        epilog="examples:\n" + _LOAD_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument("path", metavar="PATH", help="the primary config file (YAML, JSON or TOML)")
    load.add_argument(
        "overrides",
        metavar="OVERRIDE",
        nargs="*",
        default=[],
        help="optional overrides, e.g. optimizer.lr=0.01",
    )
    load.add_argument(
        "--schema",
        metavar="MODULE:CLASS",
        help="a dataclass or pydantic model class to check against, e.g. myproject.config:TrainConfig "
        "(imported with the working directory on the path)",
    )
    load.add_argument("--json", action="store_true", help="print JSON")
    load.add_argument("--sources", action="store_true", help="also list the files it was composed from")
    load.set_defaults(handler=handle_load, trailing_positionals="overrides")

    show = actions.add_parser(
        "show",
        help="a run's resolved config (YAML), or its sources",
        description=(
            "Print a run's resolved config as YAML (keys sorted; values keep their types: "
            "1, 1.0 and '1' differ). --sources lists the files it was composed from, the "
            "overrides as given and the schema; --file prints one file's recorded text."
        ),
        epilog="examples:\n" + _SHOW_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("run", metavar="RUN", help="a run ID, unique prefix or unique name")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--sources", action="store_true", help="files, overrides, schema and digest")
    which.add_argument("--file", metavar="PATH", help="the recorded text of one config file")
    show.add_argument("--json", action="store_true", help="print JSON")
    add_uri(show)
    show.set_defaults(handler=handle_show)

    diff = actions.add_parser(
        "diff",
        help="compare two runs' configs",
        description=(
            "Added, removed and changed config keys from RUN_A to RUN_B, nested keys flattened "
            "(optimizer.lr). Values are shown as JSON, so a change of type (1 to 1.0, 1 to '1') shows. "
            "Exit code 0, or with --exit-code 1 when they differ."
        ),
        epilog="examples:\n" + _DIFF_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("run_a", metavar="RUN_A", help="the run compared from")
    diff.add_argument("run_b", metavar="RUN_B", help="the run compared to")
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.add_argument(
        "--exit-code", action="store_true", help="exit with 1 when the configs differ (like git diff)"
    )
    add_uri(diff)
    diff.set_defaults(handler=handle_diff)


def _yaml(tree: Any, *, sort_keys: bool = True) -> str:
    import yaml

    if not tree:
        return "{}\n"
    return str(
        yaml.safe_dump(tree, sort_keys=sort_keys, allow_unicode=True, default_flow_style=False, width=10**9)
    )


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" for line in text.splitlines())


def print_config(run: Any, records: dict[str, Any], *, as_json: bool) -> None:
    """The resolved config (YAML with a commented header, or the JSON tree)."""
    from runstone.api.configs import restore_int_keys

    record = records.get("config") or {}
    tree = restore_int_keys(run.config, list(record.get("int_keys", [])))
    if as_json:
        print_json(run.config)
        return
    cmdline = records.get("cmdline") or {}
    if not run.config and not record:
        head = [f"run {run.id} ({run.name}); no config was given to runstone.init"]
    else:
        head = [f"run {run.id} ({run.name}); config {run.config_digest}"]
    if record.get("primary"):
        head.append(f"from {record['primary']}")
    elif record.get("source") == "hydra":
        hydra = record.get("hydra") or {}
        head.append(f"from Hydra config {hydra.get('config_name')!r}")
    if record.get("overrides"):
        head.append("overrides: " + shlex.join(record["overrides"]))
    if record.get("redacted"):
        head.append("secrets redacted: " + ", ".join(record["redacted"]))
    if not run.config and cmdline.get("params"):
        head.append("no config was recorded; parsed from the command line (best effort):")
        tree = cmdline["params"]
    sys.stdout.write(_comment("\n".join(head)) + _yaml(tree))


def _print_sources(run: Any, records: dict[str, Any], as_json: bool) -> None:
    record = records.get("config") or {}
    cmdline = records.get("cmdline") or {}
    if as_json:
        files = [{k: v for k, v in f.items() if k != "text"} for f in record.get("files", [])]
        print_json({"id": run.id, "config": {**record, "files": files}, "cmdline": cmdline})
        return
    out = sys.stdout
    lines = [("run", f"{run.id}  {run.name}")]
    if run.config or record:
        lines.append(("digest", run.config_digest))
    if record:
        lines.append(("source", str(record.get("source"))))
        if record.get("type"):
            lines.append(("type", str(record["type"])))
        if record.get("schema"):
            lines.append(("schema", str(record["schema"])))
        if record.get("overrides") is not None:
            lines.append(("overrides", shlex.join(record["overrides"]) or "(none)"))
        if record.get("choices"):
            lines.append(("choices", ", ".join(f"{k}={v}" for k, v in record["choices"].items())))
        hydra = record.get("hydra") or {}
        if hydra:
            lines.append(("hydra", f"{hydra.get('mode')} job {hydra.get('job_name')!r}"))
            if hydra.get("choices"):
                lines.append(("choices", ", ".join(f"{k}={v}" for k, v in hydra["choices"].items())))
            lines.append(("output dir", str(hydra.get("output_dir"))))
            if hydra.get("sweep_dir"):
                lines.append(("sweep", f"{hydra['sweep_dir']} (job {hydra.get('job_num')})"))
        if record.get("redacted"):
            lines.append(("redacted", ", ".join(record["redacted"])))
    else:
        lines.append(("source", "no config was given to runstone.init"))
    if cmdline.get("params") or cmdline.get("overrides"):
        parsed = ", ".join(f"{k}={canonical_json(v)}" for k, v in flatten(cmdline.get("params", {})))
        lines.append(("command line", f"{parsed} (parsed from the command line, best effort)"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        out.write(f"{key.ljust(width)}  {value}\n")
    files = record.get("files") or []
    if files:
        out.write("\nfiles\n")
        out.flush()
        rows = [
            [f"  {f['path']}", f"{f.get('size_bytes', 0):,}", str(f.get("sha256", ""))[:12], _file_note(f)]
            for f in files
        ]
        print_table(["  path", "bytes", "sha256", ""], rows)


def _file_note(entry: dict[str, Any]) -> str:
    if "text" in entry:
        return "text kept"
    return str(entry.get("skipped") or entry.get("error") or "")


def _import_schema(text: str) -> Any:
    from runstone.api.configs import import_type

    sys.path.insert(0, os.getcwd())  # a module of the project in the working directory
    try:
        return import_type(text)
    except UsageError as e:
        raise UsageError(f"--schema {e}") from None
    finally:
        sys.path.pop(0)


def handle_load(args: argparse.Namespace) -> int:
    from runstone.api.configs import plain_tree, provenance
    from runstone.config import load

    schema = _import_schema(args.schema) if args.schema else None
    cfg = load(
        args.path, args.overrides, schema=schema
    )  # names the extra to install when omegaconf is missing
    tree = plain_tree(cfg, enum_by_name=True)
    sources = provenance(cfg)
    files = [f["path"] for f in sources.files] if sources else []
    if args.json:
        print_json({"config": tree, "files": files} if args.sources else tree)
        return 0
    if args.sources:
        sys.stdout.write(_comment("composed from: " + ", ".join(files)))
    sys.stdout.write(_yaml(tree, sort_keys=False))  # composed, not stored: in the files' order
    return 0


def handle_show(args: argparse.Namespace) -> int:
    from runstone.api.client import Client

    with Client(args.uri) as client:
        run = client.get_run(args.run)
        records = client.get_records(run.id)
    if args.sources:
        _print_sources(run, records, args.json)
        return 0
    if args.file:
        files = (records.get("config") or {}).get("files") or []
        for entry in files:
            if entry.get("path") == args.file:
                if "text" not in entry:
                    raise NotFoundError(
                        f"{args.file} was recorded by digest only ({entry.get('skipped') or 'no text kept'})"
                    )
                if args.json:
                    print_json(entry)
                else:
                    sys.stdout.write(entry["text"])
                return 0
        known = ", ".join(str(f.get("path")) for f in files) or "none"
        raise NotFoundError(f"Run {run.id} recorded no config file {args.file!r} (recorded: {known})")
    print_config(run, records, as_json=args.json)
    return 0


def _distinct_prefix(a: str, b: str) -> int:
    """How many leading characters tell two IDs apart."""
    return next((i + 1 for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))


def handle_diff(args: argparse.Namespace) -> int:
    from runstone.api.client import Client
    from runstone.config import diff

    with Client(args.uri) as client:
        a = client.get_run(args.run_a)
        b = client.get_run(args.run_b)
    changes = diff(a.config, b.config)
    if args.json:
        print_json(
            {
                "a": {"id": a.id, "name": a.name, "digest": a.config_digest},
                "b": {"id": b.id, "name": b.name, "digest": b.config_digest},
                "changes": [c.to_dict() for c in changes],
            }
        )
    elif not changes:
        sys.stdout.write(f"The configs of {a.name} and {b.name} are the same ({a.config_digest}).\n")
    else:
        rows = [
            [
                c.key,
                c.kind,
                "" if c.kind == "added" else canonical_json(c.old),
                "" if c.kind == "removed" else canonical_json(c.new),
            ]
            for c in changes
        ]
        width = max(12, _distinct_prefix(a.id, b.id))
        print_table(["key", "change", f"{a.name} ({a.id[:width]})", f"{b.name} ({b.id[:width]})"], rows)
    return 1 if args.exit_code and changes else 0
