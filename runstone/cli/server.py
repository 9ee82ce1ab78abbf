"""``runstone server``: a store over HTTP for clients elsewhere, plus the UI (layer 6)."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Any

from runstone.cli._common import verb_parser

__all__ = ["register"]

_EXAMPLES = """\
  runstone server                                       the embedded store, on 127.0.0.1:8765
  runstone server --store postgresql://runstone@db/runstone --workers 4
  RUNSTONE_URI=http://127.0.0.1:8765 python train.py    a client: runs land on the server
  runstone ls --uri http://127.0.0.1:8765               every verb reads it too

  production: 4 workers behind a reverse proxy that terminates TLS (https://runs.example.com -> :8765)
  runstone token create --store postgresql://runstone@db/runstone --project vision --role writer
  runstone server --store postgresql://runstone@db/runstone --workers 4 --host 10.0.0.5 --port 8765
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
    parser.add_argument("--port", type=int, default=8765, help="the port to listen on (default 8765)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the loopback address to listen on (127.0.0.1, the default, or ::1)",
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
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client
    from runstone.errors import UsageError
    from runstone.server.app import (
        ENV_SERVER_AUTH,
        ENV_SERVER_HOSTS,
        ENV_SERVER_STORE,
        allowed_hosts,
        create_app,
        is_loopback,
        link,
        open_socket,
        serve,
    )
    from runstone.store.factory import open_store, redact_uri

    auth = args.auth or not is_loopback(args.host)
    if not 0 < args.port <= 65535:
        raise UsageError(f"--port {args.port}: give 1 to 65535")
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: give 1 or more")
    uri = Client(args.store).uri
    if uri.startswith(("http://", "https://")):
        raise UsageError(f"--store {uri}: that is a server; serve a sqlite:/// or postgresql:// store")
    with open_store(uri) as store:  # create the embedded store and bring the schema up to date, once, here
        if auth:
            from runstone.store.sql.tokens import list_tokens

            if not [t for t in list_tokens(store) if t.revoked_ms is None]:
                sys.stderr.write(
                    "runstone server: no API tokens yet: every request is refused until an admin makes "
                    f"one: runstone token create --store '{redact_uri(uri)}' --project P --role writer\n"
                )
    url = link(args.host, args.port)
    ready = (
        f"runstone server: {url}  store {redact_uri(uri)}, {args.workers} worker"
        f"{'s' if args.workers != 1 else ''} (Ctrl-C stops it)\n"
        f"  clients: RUNSTONE_URI={url.rstrip('/')}" + (" RUNSTONE_TOKEN=<token>\n" if auth else "\n")
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

        serve(create_app(uri, api=True, auth=auth, hosts=hosts), sock, on_ready=announce)
        return 0
    import uvicorn

    os.environ[ENV_SERVER_STORE] = uri
    os.environ[ENV_SERVER_AUTH] = "1" if auth else "0"
    os.environ[ENV_SERVER_HOSTS] = ",".join(hosts)
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
