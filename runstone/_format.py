"""Formatting values for people: sizes, times, durations, numbers.

Layer 1 (standard library only): the command line and the web UI format alike.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

__all__ = ["fmt_duration", "fmt_number", "fmt_size", "fmt_time", "iso_time"]


def fmt_size(n: int, bytes_unit: str = "B") -> str:
    """A byte count for people: ``1,234 B``, ``3.5 MiB``."""
    size = float(n)
    for unit in (bytes_unit, "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == bytes_unit else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)  # pragma: no cover


def fmt_time(ms: int | None) -> str:
    """Local time for people to read."""
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def iso_time(ms: int | None) -> str:
    """ISO-8601 local time with its UTC offset, for files (CSV)."""
    if ms is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ms / 1000))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt_number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
