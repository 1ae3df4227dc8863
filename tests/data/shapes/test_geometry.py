"""Shape polygons: regular, correctly proportioned, rotated as documented; fixed-point pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.data.shapes.geometry import CLASSES, shape_polygon, to_fixed_point


def _area(pts: np.ndarray) -> float:
    """Shoelace formula."""
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@pytest.mark.parametrize("label", CLASSES)
def test_shapes_are_regular(label: str) -> None:
    pts = shape_polygon(label, 50.0, 0.3)
    sides = np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1)
    np.testing.assert_allclose(sides, sides[0], rtol=1e-9)  # equal sides (star, cross too)
    assert np.linalg.norm(pts, axis=1).max() == pytest.approx(50.0)
    assert (
        len(pts)
        >= {"triangle": 3, "square": 4, "hexagon": 6, "star": 10, "cross": 12, "circle": 24}[label]
    )


@pytest.mark.parametrize("label", CLASSES)
def test_angle_rotates_counter_clockwise_about_the_origin(label: str) -> None:
    angle = 0.7
    c, s = math.cos(angle), math.sin(angle)
    upright = shape_polygon(label, 40.0, 0.0)
    rotated = np.stack(
        [upright[:, 0] * c - upright[:, 1] * s, upright[:, 0] * s + upright[:, 1] * c], 1
    )
    np.testing.assert_allclose(shape_polygon(label, 40.0, angle), rotated, atol=1e-9)


def test_cross_is_five_unit_squares_by_hand() -> None:
    # radius sqrt(10): arm half-length 3, half-width 1, so five 2 x 2 squares, area 20.
    pts = shape_polygon("cross", math.sqrt(10.0), 0.0)
    assert len(pts) == 12
    assert _area(pts) == pytest.approx(20.0)
    assert {(round(x, 9), round(y, 9)) for x, y in pts} >= {(1.0, 3.0), (1.0, 1.0), (3.0, 1.0)}


def test_star_inner_vertices_lie_on_the_pentagram_lines() -> None:
    pts = shape_polygon("star", 1.0, 0.0)
    outer, inner = pts[0::2], pts[1::2]
    np.testing.assert_allclose(np.linalg.norm(outer, axis=1), 1.0)
    # The first inner vertex (at 36 degrees) is where the chord from outer vertex 0 to outer
    # vertex 2 (0 -> 144 degrees) crosses the chord from outer vertex 1 to outer vertex 4.
    for a, b in ((outer[0], outer[2]), (outer[1], outer[4])):
        d, p = b - a, inner[0] - a
        assert d[0] * p[1] - d[1] * p[0] == pytest.approx(0.0, abs=1e-12)


def test_regular_polygons_by_hand() -> None:
    np.testing.assert_allclose(
        shape_polygon("square", 2.0, 0.0), [[2, 0], [0, 2], [-2, 0], [0, -2]], atol=1e-12
    )
    assert _area(shape_polygon("hexagon", 1.0, 0.0)) == pytest.approx(1.5 * math.sqrt(3))
    assert _area(shape_polygon("triangle", 1.0, 0.0)) == pytest.approx(0.75 * math.sqrt(3))


def test_circle_vertex_count_grows_with_the_radius_within_bounds() -> None:
    assert len(shape_polygon("circle", 1.0, 0.0)) == 24
    assert len(shape_polygon("circle", 30.0, 0.0)) == int(2 * math.pi * 30 / 3)
    assert len(shape_polygon("circle", 1000.0, 0.0)) == 180


def test_unknown_label_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected a label in"):
        shape_polygon("ellipse", 10.0, 0.0)


def test_fixed_point_is_sixteenths_of_a_pixel() -> None:
    fixed = to_fixed_point(np.array([[1.5, 2.0625], [0.0, -3.25]]))
    assert fixed.dtype == np.int32
    np.testing.assert_array_equal(fixed, [[24, 33], [0, -52]])
