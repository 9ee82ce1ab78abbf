"""Secrets in configs and command lines: which values they are, and the record without them.

Layer 3, standard library only. Environment variables have their own rule
(``capture.env.is_secret_name``: any name containing ``TOKEN``, ``KEY``,
``PASS``, ...). Config keys need a finer one, because ML configs are full of
names that only look secret: ``tokenizer``, ``max_tokens``, ``pad_token``,
``placeholder_token``, ``label_key``, ``pass_rate``, ``author``. A key is
read as words (``dbPassword2`` is ``db password``; trailing digits and
qualifiers such as ``old``, ``new``, ``prod`` are dropped), and it is secret
when its last word is:

- ``password``, ``passwd``, ``passphrase``, ``pwd``, ``pass``, ``secret``,
  ``credentials``, ``creds``, ``apikey``, ``jwt``, ``cookie``, ``dsn``,
  ``bearer``, ``webhook``, ``auth`` or ``authorization`` (also
  ``connection_string``);
- ``token`` alone or after a word that owns tokens (``access``, ``auth``,
  ``api``, ``refresh``, ``hf``, ``github``, ``wandb``, ``bot``, ...);
- ``key`` after a word that owns keys (``api``, ``access``, ``secret``,
  ``private``, ``client``, ``ssh``, ``service``, ``encryption``, ...);
- any other ``token`` or ``key`` (``pad_token``, ``label_key``) only when its
  value looks like a credential (``sk-...``, ``ghp_...``, ``hf_...``,
  ``AKIA...``, a JWT, or a long run of letters and digits without spaces).

Values are blanked (``<redacted>``): text, numbers, and everything under a
secret key that holds a mapping or list; ``True``/``False``/``None`` say
nothing secret and are kept. A URL keeps its address and loses its
credentials.
"""

from __future__ import annotations

import json
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
    "APIKEY JWT COOKIE COOKIES DSN BEARER WEBHOOK AUTH AUTHORIZATION".split()
)
_TOKEN_OWNERS = frozenset(
    "ACCESS AUTH API REFRESH ID SESSION BOT PERSONAL OAUTH OAUTH2 CSRF BEARER HF HUGGINGFACE HUB GITHUB GH "
    "GITLAB WANDB SLACK DISCORD TELEGRAM NPM PYPI OPENAI ANTHROPIC COHERE REPLICATE SECRET PRIVATE SERVICE "
    "CLIENT APP DEPLOY WRITE READ ADMIN USER COMET NEPTUNE MLFLOW KAGGLE".split()
)
_KEY_OWNERS = frozenset(
    "API ACCESS SECRET PRIVATE CLIENT ENCRYPTION SIGNING SSH ACCOUNT SERVICE LICENSE MASTER APP "
    "SUBSCRIPTION STORAGE SHARED CONSUMER DEPLOY ADMIN AUTH SESSION WRITE READ OPENAI ANTHROPIC "
    "WANDB COHERE".split()
)
#: words after the one that names what a key is (``hf_token_old``, ``api_key_prod``)
_QUALIFIERS = frozenset("OLD NEW PROD DEV STAGING TEST BACKUP PRIMARY SECONDARY ALT LIVE".split())
_CREDENTIAL_PREFIX = re.compile(
    r"(sk|pk|rk)[-_]|ghp_|gho_|ghs_|github_pat_|glpat-|hf_|xox[abpr]-|AKIA|ASIA|AIza|eyJ"
)
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


def _words(key: str) -> list[str]:
    """A key's words, upper-cased, digits and trailing qualifiers dropped."""
    words = [w.upper() for w in _WORDS.findall(key)]
    while len(words) > 1 and words[-1] in _QUALIFIERS:
        words.pop()
    return words


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
    last, before = words[-1], (words[-2] if len(words) > 1 else "")
    if last in _SECRET_WORDS or (before, last) in (("CONNECTION", "STRING"), ("CONN", "STR")):
        return True
    if last in ("TOKEN", "TOKENS"):
        return not before or before in _TOKEN_OWNERS or looks_like_credential(value)
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
        if isinstance(tree, dict) and is_secret_key(str(key), value):
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


def redact_override(text: str) -> str:
    """An override (``api_key=sk-1``) with a secret value blanked (``api_key=<redacted>``).

    A key under a secret one (``secrets.openai=...``) is secret too; a
    mapping or list value has its secret entries blanked
    (``db={password: x}`` becomes ``db={"password": "<redacted>"}``).
    """
    key, sep, value = text.partition("=")
    if not sep:
        return text
    path = [part for part in re.split(r"[./]", key.lstrip("+~").split("@")[0]) if part]
    if any(is_secret_key(part, value if i == len(path) - 1 else None) for i, part in enumerate(path)):
        return f"{key}={REDACTED}"
    stripped = value.strip()
    if stripped[:1] in "[{":
        from runstone.capture.cmdline import parse_value

        try:
            parsed = parse_value(stripped)
        except Exception:
            return f"{key}={REDACTED}"
        if isinstance(parsed, (dict, list)) and redact_tree({"value": parsed}):
            return f"{key}={json.dumps(_blank_secrets(parsed))}"
    if "://" in value and "@" in value:
        return f"{key}={strip_credentials(value)}"
    return text


def _blank_secrets(value: Any) -> Any:
    holder = {"value": value}
    redact_tree(holder)
    return holder["value"]


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with secret values blanked: ``--api-key X``, ``--password=X``, ``token=X``."""
    out: list[str] = []
    blank_next = False
    for index, arg in enumerate(argv):
        if blank_next:
            blank_next = False
            if not arg.startswith("-") or re.fullmatch(r"-[\d.]+", arg):
                out.append(REDACTED)
                continue
        if arg.startswith("--") and len(arg) > 2:
            name, sep, value = arg[2:].partition("=")
            following = argv[index + 1] if index + 1 < len(argv) else None
            if is_secret_key(name, value if sep else following):
                if sep:
                    out.append(f"--{name}={REDACTED}")
                else:
                    out.append(arg)
                    blank_next = True
                continue
        if "=" in arg and not arg.startswith("-"):
            out.append(redact_override(arg))
            continue
        out.append(strip_credentials(arg, REDACTED) if "://" in arg and "@" in arg else arg)
    return out
