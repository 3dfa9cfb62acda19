"""CPU fp32 inference: convolutions with their ReLU (and a bottleneck's residual add) fused into one oneDNN call.

oneDNN runs the same convolution kernel and applies the ReLU / add as a post-op on the output it already holds, so
the results are bit-identical to conv -> add -> relu while three passes over the feature map become one. Applied
after BatchNorm folding, on a model that will only run inference.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _geometry(conv: nn.Conv2d) -> tuple:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


def plain_conv_uses_onednn(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether F.conv2d itself runs oneDNN for this fp32 input (PyTorch's ConvParams::use_mkldnn rule). Where it
    does not (small maps, single-threaded unstrided 1x1), it runs another kernel with other rounding, so fusing
    there would change the numbers: those convolutions stay unfused."""
    kh, kw = conv.kernel_size
    strided_or_dilated = any(s != 1 for s in conv.stride) or any(d != 1 for d in conv.dilation)
    batch = x.shape[0]
    return ((strided_or_dilated or batch >= 16 or (kh, kw) != (1, 1) or torch.get_num_threads() > 1)
            and (conv.groups > 1 or (kh > 3 and kw > 3) or batch > 1 or x.numel() > 20480))


def conv_relu(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    if not plain_conv_uses_onednn(x, conv):
        return torch.relu(conv(x))
    return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, *_geometry(conv), "relu", [], "")


def conv_add_relu(x: torch.Tensor, residual: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """relu(conv(x) + residual)."""
    if not plain_conv_uses_onednn(x, conv):
        return torch.relu(conv(x) + residual)
    return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, conv.weight, conv.bias, *_geometry(conv),
                                                           "add", None, "relu", [], "")


class FusedConvReLU(nn.Module):
    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return conv_relu(x, self.conv)


class FusedBlock(nn.Module):
    """A torchvision Bottleneck or BasicBlock (BatchNorm already folded) with every ReLU and the add fused."""

    def __init__(self, block: nn.Module):
        super().__init__()
        convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(block, Bottleneck) else [])
        self.inner, self.last = nn.ModuleList(convs[:-1]), convs[-1]
        self.downsample = block.downsample if block.downsample is not None else nn.Identity()

    def forward(self, x):
        identity = self.downsample(x)
        out = x
        for conv in self.inner:
            out = conv_relu(out, conv)
        return conv_add_relu(out, identity, self.last)


def _folded(block: nn.Module) -> bool:
    return all(isinstance(getattr(block, f"bn{i}", nn.Identity()), nn.Identity) for i in (1, 2, 3))


def fuse_relus(model: nn.Module) -> int:
    """Swap the backbone's blocks and the head's conv+ReLU units for fused ones, in place; returns how many.
    The stem is left alone: its ReLU feeds a max-pool, not worth a special case."""
    from retinanet.model.neck import ConvUnit

    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (Bottleneck, BasicBlock)) and _folded(child):
                setattr(parent, name, FusedBlock(child))
                swapped += 1
            elif isinstance(child, ConvUnit) and child.relu:
                setattr(parent, name, FusedConvReLU(child.conv))
                swapped += 1
    return swapped
