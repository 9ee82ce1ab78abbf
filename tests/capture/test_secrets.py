"""Which config keys and command-line values are secrets, and the record without them."""

from __future__ import annotations

import pytest

from runstone.capture.secrets import is_secret_key, redact_argv, redact_override, redact_tree


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apiKey",
        "wandb_api_key",
        "password",
        "db_pass",
        "passwd",
        "token",
        "hf_token",
        "github_token",
        "secret",
        "client_secret",
        "private_key",
        "access_key",
        "auth",
        "basic_auth",
        "credentials",
        "jwt",
        "dsn",
        "password1",
        "db_password2",
        "api_key_2",
        "hf_token_old",
        "secrets",
        "connection_string",
        "dbPassword",
    ],
)
def test_secret_names(key: str) -> None:
    assert is_secret_key(key, "x")


@pytest.mark.parametrize(
    "key",
    [
        "tokenizer",
        "max_tokens",
        "num_passes",
        "passage",
        "passage_column",
        "author",
        "authority",
        "auth_mode",
        "secretary",
        "pad_token",
        "eos_token",
        "mask_token",
        "pad_token_id",
        "label_key",
        "first_stage_key",
        "key",
        "keys",
        "session_id",
        "lr",
        "monkey",
        "placeholder_token",
        "initializer_token",
        "class_token",
        "pass_at_k",
        "pass_rate",
        "num_token",
        "password_min_length",
        "aws_access_key_id",
    ],
)
def test_names_that_only_look_secret(key: str) -> None:
    assert not is_secret_key(key, "value")


def test_key_and_token_names_with_credential_values_are_secret() -> None:
    assert is_secret_key("openai_key", "sk-proj-abcdefghijkl")
    assert is_secret_key("key", "ghp_0123456789abcdefghij")
    assert not is_secret_key("label_key", "label")


def test_everything_under_a_secret_mapping_is_blanked() -> None:
    tree = {"secrets": {"openai": "sk-1", "n": 3, "on": True}, "auth": {"user": "bob"}}
    assert redact_tree(tree) == ["secrets", "auth"]
    assert tree == {
        "secrets": {"openai": "<redacted>", "n": "<redacted>", "on": True},
        "auth": {"user": "<redacted>"},
    }


def test_redact_tree_blanks_values_in_lists_and_numbers_keeps_flags() -> None:
    tree = {
        "services": [{"api_key": "sk-1"}, {"name": "x"}],
        "db": {"password": 123456, "url": "postgresql://me:pw@host/db"},
        "nested": {"token": ["t1", "t2"]},
        "use_auth_token": True,
        "secret": None,
    }
    found: list[object] = []
    assert redact_tree(tree, found=found) == ["services[0].api_key", "db.password", "db.url", "nested.token"]
    assert tree == {
        "services": [{"api_key": "<redacted>"}, {"name": "x"}],
        "db": {"password": "<redacted>", "url": "postgresql://host/db"},
        "nested": {"token": ["<redacted>", "<redacted>"]},
        "use_auth_token": True,
        "secret": None,
    }
    assert found == ["sk-1", 123456, "postgresql://me:pw@host/db", "t1", "t2"]


def test_overrides_and_command_lines() -> None:
    assert redact_override("api_key=sk-1") == "api_key=<redacted>"
    assert redact_override("+db.password='x y'") == "+db.password=<redacted>"
    assert (
        redact_override("run_id=01a218d49c9b71e287294b75efa86438")
        == "run_id=01a218d49c9b71e287294b75efa86438"
    )
    assert redact_override("secrets.openai=sk-proj-1") == "secrets.openai=<redacted>"
    assert redact_override("db={password: hunter3, host: h}") == 'db={"password": "<redacted>", "host": "h"}'
    assert redact_argv(["t.py", "--key", "sk-abcdefghijklmnop12", "--key", "img"]) == [
        "t.py",
        "--key",
        "<redacted>",
        "--key",
        "img",
    ]
    assert redact_argv(
        [
            "python",
            "t.py",
            "--api-key",
            "sk1",
            "--password=h",
            "hf_token=x",
            "--lr",
            "1",
            "--use-auth-token",
            "--epochs",
            "2",
            "postgres://u:p@h/db",
        ]
    ) == [
        "python",
        "t.py",
        "--api-key",
        "<redacted>",
        "--password=<redacted>",
        "hf_token=<redacted>",
        "--lr",
        "1",
        "--use-auth-token",
        "--epochs",
        "2",
        "postgres://<redacted>@h/db",
    ]
