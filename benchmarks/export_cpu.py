"""Per-image CPU latency of the PyTorch path beside the same model exported to ONNX and run by onnxruntime, on the
same image in the same run.

r50_fpn_1x with random weights (speed does not depend on the values), exported at the fixed 1333x800 input size
(800x1344 padded) by `retinanet.export`, with the post-processing in the graph unless --network-only. Each timed
call is `predict` on the same 1333x800 RGB uint8 array, from the array to the detections: the PyTorch Detector
(its default CPU fast path: BatchNorm folded, channels-last, fused ReLUs) and the ExportedDetector over
onnxruntime (the same resize, normalise and pad, then the session). Both use --threads threads; they are timed
alternately after warm-up and the medians compared.

    python benchmarks/export_cpu.py --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from predict_cpu import _image  # noqa: E402  the same stretched bundled photo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls of each (median; at least 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls of each first")
    ap.add_argument("--network-only", action="store_true", help="export the network alone; the post-processing "
                    "then runs in PyTorch after onnxruntime")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be at least 5")
    if args.threads < 1:
        ap.error("--threads must be at least 1")

    import onnxruntime
    import torch

    import retinanet
    import zoo
    from retinanet.benchmark.measure import device_name
    from retinanet.export.detector import ExportedDetector
    from retinanet.export.exporter import export
    from timing import time_alternately

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rgb = _image(1333, 800)
    cfg = zoo.get("r50_fpn_1x").model_config()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, path = Path(tmp) / "r50.pth", Path(tmp) / "r50.onnx"
        torch.save({"state_dict": retinanet.Detector(cfg, None, device="cpu", fast=False).model.state_dict()}, ckpt)
        plain = retinanet.Detector(cfg, ckpt, device="cpu", fast=False)  # what is exported
        start = time.perf_counter()
        export(plain.model, cfg, path, fmt="onnx", with_postprocess=not args.network_only, model_name="r50_fpn_1x")
        export_seconds = time.perf_counter() - start
        ort_det = ExportedDetector(path, device="cpu", threads=args.threads)
        torch_det = retinanet.Detector(cfg, ckpt, device="cpu")  # the same weights, the default fast path

        t_torch, t_ort = time_alternately(lambda: torch_det.predict(rgb), lambda: ort_det.predict(rgb),
                                          args.warmup, args.repeats)

    m_torch, m_ort = statistics.median(t_torch), statistics.median(t_ort)
    graph = "network only" if args.network_only else "network + post-processing"
    print(f"device: {device_name('cpu')}; torch {torch.__version__}; onnxruntime {onnxruntime.__version__}; "
          f"image 1333x800; {args.threads} threads; {args.warmup} warm-up + {args.repeats} timed calls each, "
          f"alternating; export took {export_seconds:.0f} s")
    print(f"PyTorch Detector.predict r50_fpn_1x (fp32): median {m_torch * 1000:.1f} ms/image "
          f"(min {min(t_torch) * 1000:.1f}, max {max(t_torch) * 1000:.1f})")
    print(f"onnxruntime ExportedDetector.predict ({graph}, fp32): median {m_ort * 1000:.1f} ms/image "
          f"(min {min(t_ort) * 1000:.1f}, max {max(t_ort) * 1000:.1f})")
    print(f"ratio onnxruntime/PyTorch: {m_ort / m_torch:.3f} ({'onnxruntime' if m_ort < m_torch else 'PyTorch'} "
          "is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
