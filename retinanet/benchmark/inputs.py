"""The images a speed benchmark times, pre-processed on the host as the reference's data loader hands them over."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from retinanet.config import ModelConfig
from retinanet.data.images import read_bgr, read_image_bytes
from retinanet.data.preprocess import prepare, resize_with_meta
from retinanet.errors import ArgumentError, ImageError


def loader_for(detector, paths: Sequence[str | Path] | None = None) -> Callable[[int], tuple]:
    """The host_loader time_inference times `detector` with: on CUDA uint8 images in pinned memory, as rdet eval's
    DataLoader (pin_memory=True) hands them over (the reference's loader did not pin: its timed copy included
    the driver staging pageable memory); normalised float tensors elsewhere."""
    cuda = detector.device.type == "cuda"
    return host_loader(detector.cfg, paths, uint8=cuda, pinned=cuda)


def host_loader(cfg: ModelConfig, paths: Sequence[str | Path] | None = None,
                uint8: bool = False, pinned: bool = False) -> Callable[[int], tuple]:
    """load(i) -> image i (cycling through `paths`; the bundled photo when None) resized, normalised, unpadded,
    on the CPU: (3xHxW tensor, ImageMeta). `uint8` (for a GPU): resized only, (HxWx3 uint8 BGR array, ImageMeta);
    the timed region uploads it (a quarter of the bytes) and normalises it on the device. `pinned` (with uint8):
    the array as a uint8 tensor in pinned memory."""
    paths = _path_list(paths)
    if uint8 and pinned:
        step = lambda bgr, c: _pinned(*resize_with_meta(bgr, c))  # noqa: E731
    else:
        step = resize_with_meta if uint8 else (lambda bgr, c: prepare(bgr, c, "cpu"))
    if paths is None:
        from retinanet.assets import SAMPLE_IMAGE

        sample = step(read_bgr(SAMPLE_IMAGE), cfg)
        return lambda i: sample

    def load(i: int) -> tuple:
        path = paths[i % len(paths)]
        bgr = read_bgr(path)
        try:
            return step(bgr, cfg)
        except ImageError as e:  # decoded, but too thin to resize: say which file
            raise ImageError(f"{path}: {e}") from None
    return load


def _pinned(array, meta) -> tuple:
    import torch

    return torch.from_numpy(array).pin_memory(), meta


def encoded_images(paths: Sequence[str | Path] | None = None, limit: int = 50) -> list[bytes]:
    """The files' bytes (the bundled photo when None), for timings that include decoding."""
    paths = _path_list(paths)
    if paths is None:
        from retinanet.assets import SAMPLE_IMAGE

        paths = [SAMPLE_IMAGE]
    return [read_image_bytes(p) for p in paths[:limit]]


def _path_list(paths) -> list | None:
    """`paths` as a list: one path is one file (a str was indexed letter by letter), none is an error (an empty
    list failed as a division by zero when the first image was loaded)."""
    if paths is None:
        return None
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    paths = list(paths)
    if not paths:
        raise ArgumentError("paths is empty: give image files, or None for the bundled photo")
    return paths
