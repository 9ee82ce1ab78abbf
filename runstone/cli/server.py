"""``runstone server``: a store over HTTP for clients elsewhere, plus the UI (layer 6)."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from typing import Any

from runstone.cli._common import verb_parser

__all__ = ["register"]

_EXAMPLES = """\
  runstone server                                       the embedded store, on 127.0.0.1:8765
  RUNSTONE_URI=http://127.0.0.1:8765 python train.py    a client: runs and artifacts land on the server
  runstone ls --uri http://127.0.0.1:8765               every verb reads it too

  production: 4 workers behind a reverse proxy that terminates TLS (https://runs.example.com -> :8765)
  runstone server migrate --store postgresql://runstone@db/runstone     once per upgrade, after a backup
  runstone token create --store postgresql://runstone@db/runstone --project vision --role writer
  runstone server --store postgresql://runstone@db/runstone --artifacts s3://runs/objects \\
      --workers 4 --host 10.0.0.5 --port 8765 --allowed-host runs.example.com
  RUNSTONE_URI=https://runs.example.com RUNSTONE_TOKEN=rs_... python train.py
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "server",
        help="serve a store over HTTP to clients elsewhere (RUNSTONE_URI=http://HOST:PORT), with the UI",
        description="Serve a store over HTTP: clients whose RUNSTONE_URI (or --uri, or init(uri=...)) is "
        "this server's URL record and read runs through it exactly as with the store itself. The same "
        "server serves the web UI at its root. By default it listens on this machine only (127.0.0.1) "
        "and without authentication, and says so. With --auth, or on any other address, every request "
        "needs an API token (RUNSTONE_TOKEN on the client; runstone token create makes them) and no "
        "pages are served. The server keeps no state of its own: several workers (--workers) or "
        "several servers over one PostgreSQL store can serve at once; terminate TLS at a reverse proxy.",
        examples=_EXAMPLES,
    )
    parser.add_argument(
        "--store",
        metavar="URI",
        help="the store to serve: sqlite:///PATH or postgresql://... (default: RUNSTONE_URI, else the "
        "embedded store of the current repository)",
    )
    parser.add_argument(
        "--artifacts",
        metavar="URL",
        help="where the store's objects (artifact bytes) live: a directory or s3://BUCKET/PREFIX; clients "
        "stream them through the server (default: RUNSTONE_ARTIFACTS, else beside an embedded store, "
        "else .runstone/objects here)",
    )
    parser.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade a store an older runstone made before serving it (else the server refuses it; "
        "see runstone server migrate)",
    )
    parser.add_argument("--port", type=int, default=8765, help="the port to listen on (default 8765)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on: 127.0.0.1 (the default) or ::1 for this machine only; an address of "
        "this machine that others reach, or 0.0.0.0 for every address (API tokens are then required)",
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="server processes (default 1)")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients may address the server by, besides the --host address (repeatable): "
        "the name a reverse proxy forwards, e.g. runs.example.com",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="require an API token on every request (always, when --host is not loopback); make tokens "
        "with runstone token create",
    )
    actions = parser.add_subparsers(dest="action", metavar="migrate", required=False)
    migrate = actions.add_parser(
        "migrate",
        help="upgrade the store's schema to this runstone's, then exit",
        description="Upgrade a store's schema to this runstone's (a new store is created). Back the store "
        "up first; servers of the older runstone must be stopped. Running it again does nothing.",
    )
    migrate.add_argument(
        "--store",
        metavar="URI",
        default=argparse.SUPPRESS,  # else it would hide a --store given before "migrate"
        help="the store (default: RUNSTONE_URI, else the embedded store)",
    )
    migrate.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=handle)


def _migrate(uri: str, as_json: bool) -> int:
    from runstone.cli._output import print_json
    from runstone.store.factory import open_store, redact_uri
    from runstone.store.sql.schema import SCHEMA_VERSION

    with open_store(uri, upgrade=True) as store:
        found = int(getattr(store, "found_version", SCHEMA_VERSION))
    result = {
        "store": redact_uri(uri),
        "from": found,
        "to": SCHEMA_VERSION,
        "changed": found != SCHEMA_VERSION,
    }
    if as_json:
        print_json(result)
    elif not found:
        sys.stdout.write(f"Made a new store at {result['store']} (schema {SCHEMA_VERSION})\n")
    elif found != SCHEMA_VERSION:
        sys.stdout.write(f"Upgraded {result['store']} from schema {found} to {SCHEMA_VERSION}\n")
    else:
        sys.stdout.write(f"{result['store']} is at schema {SCHEMA_VERSION} already: nothing to do\n")
    return 0


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client
    from runstone.errors import UsageError
    from runstone.server.app import (
        ENV_SERVER_ARTIFACTS,
        ENV_SERVER_AUTH,
        ENV_SERVER_HOSTS,
        ENV_SERVER_PARENT,
        ENV_SERVER_STORE,
        allowed_hosts,
        create_app,
        is_loopback,
        link,
        open_socket,
        serve,
    )
    from runstone.store.factory import open_store, redact_uri

    if args.action == "migrate":
        uri = Client(args.store).uri
        if uri.startswith(("http://", "https://")):
            raise UsageError(f"--store {uri}: that is a server; migrate the store it serves")
        return _migrate(uri, args.json)
    auth = args.auth or not is_loopback(args.host)
    if not 0 < args.port <= 65535:
        raise UsageError(f"--port {args.port}: give 1 to 65535")
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: give 1 or more")
    client = Client(args.store, artifacts=args.artifacts)
    uri, artifacts = client.uri, client.artifacts_location
    if uri.startswith(("http://", "https://")):
        raise UsageError(f"--store {uri}: that is a server; serve a sqlite:/// or postgresql:// store")
    if artifacts.startswith(("http://", "https://")):
        raise UsageError(
            f"--artifacts {artifacts}: that is a server; give a directory or an object store (s3://BUCKET/PREFIX)"
        )
    # a new store is made here; one an older runstone made is upgraded only when asked
    with open_store(uri, upgrade=args.migrate) as store:
        found = int(getattr(store, "found_version", 0))
        if args.migrate and found:
            from runstone.store.sql.schema import SCHEMA_VERSION

            if found != SCHEMA_VERSION:
                sys.stderr.write(
                    f"runstone server: upgraded the store from schema {found} to {SCHEMA_VERSION}\n"
                )
        if auth:
            from runstone.store.sql.tokens import list_tokens

            if not [t for t in list_tokens(store) if t.revoked_ms is None]:
                sys.stderr.write(
                    "runstone server: no API tokens yet: every request is refused until an admin makes "
                    f"one: runstone token create --store '{redact_uri(uri)}' --project P --role writer\n"
                )
    url = link(args.host, args.port)
    # clients elsewhere reach every-address listening by this machine's name
    reach = (
        f"http://{socket.gethostname()}:{args.port}" if args.host in ("0.0.0.0", "::") else url.rstrip("/")
    )
    ready = (
        f"runstone server: {url}  store {redact_uri(uri)}, {args.workers} worker"
        f"{'s' if args.workers != 1 else ''} (Ctrl-C stops it)\n"
        f"  clients: RUNSTONE_URI={reach}"
        + (" RUNSTONE_TOKEN=<token>\n" if auth else "\n")
        + f"  objects: {redact_uri(artifacts)} (clients send and fetch them through the server)\n"
    )
    if not auth:
        sys.stderr.write(
            "runstone server: WARNING: no authentication: anyone who can reach this machine's loopback "
            "can read and change every run; --auth requires API tokens\n"
        )
    hosts = allowed_hosts(args.host, args.allowed_host)
    try:
        sock = open_socket(args.host, args.port)
    except OSError as e:
        hint = "the port is taken: choose another --port" if e.errno == errno.EADDRINUSE else "check --host"
        raise UsageError(f"Cannot listen on {args.host}:{args.port}: {e.strerror or e}; {hint}") from None
    if args.workers == 1:

        def announce() -> None:
            sys.stdout.write(ready)
            sys.stdout.flush()

        serve(create_app(uri, api=True, auth=auth, hosts=hosts, artifacts=artifacts), sock, on_ready=announce)
        return 0
    import uvicorn

    os.environ[ENV_SERVER_STORE] = uri
    os.environ[ENV_SERVER_AUTH] = "1" if auth else "0"
    os.environ[ENV_SERVER_HOSTS] = ",".join(hosts)
    os.environ[ENV_SERVER_ARTIFACTS] = artifacts
    os.environ[ENV_SERVER_PARENT] = str(os.getpid())
    sys.stdout.write(ready)
    sys.stdout.flush()
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "runstone.server.app:app_from_environment",
        factory=True,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )
    Multiprocess(config, sockets=[sock]).run()  # the workers share the listening socket
    return 0
