"""Inference fast paths that leave the detections unchanged: BatchNorm folded into the convolutions, channels-last
memory format, reduced-precision autocast, and optional torch.compile.

Folding is exact in real arithmetic: BN at inference is y = (x - mean) / sqrt(var + eps) * gamma + beta, an
affine map per channel that merges into the preceding bias-free conv. In float32 it moves outputs by ~1e-6
relative, far inside the detection tolerances (boxes 0.01 px, scores 1e-4).
"""
from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from retinanet.config import PRECISION_NAMES, reduced_precision
from retinanet.errors import RetinaNetError

PRECISIONS = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # tf32: no casts
assert tuple(PRECISIONS) == PRECISION_NAMES


def amp_precision(device: torch.device, amp: bool) -> str:
    """What `--amp` means: config.reduced_precision on this device; fp32 without it."""
    return reduced_precision(device.type) if amp else "fp32"


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a conv (torchvision ResNet naming: convN -> bnN,
    downsample.0 -> downsample.1) into that conv, in place. Returns how many were folded."""
    folded = 0
    for parent in list(module.modules()):
        names = dict(parent.named_children())
        pairs = [(c, c.replace("conv", "bn")) for c in names if c.startswith("conv")]
        if isinstance(parent, nn.Sequential) and len(parent) == 2:  # downsample = Sequential(conv, bn)
            pairs.append(("0", "1"))
        for conv_name, bn_name in pairs:
            conv, bn = names.get(conv_name), names.get(bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
                setattr(parent, bn_name, nn.Identity())
                folded += 1
    return folded


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively here (AVX512-BF16 / AMX), not emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextmanager
def _tf32():
    """TF32 tensor-core convolutions and matmuls (10-bit mantissa inputs, float32 accumulation), then the
    previous settings back: the fp32 default keeps them off for the reference's numbers."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def check_tf32(device: torch.device) -> None:
    if device.type != "cuda":
        raise RetinaNetError("tf32 is a CUDA tensor-core mode (NVIDIA Ampere or later), not available on the CPU; "
                             "use fp32 (or bf16 where the CPU has it)")
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        raise RetinaNetError(f"tf32 needs an NVIDIA GPU of compute capability 8.0 (Ampere) or later; "
                             f"{torch.cuda.get_device_name(device)} is {major}.{minor}: use fp32 or fp16")


def check_precision(device: torch.device, precision: str) -> None:
    """RetinaNetError (one line) unless `precision` runs on `device`: said before weights are downloaded."""
    if not (isinstance(precision, str) and precision in PRECISIONS):  # a list would fail as unhashable
        raise RetinaNetError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "tf32":
        check_tf32(device)
    if device.type == "cpu" and precision == "fp16":
        raise RetinaNetError("fp16 runs on CUDA only; use --precision bf16 on the CPU")
    if device.type == "cpu" and precision == "bf16" and not cpu_has_bf16():
        raise RetinaNetError(f"this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16 "
                             "(AVX512-BF16 or AMX); emulated bf16 is many times slower than fp32, use fp32")


def autocast(device: torch.device, precision: str):
    """The autocast context for `precision` on `device` (a no-op for fp32; TF32 switched on for tf32)."""
    check_precision(device, precision)
    if precision == "tf32":
        return _tf32()
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


LAYOUTS = ("auto", "channels_last", "nchw")


def channels_last_for(device: torch.device, precision: str, layout: str = "auto", autotune: bool = False) -> bool:
    """Whether a model built for inference runs channels-last. "auto": channels-last, except true fp32 on CUDA
    with cuDNN's autotuner, which runs NCHW. cuDNN's fp32 kernels are NCHW ones, so channels-last pays layout
    transposes around each convolution; yet its heuristics pick slower NCHW kernels than NHWC ones. Measured on
    an H200 (benchmarks/predict_gpu.py, r50 at 1333x800, end to end): heuristics 25.3 ms channels-last against
    28.4 NCHW; autotuned 23.9 against 22.0. Tensor-core precisions and oneDNN on the CPU run natively in NHWC."""
    if layout not in LAYOUTS:
        raise RetinaNetError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if layout == "auto":
        return not (device.type == "cuda" and precision == "fp32" and autotune)
    return layout == "channels_last"


def optimize_for_inference(model: nn.Module, device: torch.device, *, channels_last: bool = True,
                           fuse: bool = False) -> nn.Module:
    """Fold BN and switch to channels-last, in place; the model must no longer be trained. `fuse`: ReLUs and
    residual adds as post-ops of their convolutions (fused.py: oneDNN on the CPU, cuDNN on CUDA)."""
    from retinanet.inference import fused

    model.eval()
    fold_batchnorm(model.backbone)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if fuse and fused.available(device):
        fused.fuse_relus(model)
    # cuDNN's autotuner is not switched on here for the whole process: a Detector switches it per call
    return model


def compile_model(model: nn.Module, example: torch.Tensor, precision: str = "fp32") -> tuple[nn.Module, float]:
    """torch.compile the model and run it once on `example`; returns (compiled, seconds spent compiling)."""
    compiled = torch.compile(model, dynamic=True)
    start = time.perf_counter()
    with torch.inference_mode(), autocast(example.device, precision):
        compiled(example)
    if example.device.type == "cuda":
        torch.cuda.synchronize(example.device)
    return compiled, time.perf_counter() - start
