"""The filter and sort language shared by ``runstone ls``, ``Client.find_runs`` and the server.

Layer 3: pure parsing, no I/O. Stores compile the tree this module builds
(``store/sql/compile.py`` for SQL). Grammar, informally::

    expr       := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | test
    test       := field op value
                | field ["not"] "in" "(" value ("," value)* ")"
                | field "is" ["not"] "null"
    field      := attribute | params.KEY | metrics.KEY | tags.KEY
                | ("min" | "max" | "last" | "count") "(" metrics.KEY ")"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "like"
    value      := number | 'string' | "string" | true | false | null | inf | -inf | bareword

Attributes: id, name, project, status, started, ended, duration_s,
exit_code, host, user. ``started``/``ended`` compare with ISO-8601 times
(``'2026-11-01'``, ``'2026-11-01T12:00:00Z'``) or times relative to now
(``'-2h'``, ``'-7d'``; units s, m, h, d, w). A KEY with characters outside
``[A-Za-z0-9_-/:]`` is quoted with backticks: ``metrics.`val loss```.
``like`` matches with ``%`` and ``_`` wildcards, ignoring case. A metric
compares by its last value (by step) unless an aggregate is given.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, TypeAlias

from runstone.entities import RunStatus
from runstone.errors import FilterError

__all__ = [
    "ATTRIBUTES",
    "And",
    "Compare",
    "Expr",
    "Field",
    "In",
    "IsNull",
    "Not",
    "Or",
    "OrderKey",
    "field_value",
    "format_filter",
    "parse_filter",
    "parse_order",
    "time_literal_ms",
]

Value: TypeAlias = "str | int | float | bool | None"
FieldKind = Literal["attr", "param", "metric", "tag"]
Aggregate = Literal["last", "min", "max", "count"]

#: attribute name -> its type ("text", "number", "time", "status")
ATTRIBUTES: dict[str, str] = {
    "id": "text",
    "name": "text",
    "project": "text",
    "status": "status",
    "started": "time",
    "ended": "time",
    "duration_s": "number",
    "exit_code": "number",
    "host": "text",
    "user": "text",
}
_PREFIXES: dict[str, FieldKind] = {
    "params": "param",
    "param": "param",
    "metrics": "metric",
    "metric": "metric",
    "tags": "tag",
    "tag": "tag",
}
_AGGREGATES = ("last", "min", "max", "count")
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false", "like", "inf", "nan"}
_OPS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_BARE_SEGMENT = re.compile(r"[A-Za-z0-9_\-/:]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Field:
    """A thing a run has: an attribute, a param, a metric (with aggregate) or a tag."""

    kind: FieldKind
    name: str
    aggregate: Aggregate = "last"

    def to_text(self) -> str:
        if self.kind == "attr":
            return self.name
        prefix = {"param": "params", "metric": "metrics", "tag": "tags"}[self.kind]
        text = f"{prefix}.{_quote_key(self.name)}"
        if self.kind == "metric" and self.aggregate != "last":
            return f"{self.aggregate}({text})"
        return text


def field_value(run: Any, field: Field) -> Any:
    """A run's value of a field: a param, a metric's aggregate, a tag, or an attribute.

    Times (``started``, ``ended``) are epoch milliseconds; a missing value is None.
    """
    if field.kind == "param":
        return run.params.get(field.name)
    if field.kind == "tag":
        return run.tags.get(field.name)
    if field.kind == "metric":
        summary = run.metrics.get(field.name)
        if summary is None:
            return None
        return {
            "last": summary.last_value,
            "min": summary.min_value,
            "max": summary.max_value,
            "count": summary.count,
        }[field.aggregate]
    return {
        "id": run.id,
        "name": run.name,
        "project": run.project,
        "status": run.status.value,
        "started": run.start_time_ms,
        "ended": run.end_time_ms,
        "duration_s": run.duration_s,
        "exit_code": run.exit_code,
        "host": run.host,
        "user": run.user,
    }[field.name]


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str
    value: Value


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    field: Field
    negated: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr: TypeAlias = "Compare | In | IsNull | And | Or | Not"


@dataclass(frozen=True)
class OrderKey:
    field: Field
    descending: bool = False

    def to_text(self) -> str:
        return ("-" if self.descending else "") + self.field.to_text()


# --- tokens -----------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: Literal["word", "string", "number", "op", "punct", "end"]
    text: str  # for words: the raw text; strings: the unescaped value
    pos: int
    segments: tuple[str, ...] = ()  # words: dot-separated segments, backticks removed
    quoted: bool = False  # words: some segment was backtick-quoted

    @property
    def keyword(self) -> str | None:
        if self.kind == "word" and not self.quoted and len(self.segments) == 1:
            low = self.segments[0].lower()
            if low in _KEYWORDS:
                return low
        return None

    def describe(self) -> str:
        return "the end of the filter" if self.kind == "end" else repr(self.text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "'\"":
            j, buf = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise FilterError(f"unterminated string starting with {c}", text=text, position=i)
            tokens.append(_Token("string", "".join(buf), i))
            i = j + 1
            continue
        if c in "(),":
            tokens.append(_Token("punct", c, i))
            i += 1
            continue
        two = text[i : i + 2]
        if two in ("==", "!=", "<>", "<=", ">="):
            tokens.append(_Token("op", two, i))
            i += 2
            continue
        if c in "=<>":
            tokens.append(_Token("op", c, i))
            i += 1
            continue
        number = _NUMBER.match(text, i)
        if number and (c in "+-.0123456789") and not _continues_word(text, number.end()):
            tokens.append(_Token("number", number.group(), i))
            i = number.end()
            continue
        if c == "-" and text[i + 1 : i + 4].lower() == "inf" and not _continues_word(text, i + 4):
            tokens.append(_Token("number", "-inf", i))
            i += 4
            continue
        if c == "`" or _BARE_SEGMENT.match(text, i):
            start, segments, quoted = i, [], False
            while True:
                if i < n and text[i] == "`":
                    end = text.find("`", i + 1)
                    if end < 0:
                        raise FilterError("unterminated `quoted` key", text=text, position=i)
                    segments.append(text[i + 1 : end])
                    quoted = True
                    i = end + 1
                else:
                    m = _BARE_SEGMENT.match(text, i)
                    if not m:
                        raise FilterError("expected a name after '.'", text=text, position=i)
                    segments.append(m.group())
                    i = m.end()
                if i < n and text[i] == ".":
                    i += 1
                    continue
                break
            tokens.append(_Token("word", text[start:i], start, tuple(segments), quoted))
            continue
        hint = "; quote patterns and text: name like 'res%'" if c in "%*?" else ""
        raise FilterError(f"unexpected character {c!r}{hint}", text=text, position=i)
    tokens.append(_Token("end", "", n))
    return tokens


def _continues_word(text: str, i: int) -> bool:
    return i < len(text) and (text[i].isalpha() or text[i] in "_/:`")


# --- parser -----------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def error(self, message: str, token: _Token | None = None) -> FilterError:
        token = token or self.tok
        return FilterError(message, text=self.text, position=token.pos)

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect_punct(self, char: str, context: str) -> None:
        if self.tok.kind == "punct" and self.tok.text == char:
            self.advance()
            return
        raise self.error(f"expected {char!r} {context}, found {self.tok.describe()}")

    def at_end(self) -> bool:
        return self.tok.kind == "end"

    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise self.error("the filter is empty; write e.g. metrics.acc > 0.9")
        expr = self.parse_or()
        if not self.at_end():
            raise self.error(f"expected 'and', 'or' or the end of the filter, found {self.tok.describe()}")
        return expr

    def parse_or(self) -> Expr:
        items = [self.parse_and()]
        while self.tok.keyword == "or":
            self.advance()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Expr:
        items = [self.parse_unary()]
        while self.tok.keyword == "and":
            self.advance()
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_unary(self) -> Expr:
        if self.tok.keyword == "not":
            self.advance()
            return Not(self.parse_unary())
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.advance()
            expr = self.parse_or()
            self.expect_punct(")", "to close '('")
            return expr
        return self.parse_test()

    def parse_field(self) -> Field:
        tok = self.tok
        if tok.kind != "word" or tok.keyword is not None:
            raise self.error(
                f"expected a field such as metrics.acc, params.lr, tags.stage or status, "
                f"found {tok.describe()}"
            )
        self.advance()
        head = tok.segments[0].lower()
        nxt = self.tok
        if (
            len(tok.segments) == 1
            and not tok.quoted
            and head in _AGGREGATES
            and nxt.kind == "punct"
            and nxt.text == "("
        ):
            self.advance()
            inner = self.parse_field()
            if inner.kind != "metric" or inner.aggregate != "last":
                raise self.error(f"{head}() takes a metric, e.g. {head}(metrics.loss)", tok)
            self.expect_punct(")", f"to close {head}(")
            return Field("metric", inner.name, head)  # type: ignore[arg-type]
        return _resolve_field(tok, self.text)

    def parse_test(self) -> Expr:
        field = self.parse_field()
        tok = self.tok
        if tok.keyword == "is":
            self.advance()
            negated = False
            if self.tok.keyword == "not":
                self.advance()
                negated = True
            if self.tok.keyword != "null":
                raise self.error(f"expected 'null' after 'is', found {self.tok.describe()}")
            self.advance()
            return IsNull(field, negated)
        if tok.keyword in ("in", "not"):
            negated = tok.keyword == "not"
            self.advance()
            if negated:
                if self.tok.keyword != "in":
                    raise self.error(f"expected 'in' after 'not', found {self.tok.describe()}")
                self.advance()
            self.expect_punct("(", "after 'in'")
            values = [self.parse_value(field)]
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.advance()
                values.append(self.parse_value(field))
            self.expect_punct(")", "to close the 'in' list")
            return In(field, tuple(values), negated)
        if tok.kind == "op":
            op = _OPS[tok.text]
        elif tok.keyword == "like":
            op = "like"
        else:
            raise self.error(
                f"expected a comparison (=, !=, <, <=, >, >=, like, in, is) after "
                f"{field.to_text()}, found {tok.describe()}"
            )
        if op == "like" and field.kind == "metric":
            raise self.error("metrics compare with numbers; 'like' works on text fields", tok)
        self.advance()
        value = self.parse_value(field)
        if op == "like" and not isinstance(value, str):
            raise self.error("'like' needs a quoted pattern, e.g. name like 'resnet%'", tok)
        return Compare(field, op, value)

    def parse_value(self, field: Field) -> Value:
        tok = self.tok
        value: Value
        if tok.kind == "string":
            value = tok.text
        elif tok.kind == "number":
            value = _number(tok.text)
        elif tok.kind == "word":
            kw = tok.keyword
            if kw == "true":
                value = True
            elif kw == "false":
                value = False
            elif kw == "null":
                value = None
            elif kw == "inf":
                value = float("inf")
            elif kw == "nan":
                raise self.error("NaN never compares equal; test for it with 'is null'")
            elif kw is not None:
                raise self.error(f"expected a value, found the keyword {tok.text!r}")
            elif len(tok.segments) > 1 and tok.segments[0].lower() in _PREFIXES:
                raise self.error(
                    f"comparing two fields is not supported; quote {tok.text!r} if you meant the text"
                )
            else:
                value = tok.text
        else:
            raise self.error(f"expected a value after {field.to_text()}, found {tok.describe()}")
        if field.kind == "attr" and ATTRIBUTES[field.name] == "status" and isinstance(value, str):
            value = value.lower()
        _check_value(field, value, tok, self.text)
        self.advance()
        return value


def _resolve_field(tok: _Token, text: str) -> Field:
    segments = tok.segments
    head = segments[0].lower()
    if len(segments) == 1 and not tok.quoted:
        if head in ATTRIBUTES:
            return Field("attr", head)
        if head in _PREFIXES:
            raise FilterError(f"{head} needs a key, e.g. {head}.lr", text=text, position=tok.pos)
        raise FilterError(
            f"unknown field {tok.text!r}; use params.KEY, metrics.KEY, tags.KEY or one of "
            f"{', '.join(ATTRIBUTES)}",
            text=text,
            position=tok.pos,
        )
    kind = _PREFIXES.get(head)
    if kind is None:
        raise FilterError(
            f"unknown field {tok.text!r}; fields start with params., metrics. or tags.",
            text=text,
            position=tok.pos,
        )
    return Field(kind, ".".join(segments[1:]))


def _number(text: str) -> int | float:
    if text == "-inf":
        return float("-inf")
    try:
        return int(text)
    except ValueError:
        return float(text)


def _check_value(field: Field, value: Value, tok: _Token, text: str) -> None:
    def fail(message: str) -> FilterError:
        return FilterError(message, text=text, position=tok.pos)

    if field.kind == "metric":
        if value is None:
            raise fail("to find runs without a metric use 'is null'")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"metrics compare with numbers, not {value!r}")
        return
    if field.kind != "attr":
        return
    kind = ATTRIBUTES[field.name]
    if kind == "status" and value not in {s.value for s in RunStatus}:
        raise fail(f"unknown status {value!r}; one of {', '.join(s.value for s in RunStatus)}")
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise fail(f"{field.name} compares with numbers, not {value!r}")
    if kind == "time":
        if not isinstance(value, str):
            raise fail(f"{field.name} compares with a quoted time such as '2026-11-01' or '-2h'")
        try:
            time_literal_ms(value)
        except ValueError as e:
            raise fail(str(e)) from None


def time_literal_ms(value: str, now_s: float | None = None) -> int:
    """Milliseconds since the epoch for an ISO-8601 time or a relative ``'-2h'``.

    A time without a zone is local time.

    Raises:
        ValueError: the text is neither form.
    """
    rel = _RELATIVE.match(value.strip())
    if rel:
        now = time.time() if now_s is None else now_s
        return int((now - float(rel.group(1)) * _UNIT_S[rel.group(2)]) * 1000)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time; use ISO-8601 ('2026-11-01', '2026-11-01T12:00:00Z') "
            "or a relative time ('-2h', '-7d')"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time
    return int(parsed.astimezone(timezone.utc).timestamp() * 1000)


def parse_filter(text: str) -> Expr:
    """Parse a filter expression.

    Raises:
        FilterError: with the position of the offending token.
    """
    return _Parser(text).parse()


def parse_order(text: str, *, what: str = "sort") -> tuple[OrderKey, ...]:
    """Parse a sort specification: comma-separated fields, ``-`` for descending.

    ``'-metrics.acc,name'``, ``'started desc'`` and ``'min(metrics.loss)'`` all work.

    Raises:
        FilterError: the text names no field or an unknown one.
    """
    keys: list[OrderKey] = []
    offset = 0
    for part in text.split(","):
        stripped = part.strip()
        pos = offset + (len(part) - len(part.lstrip()))
        offset += len(part) + 1
        if not stripped:
            raise FilterError(f"empty {what} key", text=text, position=pos, what=what)
        descending = False
        if stripped[0] in "+-":
            descending = stripped[0] == "-"
            stripped = stripped[1:].lstrip()
        words = stripped.rsplit(None, 1)
        if len(words) == 2 and words[1].lower() in ("asc", "desc"):
            descending = words[1].lower() == "desc"
            stripped = words[0]
        try:
            parser = _Parser(stripped)  # tokenizing can fail too: still the sort's error
            field = parser.parse_field()
            if not parser.at_end():
                raise parser.error(f"unexpected {parser.tok.describe()} after the {what} field")
        except FilterError as e:
            raise FilterError(e.reason, text=text, position=pos + e.position, what=what) from None
        keys.append(OrderKey(field, descending))
    return tuple(keys)


# --- formatting (the inverse of parsing) ------------------------------------


def _quote_key(key: str) -> str:
    parts = key.split(".")
    if all(_BARE_SEGMENT.fullmatch(p) for p in parts):
        return key
    return f"`{key}`"


def _format_value(value: Value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if value == float("inf"):
            return "inf"
        if value == float("-inf"):
            return "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def format_filter(expr: Expr) -> str:
    """Text that ``parse_filter`` turns back into an equal tree."""
    if isinstance(expr, Compare):
        return f"{expr.field.to_text()} {expr.op} {_format_value(expr.value)}"
    if isinstance(expr, In):
        values = ", ".join(_format_value(v) for v in expr.values)
        neg = "not " if expr.negated else ""
        return f"{expr.field.to_text()} {neg}in ({values})"
    if isinstance(expr, IsNull):
        return f"{expr.field.to_text()} is {'not ' if expr.negated else ''}null"
    if isinstance(expr, Not):
        return f"not ({format_filter(expr.item)})"
    joiner = " and " if isinstance(expr, And) else " or "
    return joiner.join(f"({format_filter(item)})" for item in expr.items)
