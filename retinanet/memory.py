"""Reading a process's peak memory: the one place for the CUDA allocator's and the host's figures."""
from __future__ import annotations

import sys

import torch


def max_rss_bytes() -> int | None:
    """The process's peak resident set (getrusage ru_maxrss) in bytes; None without the resource module."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def process_peak_bytes(device: torch.device) -> int | None:
    """mmcv's `memory`: the CUDA allocator's peak on a GPU, the process's peak resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return max_rss_bytes()
