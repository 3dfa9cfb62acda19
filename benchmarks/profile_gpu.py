"""Where Detector.predict's time goes on a GPU, piece by piece, for issue #13's tuning: host steps (to_bgr, host
part, staging copy), the device steps, the forward and post-processing graphs alone, the sync-free NMS at several
capacities, profiler tables (host time per op of the graphed call; kernel time per op of the eager call; in fp32
the eager network's time per op and input shape beside torchvision's, to find the layers where rdet is slower), and
variants with one speed-up taken out each (to see what each gives):

- nofuse: convolutions without cuDNN's fused bias/ReLU/add (inference.fused off on CUDA);
- noncast: fp16/bf16 through autocast instead of a model cast once (DevicePath._network);
- nchw: the model and input in NCHW instead of channels-last.

--cudnn-benchmark switches cuDNN's autotuner on for the whole process before the first call (PyTorch caches a
convolution's algorithm per shape on first use, autotuned or not) and reports the first call's time.

    python benchmarks/profile_gpu.py --precision fp16,fp32 --variants new,nofuse,nocast --json profile.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from predict_gpu import _image, rdet_detector  # noqa: E402
from retinanet.benchmark.measure import device_name, synchronize  # noqa: E402


REPEATS = 20


def host_ms(fn, repeats=None, sync_device=None) -> float:
    """Median wall time of fn() in ms, the device synchronised before and after each call."""
    times = []
    for _ in range(repeats or REPEATS):
        if sync_device is not None:
            synchronize(sync_device)
        start = time.perf_counter()
        fn()
        if sync_device is not None:
            synchronize(sync_device)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def gpu_ms(fn, repeats=None) -> float:
    """Median GPU time of fn()'s queued work, by events (wall time on the CPU: a smoke test)."""
    if not torch.cuda.is_available():
        return host_ms(fn, repeats)
    times = []
    for _ in range(repeats or REPEATS):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return round(statistics.median(times), 3)


def pieces(det, image) -> dict:
    from retinanet.data.images import to_bgr
    from retinanet.inference.device_path import DevicePath

    dev = det.device
    dp = det.device_path() or DevicePath(det)
    for _ in range(6):
        det.predict(image)
    out = {"predict": host_ms(lambda: det.predict(image), None, dev)}
    bgr = to_bgr(image)
    out["to_bgr (host)"] = host_ms(lambda: to_bgr(image))
    host, meta = dp.host_part(bgr)
    out["host_part (host)"] = host_ms(lambda: dp.host_part(bgr))
    out["upload (host call)"] = host_ms(lambda: dp.upload(host))
    out["upload (synced)"] = host_ms(lambda: dp.upload(host), sync_device=dev)
    up = dp.upload(host)
    out["device_part (gpu)"] = gpu_ms(lambda: dp.device_part(up, meta))
    out["device_part (host call)"] = host_ms(lambda: dp.device_part(up, meta))
    prepared = [(dp.device_part(up, meta), meta)]
    out["launch (host call)"] = host_ms(lambda: dp.launch(prepared))
    out["launch (gpu)"] = gpu_ms(lambda: dp.launch(prepared))
    out["launch+finish (synced)"] = host_ms(lambda: dp.finish(dp.launch(prepared), [meta]), sync_device=dev)
    for _ in range(4):
        fwd = dp.forward(prepared)
        dp.postprocess(fwd)
    out["forward graph (gpu)"] = gpu_ms(lambda: dp.forward(prepared))
    fwd = dp.forward(prepared)
    out["post graph (gpu)"] = gpu_ms(lambda: dp.postprocess(fwd))
    pend = dp.launch(prepared)
    synchronize(dev)
    out["finish (host, results ready)"] = host_ms(lambda: dp.finish(pend, [meta]))
    out["graphs"] = dp.graphs
    out["failed"] = {str(k): v for k, v in dp.failed.items()}
    return out


@contextmanager
def variant_of(variant: str):
    """Within it, rdet runs with one speed-up taken out per the variant name (build detectors inside it)."""
    from retinanet.inference import device_path, fused

    saved = fused.available, device_path.PRECISIONS
    if variant == "nofuse":
        fused.available = lambda dev: dev.type == "cpu" and saved[0](dev)
    if variant == "nocast":
        device_path.PRECISIONS = {}  # DevicePath._forward then takes the autocast branch
    try:
        yield
    finally:
        fused.available, device_path.PRECISIONS = saved


def build(device, precision, size, variant: str):
    return rdet_detector(device, precision, size, layout="nchw" if variant == "nchw" else "auto")


def capacities(det, image) -> dict:
    from retinanet.inference.device_path import DevicePath
    from retinanet.inference.postprocess import candidates
    from retinanet.inference.sync_free import TensorGeometry, unpack

    out = {}
    ref = None
    for cap in (4096, 2048, 1024):
        dp = DevicePath(det, capacity=cap)
        prepared = [dp.prepare(image)]
        for _ in range(4):
            fwd = dp.forward(prepared)
            dp.postprocess(fwd)
        fwd = dp.forward(prepared)
        ms = gpu_ms(lambda: dp.postprocess(fwd))
        pend = dp.postprocess(fwd)[0]
        exact = unpack(pend.packed.cpu())[4]
        dets = dp.finish([pend], [prepared[0][1]])[0]
        if ref is None:
            ref = dets
        same = len(dets) == len(ref) and bool((dets.boxes == ref.boxes).all())
        out[str(cap)] = {"post graph ms": ms, "exact without redo": exact, "same as 4096": same}
    # how many (anchor, class) pairs pass the score threshold: what the NMS capacity must hold
    geometry, *maps = dp.forward(prepared)
    half = len(maps) // 2
    anchors = det.model.anchor_generator.grid_anchors([tuple(c.shape[-2:]) for c in maps[:half]], geometry.device)
    boxes, scores = candidates([c[0] for c in maps[:half]], [r[0] for r in maps[half:]], anchors,
                               TensorGeometry(geometry[0]), nms_pre=det.cfg.nms_pre, num_classes=det.cfg.num_classes)
    out["pairs above score_thr"] = int((scores > det.cfg.score_thr).sum())
    out["candidate anchors"] = int(boxes.shape[0])
    return out


def profile_tables(det, image) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from retinanet.inference.device_path import DevicePath

    tables = {}
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            det.predict(image)
    tables["graphed predict, host time per op"] = prof.key_averages().table(sort_by="self_cpu_time_total",
                                                                            row_limit=22, max_name_column_width=60)
    eager = DevicePath(det, graphs=False)
    for _ in range(3):
        eager.predict(image)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            eager.predict(image)
    tables["eager predict, kernel time per op"] = prof.key_averages().table(sort_by="self_cuda_time_total",
                                                                            row_limit=30, max_name_column_width=60)
    return tables


def forward_tables(det, image, size, precision: str) -> dict:
    """The network alone, eager, rdet beside torchvision on the same image, both with the process's cuDNN choice
    (its autotuner with --cudnn-benchmark, else its heuristics) and TF32 as the precision says: CUDA time per op
    and input shape, to find the layers where one of them is slower."""
    from torch.profiler import ProfilerActivity, profile

    from predict_gpu import to_torchvision_input, torchvision_model, torchvision_switches
    from retinanet.inference.device_path import DevicePath

    eager = DevicePath(det, graphs=False)
    prepared = [eager.prepare(image)]
    tv = torchvision_model(det.device, image, size)
    with torch.inference_mode():
        tv_batch = tv.transform([to_torchvision_input(image, det.device)])[0].tensors
    calls = {"rdet": lambda: eager.forward(prepared),
             "torchvision": lambda: tv.head(list(tv.backbone(tv_batch).values()))}
    tables = {}
    for name, call in calls.items():
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if det.device.type == "cuda" else [])
        with torch.inference_mode(), torchvision_switches(precision, torch.backends.cudnn.benchmark):
            for _ in range(3):
                call()
            synchronize(det.device)
            with profile(activities=activities, record_shapes=True) as prof:
                for _ in range(3):
                    call()
                synchronize(det.device)
        sort = "self_cuda_time_total" if det.device.type == "cuda" else "self_cpu_time_total"
        tables[f"{name} eager forward, time per op and input shape"] = prof.key_averages(
            group_by_input_shape=True).table(sort_by=sort, row_limit=40, max_name_column_width=40,
                                             max_shapes_column_width=70)
    return tables


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precision", default="fp16,fp32")
    ap.add_argument("--size", default="1333x800")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--tables", action="store_true", help="also the profiler tables")
    ap.add_argument("--capacities", action="store_true", help="also the sync-free NMS at several capacities")
    ap.add_argument("--variants", default="new", help="comma-separated: new, nofuse, nocast, nchw")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="cuDNN autotuning on from the start")
    args = ap.parse_args(argv)
    global REPEATS
    REPEATS = args.repeats
    device = torch.device(args.device)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    size = tuple(int(v) for v in args.size.split("x"))
    image = _image(*size)
    report = {"device": device_name(device), "torch": torch.__version__, "size": size}
    for precision in args.precision.split(","):
        for variant in args.variants.split(","):
            key = f"{precision} {variant}"
            with variant_of(variant):
                first = time.perf_counter()
                det = build(device, precision, size, variant)
                det.predict(image)
                report[key + " first call s"] = round(time.perf_counter() - first, 3)
                report[key] = pieces(det, image)
            print(key, json.dumps(report[key]), f"(first call with the build: {report[key + ' first call s']} s)",
                  flush=True)
            if variant == "new" and precision == args.precision.split(",")[0] and args.capacities:
                report[f"capacities {precision}"] = capacities(det, image)
                print(f"capacities {precision}", json.dumps(report[f"capacities {precision}"]), flush=True)
            if variant == "new" and args.tables:
                tables = profile_tables(det, image)
                if precision == "fp32":
                    tables.update(forward_tables(det, image, size, precision))
                for name, table in tables.items():
                    report[f"{precision} {name}"] = table
                    print(f"--- {precision} {name}\n{table}", flush=True)
            del det
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
