"""Painting shapes in order: boxes of the visible pixels, occlusion, truncation, difficulty."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.data.shapes.compositor import ShapeCompositor, ShapeLayer, draw_shapes, render_layer
from app.data.shapes.geometry import CLASSES, ShapeSpec

WHITE = (255, 255, 255)


def _pixels_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _alone(spec: ShapeSpec, shape: tuple[int, int]) -> np.ndarray:
    """Mask of the pixels a white shape turns >= 128 on black: its coverage >= 0.5."""
    image = np.zeros((*shape, 3), np.uint8)
    draw_shapes(image, [spec])
    return image[..., 0] >= 128


def _block(x0: int, y0: int, h: int, w: int, fill: tuple[int, int, int] = WHITE) -> ShapeLayer:
    """A hand-made layer: a fully covered h x w rectangle whose top-left pixel is (x0, y0)."""
    spec = ShapeSpec("square", (0.0, 0.0), 1.0, 0.0, fill)
    return ShapeLayer(spec, x0, y0, np.ones((h, w), np.float32), None, np.ones((h, w), bool), h * w)


@pytest.mark.parametrize("label", CLASSES)
@pytest.mark.parametrize(("center", "truncated"), [((60.3, 50.7), False), ((3.0, 95.0), True)])
def test_box_is_the_bounding_box_of_the_shape_pixels(
    label: str, center: tuple[float, float], truncated: bool
) -> None:
    spec = ShapeSpec(label, center, 30.0, 0.7, WHITE, WHITE, 2)
    image = np.zeros((100, 120, 3), np.uint8)
    (obj,) = draw_shapes(image, [spec])
    assert obj.box == _pixels_box(image[..., 0] >= 128)
    assert obj.truncated == truncated
    assert obj.label == label


def test_box_of_an_occluded_shape_covers_only_its_visible_pixels() -> None:
    back = ShapeSpec("square", (50.0, 50.0), 35.0, 0.0, WHITE)
    front = ShapeSpec("hexagon", (35.0, 50.0), 30.0, 0.0, WHITE)
    image = np.zeros((100, 100, 3), np.uint8)
    first, second = draw_shapes(image, [back, front])
    visible = _alone(back, (100, 100)) & ~_alone(front, (100, 100))
    assert first.box == _pixels_box(visible)
    assert second.box == _pixels_box(_alone(front, (100, 100)))
    assert 0 < first.visible_fraction < 1 and second.visible_fraction == 1.0
    assert not first.truncated


def test_mostly_hidden_shape_is_difficult_and_hidden_shape_is_dropped() -> None:
    small = ShapeSpec("circle", (50.0, 50.0), 20.0, 0.0, WHITE)
    big = ShapeSpec("square", (50.0, 30.0), 40.0, math.pi / 4, WHITE)
    image = np.zeros((100, 100, 3), np.uint8)
    objects = draw_shapes(image, [small, big])
    assert objects[0].difficult and objects[0].visible_fraction < 0.4
    huge = ShapeSpec("square", (50.0, 50.0), 70.0, math.pi / 4, WHITE)
    assert [o.label for o in draw_shapes(image, [small, huge])] == ["square"]


def test_rendered_layer_is_the_polygon_on_a_canvas_in_image_coordinates() -> None:
    # An axis-aligned square (half-diagonal 20 * sqrt(2)) with edges at x, y = 30 and 70.
    spec = ShapeSpec("square", (50.0, 50.0), 20.0 * math.sqrt(2), math.pi / 4, WHITE)
    layer = render_layer(spec)
    assert layer.outline_alpha is None
    assert layer.fill_alpha.dtype == np.float32
    assert layer.fill_alpha.min() >= 0.0 and layer.fill_alpha.max() <= 1.0
    np.testing.assert_array_equal(layer.mask, layer.fill_alpha >= 128 / 255)
    assert layer.full_count == int(layer.mask.sum())
    canvas = np.zeros((100, 100), bool)
    h, w = layer.mask.shape
    canvas[layer.y0 : layer.y0 + h, layer.x0 : layer.x0 + w] = layer.mask
    assert canvas[31:70, 31:70].all()  # pixel centres inside the square
    assert not canvas[:29].any() and not canvas[72:].any()  # centres over a pixel outside
    assert not canvas[:, :29].any() and not canvas[:, 72:].any()


def test_outline_widens_the_mask() -> None:
    plain = ShapeSpec("hexagon", (40.0, 40.0), 20.0, 0.2, WHITE)
    outlined = ShapeSpec("hexagon", (40.0, 40.0), 20.0, 0.2, WHITE, (0, 0, 0), 3)
    a, b = render_layer(plain), render_layer(outlined)
    assert b.outline_alpha is not None and b.outline_alpha.shape == b.mask.shape
    assert b.full_count > a.full_count


def test_visibility_of_hand_made_blocks() -> None:
    compositor = ShapeCompositor(np.zeros((10, 20, 3), np.uint8))
    first = _block(0, 0, 4, 4)
    assert compositor.visibility_if_added(first) == (1.0, 1.0)
    compositor.add(first)
    second = _block(2, 0, 4, 4)  # hides columns 2..3 of the first: 8 of its 16 pixels
    assert compositor.visibility_if_added(second) == (1.0, 0.5)
    compositor.add(second)
    assert compositor.visible == [8, 16]
    assert compositor.visibility_if_added(_block(18, 8, 4, 4)) == (0.25, 1.0)  # 2 x 2 inside
    assert compositor.visibility_if_added(_block(30, 0, 4, 4)) == (0.0, 1.0)  # wholly outside


def test_overlap_slices_and_pixels_under() -> None:
    image = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    compositor = ShapeCompositor(image)
    layer = _block(-1, 8, 4, 3)  # columns -1..1, rows 8..11 of a 10 x 20 image
    assert compositor.overlap(layer) == (slice(8, 10), slice(0, 2), slice(0, 2), slice(1, 3))
    np.testing.assert_array_equal(compositor.pixels_under(layer), image[8:10, 0:2].reshape(-1, 3))
    assert compositor.overlap(_block(20, 0, 2, 2)) is None
    assert compositor.pixels_under(_block(20, 0, 2, 2)).shape == (0, 3)


def test_add_blends_fill_then_outline_by_their_coverage() -> None:
    image = np.full((4, 4, 3), 100, np.uint8)
    spec = ShapeSpec("square", (0.0, 0.0), 1.0, 0.0, (200, 0, 100), (0, 0, 0), 1)
    fill = np.full((2, 2), 0.5, np.float32)
    outline = np.array([[0.0, 1.0], [0.0, 0.5]], np.float32)
    layer = ShapeLayer(spec, 1, 1, fill, outline, np.ones((2, 2), bool), 4)
    ShapeCompositor(image).add(layer)
    # fill: 100 * 0.5 + (200, 0, 100) * 0.5 = (150, 50, 100); then outline towards black.
    np.testing.assert_array_equal(image[1, 1], [150, 50, 100])
    np.testing.assert_array_equal(image[1, 2], [0, 0, 0])
    np.testing.assert_array_equal(image[2, 2], [75, 25, 50])
    np.testing.assert_array_equal(image[0, 0], [100, 100, 100])  # outside the layer: untouched


def test_objects_of_hand_made_blocks() -> None:
    compositor = ShapeCompositor(np.zeros((10, 20, 3), np.uint8))
    compositor.add(_block(0, 0, 4, 4))
    compositor.add(_block(2, 0, 4, 4))
    compositor.add(_block(18, 7, 4, 4))  # truncated: 2 x 3 of 16 pixels inside
    compositor.add(_block(30, 0, 4, 4))  # wholly outside: not annotated
    first, second, third = compositor.objects()
    assert (first.box, first.visible_fraction, first.truncated) == ((0, 0, 1, 3), 0.5, False)
    assert first.difficult  # 2 pixels wide, under DIFFICULT_MIN_SIDE
    assert (second.box, second.visible_fraction) == ((2, 0, 5, 3), 1.0)
    assert (third.box, third.truncated, third.visible_fraction) == ((18, 7, 19, 9), True, 6 / 16)


def test_rejects_an_image_that_is_not_uint8_bgr() -> None:
    with pytest.raises(ValueError, match=r"expected a uint8 image \[H, W, 3\]"):
        ShapeCompositor(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        ShapeCompositor(np.zeros((4, 4, 3), np.float32))
