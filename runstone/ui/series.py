"""Metric series for charts: a window of a series, downsampled so its peaks survive.

A chart is a few hundred to a few thousand pixels wide; a series can hold
millions of points. ``downsample`` splits the points into equal-count buckets
and keeps each bucket's smallest and largest value (in step order), so a spike
one point wide still reaches its height on the chart, and the first and last
points are always kept so the line spans the whole range. Non-finite values
(NaN, infinities) become ``None``: a gap in the line.
"""

from __future__ import annotations

import math
from typing import Any

from runstone.errors import UsageError

__all__ = ["MAX_POINTS", "window"]

#: the most points one response carries (about two per pixel of a wide chart)
MAX_POINTS = 4000


def _buckets(values: Any, points: int) -> Any:
    """Indices to keep, ascending: each bucket's minimum, maximum and first non-finite value,
    plus the first and last index. At most ``points`` of them."""
    import numpy as np

    n = len(values)
    buckets = max(1, (points - 2) // 3)
    size = math.ceil(n / buckets)
    buckets = math.ceil(n / size)
    padded = np.zeros(buckets * size)
    padded[:n] = values
    grid = padded.reshape(buckets, size)
    finite = np.isfinite(grid)
    base = np.arange(buckets) * size
    has_finite = finite.any(axis=1)
    low = np.where(finite, grid, np.inf).argmin(axis=1)
    high = np.where(finite, grid, -np.inf).argmax(axis=1)
    gap = (~finite).argmax(axis=1)  # padding is 0.0 (finite): only real NaN/inf count
    has_gap = ~finite.all(axis=1)
    chosen = [
        base[has_finite] + low[has_finite],
        base[has_finite] + high[has_finite],
        base[has_gap] + gap[has_gap],
    ]
    indices = np.concatenate([*chosen, [0, n - 1]])
    return np.unique(indices[indices < n])


def window(
    steps: Any,
    values: Any,
    timestamps_ms: Any,
    *,
    start_ms: int,
    axis: str = "step",
    points: int = 2000,
    lo: float | None = None,
    hi: float | None = None,
) -> dict[str, Any]:
    """The part of a series between ``lo`` and ``hi`` on the x axis, at most ``points`` points.

    Args:
        steps, values, timestamps_ms: the series (numpy arrays sorted by step).
        start_ms: when the run started: wall-time x values are seconds since then.
        axis: ``step`` or ``time``.
        points: the most points to return (5 to ``MAX_POINTS``).
        lo, hi: the x range to show (None: from the start / to the end). One
            point beyond each end is kept, so the line reaches the chart's edges.
    """
    import numpy as np

    if lo is not None and hi is not None and lo > hi:
        raise UsageError(f"lo ({lo:g}) is past hi ({hi:g}): give the window's start, then its end")
    y = np.asarray(values, dtype=np.float64)
    if axis == "time":
        x = (np.asarray(timestamps_ms, dtype=np.float64) - start_ms) / 1000.0
        if len(x) > 1 and bool((np.diff(x) < 0).any()):  # a clock stepped back: draw in time order
            order = np.argsort(x, kind="stable")
            x, y = x[order], y[order]
    else:
        x = np.asarray(steps)
    total = len(x)
    x_min, x_max = (float(x[0]), float(x[-1])) if total else (0.0, 0.0)
    if lo is not None or hi is not None:
        start = int(np.searchsorted(x, lo, "left")) if lo is not None else 0
        end = int(np.searchsorted(x, hi, "right")) if hi is not None else total
        # one point beyond each end, so the line reaches the edges (and a window between two points has both)
        x, y = x[max(0, start - 1) : end + 1], y[max(0, start - 1) : end + 1]
    points = max(5, min(points, MAX_POINTS))  # room for the ends and one bucket's extremes and gap
    downsampled = len(x) > points
    if downsampled:
        keep = _buckets(y, points)
        x, y = x[keep], y[keep]
    finite = np.isfinite(y)
    return {
        "axis": axis,
        "total": total,
        "returned": len(x),
        "downsampled": downsampled,
        "x": x.tolist(),
        "y": [v if ok else None for v, ok in zip(y.tolist(), finite.tolist(), strict=True)],
        "x_min": x_min,
        "x_max": x_max,
    }
