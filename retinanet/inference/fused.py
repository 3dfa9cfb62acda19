"""Inference convolutions with their ReLU (and a bottleneck's residual add) fused into one library call.

- CPU fp32: oneDNN runs the same convolution kernel and applies the ReLU / add as a post-op on the output it
  already holds, so the results are bit-identical to conv -> add -> relu while three passes over the feature map
  become one.
- CUDA (any precision): cuDNN's fused convolution (torch.cudnn_convolution_relu / _add_relu) adds the bias, the
  residual and the ReLU in the kernel's epilogue. PyTorch's plain cuDNN path adds the bias in a kernel of its own
  and the ReLU in another: ~200 elementwise passes at batch 1 (on an H200 the fused fp16 forward took 2.34 ms
  against 3.41). The sums are the same up to rounding: the epilogue may add the residual before the bias, and in
  fp16 it adds the bias before the output is rounded to fp16 (the GPU tests hold the fused model to the unfused
  model's detections).

Applied after BatchNorm folding, on a model that will only run inference.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck


def available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.backends.cudnn.is_available() and hasattr(torch, "cudnn_convolution_add_relu")
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


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


def _cudnn_params(x: torch.Tensor, conv: nn.Conv2d) -> tuple:
    """Weight and bias in the input's dtype (under autocast the fused op, which autocast does not know, gets fp16
    activations and the fp32 parameters), and the geometry in cuDNN's argument order."""
    weight, bias = conv.weight, conv.bias
    if weight.dtype != x.dtype:
        weight = weight.to(x.dtype)
        bias = None if bias is None else bias.to(x.dtype)
    padding, stride, dilation, groups = _geometry(conv)
    return weight, bias, stride, padding, dilation, groups


_NO_CUDNN_ENGINE = "no_fused_cudnn_engine"  # set on a conv whose fused call cuDNN refused: it runs unfused after


def _cudnn_fused(conv: nn.Conv2d, call) -> torch.Tensor | None:
    """call()'s result, or None where cuDNN has no engine for this fused convolution (some builds lack one for
    some dtype and layout): that convolution then runs unfused for good, decided in the warm-up before any graph
    capture, as a capture replays what the warm-up ran."""
    if getattr(conv, _NO_CUDNN_ENGINE, False):
        return None
    try:
        return call()
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:
        setattr(conv, _NO_CUDNN_ENGINE, True)
        return None


def conv_relu(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    if x.is_cuda:
        weight, bias, *geometry = _cudnn_params(x, conv)
        out = _cudnn_fused(conv, lambda: torch.cudnn_convolution_relu(x, weight, bias, *geometry))
        return torch.relu(conv(x)) if out is None else out
    if not plain_conv_uses_onednn(x, conv):
        return torch.relu(conv(x))
    return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, *_geometry(conv), "relu", [], "")


def conv_add_relu(x: torch.Tensor, residual: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """relu(conv(x) + residual)."""
    if x.is_cuda:
        weight, bias, *geometry = _cudnn_params(x, conv)
        out = _cudnn_fused(conv, lambda: torch.cudnn_convolution_add_relu(x, weight, residual.to(x.dtype), 1.0, bias,
                                                                          *geometry))
        return torch.relu(conv(x) + residual) if out is None else out
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
