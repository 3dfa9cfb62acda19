"""OpenCV's bilinear resize of uint8 images (cv2.resize, INTER_LINEAR), bit for bit, as integer torch operations,
so a decoded image can be uploaded as it is and resized on the GPU.

The arithmetic, established by experiment against OpenCV 5.0.0 and 4.10.0 (x86-64 wheels; tests prove it here):
- Source coordinate of output pixel d: f = float32((d + 0.5) * scale - 0.5) with scale = 1 / (dst / src) in
  double; s = floor(f), frac = f - s in float32. Weights are 11-bit fixed point: w1 = rint(frac * 2048),
  w0 = rint((1 - frac) * 2048) (float32, ties to even), each rounded on its own.
- Horizontal pass (per row, to int32): h = p[s0] * w0 + p[s1] * w1. Columns left of the image (s < 0) or at the
  last one (s >= W - 1) take frac = 0 and s clamped, i.e. the border pixel with weight 2048.
- Vertical pass: frac is NOT reset at the borders; only the row indices are clamped to [0, H - 1], so the top and
  bottom rows of an upscale mix a row with itself under two weights (the two floors below make that differ from
  the row by up to a grey level).
- Vertical rounding is the SIMD kernel's for every pixel (no scalar tail shows in these builds):
  out = clamp((((h0 >> 4) * b0 >> 16) + ((h1 >> 4) * b1 >> 16) + 2) >> 2, 0, 255).
- The exact 2x downscale OpenCV hands to INTER_AREA ((a + b + c + d + 2) >> 2) gives the same numbers: its
  weights are 1024 each and the formula above reduces to that average.
Other builds (an FMA-contracted coordinate, a scalar tail, another HAL) could differ, hence matches_opencv().
"""
from __future__ import annotations

import functools

import numpy as np
import torch

COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS: weights in units of 1/2048
COEF_ONE = 1 << COEF_BITS


def _axis_taps(src: int, dst: int, clamp_border_weights: bool) -> tuple[np.ndarray, ...]:
    """(first index, second index, first weight, second weight) per output position along one axis, computed on
    the host in the same IEEE double and float32 steps as OpenCV (numpy never fuses them into an FMA)."""
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    frac = f - s.astype(np.float32)  # float32 subtraction, rounded as OpenCV's `fx -= sx`
    if clamp_border_weights:  # horizontal only: outside the image means the border pixel, weight 2048
        outside = (s < 0) | (s >= src - 1)
        frac = np.where(outside, np.float32(0), frac)
        s = np.clip(s, 0, src - 1)
    w1 = np.rint(frac * np.float32(COEF_ONE))
    w0 = np.rint((np.float32(1) - frac) * np.float32(COEF_ONE))
    if (w0 + w1 > COEF_ONE).any():  # never seen (ties go to even); resize_uint8 skips saturation on this bound
        raise ArithmeticError(f"resize weights above {COEF_ONE} for {src} -> {dst}")
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), w0.astype(np.int32), w1.astype(np.int32)


@functools.lru_cache(maxsize=512)
def _taps(h: int, w: int, new_h: int, new_w: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Index and weight tensors for one (source size, target size) on `device`, made once per size (about 40 KB
    at COCO's sizes; COCO val2017 has a few hundred sizes) and sent without waiting: a copy from pageable memory
    would make the host wait for everything queued on the GPU before it."""
    x0, x1, xw0, xw1 = _axis_taps(w, new_w, clamp_border_weights=True)
    y0, y1, yw0, yw1 = _axis_taps(h, new_h, clamp_border_weights=False)
    rows = np.concatenate([y0, y1])  # both vertical taps in one gather
    with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in and out of inference mode
        def put(a, shape):
            host = torch.from_numpy(np.ascontiguousarray(a)).reshape(shape)
            if device.type != "cuda":
                return host.to(device)
            return host.pin_memory().to(device, non_blocking=True)  # the pinned block lives until the copy is done
        return (put(rows, (-1,)), put(x0, (-1,)), put(x1, (-1,)),
                put(xw0, (1, -1, 1)), put(xw1, (1, -1, 1)), put(yw0, (-1, 1, 1)), put(yw1, (-1, 1, 1)))


def resize_uint8(img: torch.Tensor, new_w: int, new_h: int) -> torch.Tensor:
    """HxWxC uint8 (any device) -> new_h x new_w x C uint8, equal to cv2.resize(img, (new_w, new_h),
    interpolation=cv2.INTER_LINEAR) where matches_opencv() holds. Only int32 arithmetic, exact on CPU and GPU."""
    if img.dtype != torch.uint8 or img.dim() != 3:
        raise ValueError(f"resize_uint8 takes an HxWxC uint8 tensor, not {img.dtype} of shape {tuple(img.shape)}")
    h, w = img.shape[:2]
    if min(h, w, new_w, new_h) < 1:
        raise ValueError(f"cannot resize {w}x{h} to {new_w}x{new_h}: sizes must be at least 1")
    if (new_h, new_w) == (h, w):
        return img.clone()  # OpenCV copies too; every weight pair would be (2048, 0)
    rows, x0, x1, xw0, xw1, yw0, yw1 = _taps(h, w, new_h, new_w, img.device)
    # Horizontal pass to int32 (at most 255 * 2048). Rows are gathered before it when that is less work
    # (downscale), after it otherwise; in-place operations keep the CPU's memory traffic down.
    if rows.numel() < h:
        picked = img.index_select(0, rows).int()
        horiz = picked.index_select(1, x0).mul_(xw0).add_(picked.index_select(1, x1).mul_(xw1))
    else:
        wide = img.int()
        horiz = wide.index_select(1, x0).mul_(xw0).add_(wide.index_select(1, x1).mul_(xw1)).index_select(0, rows)
    # Vertical pass as OpenCV's SIMD kernel: each term drops to 16 bits (>> 4), takes the high half of a 16x16-bit
    # product (>> 16, a floor), then the sum is rounded by 2 bits. No saturation needed: with weights summing to
    # at most 2048, the sum is at most (32640 * 2048) >> 16 = 1020, and (1020 + 2) >> 2 = 255.
    top, bottom = horiz.bitwise_right_shift_(4).split(new_h)
    top.mul_(yw0).bitwise_right_shift_(16)
    bottom.mul_(yw1).bitwise_right_shift_(16)
    return top.add_(bottom).add_(2).bitwise_right_shift_(2).to(torch.uint8)


# Probe cases for matches_opencv: upscale and downscale with borders, odd row lengths (any SIMD tail), exact 2x both
# ways, a single pixel, a single row, and the COCO-typical 640x480 -> 1067x800.
_PROBES = ((640, 480, 1067, 800), (17, 13, 34, 26), (33, 21, 16, 10), (5, 7, 3, 2), (1, 1, 5, 3),
           (9, 1, 4, 3), (20, 10, 40, 20), (100, 60, 50, 30), (37, 45, 61, 29), (3, 250, 7, 333))


@functools.cache
def matches_opencv() -> bool:
    """Whether resize_uint8 equals the installed OpenCV on the probe images (random and extreme pixels), checked
    once on the CPU: only then may the engine resize on the device instead of with cv2."""
    import cv2

    rng = np.random.default_rng(0)
    for w, h, new_w, new_h in _PROBES:
        for img in (rng.integers(0, 256, (h, w, 3), dtype=np.uint8), np.full((h, w, 3), 255, np.uint8)):
            expected = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            if not np.array_equal(resize_uint8(torch.from_numpy(img), new_w, new_h).numpy(), expected):
                return False
    return True
