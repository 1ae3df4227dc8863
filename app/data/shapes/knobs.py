"""The generator's realism knobs: how small, how crowded, how hidden, how camouflaged.

The defaults (:data:`PRESETS` ``["v1"]``) are the generator as it always was: the same seed
with default knobs gives the same bytes (``GENERATOR_VERSION`` 1). A knob draws random numbers
only when it is active, so turning one on changes the images it touches (and, through the
shared random stream, every draw after it), never the default images. The knobs are therefore
part of what defines a dataset, with the seed and the generator version; ``shapes.json``
records them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.data.shapes.geometry import MIN_SHAPE_DIAMETER


class GeneratorKnobs(BaseModel):
    """Realism knobs of the shapes generator (defaults: the v1 images, byte for byte)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    min_diameter: float = Field(default=MIN_SHAPE_DIAMETER, ge=8.0, le=200.0)
    """Smallest circumscribed diameter of a shape, pixels (log-uniform up to 0.9 x the short
    image side)."""
    max_shapes: int = Field(default=6, ge=1, le=20)
    """Shapes per image are drawn uniformly from 1 to this."""
    heavy_occlusion: float = Field(default=0.15, ge=0.0, le=1.0)
    """Probability that a shape may be mostly hidden, or hide earlier ones mostly: its
    placement then only needs ``heavy_min_visible`` instead of ``min_visible``."""
    min_visible: float = Field(default=0.6, gt=0.0, le=1.0)
    """Fraction of its full mask a new shape, and every earlier shape, must keep visible."""
    heavy_min_visible: float = Field(default=0.12, gt=0.0, le=1.0)
    """The same fraction for a shape drawn as heavily occluding."""
    min_contrast: float = Field(default=90.0, ge=0.0, le=765.0)
    """A normal shape's fill is at least this L1 distance (BGR) from the mean of the pixels
    under it (20 tries, then the last colour)."""
    low_contrast: float = Field(default=0.0, ge=0.0, le=1.0)
    """Probability that a shape is camouflaged: its fill (and outline) lie at an L1 distance in
    ``low_contrast_band`` from the mean of the pixels under it."""
    low_contrast_band: tuple[float, float] = (20.0, 70.0)
    """L1 distance range (BGR) of a camouflaged shape's colours to the pixels under it."""
    background_split: bool = False
    """Keep the photographs apart between train, val and test (``backgrounds.PHOTO_SPLITS``):
    no test photograph is ever seen in training."""
    lookalikes: float = Field(default=0.0, ge=0.0, le=1.0)
    """Probability that a clutter item is a look-alike polygon of no class (regular pentagon,
    heptagon or octagon, oblong rectangle, rhombus, 4- or 6-pointed star, T or L); never
    annotated."""

    @model_validator(mode="after")
    def _check_ranges(self) -> GeneratorKnobs:
        low, high = self.low_contrast_band
        if not 0.0 <= low < high <= 255.0:
            raise ValueError(
                f"expected 0 <= low < high <= 255 in low_contrast_band, got {(low, high)}"
            )
        if self.heavy_min_visible > self.min_visible:
            raise ValueError(
                f"expected heavy_min_visible <= min_visible, got {self.heavy_min_visible} > "
                f"{self.min_visible}"
            )
        return self

    @property
    def is_default(self) -> bool:
        """True when every knob is at its v1 default."""
        return self == GeneratorKnobs()


PRESETS: dict[str, GeneratorKnobs] = {
    "v1": GeneratorKnobs(),
    "realistic": GeneratorKnobs(
        min_diameter=20.0,
        max_shapes=8,
        heavy_occlusion=0.35,
        low_contrast=0.25,
        background_split=True,
        lookalikes=0.5,
    ),
}
"""Named knob sets: ``v1`` (the defaults, the images the shipped model trained on) and
``realistic`` (smaller, more crowded, more hidden and camouflaged shapes, look-alike
distractors, photographs kept apart between splits)."""


def knobs_for(preset: str) -> GeneratorKnobs:
    """The knobs of a named preset; ValueError naming the presets for an unknown name."""
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"expected a preset in {sorted(PRESETS)}, got {preset!r}") from None
