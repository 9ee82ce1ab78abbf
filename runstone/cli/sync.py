"""``runstone sync``: send runs recorded offline to the server, and check they arrived whole (layer 6)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runstone.cli._common import verb_parser
from runstone.cli._output import print_json

__all__ = ["register"]

_EXAMPLES = """\
  RUNSTONE_URI=https://runs.example.com RUNSTONE_MODE=offline python train.py   recorded here, offline
  RUNSTONE_URI=https://runs.example.com runstone sync                           then sent, and checked
  runstone sync 0194f3a2 --to https://runs.example.com       one run
  runstone sync --from sqlite:///old/runstone.db --to postgresql://db/runstone   any store to any store
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "sync",
        help="send runs recorded offline (RUNSTONE_MODE=offline) to the server, each checked",
        description="Copy runs from one store to another, by default from the offline store (where "
        "RUNSTONE_MODE=offline records the runs meant for the server RUNSTONE_URI names) to that server. "
        "Each run is copied with its config, tags, records, every metric chunk as stored, its output, "
        "artifact edges, ending and manifest; then the copy is checked against the manifest (metric "
        "digests and counts, records, output, artifacts) and any part that differs is named. Running "
        "the sync again sends nothing twice; runs already there are reported as present, running runs "
        "are skipped. The objects a run refers to (captured code, artifacts) are copied too, checked "
        "against their digests, unless both sides keep them in one place (RUNSTONE_ARTIFACTS). First, "
        "writes that runs on the server left in this home's spool (their process was killed while "
        "the server was away) are sent.",
        examples=_EXAMPLES,
    )
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs to send (default: every run of --from)")
    parser.add_argument(
        "--from", dest="source", metavar="URI", help="the store to copy from (default: the offline store)"
    )
    parser.add_argument(
        "--to", dest="target", metavar="URI", help="the store to copy to (default: RUNSTONE_URI)"
    )
    parser.add_argument(
        "--json", action="store_true", help='print JSON: {"spool": ..., "runs": [one object per run]}'
    )
    parser.set_defaults(handler=handle)


def _send_spool(home: Any, target_uri: str, quiet: bool) -> Any:
    """Send what killed processes left in the spool for the target (a server); None: nothing there."""
    from runstone.api.manifest import seal
    from runstone.api.spool import replay, spool_root
    from runstone.store.factory import open_store

    root = spool_root(home)
    if not target_uri.startswith(("http://", "https://")) or not root.is_dir():
        return None
    from runstone import settings as settings_mod
    from runstone.api.capture import open_objects

    objects = open_objects(settings_mod.for_store(settings_mod.current(), target_uri).artifacts)
    with open_store(target_uri, create=False) as target:
        done = replay(root, target, seal=seal, objects=objects)
    if not quiet and (done.batches or done.artifacts or done.ended or done.dropped):
        sys.stdout.write(
            f"spool: sent {done.points:,} points ({done.batches} "
            f"batch{'es' if done.batches != 1 else ''})"
            + (
                f" and {done.artifacts} artifact{'s' if done.artifacts != 1 else ''}"
                if done.artifacts
                else ""
            )
            + " that earlier processes here had left unsent"
            + (f"; ended {len(done.ended)} run{'s' if len(done.ended) != 1 else ''}" if done.ended else "")
            + (
                f"; dropped {len(done.dropped)} the server refused: " + "; ".join(done.dropped)
                if done.dropped
                else ""
            )
            + "\n"
        )
    return done


def handle(args: argparse.Namespace) -> int:
    from runstone import settings as settings_mod
    from runstone.api.capture import open_objects
    from runstone.api.sync import sync_runs
    from runstone.errors import NotFoundError, UsageError
    from runstone.store.factory import open_store, redact_uri

    current = settings_mod.current()
    source_uri = args.source or (
        settings_mod.offline_uri(current.home) if not current.sync_to else current.uri
    )
    target_uri = args.target or current.sync_to or current.uri
    if not args.target and not target_uri.startswith(("http://", "https://")):
        raise UsageError(
            "Where to? Set RUNSTONE_URI to the server the runs are for (http(s)://HOST:PORT), or give --to"
        )
    if source_uri == target_uri:
        raise UsageError(
            f"Nothing to sync: the source and the target are both {redact_uri(source_uri)}; give --from "
            "for a store other than the offline one"
        )
    spooled = _send_spool(current.home, target_uri, args.json) if not args.source else None
    try:
        source = open_store(source_uri, create=False)
    except NotFoundError:
        if args.json:
            print_json({"spool": spooled.to_dict() if spooled else None, "runs": []})
        else:
            sys.stdout.write(f"nothing to send: no runs were recorded offline ({redact_uri(source_uri)})\n")
        return 1 if spooled and spooled.dropped else 0
    with source, open_store(target_uri, create=False) as target:
        run_ids = [source.resolve_run_id(r) for r in args.runs] if args.runs else None

        def report(result: Any) -> None:
            if args.json:
                return
            line = f"{result.run_id[:12]}  {result.name}: {result.outcome}"
            if result.outcome == "copied":
                line += f" ({result.points:,} points), checked"
            if result.problems:
                line += ": " + "; ".join(result.problems)
            sys.stdout.write(line + "\n")

        have = settings_mod.for_store(current, source_uri).artifacts
        want = settings_mod.for_store(current, target_uri).artifacts
        objects = (open_objects(have), open_objects(want)) if have != want else None
        results = sync_runs(source, target, run_ids, on_run=report, objects=objects)
    if args.json:
        print_json({"spool": spooled.to_dict() if spooled else None, "runs": [r.to_dict() for r in results]})
    else:
        outcomes = ("copied", "present", "skipped", "mismatch", "failed")
        counts = {o: sum(r.outcome == o for r in results) for o in outcomes}
        sys.stdout.write(
            f"{len(results)} runs from {redact_uri(source_uri)} to {redact_uri(target_uri)}: "
            + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
            + ("" if results else "nothing to send")
            + "\n"
        )
    dropped = bool(spooled and spooled.dropped)
    return 1 if dropped or any(r.outcome in ("mismatch", "failed") for r in results) else 0
