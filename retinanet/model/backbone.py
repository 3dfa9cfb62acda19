"""ResNet / ResNeXt backbone as MMDetection v2.0 builds it, from torchvision's blocks.

torchvision's ResNet has the same module names (conv1, bn1, layer1..4 with conv1..3, bn1..3, downsample.0/.1)
and the same ResNeXt width rule, so reference checkpoints load into it unchanged. What differs, by hand:
- caffe style puts a block's stride on its first 1x1 conv (torchvision, like pytorch style, on the 3x3);
- BatchNorm never updates its running statistics (norm_eval), but in pytorch-style rows its affine weights
  outside the frozen stages still train, so torchvision's FrozenBatchNorm2d (buffers only) does not fit;
- the stem and the first `frozen_stages` stages get no gradient.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from retinanet.config import ModelConfig

LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class NormEvalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always normalises with its stored statistics, also while the model trains."""

    def train(self, mode: bool = True):
        return super().train(False)


class Backbone(nn.Module):
    """Returns C2..C5 (strides 4, 8, 16, 32)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        block = Bottleneck if cfg.depth >= 50 else BasicBlock
        net = ResNet(block, list(LAYERS[cfg.depth]), groups=cfg.groups, width_per_group=cfg.base_width,
                     norm_layer=NormEvalBatchNorm2d)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if cfg.style == "caffe" and block is Bottleneck:
            for layer in self.stages:
                first = layer[0]
                stride = first.conv2.stride
                first.conv1.stride, first.conv2.stride = stride, (1, 1)
        self.out_channels = [64 * block.expansion * 2**i for i in range(4)]
        self._freeze(cfg)

    @property
    def stages(self):
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def _freeze(self, cfg: ModelConfig):
        frozen = [self.conv1, self.bn1, *self.stages[: cfg.frozen_stages]] if cfg.frozen_stages >= 0 else []
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        if cfg.style == "caffe":  # caffe rows: BN(requires_grad=False) everywhere
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.requires_grad_(False)
                    m.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in self.stages:
            x = layer(x)
            outs.append(x)
        return outs
