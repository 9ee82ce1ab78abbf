"""Compile the filter/sort language into SQL for the SQL store.

Layer 4. Each field becomes a scalar expression over ``runs`` (attributes)
or a correlated subquery (params, metrics, tags), so a run that lacks the
field compares as NULL and never matches, and sorts last.
"""

from __future__ import annotations

from typing import Any

from runstone.errors import UsageError
from runstone.store.query import (
    And,
    Compare,
    Expr,
    Field,
    In,
    IsNull,
    Not,
    Or,
    OrderKey,
    time_literal_ms,
)
from runstone.store.sql.dialect import Dialect

__all__ = ["compile_filter", "compile_order"]

_ATTR_SQL = {
    "id": "runs.id",
    "name": "runs.name",
    "project": "runs.project",
    "status": "runs.status",
    "started": "runs.start_time_ms",
    "ended": "runs.end_time_ms",
    "duration_s": "((COALESCE(runs.end_time_ms, runs.heartbeat_ms) - runs.start_time_ms) / 1000.0)",
    "exit_code": "runs.exit_code",
    "host": "runs.host",
    "user": "runs.username",
}
_METRIC_COLUMN = {"last": "last_value", "min": "min_value", "max": "max_value", "count": "count"}


_OPS = frozenset({"=", "!=", "<", "<=", ">", ">=", "like"})


def _field_sql(field: Field, column: str | None = None) -> tuple[str, list[Any]]:
    # Only names from these tables reach the SQL text; everything else is a parameter.
    if field.kind == "attr":
        if field.name not in _ATTR_SQL:
            raise UsageError(f"Unknown run attribute {field.name!r}")
        return _ATTR_SQL[field.name], []
    if field.kind == "metric":
        if field.aggregate not in _METRIC_COLUMN:
            raise UsageError(f"Unknown metric aggregate {field.aggregate!r}")
        col = _METRIC_COLUMN[field.aggregate]
        return (
            f"(SELECT ms.{col} FROM metric_summary ms WHERE ms.run_pk = runs.pk AND ms.key = ?)",
            [field.name],
        )
    if field.kind == "tag":
        return "(SELECT t.value FROM tags t WHERE t.run_pk = runs.pk AND t.key = ?)", [field.name]
    col = column or "value_text"
    return f"(SELECT p.{col} FROM params p WHERE p.run_pk = runs.pk AND p.key = ?)", [field.name]


def _compare(expr: Compare, dialect: Dialect) -> tuple[str, list[Any]]:
    field, op, value = expr.field, expr.op, expr.value
    if op not in _OPS:
        raise UsageError(f"Unknown comparison {op!r}")
    sql_op = dialect.ilike if op == "like" else op
    if field.kind == "param":
        if value is None:
            lhs, args = _field_sql(field, "value_json")
            return f"{lhs} {sql_op} ?", [*args, "null"]
        if isinstance(value, bool):
            lhs, args = _field_sql(field, "value_text")
            return f"{lhs} {sql_op} ?", [*args, "true" if value else "false"]
        if isinstance(value, (int, float)):
            lhs, args = _field_sql(field, "value_num")
            return f"{lhs} {sql_op} ?", [*args, float(value)]
        lhs, args = _field_sql(field, "value_text")
        return f"{lhs} {sql_op} ?", [*args, value]
    lhs, args = _field_sql(field)
    if field.kind == "attr" and field.name in ("started", "ended"):
        assert isinstance(value, str)  # checked by the parser
        return f"{lhs} {sql_op} ?", [*args, time_literal_ms(value)]
    if field.kind == "tag":
        value = _tag_text(value)
    return f"{lhs} {sql_op} ?", [*args, value]


def _tag_text(value: Any) -> str:
    """Tags are text: a number or boolean in a filter compares as the text it would be stored as."""
    if isinstance(value, str):
        return value
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def compile_filter(expr: Expr, dialect: Dialect) -> tuple[str, list[Any]]:
    """A SQL boolean expression (over table ``runs``) and its parameters."""
    if isinstance(expr, Compare):
        return _compare(expr, dialect)
    if isinstance(expr, In):
        field = expr.field
        marks = ", ".join("?" * len(expr.values))
        if field.kind == "tag":
            # the runs holding the tag with one of the values, through the (key, value) index; a run
            # without the tag matches neither `in` nor `not in`, as with a comparison
            negated = "NOT " if expr.negated else ""
            sql = (
                f"runs.pk IN (SELECT t.run_pk FROM tags t WHERE t.key = ? AND t.value {negated}IN ({marks}))"
            )
            return sql, [field.name, *(_tag_text(v) for v in expr.values)]
        if field.kind == "attr" and field.name not in ("started", "ended"):
            lhs, args = _field_sql(field)
            test = f"{lhs} IN ({marks})"
            return (f"NOT ({test})" if expr.negated else test), [*args, *expr.values]
        equal = Or(tuple(Compare(expr.field, "=", v) for v in expr.values))
        return compile_filter(Not(equal) if expr.negated else equal, dialect)
    if isinstance(expr, IsNull):
        lhs, args = _field_sql(expr.field, "value_json")
        if expr.field.kind == "param":  # a param set to null is null too
            test = f"COALESCE({lhs}, 'null') = 'null'"
            return (f"NOT ({test})" if expr.negated else test), args
        return f"{lhs} IS {'NOT ' if expr.negated else ''}NULL", args
    if isinstance(expr, Not):
        inner, args = compile_filter(expr.item, dialect)
        return f"NOT ({inner})", args
    parts, params = [], []
    for item in expr.items:
        sql, args = compile_filter(item, dialect)
        parts.append(f"({sql})")
        params.extend(args)
    return (" AND " if isinstance(expr, And) else " OR ").join(parts), params


def compile_order(keys: tuple[OrderKey, ...]) -> tuple[str, list[Any]]:
    """An ORDER BY list; missing values sort last; ties go newest first."""
    parts, params = [], []
    for key in keys:
        column = "value_num" if key.field.kind == "param" else None
        sql, args = _field_sql(key.field, column)
        if key.field.kind == "param":
            # numbers first by value, then text values in text order
            text_sql, text_args = _field_sql(key.field, "value_text")
            direction = "DESC" if key.descending else "ASC"
            parts.append(f"{sql} {direction} NULLS LAST, {text_sql} {direction} NULLS LAST")
            params.extend(args + text_args)
            continue
        parts.append(f"{sql} {'DESC' if key.descending else 'ASC'} NULLS LAST")
        params.extend(args)
    parts.append("runs.id DESC")
    return ", ".join(parts), params
