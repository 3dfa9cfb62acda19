"""Where one image's time goes: per-stage medians and end-to-end latency percentiles (`rdet bench --stages`).

Stages, each timed to its end (the device synchronised after it, which the real pipeline never does): decode
(OpenCV, from the encoded bytes), pre-process (resize, on the device where DevicePath does, then normalise and
pad on the device), copy (the uint8 upload through pinned memory), forward (graphed on a GPU where possible),
post-process (sync-free post-processing, graphed too, and reading the detections to the host). Here forward and
post-processing are two graphs so that each can be timed; predict, eval and bench run them as one. Latency is
timed separately, without those synchronisations: from the encoded bytes to the detections on the host, one
image at a time, as a user sees it.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable


from retinanet.benchmark.measure import synchronize
from retinanet.data.images import decode_bgr
from retinanet.errors import RetinaNetError

STAGES = ("decode", "pre-process", "copy", "forward", "post-process")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _one_image(path, data: bytes, clock: Callable[[str], None] | None):
    """Bytes -> Detections through `path` (a DevicePath), calling clock(stage) at each stage's end."""
    mark = clock or (lambda stage: None)
    bgr = decode_bgr(data)
    mark("decode")
    host, meta = path.host_part(bgr)
    mark("pre-process")
    uploaded = path.upload(host)
    mark("copy")
    tensor = path.device_part(uploaded, meta)
    mark("pre-process")
    forwarded = path.forward([(tensor, meta)])
    mark("forward")
    result = path.finish(path.postprocess(forwarded), [meta])[0]
    mark("post-process")
    return result


def time_stages(detector, encoded: list[bytes], images: int = 200, warmup: int = 20, graphs: bool = True,
                **path_options) -> dict:
    """{'stages_ms': {stage: median}, 'latency_ms': {'p50', 'p90', 'p99', 'mean'}, 'detections_per_image'} over
    `images` timed images (cycling through `encoded`), after `warmup` untimed ones of each kind."""
    from retinanet.inference.device_path import DevicePath

    if images < 1 or not encoded:
        raise RetinaNetError("--stages needs at least one image to time")
    path = DevicePath(detector, graphs=graphs, **path_options)
    device = detector.device
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    detections = []
    for i in range(warmup + images):
        spent = dict.fromkeys(STAGES, 0.0)
        synchronize(device)
        last = time.perf_counter()

        def clock(stage):
            nonlocal last
            synchronize(device)
            now = time.perf_counter()
            spent[stage] += now - last
            last = now

        result = _one_image(path, encoded[i % len(encoded)], clock)
        if i >= warmup:
            for s in STAGES:
                per_stage[s].append(1000 * spent[s])
            detections.append(len(result))
    latency = []
    for i in range(warmup + images):
        synchronize(device)
        start = time.perf_counter()
        _one_image(path, encoded[i % len(encoded)], None)  # ends with the detections on the host
        if i >= warmup:
            latency.append(1000 * (time.perf_counter() - start))
    return {"stages_ms": {s: round(statistics.median(v), 3) for s, v in per_stage.items()},
            "latency_ms": {"p50": round(percentile(latency, 50), 3), "p90": round(percentile(latency, 90), 3),
                           "p99": round(percentile(latency, 99), 3), "mean": round(statistics.fmean(latency), 3)},
            "detections_per_image": round(statistics.fmean(detections), 2), "images": images, "warmup": warmup,
            "graphs": graphs and device.type == "cuda", "resize_on_device": path.resize_on_device}


__all__ = ["STAGES", "time_stages", "percentile"]
