"""Process-wide torch switches that inference needs, set for the duration of a call and restored after, so
that building or running a Detector never changes them for the rest of the process."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def inference_switches(device: torch.device, precision: str | None = "fp32",
                       cudnn_benchmark: bool | None = None) -> Iterator[None]:
    """On CUDA in fp32, TF32 off (TF32 convolutions move scores by ~1e-3: keep true fp32 for parity).
    `precision` None leaves TF32 as it is; `cudnn_benchmark`: cuDNN autotuning on or off (None: left as it is)."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark)
    try:
        if device.type == "cuda" and precision == "fp32":
            cudnn.allow_tf32 = False
            matmul.allow_tf32 = False
        if cudnn_benchmark is not None:
            cudnn.benchmark = cudnn_benchmark
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark = saved
