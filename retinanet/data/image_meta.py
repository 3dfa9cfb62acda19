"""ImageMeta: the geometry pre-processing produces and post-processing needs to map boxes back."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ImageMeta:
    """Geometry of one preprocessed image: (h, w) of the original, the resized image and its padded size."""

    ori_shape: tuple[int, int]
    img_shape: tuple[int, int]
    pad_shape: tuple[int, int]
    scale_factor: tuple[float, float]  # (w_scale, h_scale) = new_w / w, new_h / h
