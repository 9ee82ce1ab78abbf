"""Downsampling keeps what a chart must show: extremes, gaps, the ends, and the window asked for."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runstone.errors import UsageError
from runstone.ui.series import MAX_POINTS, window


def _window(values: np.ndarray, **kw: object) -> dict:
    n = len(values)
    return window(np.arange(n), values, np.arange(n) * 10, start_ms=0, **kw)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=3000),
    st.integers(min_value=2, max_value=600),
)
def test_extremes_gaps_and_ends_survive(values: list[float], points: int) -> None:
    y = np.array(values, dtype=np.float64)
    out = _window(y, points=points)
    assert out["returned"] <= max(points, 5) and out["total"] == len(y)
    assert out["x"] == sorted(out["x"]) and out["x"][0] == 0 and out["x"][-1] == len(y) - 1
    finite = y[np.isfinite(y)]
    shown = [v for v in out["y"] if v is not None]
    if len(finite):
        assert max(shown) == finite.max() and min(shown) == finite.min()
    if not np.isfinite(y).all():
        assert None in out["y"]  # a NaN or infinity is a gap, wherever it is


def test_spike_next_to_a_nan_keeps_its_height() -> None:
    y = np.zeros(10_000)
    y[5003], y[5004] = 100.0, np.nan
    out = _window(y, points=100)
    assert max(v for v in out["y"] if v is not None) == 100.0 and None in out["y"]


def test_window_between_two_points_returns_both() -> None:
    out = window(np.arange(0, 10_000, 1000), np.arange(10.0), np.arange(10), start_ms=0, lo=4200, hi=4700)
    assert out["x"] == [4000, 5000] and out["y"] == [4.0, 5.0]


def test_window_bounds_and_cap() -> None:
    y = np.arange(100_000, dtype=np.float64)
    out = _window(y, points=10**9, lo=100, hi=200)
    assert out["x"][0] == 99 and out["x"][-1] == 201 and not out["downsampled"]
    assert _window(y, points=10**9)["returned"] <= MAX_POINTS
    assert _window(y, lo=10**7)["x"] == [99_999]  # past the end: the last point
    with pytest.raises(UsageError, match="past hi"):
        _window(y, lo=5, hi=1)


def test_time_axis_in_time_order_even_when_the_clock_stepped_back() -> None:
    stamps = np.array([1000, 2000, 1500, 3000])
    out = window(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]), stamps, start_ms=1000, axis="time")
    assert out["x"] == [0.0, 0.5, 1.0, 2.0] and out["y"] == [1.0, 3.0, 2.0, 4.0]
