"""End-to-end latency on a GPU of rdet beside torchvision's RetinaNet, on the same image in the same run.

Both are ResNet-50 FPN RetinaNets with random weights whose heads are calibrated to a trained model's output
load on the image (retinanet.model.trained_like: ~2000 candidates into NMS, 100 detections), so post-processing
costs what it costs on a photo; torchvision keeps 100 detections per image like rdet (its default is 300). Each
timed call goes from an RGB uint8 array on the host to detections on the host:

- rdet Detector.predict: on CUDA the device path (host resize, uint8 upload through reused pinned buffers,
  device normalisation, forward and sync-free post-processing as one CUDA graph), issue #13's GPU path;
- rdet LAYOUT, NMS ...: the same with the network in channels-last or NCHW (fp32 only: the tensor-core precisions
  run NHWC natively) and the post-processing's NMS sync-free in the graph (sync_free.CAPACITY candidates) or
  exact when the results are read (capacity 0: torchvision's nms after the graph, synchronising);
- rdet eager device path: the same without graphs; rdet plain path: `use_device_path = False`; both eager;
- torchvision: the array uploaded, scaled to [0, 1], its transform (resize, normalise, pad), forward and
  post-processing, `.cpu()` of the outputs. In fp32 its TF32 is off (true fp32, like rdet's fp32; a second row
  shows it with PyTorch's defaults: cuDNN TF32 on), in tf32 on.

cuDNN's algorithm choice is the same for both in a run: its heuristics by default (PyTorch's default), or its
autotuner with --autotune (rdet's Detector(autotune=True), torchvision under cudnn.benchmark). PyTorch keeps a
convolution's first choice per shape for the whole process, so the two must be separate runs.

Calls alternate between the models, so drifting clocks hit all alike; medians and ratios are printed (and written
as JSON with --json). --tf32-cost compares tf32 with fp32 on a set of generated images: detections matched, the
largest box and score differences, and the box AP of tf32's detections scored against fp32's as ground truth.

    python benchmarks/predict_gpu.py                          # fp32 and fp16, 30 timed calls each
    python benchmarks/predict_gpu.py --precision fp16 --repeats 50 --json out.json
    python benchmarks/predict_gpu.py --precision fp32 --autotune   # both autotuned
    python benchmarks/predict_gpu.py --precision fp16 --files 40   # also predict_files, read ahead or not
    python benchmarks/predict_gpu.py --device cpu --size 320x256 --repeats 3   # a smoke test without a GPU
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

from retinanet.benchmark.measure import synchronize  # noqa: E402


def _image(width: int, height: int):
    """The bundled photo stretched to width x height, as an RGB uint8 array."""
    import cv2

    from retinanet.assets import SAMPLE_IMAGE
    from retinanet.data.images import read_bgr

    bgr = cv2.resize(read_bgr(SAMPLE_IMAGE), (width, height), interpolation=cv2.INTER_LINEAR)
    return bgr[:, :, ::-1].copy()


def torchvision_model(device, image, size):
    """torchvision's retinanet_resnet50_fpn, random weights, head calibrated like rdet's on `image`."""
    from torchvision.models.detection import retinanet_resnet50_fpn

    from retinanet.model.trained_like import calibrate_final_convs

    model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, min_size=min(size), max_size=max(size),
                                   detections_per_img=100).eval().to(device)
    with torch.no_grad():
        images, _ = model.transform([to_torchvision_input(image, device)])
        feats = list(model.backbone(images.tensors).values())
        cls_head, reg_head = model.head.classification_head, model.head.regression_head
        calibrate_final_convs(cls_head.cls_logits, reg_head.bbox_reg, [cls_head.conv(f) for f in feats],
                              [reg_head.conv(f) for f in feats], score_thr=model.score_thresh)
    return model


def to_torchvision_input(image, device):
    return torch.from_numpy(image).to(device, non_blocking=True).permute(2, 0, 1).float().div_(255)


def rdet_detector(device, precision, size, **options):
    """r50_fpn_1x with random weights, its head calibrated on the bundled photo (zoo.load's --random-weights);
    `options`: the Detector's (autotune, layout)."""
    import zoo

    return zoo.load("r50_fpn_1x", random_weights=True, device=str(device), precision=precision, scale=size,
                    **options)


def time_calls(calls: dict, repeats: int, warmup: int, device) -> dict:
    """{name: (median ms, detections of the last call)}, calls alternating, each synchronised at its end."""
    times = {name: [] for name in calls}
    counts = {}
    for i in range(warmup + repeats):
        for name, call in calls.items():
            synchronize(device)
            start = time.perf_counter()
            counts[name] = call()
            synchronize(device)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: {"median_ms": round(statistics.median(t), 3), "p90_ms": round(sorted(t)[int(0.9 * (len(t) - 1))], 3),
                   "detections": counts[name]} for name, t in times.items()}


@contextmanager
def torchvision_switches(precision: str, autotune: bool):
    """torchvision's run: TF32 as the precision says (off for fp32: true fp32, as rdet's fp32; on for tf32) and
    cuDNN's autotuner as rdet's. "defaults": PyTorch's own settings (cuDNN TF32 on, matmul TF32 off, no
    autotuning), with which a plain "fp32" run makes TF32 convolutions: the "torchvision, PyTorch defaults" row."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark
    cudnn.benchmark = autotune and precision != "defaults"
    if precision in ("fp32", "tf32"):
        cudnn.allow_tf32 = matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark = saved


def rdet_variants(det, size) -> dict:
    """{row name: predict call} for each memory layout and NMS of rdet's device path (sync_free.CAPACITY
    candidates in the graph, or 0: exact, after it); `det` serves its own layout, another is built for the other."""
    from retinanet.inference.device_path import DevicePath
    from retinanet.inference.sync_free import CAPACITY

    own = "channels_last" if det.channels_last else "nchw"
    layouts = ("channels_last", "nchw") if det.precision == "fp32" else ("channels_last",)
    calls = {}
    for layout in layouts:
        built = det if layout == own else rdet_detector(det.device, det.precision, size, autotune=det.autotune,
                                                        layout=layout)
        for capacity in (CAPACITY, 0):
            path = DevicePath(built, capacity=capacity)
            calls[f"rdet {layout}, NMS {'exact' if capacity == 0 else f'sync-free {capacity}'}"] = path.predict
    return calls


def compare(device, precision, size, repeats, warmup, autotune=False) -> dict:
    from retinanet.inference.device_path import DevicePath
    from retinanet.inference.fast import autocast

    image = _image(*size)
    det = rdet_detector(device, precision, size, autotune=autotune)
    eager = DevicePath(det, graphs=False)
    variants = rdet_variants(det, size)
    tv = torchvision_model(device, image, size)

    def run_tv(switches):
        def run():
            with torch.inference_mode(), autocast(device, precision), torchvision_switches(switches, autotune):
                out = tv([to_torchvision_input(image, device)])[0]
            return len({k: v.cpu() for k, v in out.items()}["scores"])
        return run

    def plain():
        det.use_device_path = False
        try:
            return len(det.predict(image)[0])
        finally:
            det.use_device_path = True

    calls = {"rdet Detector.predict": lambda: len(det.predict(image)[0]),  # on CUDA: the graphed device path
             **{name: (lambda p=predict: len(p(image)[0])) for name, predict in variants.items()},
             "rdet eager device path": lambda: len(eager.predict(image)[0]),
             "rdet plain path": plain,
             "torchvision": run_tv(precision)}
    if precision == "fp32":
        calls["torchvision, PyTorch defaults"] = run_tv("defaults")
    result = time_calls(calls, repeats, warmup, device)
    graphed = det.device_path()
    same = det.predict(image)[0], eager.predict(image)[0]
    result["graphed equals eager"] = bool(len(same[0]) == len(same[1]) and (same[0].boxes == same[1].boxes).all())
    result["graph captures"] = graphed.captures if graphed else 0
    result["graph failures"] = {str(k[0][0]): v for k, v in graphed.failed.items()} if graphed else {}
    result["resize on the device"] = bool(graphed and graphed.resize_on_device)
    result["torchvision TF32"] = {"fp32": "off (true fp32)", "tf32": "on"}.get(precision, "PyTorch defaults")
    result["cuDNN autotuner"] = autotune
    result["rdet layout"] = "channels_last" if det.channels_last else "nchw"
    tv_ms = result["torchvision"]["median_ms"]
    for name in calls:
        if name != "torchvision":
            result[name]["ratio_to_torchvision"] = round(result[name]["median_ms"] / tv_ms, 3)
    return result


def files_throughput(device, precision: str, files: int, photo_size=(1600, 1200)) -> dict:
    """Images per second of Detector.predict_files over `files` JPEG photos (decoding included), reading the next
    photos ahead in a thread (the default on CUDA) and not; each way run twice, the second run timed."""
    import tempfile

    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        photo = _image(*photo_size)
        paths = []
        for i in range(files):
            paths.append(f"{tmp}/photo{i}.jpg")
            cv2.imwrite(paths[-1], photo[:, ::-1 if i % 2 else 1, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        det = rdet_detector(device, precision, (1333, 800))
        out = {"files": files, "photo": f"{photo_size[0]}x{photo_size[1]} JPEG"}
        for name, depth in (("read ahead", None), ("no read-ahead", 0)):
            det.read_ahead_frames = depth
            for _ in range(2):
                synchronize(device)
                start = time.perf_counter()
                found = sum(len(r.detections) for r in det.predict_files(paths))
                synchronize(device)
                seconds = time.perf_counter() - start
            out[name] = {"images_per_s": round(files / seconds, 2), "detections": found}
        out["read-ahead speed-up"] = round(out["read ahead"]["images_per_s"] / out["no read-ahead"]["images_per_s"], 3)
    return out


def tf32_cost(device, size, images: int) -> dict:
    """tf32 against fp32 on generated photo-like images: matching, largest differences, AP against fp32."""
    import numpy as np

    from retinanet.inference.device_path import DevicePath

    photo = _image(*size)
    rng = np.random.default_rng(0)
    pics = []
    for _ in range(images):  # crops, flips and brightness of the photo at varied sizes
        h, w = rng.integers(size[1] // 2, size[1] + 1), rng.integers(size[0] // 2, size[0] + 1)
        y, x = rng.integers(0, size[1] - h + 1), rng.integers(0, size[0] - w + 1)
        crop = photo[y:y + h, x:x + w][:, ::-1 if rng.random() < 0.5 else 1]
        pics.append(np.clip(crop * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8))
    det32 = rdet_detector(device, "fp32", size)
    dets = {}
    for precision in ("fp32", "tf32"):
        det32.precision = precision
        dets[precision] = DevicePath(det32, graphs=False).predict(pics)
    det32.precision = "fp32"
    box_diff, score_diff, same_count, total = 0.0, 0.0, 0, 0
    for a, b in zip(dets["fp32"], dets["tf32"]):
        total += len(a)
        n = min(len(a), len(b))
        same = (a.labels[:n] == b.labels[:n]) & (np.abs(a.boxes[:n] - b.boxes[:n]).max(1, initial=0) < 0.5)
        same_count += int(same.sum())
        if same.any():
            box_diff = max(box_diff, float(np.abs(a.boxes[:n][same] - b.boxes[:n][same]).max()))
            score_diff = max(score_diff, float(np.abs(a.scores[:n][same] - b.scores[:n][same]).max()))
    return {"images": images, "fp32 detections": total, "same rank, label and box (<0.5 px)": same_count,
            "max box difference px (matched)": round(box_diff, 4), "max score difference (matched)":
            round(score_diff, 6), **ap_against(dets["fp32"], dets["tf32"])}


def ap_against(reference, other) -> dict:
    """Box AP of `other`'s detections with `reference`'s (score >= 0.3) as ground truth, and of the reference
    itself (the ceiling): their difference is what tf32 costs in AP terms on these images."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        return {"AP": "pycocotools missing"}
    import contextlib
    import io

    gt = {"info": {}, "images": [], "annotations": [], "categories": [{"id": c} for c in range(80)]}
    for i, d in enumerate(reference):
        gt["images"].append({"id": i, "width": d.width, "height": d.height})
        for b, s, lab in zip(d.boxes.tolist(), d.scores, d.labels):
            if s >= 0.3:
                w, h = b[2] - b[0], b[3] - b[1]
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(lab),
                                          "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        for name, dets in (("fp32", reference), ("tf32", other)):
            results = [{"image_id": i, "category_id": int(lab), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                        "score": float(s)} for i, d in enumerate(dets) for b, s, lab in
                       zip(d.boxes.tolist(), d.scores, d.labels)]
            ev = COCOeval(coco, coco.loadRes(results), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[f"AP of {name} vs fp32 (score>=0.3) as ground truth"] = round(float(ev.stats[0]), 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke test)")
    ap.add_argument("--precision", default="fp32,fp16",
                    help="comma-separated: fp32, tf32, fp16 (default fp32,fp16); none: no timing (--tf32-cost alone)")
    ap.add_argument("--repeats", type=int, default=30, help="timed calls per model (median)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed calls per model first")
    ap.add_argument("--size", default="1333x800", help="image size WxH (default 1333x800)")
    ap.add_argument("--autotune", action="store_true",
                    help="cuDNN's autotuner for rdet and torchvision alike (default: its heuristics for both)")
    ap.add_argument("--tf32-cost", type=int, default=0, metavar="N", help="also compare tf32 with fp32 on N images")
    ap.add_argument("--files", type=int, default=0, metavar="N",
                    help="also time predict_files over N JPEG photos, reading ahead and not (first precision)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    from retinanet.benchmark.measure import device_name
    from retinanet.errors import RetinaNetError

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu for a smoke test", file=sys.stderr)
        return 2
    size = tuple(int(v) for v in args.size.lower().split("x"))
    report = {"device": device_name(device), "torch": torch.__version__, "size": list(size), "repeats": args.repeats,
              "warmup": args.warmup, "autotune": args.autotune, "results": {}}
    print(f"{report['device']}, torch {torch.__version__}, {size[0]}x{size[1]}, median of {args.repeats} calls "
          f"after {args.warmup} warm-up calls", flush=True)
    for precision in [p for p in args.precision.split(",") if p != "none"]:
        try:
            res = compare(device, precision, size, args.repeats, args.warmup, args.autotune)
        except RetinaNetError as err:
            print(f"{precision}: {err}", flush=True)
            report["results"][precision] = {"error": str(err)}
            continue
        report["results"][precision] = res
        for name, r in res.items():
            if not isinstance(r, dict) or "median_ms" not in r:
                continue
            ratio = f"  {r['ratio_to_torchvision']:.2f}x torchvision" if "ratio_to_torchvision" in r else ""
            print(f"{precision:5s} {name:40s} {r['median_ms']:8.2f} ms (p90 {r['p90_ms']:.2f})  "
                  f"{r['detections']:3d} detections{ratio}", flush=True)
        print(f"{precision:5s} graphed equals eager: {res['graphed equals eager']}; captures "
              f"{res['graph captures']}, failures {res['graph failures'] or 'none'}; resize on the device: "
              f"{res['resize on the device']}; torchvision's TF32: "
              f"{res['torchvision TF32']}; cuDNN autotuner: {res['cuDNN autotuner']}; rdet's layout: "
              f"{res['rdet layout']}", flush=True)
    if args.files:
        precision = next((p for p in args.precision.split(",") if p != "none"), "fp32")
        try:
            report["files"] = files_throughput(device, precision, args.files)
        except RetinaNetError as err:
            report["files"] = {"error": str(err)}
        print(f"files ({precision}):", json.dumps(report["files"]), flush=True)
    if args.tf32_cost:
        try:
            report["tf32_cost"] = tf32_cost(device, size, args.tf32_cost)
        except RetinaNetError as err:
            report["tf32_cost"] = {"error": str(err)}
        print("tf32 cost:", json.dumps(report["tf32_cost"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
