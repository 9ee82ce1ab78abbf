"""API tokens of a runstone server, kept in its SQL store (layer 4).

A token reads ``rs_<id>_<secret>``: the ID finds its row, and only the
secret's SHA-256 is stored, compared in constant time. Each token holds one
role (``reader`` < ``writer`` < ``admin``) on one project, or on every
project (``*``). A revoked token stays listed, with when it was revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from runstone.errors import NotFoundError, UsageError

__all__ = ["ALL_PROJECTS", "ROLES", "Token", "create_token", "list_tokens", "lookup_token", "revoke_token"]

#: roles, each allowed what the ones before it are
ROLES = ("reader", "writer", "admin")
#: the project of a token good for every project
ALL_PROJECTS = "*"
_TEXT = re.compile(r"^rs_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")


@dataclass(frozen=True)
class Token:
    """A token's grant: its ``id`` (the public part), ``role`` on ``project``."""

    id: str
    project: str
    role: str
    name: str
    created_ms: int
    revoked_ms: int | None = None

    def allows(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "role": self.role,
            "name": self.name,
            "created_ms": self.created_ms,
            "revoked_ms": self.revoked_ms,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _row(row: Any) -> Token:
    return Token(
        id=row[0], project=row[1], role=row[2], name=row[3], created_ms=int(row[4]), revoked_ms=row[5]
    )


_COLUMNS = "token_id, project, role, name, created_ms, revoked_ms"


def create_token(store: Any, *, project: str, role: str, name: str = "") -> tuple[str, Token]:
    """A new token: its full text (shown once, never stored) and its grant.

    Raises:
        UsageError: an unknown role or an empty project.
    """
    if role not in ROLES:
        raise UsageError(f"No role {role!r}: give one of {', '.join(ROLES)}")
    if not project.strip():
        raise UsageError(f"Give the token's project (or {ALL_PROJECTS!r} for every project)")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    token = Token(
        id=token_id, project=project.strip(), role=role, name=name, created_ms=int(time.time() * 1000)
    )

    def body(cur: Any) -> None:
        cur.execute(
            store._sql(
                "INSERT INTO tokens (token_id, secret_sha256, project, role, name, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)"
            ),
            (token.id, _digest(secret), token.project, token.role, token.name, token.created_ms),
        )

    store._write("creating a token", body)
    return f"rs_{token_id}_{secret}", token


def lookup_token(store: Any, text: str) -> Token | None:
    """The grant of a token's full text, or None when it is malformed, unknown, wrong or revoked."""
    match = _TEXT.match(text.strip())
    if match is None:
        return None
    token_id, secret = match.groups()

    def body(cur: Any) -> Any:
        cur.execute(
            store._sql(f"SELECT {_COLUMNS}, secret_sha256 FROM tokens WHERE token_id = ?"), (token_id,)
        )
        return cur.fetchone()

    row = store._read("checking a token", body)
    if row is None or row[5] is not None or not hmac.compare_digest(row[6], _digest(secret)):
        return None
    return _row(row)


def list_tokens(store: Any) -> list[Token]:
    """Every token, oldest first (revoked ones too)."""

    def body(cur: Any) -> list[Any]:
        cur.execute(store._sql(f"SELECT {_COLUMNS} FROM tokens ORDER BY pk"))
        return list(cur.fetchall())

    return [_row(r) for r in store._read("listing tokens", body)]


def revoke_token(store: Any, token_id: str) -> Token:
    """Revoke a token by its ID (the ``rs_<id>_`` part); revoking it again changes nothing.

    Raises:
        NotFoundError: no token has this ID.
    """
    token_id = token_id.strip().removeprefix("rs_").split("_")[0]
    now = int(time.time() * 1000)

    def body(cur: Any) -> Any:
        cur.execute(
            store._sql("UPDATE tokens SET revoked_ms = ? WHERE token_id = ? AND revoked_ms IS NULL"),
            (now, token_id),
        )
        cur.execute(store._sql(f"SELECT {_COLUMNS} FROM tokens WHERE token_id = ?"), (token_id,))
        return cur.fetchone()

    row = store._write("revoking a token", body)
    if row is None:
        raise NotFoundError(f"No token {token_id!r}; 'runstone token ls' lists them")
    return _row(row)
