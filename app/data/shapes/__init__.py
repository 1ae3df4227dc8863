"""A generated object-detection dataset of regular shapes, written in Pascal VOC layout.

Six classes, in this order: :data:`CLASSES` = circle, square, triangle, star (five-pointed,
pentagram proportions), hexagon, cross (a plus sign made of five equal squares). Every shape is
regular and never stretched; it has any rotation, any fill colour, and an optional outline.

- :mod:`~app.data.shapes.geometry`: the classes as polygons, :class:`ShapeSpec`.
- :mod:`~app.data.shapes.compositor`: painting shapes in order, and the annotation rules
  (visible mask, box, truncated, difficult) in :class:`ShapeCompositor`.
- :mod:`~app.data.shapes.backgrounds`: photographs, procedural textures, clutter.
- :mod:`~app.data.shapes.lookalikes`: distractors that resemble a class without being one.
- :mod:`~app.data.shapes.knobs`: the realism knobs (:class:`GeneratorKnobs`) and their
  :data:`PRESETS` (``v1``: the defaults; ``realistic``).
- :mod:`~app.data.shapes.dataset`: one image (:func:`render_sample`) and the whole dataset
  (:func:`generate_shapes_dataset`), deterministic for a seed and knobs.

docs/data.md describes the generator, every knob and the annotation rules.
"""

from app.data.shapes.backgrounds import PHOTO_SPLITS, background_sources
from app.data.shapes.compositor import (
    DIFFICULT_MIN_SIDE,
    DIFFICULT_VISIBLE_FRACTION,
    ShapeCompositor,
    ShapeObject,
    draw_shapes,
)
from app.data.shapes.dataset import (
    GENERATOR_VERSION,
    SPLITS,
    Sample,
    encode_jpeg,
    generate_shapes_dataset,
    image_id_for,
    render_sample,
    voc_xml,
)
from app.data.shapes.geometry import CLASSES, MIN_SHAPE_DIAMETER, ShapeSpec, shape_polygon
from app.data.shapes.knobs import PRESETS, GeneratorKnobs, knobs_for

__all__ = [
    "CLASSES",
    "DIFFICULT_MIN_SIDE",
    "DIFFICULT_VISIBLE_FRACTION",
    "GENERATOR_VERSION",
    "MIN_SHAPE_DIAMETER",
    "PHOTO_SPLITS",
    "PRESETS",
    "SPLITS",
    "GeneratorKnobs",
    "Sample",
    "ShapeCompositor",
    "ShapeObject",
    "ShapeSpec",
    "background_sources",
    "draw_shapes",
    "encode_jpeg",
    "generate_shapes_dataset",
    "image_id_for",
    "knobs_for",
    "render_sample",
    "shape_polygon",
    "voc_xml",
]
