"""The override grammar, and the best-effort params view of a command line."""

from __future__ import annotations

import math

import pytest

from runstone.capture.cmdline import Override, parse_command_line, parse_override, parse_value
from runstone.errors import UsageError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("-3", -3),
        ("1_000", 1000),
        ("1.0", 1.0),
        ("0.01", 0.01),
        ("1e-3", 0.001),
        ("-2.5E+2", -250.0),
        (".5", 0.5),
        ("inf", math.inf),
        ("-inf", -math.inf),
        ("true", True),
        ("False", False),
        ("null", None),
        ("'1'", "1"),
        ('"a b"', "a b"),
        ("'it\\'s'", "it's"),
        ("adam", "adam"),
        ("", ""),
        ("[1, 2.0, 'x']", [1, 2.0, "x"]),
        ("[]", []),
        ("{a: 1, b: [true]}", {"a": 1, "b": [True]}),
        ("${optimizer.lr}", "${optimizer.lr}"),
        ("a,b", "a,b"),
        ("/data/x.csv", "/data/x.csv"),
    ],
)
def test_values_keep_the_type_they_spell(text: str, value: object) -> None:
    parsed = parse_value(text)
    assert type(parsed) is type(value) and parsed == value


def test_nan() -> None:
    assert math.isnan(parse_value("nan"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.b=1", Override("a.b=1", "set", "a.b", 1)),
        ("+a=x", Override("+a=x", "add", "a", "x")),
        ("++a=[1]", Override("++a=[1]", "force", "a", [1])),
        ("~a.b", Override("~a.b", "delete", "a.b", has_value=False)),
        ("~a=2", Override("~a=2", "delete", "a", 2)),
        ("lr=0.1,0.01", Override("lr=0.1,0.01", "set", "lr", None, sweep=True)),
        ("lr=choice(0.1,0.01)", Override("lr=choice(0.1,0.01)", "set", "lr", None, sweep=True)),
        ("db/engine=pg", Override("db/engine=pg", "set", "db/engine", "pg")),
    ],
)
def test_overrides(text: str, expected: Override) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["=1", "a", "+a", "1a=2", "a b=1"])
def test_bad_overrides(text: str) -> None:
    with pytest.raises(UsageError):
        parse_override(text)


def test_a_python_command_line_becomes_params() -> None:
    view = parse_command_line(
        [
            "python3",
            "-u",
            "-W",
            "ignore",
            "train.py",
            "optimizer.lr=0.01",
            "+tag=x",
            "~drop",
            "--epochs",
            "3",
            "--batch-size=64",
            "--amp",
            "--offset",
            "-1",
            "data.csv",
        ]
    )
    assert view["script"] == "train.py" and view["parsed_from"] == "command line" and view["best_effort"]
    assert view["params"] == {
        "optimizer": {"lr": 0.01},
        "tag": "x",
        "epochs": 3,
        "batch_size": 64,
        "amp": True,
        "offset": -1,
    }
    assert view["overrides"] == ["optimizer.lr=0.01", "+tag=x", "~drop"]
    assert view["positional"] == ["data.csv"]


def test_modules_programs_and_empty_command_lines() -> None:
    assert parse_command_line(["python", "-m", "pkg.train", "lr=1"])["script"] == "-m pkg.train"
    assert parse_command_line(["python", "-m", "pkg.train", "lr=1"])["params"] == {"lr": 1}
    assert parse_command_line(["./train", "--lr", "1e-3"])["params"] == {"lr": 0.001}
    assert parse_command_line([])["params"] == {}
    sweep = parse_command_line(["app.py", "-m", "lr=0.1,0.01", "wd=choice(1,2)"])
    assert sweep["params"] == {"m": True, "lr": "0.1,0.01", "wd": "choice(1,2)"}
    assert parse_command_line(["train.py", "--", "--lr", "1"])["positional"] == ["--lr", "1"]
