"""RetinaHead: two towers of 4 conv+ReLU shared across levels, then class logits and box deltas.

Channel layout is anchor-major: class channel a*K + c, box channel a*4 + k, as in the reference checkpoints.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from retinanet.model.neck import ConvUnit


PRIOR_PROB = 0.01  # the classifier starts predicting every anchor as this likely foreground


def prior_bias(prior_prob: float = PRIOR_PROB) -> float:
    """The classification bias whose sigmoid is `prior_prob` (the focal-loss paper's initialisation)."""
    return -math.log((1 - prior_prob) / prior_prob)


def flatten_anchors(m: torch.Tensor, channels: int) -> torch.Tensor:
    """A head output (..., A*C, h, w) -> (..., h*w*A, C): rows in anchor order ((y*w + x)*A + a)."""
    return m.movedim(-3, -1).reshape(*m.shape[:-3], -1, channels)


class RetinaHead(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 256, num_anchors: int = 9, stacked_convs: int = 4):
        super().__init__()
        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.cls_convs = nn.ModuleList(
            ConvUnit(in_channels, in_channels, 3, relu=True) for _ in range(stacked_convs))
        self.reg_convs = nn.ModuleList(
            ConvUnit(in_channels, in_channels, 3, relu=True) for _ in range(stacked_convs))
        self.retina_cls = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls, reg = x, x
        for conv in self.cls_convs:
            cls = conv(cls)
        for conv in self.reg_convs:
            reg = conv(reg)
        return self.retina_cls(cls), self.retina_reg(reg)

    def forward(self, feats: list[torch.Tensor]):
        outs = [self.forward_single(f) for f in feats]
        return [o[0] for o in outs], [o[1] for o in outs]

    def init_weights(self, prior_prob: float = PRIOR_PROB):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.retina_cls.bias, prior_bias(prior_prob))
