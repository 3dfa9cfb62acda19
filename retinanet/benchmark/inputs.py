"""The images a speed benchmark times, pre-processed on the host as the reference's data loader hands them over."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from retinanet.config import ModelConfig
from retinanet.data.images import read_bgr
from retinanet.data.preprocess import prepare


def host_loader(cfg: ModelConfig, paths: Sequence[str | Path] | None = None) -> Callable[[int], tuple]:
    """load(i) -> image i (cycling through `paths`; the bundled photo when None) resized, normalised, unpadded,
    on the CPU: (3xHxW tensor, ImageMeta)."""
    if paths is None:
        from retinanet.assets import SAMPLE_IMAGE

        sample = prepare(read_bgr(SAMPLE_IMAGE), cfg, "cpu")
        return lambda i: sample
    return lambda i: prepare(read_bgr(paths[i % len(paths)]), cfg, "cpu")
