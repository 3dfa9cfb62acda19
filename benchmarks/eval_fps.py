"""Does `rdet eval` keep up with the GPU? Images per second of COCO-style evaluation against `rdet bench`'s fps on
the same images, same model, same precision, same process.

Writes N JPEG images (crops, flips and brightness changes of the bundled photo at COCO's usual sizes: 640x480,
480x640, 640x427, 427x640, 500x375) and a bare annotation file with the 80 COCO categories, then times
retinanet.evaluation.run_detection over them (loader workers decode and resize, the GPU path does the rest; the
time includes starting the workers) after a short untimed pass that captures the graphs, and times
measure.time_inference (what `rdet bench --fps` runs: pre-processed images handed over outside the timer) on the
same images. Target of issue #13: eval at least 0.8x bench. Also printed: when the first results came (workers
starting, the first images decoding), the rate from there on, and the longest wait between two results (a stall:
a late worker, the loader shutting its workers down before the last results are read).

    python benchmarks/eval_fps.py --images 500 --precision fp32,fp16 --json eval_fps.json
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (500, 375))


def write_set(directory: Path, count: int, seed: int = 0) -> tuple[Path, Path]:
    """(annotation file, image directory) of `count` photo-like JPEGs."""
    import cv2
    import numpy as np

    from retinanet.assets import SAMPLE_IMAGE
    from retinanet.data.classes import COCO_CLASSES
    from retinanet.data.images import read_bgr

    photo = read_bgr(SAMPLE_IMAGE)
    rng = np.random.default_rng(seed)
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        ph, pw = photo.shape[:2]
        ch, cw = rng.integers(ph // 2, ph + 1), rng.integers(pw // 2, pw + 1)
        y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
        crop = cv2.resize(photo[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.clip(crop * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)
        name = f"{i:06d}.jpg"
        cv2.imwrite(str(images / name), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        records.append({"id": i + 1, "file_name": name, "width": w, "height": h})
    ann = directory / "instances.json"
    ann.write_text(json.dumps({"images": records, "annotations": [],
                               "categories": [{"id": k + 1, "name": n} for k, n in enumerate(COCO_CLASSES)]}))
    return ann, images


def measure(precision: str, ann: Path, images: Path, device: str, workers: int, batch_size: int,
            scale=None) -> dict:
    import torch

    import zoo
    from retinanet.benchmark.inputs import loader_for
    from retinanet.benchmark.measure import synchronize, time_inference
    from retinanet.data.coco import CocoSet
    from retinanet.evaluation.coco_eval import run_detection

    det = zoo.load("r50_fpn_1x", random_weights=True, device=device, precision=precision,
                   **({"scale": scale} if scale else {}))
    coco = CocoSet.load(ann, images)
    ids = list(coco.image_ids)
    run_detection(det, coco, batch_size=batch_size, workers=workers, image_ids=ids[:40])  # captures, warm-up
    synchronize(det.device)
    done = []  # (images finished, when): the first batch's wait is the fixed cost (workers starting, first decode)
    collections = []  # (generation, seconds) of each garbage collection in the timed run: a suspect for stalls
    timer = _gc_timer(collections)
    gc.callbacks.append(timer)
    start = time.perf_counter()
    try:
        results = run_detection(det, coco, batch_size=batch_size, workers=workers,
                                progress=lambda n: done.append((n, time.perf_counter())))
        synchronize(det.device)
        end = time.perf_counter()
    finally:
        gc.callbacks.remove(timer)  # not pop(): another callback may have been added meanwhile
    eval_seconds = end - start
    first_n, first_at = done[0]
    steady = (len(ids) - first_n) / max(done[-1][1] - first_at, 1e-9)
    # the longest wait between two results (a stall: the loader's shutdown before the last ones, a late worker)
    waits = [(b - a, i + 1) for i, ((_, a), (_, b)) in enumerate(zip(done, done[1:]))]
    gap, gap_at = max(waits, default=(0.0, 0))
    paths = [coco.path(i) for i in ids]
    speed = time_inference(det, loader_for(det, paths), images=len(paths), warmup=10)  # as rdet bench times
    eval_fps = len(ids) / eval_seconds
    del det
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"images": len(ids), "eval_fps": round(eval_fps, 2), "eval_seconds": round(eval_seconds, 3),
            "first_results_ms": round((first_at - start) * 1000, 1), "eval_fps_after_first": round(steady, 2),
            "longest_wait_ms": round(gap * 1000, 1), "longest_wait_before_result": gap_at,
            "waits_over_50ms": sum(w > 0.05 for w, _ in waits),
            "gc_runs": len(collections), "gc_longest_ms": round(max((s for _, s in collections), default=0) * 1000, 1),
            "gc_gen2_runs": sum(g == 2 for g, _ in collections),
            "after_last_results_ms": round((end - done[-1][1]) * 1000, 1),
            "bench_fps": round(speed.fps, 2), "eval_over_bench": round(eval_fps / speed.fps, 3),
            "detections_per_image_eval": round(len(results) / len(ids), 2),
            "detections_per_image_bench": round(speed.detections, 2), "workers": workers, "batch_size": batch_size}


def _gc_timer(collections: list):
    """A gc.callbacks entry that appends (generation, seconds) for each collection."""
    started = {}

    def timer(phase, info):
        if phase == "start":
            started["at"] = time.perf_counter()
        elif "at" in started:
            collections.append((info["generation"], time.perf_counter() - started.pop("at")))
    return timer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--precision", default="fp32,fp16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--scale", help="test scale WxH instead of 1333x800 (a CPU smoke test)")
    args = ap.parse_args(argv)
    scale = tuple(int(v) for v in args.scale.split("x")) if args.scale else None
    from retinanet.benchmark.measure import device_name

    report = {"device": device_name(args.device), "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ann, images = write_set(Path(tmp), args.images)
        print(f"{report['device']}: {args.images} images written in {time.perf_counter() - start:.1f} s", flush=True)
        for precision in args.precision.split(","):
            res = measure(precision, ann, images, args.device, args.workers, args.batch_size, scale)
            report["results"][precision] = res
            print(f"{precision}: eval {res['eval_fps']:.1f} img/s, bench {res['bench_fps']:.1f} fps, eval/bench "
                  f"{res['eval_over_bench']:.2f} ({res['detections_per_image_eval']} / "
                  f"{res['detections_per_image_bench']} detections per image); first results after "
                  f"{res['first_results_ms']:.0f} ms, {res['eval_fps_after_first']:.1f} img/s from there, "
                  f"longest wait between results {res['longest_wait_ms']:.0f} ms (before result "
                  f"{res['longest_wait_before_result']}; {res['waits_over_50ms']} over 50 ms); garbage collections "
                  f"{res['gc_runs']} ({res['gc_gen2_runs']} full), longest {res['gc_longest_ms']:.0f} ms",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
