"""The test pipeline: keep-ratio resize to 1333x800, normalise, pad to a multiple of 32.

Resize follows mmcv's imrescale: the scale factor from the long and short edge limits, sizes rounded with
int(x + 0.5), OpenCV bilinear on uint8 (torch or PIL interpolation differ by a grey level), and separate width and
height factors. Normalisation happens before padding, so the padding is 0 in normalised space.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from retinanet.config import TEST_SCALE, ModelConfig
from retinanet.data.image_meta import ImageMeta
from retinanet.errors import ImageError


def rescale_size(w: int, h: int, scale=TEST_SCALE) -> tuple[int, int]:
    """(new_w, new_h) of a keep-ratio resize that fits the long edge in max(scale), the short in min(scale).

    ImageError when a side would round to 0 pixels (a 1x10000 strip): OpenCV cannot resize to that, and the
    reference (mmcv's imrescale) crashes on it. Every resize size comes from here, so predict, eval, training,
    the device path and bench all refuse such an image the same way."""
    long_edge, short_edge = max(scale), min(scale)
    new_w = new_h = 0
    if w >= 1 and h >= 1:
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
        new_w, new_h = int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)
    if new_w < 1 or new_h < 1:
        raise ImageError(f"{w}x{h} resizes to 0 pixels on a side: too thin to detect in "
                         f"(scale {long_edge}x{short_edge})")
    return new_w, new_h


def resize(img: np.ndarray, scale=TEST_SCALE) -> tuple[np.ndarray, tuple[float, float]]:
    h, w = img.shape[:2]
    new_w, new_h = rescale_size(w, h, scale)
    return resize_to(img, new_w, new_h), (new_w / w, new_h / h)


def resize_to(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """The reference's interpolation: OpenCV bilinear on uint8 (device_resize reproduces it bit for bit)."""
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def upload(img: np.ndarray | torch.Tensor, device="cpu") -> torch.Tensor:
    """A uint8 image onto `device` as uint8 (a quarter of float32's bytes). To a GPU it goes through pinned host
    memory (PyTorch's caching host allocator keeps the block until the copy is done), so the copy is truly
    asynchronous and the host goes on."""
    x = img if isinstance(img, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(img))
    if torch.device(device).type == "cuda" and not x.is_pinned():  # a DataLoader may have pinned it already
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def normalize(img_bgr: np.ndarray | torch.Tensor, cfg: ModelConfig, device="cpu") -> torch.Tensor:
    """uint8 HxWx3 BGR (an array, or a tensor already uploaded) -> float32 3xHxW, colour-swapped when the model
    wants RGB, minus mean, over std; computed on `device` (the same IEEE operations on the CPU and a GPU)."""
    x = img_bgr if isinstance(img_bgr, torch.Tensor) else upload(img_bgr, device)
    x = x.permute(2, 0, 1).float()
    if cfg.to_rgb:
        x = x.flip(0)
    mean, std = _channel_constants(tuple(cfg.mean), tuple(cfg.std), x.device)
    return (x - mean) / std


@functools.lru_cache(maxsize=16)
def _channel_constants(mean: tuple, std: tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as (3, 1, 1) float32 tensors on `device`, made once: building them from a list per image would
    be a synchronising host-to-GPU copy that stalls the pipeline."""
    with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in and out of inference mode
        return (torch.tensor(mean, dtype=torch.float32).view(3, 1, 1).to(device),
                torch.tensor(std, dtype=torch.float32).view(3, 1, 1).to(device))


def padded_size(h: int, w: int, divisor: int = 32) -> tuple[int, int]:
    return -(-h // divisor) * divisor, -(-w // divisor) * divisor


def planned_meta(h: int, w: int, cfg: ModelConfig) -> ImageMeta:
    """The geometry the test pipeline gives an h x w image (what resize_with_meta's resize will produce)."""
    new_w, new_h = rescale_size(w, h, cfg.scale)
    return ImageMeta((h, w), (new_h, new_w), padded_size(new_h, new_w, cfg.size_divisor), (new_w / w, new_h / h))


def resize_with_meta(img_bgr: np.ndarray, cfg: ModelConfig) -> tuple[np.ndarray, ImageMeta]:
    """The host part: one decoded image -> (resized uint8 BGR, its geometry)."""
    meta = planned_meta(*img_bgr.shape[:2], cfg)
    return resize_to(img_bgr, meta.img_shape[1], meta.img_shape[0]), meta


def prepare(img_bgr: np.ndarray, cfg: ModelConfig, device="cpu") -> tuple[torch.Tensor, ImageMeta]:
    """One decoded image -> (normalised 3xHxW tensor, unpadded, and its geometry)."""
    resized, meta = resize_with_meta(img_bgr, cfg)
    return normalize(resized, cfg, device), meta


def collate(tensors: list[torch.Tensor], divisor: int = 32) -> torch.Tensor:
    """Zero-pad (right and bottom) to the largest size in the batch, rounded up to a multiple of `divisor`."""
    h = max(t.shape[1] for t in tensors)
    w = max(t.shape[2] for t in tensors)
    ph, pw = padded_size(h, w, divisor)
    batch = tensors[0].new_zeros((len(tensors), 3, ph, pw))
    for i, t in enumerate(tensors):
        batch[i, :, : t.shape[1], : t.shape[2]].copy_(t)
    return batch
