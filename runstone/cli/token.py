"""``runstone token``: API tokens of a runstone server, made on the server's store (layer 6)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runstone.cli._common import verb_parser
from runstone.cli._output import fmt_time, print_json, print_table

__all__ = ["register"]

_EXAMPLES = """\
  runstone token create --project vision --role writer --name ci        a token for CI to record runs
  runstone token create --project '*' --role admin --name ops           every project, every method
  runstone token ls --store postgresql://runstone@db/runstone
  runstone token revoke 3f9a0c2b17de                                    by its ID (the part after rs_)
"""


def register(verbs: Any) -> None:
    parser = verb_parser(
        verbs,
        "token",
        help="make, list and revoke the API tokens a runstone server checks",
        description="API tokens of a runstone server started with --auth (or listening beyond this "
        "machine). Run these on the server's store (--store, as for runstone server). A token holds one "
        "role on one project: reader (read runs), writer (also record runs), admin (also delete "
        "artifacts); '*' is every project. The token's text is shown once, when it is made; the store "
        "keeps only its SHA-256. Clients send it by setting RUNSTONE_TOKEN.",
        examples=_EXAMPLES,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a token (its text is printed once)")
    create.add_argument("--project", required=True, help="the project it may touch ('*': every project)")
    create.add_argument("--role", required=True, choices=["reader", "writer", "admin"], help="what it may do")
    create.add_argument("--name", default="", help="a note on who or what uses it")
    listing = actions.add_parser("ls", help="list tokens (never their text)")
    revoke = actions.add_parser("revoke", help="revoke a token: the server refuses it from now on")
    revoke.add_argument("token_id", metavar="ID", help="the token's ID: the 12 characters after rs_")
    for sub in (create, listing, revoke):
        sub.add_argument(
            "--store",
            metavar="URI",
            help="the server's store (default: RUNSTONE_URI, else the embedded store)",
        )
        sub.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from runstone.api.client import Client
    from runstone.errors import UsageError
    from runstone.store.factory import open_store, redact_uri
    from runstone.store.sql import tokens

    uri = Client(args.store).uri
    if uri.startswith(("http://", "https://")):
        raise UsageError(
            f"{uri} is a server: make tokens on its store (--store sqlite:///... or postgresql://...)"
        )
    # a server's store: upgraded only by runstone server migrate, never behind a running server's back
    with open_store(uri, create=args.action == "create" and bool(args.store), upgrade=False) as store:
        if args.action == "create":
            text, token = tokens.create_token(store, project=args.project, role=args.role, name=args.name)
            if args.json:
                print_json({**token.to_dict(), "token": text})
            else:
                sys.stdout.write(
                    f"{text}\n\n{'An' if token.role == 'admin' else 'A'} {token.role} token for project "
                    f"{token.project!r}, ID {token.id}, kept in "
                    f"{redact_uri(store.uri)}. Keep it secret: it is shown only now. Clients use it with "
                    "RUNSTONE_TOKEN=<token>.\n"
                )
        elif args.action == "ls":
            found = tokens.list_tokens(store)
            if args.json:
                print_json([t.to_dict() for t in found])
            else:
                rows = [
                    [
                        t.id,
                        t.project,
                        t.role,
                        t.name,
                        fmt_time(t.created_ms),
                        fmt_time(t.revoked_ms) if t.revoked_ms else "",
                    ]
                    for t in found
                ]
                print_table(["ID", "PROJECT", "ROLE", "NAME", "CREATED", "REVOKED"], rows)
        else:
            token = tokens.revoke_token(store, args.token_id)
            if args.json:
                print_json(token.to_dict())
            else:
                sys.stdout.write(f"token {token.id} ({token.role}, {token.project}) revoked\n")
    return 0
