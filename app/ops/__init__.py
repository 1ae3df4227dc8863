"""Pure tensor ops: pyramid pooling, window projection, box coding (no models, no I/O)."""

from app.ops.boxes import (
    ResizePlan,
    choose_scale_per_window,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    resize_plan,
    scaled_size,
)
from app.ops.spp import (
    DEFAULT_LEVELS,
    project_windows,
    roi_spp,
    spatial_pyramid_pool,
)

__all__ = [
    "DEFAULT_LEVELS",
    "ResizePlan",
    "choose_scale_per_window",
    "clip_boxes",
    "decode_boxes",
    "encode_boxes",
    "project_windows",
    "resize_plan",
    "roi_spp",
    "scaled_size",
    "spatial_pyramid_pool",
]
