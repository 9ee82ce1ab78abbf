"""Open a metadata store from a URI.

Layer 4. ``sqlite:///PATH`` (the embedded default) and ``postgresql://...``
share one SQL implementation; ``http(s)://HOST:PORT`` is a runstone server
(``store.remote``).
"""

from __future__ import annotations

import os

from runstone.errors import UsageError
from runstone.store.base import Store

__all__ = ["open_store", "redact_uri"]


def redact_uri(uri: str) -> str:
    """The URI with any password removed, for messages and records."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    netloc, slash, path = rest.partition("/")
    userinfo, _, hostport = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user + '@' if user else ''}{hostport}{slash}{path}"


def open_store(uri: str, *, create: bool = True, upgrade: bool | None = None) -> Store:
    """Open (and, for the embedded store, create if asked) the store at ``uri``.

    Args:
        uri: ``sqlite:///ABSOLUTE/PATH.db``, ``postgresql://USER@HOST:PORT/DB`` or
            a runstone server's ``http(s)://HOST:PORT``.
        create: make the SQLite file and its directory when missing; readers
            pass False so looking never creates a store.
        upgrade: upgrade a SQL store an older runstone made. Default: an
            embedded (SQLite) store is upgraded when opened; a PostgreSQL one,
            shared by servers and clients that may run the older runstone, only
            when told (``runstone server migrate`` or ``--migrate``).

    Raises:
        UsageError: the URI's scheme is not one runstone knows.
        NotFoundError: ``create`` is False and there is no store there.
        StoreError: the store cannot be opened.
        StoreVersionError: the store was written by a newer runstone, or by an
            older one and ``upgrade`` is False.
        MissingDependencyError: the backend's driver is not installed.
    """
    from runstone.store.sql.dialect import dialect_for
    from runstone.store.sql.store import SqlStore

    if "://" not in uri and uri.strip():
        # A plain path names an embedded store file.
        uri = f"sqlite:///{os.path.abspath(os.path.expanduser(uri))}"
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("sqlite", "postgresql", "postgres") or scheme.startswith("postgresql+"):
        if upgrade is None:
            upgrade = scheme == "sqlite"
        return SqlStore(dialect_for(uri, create=create), upgrade=upgrade)
    if scheme in ("http", "https"):
        from runstone.store.remote import RemoteStore

        return RemoteStore(uri)
    raise UsageError(
        f"Unknown store URI {redact_uri(uri)!r}: use sqlite:///PATH/runstone.db or "
        "postgresql://USER@HOST:PORT/DATABASE, or a server's http(s)://HOST:PORT"
    )
