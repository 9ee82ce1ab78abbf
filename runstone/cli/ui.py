"""``runstone ui``: the web UI over a store, on this machine (layer 6)."""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Any

from runstone.cli._common import add_uri, verb_parser

__all__ = ["register"]

_EXAMPLES = """\
  runstone ui                                 serve on 127.0.0.1 on a free port; open the printed link
  runstone ui --port 8765                     a fixed port
  runstone ui --open                          open it in the browser too
  runstone ui --uri postgresql://db/runs      the UI over another store
  ssh -L 8765:127.0.0.1:8765 gpu-box 'runstone ui --port 8765'   a remote machine's runs, here
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "ui",
        help="browse runs, charts, comparisons, lineage and verdicts in a web browser",
        description="Serve the web UI over the store: the runs table (filter, sort, pick columns, "
        "select runs to compare), each run's page (overview, metric charts, config, record, artifacts, "
        "checkpoints, log, lineage, reproductions and their verdicts), comparisons and verify reports. "
        "It listens on 127.0.0.1 (this machine only) and stops with Ctrl-C. Needs "
        "pip install 'runstone[ui]'.",
        examples=_EXAMPLES,
    )
    parser.add_argument("--port", type=int, default=0, help="the port to listen on (default: a free one)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1; another address shows every run to anyone "
        "who can reach it: there is no login)",
    )
    parser.add_argument("--open", action="store_true", help="open the UI in the web browser")
    add_uri(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from runstone.errors import UsageError
    from runstone.server.app import allowed_hosts, create_app, is_loopback, link, open_socket, serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: give 1 to 65535, or leave it out for a free port")
    app = create_app(args.uri, hosts=allowed_hosts(args.host))
    try:
        sock = open_socket(args.host, args.port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            hint = "the port is taken: choose another --port, or leave it out for a free one"
        else:
            hint = "give --host an address of this machine (127.0.0.1, the default, or 0.0.0.0 for all)"
        where = f"{args.host}:{args.port}" if args.port else args.host
        raise UsageError(f"Cannot listen on {where}: {e.strerror or e}; {hint}") from None
    url = link(*sock.getsockname()[:2])

    def ready() -> None:
        if not is_loopback(args.host):
            sys.stderr.write(
                f"runstone: WARNING: listening on {args.host}, not this machine only; "
                "the UI has no login, so anyone who can reach it sees every run\n"
            )
        sys.stdout.write(f"runstone ui: {url}  (Ctrl-C stops it)\n")
        sys.stdout.flush()
        if args.open:
            import webbrowser

            webbrowser.open(url)

    serve(app, sock, on_ready=ready)
    return 0
