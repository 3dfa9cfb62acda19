"""Random weights whose test-time output load looks like a trained model's, for honest speed figures and tests.

The reference's training-start initialisation (class bias log(0.01/0.99), weights N(0, 0.01)) gives every
anchor a score of about 0.01: nothing passes score_thr = 0.05 and post-processing costs nothing. Fully random
weights go the other way: logits in the tens, every score 1.0, deltas in the tens (exp() makes boxes absurd and
amplifies float rounding). A trained RetinaNet on a photo passes on the order of a thousand or two (anchor, class)
pairs above 0.05 into NMS, its best scores are near 0.9, its deltas are small (about 0.1, the box coder's std is 1),
and NMS leaves more than max_per_img = 100 boxes. This module draws the two final convolutions at random (seeded)
and sets their scale and bias from one image's features so that the output has those properties.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TRAINED_CANDIDATES = 2000  # (anchor, class) pairs above score_thr on one photo: a trained model's order of magnitude
TRAINED_TOP_SCORE = 0.95  # the best detection's score on a photo with an obvious object
TRAINED_DELTA_STD = 0.1  # spread of a trained model's box deltas (DeltaXYWH, stds 1)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _tower(x: torch.Tensor, convs: nn.ModuleList) -> torch.Tensor:
    for conv in convs:
        x = conv(x)
    return x


@torch.no_grad()
def calibrate_final_convs(cls_conv: nn.Conv2d, reg_conv: nn.Conv2d, cls_inputs: list[torch.Tensor],
                          reg_inputs: list[torch.Tensor], *, seed: int = 0, score_thr: float = 0.05,
                          candidates: int = TRAINED_CANDIDATES, top_score: float = TRAINED_TOP_SCORE,
                          delta_std: float = TRAINED_DELTA_STD) -> None:
    """Redraw a RetinaNet head's final class and box convolutions (in place) so that, on the towers' outputs
    `cls_inputs` / `reg_inputs` (one tensor per level, one image), exactly `candidates` (anchor, class) pairs
    score at least `score_thr`, the best scores `top_score`, and the box deltas have std `delta_std`.
    Deterministic in `seed` and the inputs; works for any head with this shape (rdet's, torchvision's)."""
    device = cls_inputs[0].device
    g = torch.Generator().manual_seed(seed)
    w_cls = torch.randn(cls_conv.weight.shape, generator=g).to(device)
    w_reg = torch.randn(reg_conv.weight.shape, generator=g).to(device)
    pad_c, pad_r = cls_conv.padding, reg_conv.padding
    logits = torch.cat([F.conv2d(x, w_cls, padding=pad_c).flatten() for x in cls_inputs])
    top = logits.topk(min(candidates, logits.numel())).values
    lo, hi = _logit(score_thr), _logit(top_score)
    spread = float(top[0] - top[-1]) or 1.0  # a constant feature map (a blank image) has no spread
    scale = (hi - lo) / spread
    cls_conv.weight.copy_(w_cls * scale)
    cls_conv.bias.fill_(lo - scale * float(top[-1]))
    deltas = torch.cat([F.conv2d(x, w_reg, padding=pad_r).flatten() for x in reg_inputs])
    reg_conv.weight.copy_(w_reg * (delta_std / (float(deltas.std()) or 1.0)))
    reg_conv.bias.zero_()


@torch.no_grad()
def calibrate_head(model: nn.Module, images: torch.Tensor, **targets) -> None:
    """calibrate_final_convs for an rdet RetinaNet on `images` (normalised, padded, (B, 3, H, W); the first one
    is used). `targets`: seed, score_thr, candidates, top_score, delta_std."""
    head = model.bbox_head
    feats = model.neck(model.backbone(images[:1]))
    calibrate_final_convs(head.retina_cls, head.retina_reg, [_tower(f, head.cls_convs) for f in feats],
                          [_tower(f, head.reg_convs) for f in feats], **targets)
