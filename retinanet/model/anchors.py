"""Anchors with MMDetection v2.0's AnchorGenerator semantics.

Differs from torchvision's AnchorGenerator and Detectron2's: ratio-major order within a location
(a = ratio_idx * 3 + scale_idx), cell (i, j) centred at (j*s, i*s) rather than s/2, and float corners that are
never rounded.
"""
from __future__ import annotations

import torch

STRIDES = (8, 16, 32, 64, 128)
RATIOS = (0.5, 1.0, 2.0)
OCTAVE_BASE_SCALE = 4
SCALES_PER_OCTAVE = 3


class AnchorGenerator:
    def __init__(self, strides=STRIDES, ratios=RATIOS, octave_base_scale=OCTAVE_BASE_SCALE,
                 scales_per_octave=SCALES_PER_OCTAVE):
        self.strides = tuple(strides)
        scales = torch.tensor([octave_base_scale * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)])
        self.base_anchors = [self._base_anchors(s, torch.tensor(ratios), scales) for s in self.strides]
        self._cache: dict = {}

    @property
    def num_anchors(self) -> int:
        return self.base_anchors[0].shape[0]

    @staticmethod
    def _base_anchors(base_size: int, ratios: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """(A, 4) anchors centred at (0, 0), ratio-major; (base * ratio term) first, then * scale, float32."""
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (base_size * w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (base_size * h_ratios[:, None] * scales[None, :]).view(-1)
        return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)

    def grid_anchors(self, featmap_sizes, device="cpu") -> list[torch.Tensor]:
        """Per level, (H*W*A, 4) anchors, row-major over locations, the A anchors of a location contiguous."""
        key = (tuple(tuple(s) for s in featmap_sizes), str(device))
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = [self._level(base.to(device), s, tuple(size), device)
                                for base, s, size in zip(self.base_anchors, self.strides, featmap_sizes)]
        return self._cache[key]

    @staticmethod
    def _level(base: torch.Tensor, stride: int, size, device) -> torch.Tensor:
        h, w = size
        xs = torch.arange(0, w, device=device) * stride
        ys = torch.arange(0, h, device=device) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        xx, yy = xx.reshape(-1), yy.reshape(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).to(base.dtype)
        return (shifts[:, None, :] + base[None, :, :]).view(-1, 4)

    def valid_flags(self, featmap_sizes, pad_shape, device="cpu") -> list[torch.Tensor]:
        """Per level, which anchors lie over the image's own padded area (not over batch padding)."""
        pad_h, pad_w = pad_shape[:2]
        flags = []
        for stride, (h, w) in zip(self.strides, featmap_sizes):
            valid_h = min(-(-pad_h // stride), h)
            valid_w = min(-(-pad_w // stride), w)
            vy = torch.zeros(h, dtype=torch.bool, device=device)
            vx = torch.zeros(w, dtype=torch.bool, device=device)
            vy[:valid_h] = True
            vx[:valid_w] = True
            valid = (vy[:, None] & vx[None, :]).reshape(-1)
            flags.append(valid[:, None].expand(-1, self.num_anchors).reshape(-1))
        return flags
