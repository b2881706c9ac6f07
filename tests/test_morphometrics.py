"""Morphometrics against analytic ellipses (area pi*a*b, axes 2a/2b, Ramanujan perimeter)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sperm_d2.inference.morphometrics import (
    WHO_ELLIPTICITY,
    WHO_LENGTH_UM,
    WHO_WIDTH_UM,
    measure_mask,
    measure_masks,
)


def ellipse_mask(a: float, b: float, angle: float, size: int = 160) -> np.ndarray:
    """Pixels whose centres lie inside the ellipse with semi-axes a, b rotated by ``angle`` deg."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    t = math.radians(angle)
    u = x * math.cos(t) + y * math.sin(t)
    v = -x * math.sin(t) + y * math.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def ramanujan(a: float, b: float) -> float:
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    a=st.floats(10, 60),
    ratio=st.floats(1.0, 3.0),
    angle=st.floats(0, 180),
)
def test_ellipse_measurements_match_analytic_values(a, ratio, angle):
    b = a / ratio
    m = measure_mask(ellipse_mask(a, b, angle))
    # Digitisation moves the area by up to ~1/4 px per unit of perimeter (pixel centres in/out).
    assert m.area_px == pytest.approx(math.pi * a * b, rel=0.02, abs=0.25 * ramanujan(a, b))
    assert m.length_px == pytest.approx(2 * a, rel=0.04, abs=1.0)
    assert m.width_px == pytest.approx(2 * b, rel=0.04, abs=1.0)
    assert m.ellipticity == pytest.approx(m.length_px / m.width_px)
    if b >= 8:  # a one-pixel width error matters less on wider heads
        assert m.ellipticity == pytest.approx(a / b, rel=0.08)
    assert m.perimeter_px == pytest.approx(ramanujan(a, b), rel=0.08)


def test_orientation_follows_the_major_axis():
    m = measure_mask(ellipse_mask(40, 15, 0))
    assert abs(m.angle_deg) < 2
    m = measure_mask(ellipse_mask(40, 15, 90))
    assert abs(abs(m.angle_deg) - 90) < 2


def test_micrometres_and_who_flags():
    # A normal head: 4.2 x 2.9 um at 0.1 um/px -> semi-axes 21 and 14.5 px (ratio 1.45).
    normal = measure_mask(ellipse_mask(21, 14.5, 30), um_per_px=0.1)
    assert normal.length_um == pytest.approx(4.2, rel=0.04)
    assert normal.width_um == pytest.approx(2.9, rel=0.04)
    assert normal.area_um2 == pytest.approx(normal.area_px * 0.01)
    assert normal.perimeter_um == pytest.approx(normal.perimeter_px * 0.1)
    assert normal.who_flags == []
    # A tapered head: long and thin -> length and ratio above the ranges, width below.
    tapered = measure_mask(ellipse_mask(30, 10, 0), um_per_px=0.1)
    assert f"length>{WHO_LENGTH_UM[1]}um" in tapered.who_flags
    assert f"width<{WHO_WIDTH_UM[0]}um" in tapered.who_flags
    assert f"ellipticity>{WHO_ELLIPTICITY[1]}" in tapered.who_flags
    # Without a pixel size only the (scale-free) ratio is checked.
    px_only = measure_mask(ellipse_mask(30, 10, 0))
    assert px_only.length_um is None and px_only.who_flags == [f"ellipticity>{WHO_ELLIPTICITY[1]}"]


def test_empty_and_single_pixel_masks():
    empty = measure_mask(np.zeros((10, 10), bool))
    assert empty.area_px == 0 and empty.who_flags == ["empty"]
    dot = np.zeros((10, 10), bool)
    dot[5, 5] = True
    m = measure_mask(dot)
    assert m.area_px == 1 and m.length_px == pytest.approx(m.width_px)
    row = m.as_row()
    assert set(row) >= {"area_px", "length_px", "ellipticity", "who_flags"}
    assert len(measure_masks(np.stack([dot, dot]))) == 2
