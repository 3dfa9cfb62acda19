"""A function of tensors replayed as CUDA graphs: one launch instead of hundreds of kernel launches.

At batch 1 the eager forward on a fast GPU is bound by the host launching kernels (the issue measured 13.1 ms
eager against 3.55 ms graphed in fp16 on an H200), and the sync-free post-processing is a few hundred small
kernels more. DevicePath therefore captures forward and post-processing together. A graph is captured per input
signature (shapes, dtypes, memory format) once that signature has been seen `capture_after` times (a one-off size
is not worth a capture), and kept in a bounded least-recently-used cache (each graph holds its own memory).
Anything else (the CPU, a signature not yet seen often enough, a capture that failed) runs eagerly, with the same
arithmetic: a graph replays exactly the kernels the eager call launched.

A graph replays the kernels that its capture recorded, so the convolution algorithms are those of the warm-up
before it: PyTorch picks a convolution's algorithm per shape on first use (by cuDNN's heuristics, or by measuring
them where the caller switched the autotuner on: Detector's `autotune`) and keeps that choice, eager or captured.

Inputs are copied into the graph's static buffers before a replay; the outputs are cloned after it (queued on
the same stream, so nothing waits), so they stay valid however many replays follow before they are read.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch

from retinanet.errors import described
from retinanet.inference.fast import PRECISIONS, autocast


def graph_safe_autocast(device: torch.device, precision: str):
    """Autocast whose cache of cast weights is off, so a captured graph never replays a stale cast. Eagerly this
    costs nothing: a forward uses each weight once, and the cache is emptied after every autocast block anyway."""
    dtype = PRECISIONS.get(precision)
    if dtype is None:
        return autocast(device, precision)  # fp32 / tf32: no casts
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


class _Graph:
    def __init__(self, graph, static_in, static_out):
        self.graph, self.static_in, self.static_out = graph, static_in, static_out


class GraphedCall:
    """fn(*tensors) -> tuple of tensors, through CUDA graphs where possible; call under torch.inference_mode().

    fn must not synchronise with the host (no .item(), nonzero() or data-dependent sizes) and must compute every
    output from its inputs and from state that outlives the graph (the model's weights, cached anchors)."""

    def __init__(self, fn: Callable[..., tuple], max_graphs: int = 4, capture_after: int = 2, warmup: int = 3):
        self.fn = fn
        self.max_graphs, self.capture_after, self.warmup = max_graphs, capture_after, warmup
        self.graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self.seen: dict[tuple, int] = {}
        self.failed: dict[tuple, str] = {}  # signature -> why its capture failed (it then stays eager)
        self.captures = 0

    @staticmethod
    def key(inputs: tuple[torch.Tensor, ...]) -> tuple:
        return tuple((tuple(x.shape), x.dtype, x.device, x.is_contiguous(memory_format=torch.channels_last))
                     for x in inputs)

    def __call__(self, *inputs: torch.Tensor) -> tuple:
        if inputs[0].device.type != "cuda" or self.max_graphs < 1:
            return self.fn(*inputs)
        key = self.key(inputs)
        entry = self.graphs.get(key)
        if entry is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            if key in self.failed or self.seen[key] < self.capture_after:
                return self.fn(*inputs)
            entry = self._capture(key, inputs)
            if entry is None:
                return self.fn(*inputs)
        self.graphs.move_to_end(key)
        for static, x in zip(entry.static_in, inputs):
            static.copy_(x)
        entry.graph.replay()
        return tuple(t.clone() for t in entry.static_out)

    def _capture(self, key: tuple, inputs: tuple[torch.Tensor, ...]) -> _Graph | None:
        while len(self.graphs) >= self.max_graphs:  # least recently used out; its memory pool goes with it
            self.graphs.popitem(last=False)
        device = inputs[0].device
        static_in = tuple(x.clone(memory_format=torch.preserve_format) for x in inputs)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        try:
            with torch.cuda.stream(stream):
                # warm-up off the capture: cuDNN picks (or measures) its algorithms, caches fill
                for _ in range(self.warmup):
                    self.fn(*static_in)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            # thread_local: only this thread is barred from unsafe calls while capturing; a DataLoader's
            # pin-memory thread (eval) goes on pinning the next batch meanwhile
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                static_out = tuple(self.fn(*static_in))
        except Exception as err:  # noqa: BLE001 - any capture failure means: run this signature eagerly
            self.failed[key] = described(err)
            torch.cuda.synchronize(device)
            return None
        entry = _Graph(graph, static_in, static_out)
        self.graphs[key] = entry
        self.captures += 1
        return entry
