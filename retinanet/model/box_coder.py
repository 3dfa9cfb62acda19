"""DeltaXYWHBBoxCoder with zero means and unit stds, v2.0 conventions (no +1 in widths).

Differs from torchvision's BoxCoder: no per-coordinate weights, dw/dh clamped at |log(16/1000)|, and decoded
boxes clipped to the resized image with W and H (not W-1, H-1) as the upper bound.
"""
from __future__ import annotations

import math

import torch

WH_RATIO_CLIP = 16 / 1000
MAX_RATIO = abs(math.log(WH_RATIO_CLIP))


def encode(anchors: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Deltas (dx, dy, dw, dh) that move `anchors` onto `gt`, both (N, 4) xyxy."""
    anchors, gt = anchors.float(), gt.float()
    pw, ph = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    px, py = (anchors[:, 0] + anchors[:, 2]) * 0.5, (anchors[:, 1] + anchors[:, 3]) * 0.5
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = (gt[:, 0] + gt[:, 2]) * 0.5, (gt[:, 1] + gt[:, 3]) * 0.5
    return torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)


def decode(anchors: torch.Tensor, deltas: torch.Tensor, max_shape: tuple[int, int] | None = None) -> torch.Tensor:
    """Boxes from anchors (N, 4) and deltas (N, 4); clipped to max_shape = (H, W) when given."""
    dx, dy = deltas[:, 0], deltas[:, 1]
    dw = deltas[:, 2].clamp(min=-MAX_RATIO, max=MAX_RATIO)
    dh = deltas[:, 3].clamp(min=-MAX_RATIO, max=MAX_RATIO)
    px, py = (anchors[:, 0] + anchors[:, 2]) * 0.5, (anchors[:, 1] + anchors[:, 3]) * 0.5
    pw, ph = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    gw, gh = pw * dw.exp(), ph * dh.exp()
    gx, gy = px + pw * dx, py + ph * dy
    x1, y1 = gx - gw * 0.5, gy - gh * 0.5
    x2, y2 = gx + gw * 0.5, gy + gh * 0.5
    if max_shape is not None:
        h, w = max_shape  # ints, or 0-d tensors in an exported graph (hence min and max as two clamps)
        x1, x2 = x1.clamp(min=0).clamp(max=w), x2.clamp(min=0).clamp(max=w)
        y1, y2 = y1.clamp(min=0).clamp(max=h), y2.clamp(min=0).clamp(max=h)
    return torch.stack([x1, y1, x2, y2], dim=-1)
