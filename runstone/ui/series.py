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

__all__ = ["MAX_POINTS", "window"]

#: the most points one response carries (about two per pixel of a wide chart)
MAX_POINTS = 4000


def _buckets(values: Any, points: int) -> Any:
    """Indices of each bucket's minimum and maximum, ascending, plus the first and last index."""
    import numpy as np

    n = len(values)
    buckets = max(1, points // 2)
    size = math.ceil(n / buckets)
    buckets = math.ceil(n / size)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = values
    grid = padded.reshape(buckets, size)
    finite = np.isfinite(grid)
    # a bucket's NaN or infinity is a gap worth showing: it wins the bucket's "max" slot
    low = np.where(finite, grid, np.inf).argmin(axis=1)
    high = np.where(finite, grid, -np.inf).argmax(axis=1)
    has_gap = ~finite.all(axis=1)
    gap_at = (~finite).argmax(axis=1)
    high = np.where(has_gap & (np.arange(buckets) * size + gap_at < n), gap_at, high)
    base = np.arange(buckets) * size
    chosen = np.concatenate([base + np.minimum(low, high), base + np.maximum(low, high), [0, n - 1]])
    chosen = chosen[chosen < n]
    return np.unique(chosen)


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
        points: the most points to return (capped at ``MAX_POINTS``).
        lo, hi: the x range to show (None: from the start / to the end). One
            point beyond each end is kept, so the line reaches the chart's edges.
    """
    import numpy as np

    if axis == "time":
        x = (np.asarray(timestamps_ms, dtype=np.float64) - start_ms) / 1000.0
    else:
        x = np.asarray(steps)
    y = np.asarray(values, dtype=np.float64)
    total = len(x)
    if total:
        x_min, x_max = float(x.min()), float(x.max())
    else:
        x_min = x_max = 0.0
    if lo is not None or hi is not None:
        inside = np.ones(total, dtype=bool)
        if lo is not None:
            inside &= x >= lo
        if hi is not None:
            inside &= x <= hi
        found = np.flatnonzero(inside)
        if len(found):
            first, last = max(0, found[0] - 1), min(total - 1, found[-1] + 1)
            x, y = x[first : last + 1], y[first : last + 1]
        else:
            x, y = x[:0], y[:0]
    points = max(2, min(points, MAX_POINTS))
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
