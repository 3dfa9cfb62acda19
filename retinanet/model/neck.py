"""FPN producing P3..P7 as MMDetection v2.0's RetinaNet configures it.

Differs from torchvision's FeaturePyramidNetwork + LastLevelP6P7: P6 comes from C5 (not P5), there is no ReLU
before P7, and module names follow the reference checkpoints (lateral_convs.i.conv, fpn_convs.i.conv).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvUnit(nn.Module):
    """A bare conv under the attribute name `conv`, as the reference's ConvModule (no norm, no activation)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
        self.relu = relu

    def forward(self, x):
        x = self.conv(x)
        return F.relu(x, inplace=True) if self.relu else x


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int = 256):
        super().__init__()
        c3, c4, c5 = in_channels[1:]  # C2 is not used (start_level=1)
        self.lateral_convs = nn.ModuleList(ConvUnit(c, out_channels, 1) for c in (c3, c4, c5))
        self.fpn_convs = nn.ModuleList(
            [ConvUnit(out_channels, out_channels, 3) for _ in range(3)]
            + [ConvUnit(c5, out_channels, 3, stride=2), ConvUnit(out_channels, out_channels, 3, stride=2)]
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        c5 = feats[3]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats[1:])]
        for i in range(len(laterals) - 1, 0, -1):  # top-down, nearest upsampling to the finer size
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs[:3], laterals)]
        p6 = self.fpn_convs[3](c5)
        outs += [p6, self.fpn_convs[4](p6)]
        return outs

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
