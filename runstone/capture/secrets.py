"""Secrets in configs and command lines: which values they are, and the record without them.

Layer 3, standard library only. Environment variables have their own rule
(``capture.env.is_secret_name``: any name containing ``TOKEN``, ``KEY``,
``PASS``, ...). Config keys need a finer one, because ML configs are full of
names that only look secret: ``tokenizer``, ``max_tokens``, ``pad_token``,
``label_key``, ``num_passes``, ``author``. A config key is secret when:

- one of its words names a secret outright: ``password``, ``passwd``,
  ``passphrase``, ``pwd``, ``pass``, ``secret``, ``credentials``, ``creds``,
  ``apikey``, ``jwt``, ``cookie``, ``dsn``, ``bearer``, ``webhook``,
  ``authorization``; or its last word is ``auth``;
- its last word is ``token``, except special-token names (``pad_token``,
  ``eos_token``, ``mask_token``, ...);
- its last word is ``key`` (or ``keys``) after ``api``, ``access``,
  ``secret``, ``private``, ``client``, ``encryption``, ``signing``, ``ssh``,
  ``account``, ``service``, ``license``, ...;
- or, for the special-token and other ``*_key`` names, its value looks like
  a credential (``sk-...``, ``ghp_...``, ``hf_...``, ``AKIA...``, a JWT, or a
  long run of letters and digits without spaces).

Only values are blanked (``<redacted>``): text, numbers and lists of them;
``True``/``False``/``None`` say nothing secret and are kept. A URL keeps its
address and loses its credentials.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from runstone.capture.code import strip_credentials
from runstone.capture.env import REDACTED

__all__ = [
    "REDACTED",
    "is_secret_key",
    "looks_like_credential",
    "redact_argv",
    "redact_override",
    "redact_tree",
]

_SECRET_WORDS = frozenset(
    "SECRET SECRETS PASSWORD PASSWORDS PASSWD PASSPHRASE PWD PASS CREDENTIAL CREDENTIALS CREDS "
    "APIKEY JWT COOKIE COOKIES DSN BEARER WEBHOOK AUTHORIZATION".split()
)
_SPECIAL_TOKENS = frozenset(
    "PAD EOS BOS UNK SEP CLS MASK START END STOP SPECIAL DECODER SOS EOT NEWLINE IMAGE AUDIO VIDEO "
    "BOUNDARY PREFIX SUFFIX MIDDLE FILL".split()
)
_KEY_OWNERS = frozenset(
    "API ACCESS SECRET PRIVATE CLIENT ENCRYPTION SIGNING SSH ACCOUNT SERVICE LICENSE MASTER APP "
    "SUBSCRIPTION STORAGE SHARED CONSUMER DEPLOY ADMIN AUTH SESSION WRITE READ".split()
)
_CREDENTIAL_PREFIX = re.compile(
    r"(sk|pk|rk)[-_]|ghp_|gho_|ghs_|github_pat_|glpat-|hf_|xox[abpr]-|AKIA|ASIA|AIza|eyJ"
)
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _words(key: str) -> list[str]:
    return [w.upper() for w in _WORDS.findall(key)]


def looks_like_credential(value: Any) -> bool:
    """Whether a value reads like a key or token (by a known prefix, or a long run of letters and digits)."""
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    if _CREDENTIAL_PREFIX.match(value) and len(value) >= 12:
        return True
    return len(value) >= 24 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def is_secret_key(key: str, value: Any = None) -> bool:
    """Whether ``key`` (holding ``value``) is a secret in a config (see the module docstring)."""
    words = _words(str(key))
    if not words:
        return False
    if _SECRET_WORDS.intersection(words) or words[-1] == "AUTH":
        return True
    last, before = words[-1], (words[-2] if len(words) > 1 else "")
    if last == "TOKEN":
        return before not in _SPECIAL_TOKENS or looks_like_credential(value)
    if last in ("KEY", "KEYS"):
        return before in _KEY_OWNERS or looks_like_credential(value)
    return False


def _blank(value: Any) -> Any:
    if isinstance(value, list):
        return [_blank(v) for v in value]
    if isinstance(value, dict):
        return {k: _blank(v) for k, v in value.items()}
    if value is None or isinstance(value, bool) or value == REDACTED:
        return value
    return REDACTED


def redact_tree(tree: Any, path: str = "", found: list[Any] | None = None) -> list[str]:
    """Blank, in place, the secret values of a JSON tree; returns their dotted keys.

    Mappings inside lists are searched too (``services[0].api_key``). With
    ``found``, the original values are appended to it (the text that must not
    appear in a record: a URL's credentials, a key's value).
    """
    redacted: list[str] = []
    items: list[tuple[Any, Any, str]]
    if isinstance(tree, dict):
        items = [(k, v, f"{path}.{k}" if path else str(k)) for k, v in tree.items()]
    elif isinstance(tree, list):
        items = [(i, v, f"{path}[{i}]") for i, v in enumerate(tree)]
    else:
        return redacted
    for key, value, full in items:
        if isinstance(tree, dict) and is_secret_key(str(key), value) and not isinstance(value, dict):
            blanked = _blank(value)
            if blanked != value:
                if found is not None:
                    found.extend(_scalars(value))
                tree[key] = blanked
                redacted.append(full)
            continue
        if isinstance(value, (dict, list)):
            redacted.extend(redact_tree(value, full, found))
        elif isinstance(value, str) and "://" in value and "@" in value:
            stripped = strip_credentials(value)
            if stripped != value:
                if found is not None:
                    found.append(value)
                tree[key] = stripped
                redacted.append(full)
    return redacted


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    return [] if value is None or isinstance(value, bool) else [value]


def _last_segment(key: str) -> str:
    return re.split(r"[./]", key.lstrip("+~"))[-1]


def redact_override(text: str) -> str:
    """An override (``api_key=sk-1``) with a secret value blanked (``api_key=<redacted>``)."""
    key, sep, value = text.partition("=")
    if not sep:
        return text
    if is_secret_key(_last_segment(key), value):
        return f"{key}={REDACTED}"
    if "://" in value and "@" in value:
        return f"{key}={strip_credentials(value)}"
    return text


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with secret values blanked: ``--api-key X``, ``--password=X``, ``token=X``."""
    out: list[str] = []
    blank_next = False
    for arg in argv:
        if blank_next:
            blank_next = False
            if not arg.startswith("-") or re.fullmatch(r"-[\d.]+", arg):
                out.append(REDACTED)
                continue
        if arg.startswith("--") and len(arg) > 2:
            name, sep, value = arg[2:].partition("=")
            if is_secret_key(name, value if sep else None):
                if sep:
                    out.append(f"--{name}={REDACTED}")
                else:
                    out.append(arg)
                    blank_next = True
                continue
        if "=" in arg and not arg.startswith("-"):
            out.append(redact_override(arg))
            continue
        out.append(strip_credentials(arg) if "://" in arg and "@" in arg else arg)
    return out
