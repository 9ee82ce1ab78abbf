"""The filter and sort language: parsing, errors that point at the token, and round trips."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runstone.errors import FilterError
from runstone.store.query import (
    And,
    Compare,
    Field,
    In,
    IsNull,
    Not,
    Or,
    OrderKey,
    format_filter,
    parse_filter,
    parse_order,
    time_literal_ms,
)


def test_precedence_and_fields() -> None:
    expr = parse_filter("metrics.acc > 0.9 and params.lr = 0.01 or not tags.stage = 'dev'")
    assert expr == Or(
        (
            And(
                (
                    Compare(Field("metric", "acc"), ">", 0.9),
                    Compare(Field("param", "lr"), "=", 0.01),
                )
            ),
            Not(Compare(Field("tag", "stage"), "=", "dev")),
        )
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.model.depth >= 3", Compare(Field("param", "model.depth"), ">=", 3)),
        ("metrics.`val loss` < inf", Compare(Field("metric", "val loss"), "<", math.inf)),
        ("min(metrics.loss) <= -1e-3", Compare(Field("metric", "loss", "min"), "<=", -0.001)),
        ("status in (failed, killed)", In(Field("attr", "status"), ("failed", "killed"))),
        ("tags.x not in ('a')", In(Field("tag", "x"), ("a",), negated=True)),
        ("metrics.acc is not null", IsNull(Field("metric", "acc"), negated=True)),
        ("name like 'res%'", Compare(Field("attr", "name"), "like", "res%")),
        ("params.flag == true", Compare(Field("param", "flag"), "=", True)),
        ("params.x <> null", Compare(Field("param", "x"), "!=", None)),
        ("metric.a=1", Compare(Field("metric", "a"), "=", 1)),
        ("params.opt = adam", Compare(Field("param", "opt"), "=", "adam")),
        ("started > '-2h'", Compare(Field("attr", "started"), ">", "-2h")),
        ("params.s = 'it\\'s'", Compare(Field("param", "s"), "=", "it's")),
    ],
)
def test_parses(text: str, expected: object) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("", 1, "the filter is empty"),
        ("metrics.acc >", 14, "expected a value after metrics.acc"),
        ("metrics.acc > 0.9 and", 22, "expected a field"),
        ("metrics.acc 0.9", 13, "expected a comparison"),
        ("(metrics.acc > 1", 17, "expected ')'"),
        ("metrics.acc > 'x'", 15, "metrics compare with numbers"),
        ("metrics.acc like 'x'", 13, "'like' works on text fields"),
        ("foo > 1", 1, "unknown field 'foo'"),
        ("params > 1", 1, "params needs a key"),
        ("params.a = 'open", 12, "unterminated string"),
        ("status = done", 10, "unknown status 'done'"),
        ("started > 5", 11, "quoted time"),
        ("started > 'yesterday'", 11, "is not a time"),
        ("duration_s > 'long'", 14, "compares with numbers"),
        ("metrics.a > params.b", 13, "comparing two fields is not supported"),
        ("metrics.a = nan", 13, "is null"),
        ("max(params.a) > 1", 1, "max() takes a metric"),
        ("metrics.a > 1 ; drop", 15, "unexpected character ';'"),
    ],
)
def test_errors_point_at_the_offending_token(text: str, column: int, reason: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert reason in str(info.value)
    assert f"column {column}:" in str(info.value)
    assert info.value.pointer().splitlines()[1].index("^") - 2 == column - 1


def test_order() -> None:
    assert parse_order("-metrics.acc, name") == (
        OrderKey(Field("metric", "acc"), descending=True),
        OrderKey(Field("attr", "name")),
    )
    assert parse_order("started desc,min(metrics.loss) asc") == (
        OrderKey(Field("attr", "started"), descending=True),
        OrderKey(Field("metric", "loss", "min")),
    )
    with pytest.raises(FilterError, match="column 7: unknown field 'bogus'"):
        parse_order("name, bogus")
    with pytest.raises(FilterError, match="empty sort key"):
        parse_order("name,,id")


def test_time_literals() -> None:
    assert time_literal_ms("1970-01-01T00:00:01Z") == 1000
    assert time_literal_ms("-1h", now_s=7200.0) == 3_600_000
    assert abs(time_literal_ms("-0s") - time.time() * 1000) < 60_000


# --- round trips ------------------------------------------------------------

keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="`"), min_size=1, max_size=12
)
numbers = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, width=64),
)
texts = st.text(max_size=12)
fields = st.one_of(
    st.builds(Field, st.just("param"), keys),
    st.builds(Field, st.just("tag"), keys),
    st.builds(Field, st.just("metric"), keys, st.sampled_from(["last", "min", "max", "count"])),
    st.builds(Field, st.just("attr"), st.sampled_from(["name", "project", "host", "user", "id"])),
)


@st.composite
def comparisons(draw: st.DrawFn) -> object:
    field = draw(fields)
    if field.kind == "metric":
        return Compare(field, draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="])), draw(numbers))
    value = draw(st.one_of(numbers, texts, st.booleans(), st.none()) if field.kind != "attr" else texts)
    op = draw(st.sampled_from(["=", "!=", "<", ">="] + (["like"] if isinstance(value, str) else [])))
    return Compare(field, op, value)


leaves = st.one_of(
    comparisons(),
    st.builds(IsNull, fields, st.booleans()),
    st.builds(
        In,
        st.builds(Field, st.just("tag"), keys),
        st.lists(texts, min_size=1, max_size=3).map(tuple),
        st.booleans(),
    ),
)
exprs = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        inner.map(Not),
    ),
    max_leaves=6,
)


@given(exprs)
def test_format_then_parse_round_trips(expr: object) -> None:
    text = format_filter(expr)  # type: ignore[arg-type]
    assert parse_filter(text) == expr
