"""Every error runstone raises, in one tree.

Standard library only (layer 1). Each class carries the process exit code the
command line uses and the HTTP status a server will use, so both map errors in
exactly one place. Classes that mean the same as a builtin also inherit it, so
``except ValueError`` in user code keeps working.

::

    RunstoneError                      exit 1   HTTP 500
    ├── UsageError (ValueError)        exit 2   HTTP 400   bad argument or value
    │   ├── FilterError                exit 2   HTTP 400   malformed filter/sort text
    │   ├── AmbiguousError             exit 2   HTTP 409   a run ID prefix matches several runs
    │   └── ConfigError                exit 2   HTTP 400   a config file, override or schema check failed
    ├── NotFoundError (LookupError)    exit 3   HTTP 404   no such run / store / metric
    ├── StateError (RuntimeError)      exit 4   HTTP 409   the object is not in a state that allows it
    ├── StoreError                     exit 5   HTTP 503   the store failed (I/O, locks, connection)
    │   └── StoreVersionError          exit 6   HTTP 409   store written by a newer runstone
    ├── AccessError (PermissionError)  exit 8   HTTP 403   the token may not do this (to this project)
    │   └── AuthenticationError        exit 8   HTTP 401   no API token, or not a valid one
    ├── MissingDependencyError (ImportError)
    │                                  exit 7   HTTP 501   an optional extra is not installed
    └── ReproductionError              exit 2   HTTP 409   a run cannot be rebuilt as recorded
                                                           (unreachable commit, changed input,
                                                           a package version that cannot be had)

Exit code 1 is also what a failed check (a diverged verification) returns.
Messages say what happened, to which object, and what to do next; they never
mention command-line flags (the library is used without the CLI).
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "AmbiguousError",
    "AuthenticationError",
    "ConfigError",
    "FilterError",
    "MissingDependencyError",
    "NotFoundError",
    "ReproductionError",
    "RunstoneError",
    "StateError",
    "StoreError",
    "StoreVersionError",
    "UnreachableError",
    "UsageError",
]


class RunstoneError(Exception):
    """Base class of every error runstone raises on purpose."""

    exit_code: int = 1
    http_status: int = 500


class UsageError(RunstoneError, ValueError):
    """An argument or value the caller passed is not acceptable."""

    exit_code = 2
    http_status = 400


class FilterError(UsageError):
    """A filter or sort expression could not be parsed.

    Attributes:
        text: the whole expression.
        position: 0-based offset of the offending token in ``text``.
    """

    def __init__(self, message: str, *, text: str, position: int, what: str = "filter") -> None:
        self.text = text
        self.position = position
        self.reason = message
        self.what = what
        column = position + 1
        super().__init__(f"Invalid {what} at column {column}: {message} (in {text!r})")

    def pointer(self) -> str:
        """Two lines: the expression and a caret under the offending token."""
        return f"  {self.text}\n  {' ' * self.position}^"


class ConfigError(UsageError):
    """A configuration could not be loaded, composed, resolved or validated.

    The message starts with where the offending value came from (a file, an
    override or the schema), then the dotted key path and the reason:
    ``conf/train.yaml: optimizer.lr: expected float, got 'fast'``.

    Attributes:
        origin: the file or override the value came from (None if unknown).
        key: the dotted key path (None if the whole config is concerned).
        reason: what is wrong, without the origin and key.
    """

    def __init__(self, reason: str, *, origin: str | None = None, key: str | None = None) -> None:
        self.origin = origin
        self.key = key
        self.reason = reason
        super().__init__(": ".join(part for part in (origin, key, reason) if part))


class AmbiguousError(UsageError):
    """A run ID prefix (or other short name) matches more than one object."""

    http_status = 409

    def __init__(self, message: str, *, candidates: tuple[str, ...] = ()) -> None:
        self.candidates = candidates
        super().__init__(message)


class NotFoundError(RunstoneError, LookupError):
    """The run, store, metric or other object asked for does not exist."""

    exit_code = 3
    http_status = 404


class StateError(RunstoneError, RuntimeError):
    """The object exists but its state does not allow the operation."""

    exit_code = 4
    http_status = 409


class StoreError(RunstoneError):
    """The metadata store failed: I/O, locking, connection or integrity."""

    exit_code = 5
    http_status = 503


class UnreachableError(StoreError):
    """No runstone server answers at the store's URL (refused, timed out, no route)."""


class StoreVersionError(StoreError):
    """The store's schema is newer than this runstone understands."""

    exit_code = 6
    http_status = 409


class AccessError(RunstoneError, PermissionError):
    """A server refused: the API token's role or project does not allow the operation."""

    exit_code = 8
    http_status = 403


class AuthenticationError(AccessError):
    """A server wants an API token, and the request had none or not a valid one."""

    exit_code = 8
    http_status = 401


class MissingDependencyError(RunstoneError, ImportError):
    """An optional feature needs a package that is not installed."""

    exit_code = 7
    http_status = 501

    def __init__(self, feature: str, *, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the {package!r} package, which is not installed; "
            f"install it with: pip install 'runstone[{extra}]'"
        )


class ReproductionError(RunstoneError):
    """A run cannot be rebuilt as it was recorded: its code, an input or a package cannot be had."""

    exit_code = 2
    http_status = 409
