"""Printing for the command line: tables (rich on a terminal, plain when piped), JSON, CSV.

Layer 6.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from runstone._format import fmt_duration, fmt_number, fmt_size, fmt_time, iso_time

__all__ = [
    "fmt_duration",
    "fmt_number",
    "fmt_size",
    "fmt_time",
    "iso_time",
    "print_json",
    "print_table",
    "write_csv",
]


def _jsonable(value: Any) -> Any:
    """NaN and infinities become the strings "NaN", "Infinity", "-Infinity" (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def print_json(value: Any, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    json.dump(_jsonable(value), out, indent=2, ensure_ascii=False, allow_nan=False)
    out.write("\n")


def write_csv(header: Sequence[str], rows: Sequence[Sequence[Any]], stream: TextIO | None = None) -> None:
    writer = csv.writer(stream or sys.stdout, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])


def use_rich(stream: TextIO | None = None) -> bool:
    out = stream or sys.stdout
    try:
        return out.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def print_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    style: Callable[[str, str], str | None] | None = None,
    stream: TextIO | None = None,
) -> None:
    """A table: boxed and colored on a terminal, aligned plain text otherwise."""
    out = stream or sys.stdout
    if use_rich(out):
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
        for i, name in enumerate(header):
            numeric = bool(rows) and all(_looks_numeric(r[i]) for r in rows if r[i])
            table.add_column(name, justify="right" if numeric else "left", no_wrap=i == 0)
        for row in rows:
            table.add_row(
                *[_styled(c, style(h, c) if style else None) for h, c in zip(header, row, strict=True)]
            )
        Console(file=out, highlight=False).print(table)
        return
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    out.write("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _styled(cell: str, style: str | None) -> str:
    from rich.markup import escape

    return f"[{style}]{escape(cell)}[/]" if style else escape(cell)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
