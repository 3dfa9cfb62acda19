"""Per-image CPU latency of rdet's predict path beside torchvision's RetinaNet, on the same image in the same run.

Both are ResNet-50 FPN RetinaNets with random weights (speed does not depend on the values), in eval mode, given
the same 1333x800 RGB uint8 image. Each timed call covers everything from that array to the detections:
rdet's `Detector.predict` (resize, normalise, pad, forward, v2.0 post-processing) and torchvision's model call
(its transform also resizes to 800x1333 and pads to 32; then forward and its own post-processing). The two are
timed alternately, so drifting machine load hits both alike, and the medians are compared.

Not identical networks: torchvision builds P6/P7 from P5 (256 channels) where MMDetection's v2.0 RetinaNet, and
rdet, builds P6 from C5 (2048 channels), so torchvision does slightly less work.

    python benchmarks/predict_cpu.py --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing


def _image(width: int, height: int):
    """The bundled photo stretched to width x height, as an RGB uint8 array."""
    import cv2

    from retinanet.assets import SAMPLE_IMAGE
    from retinanet.data.images import read_bgr

    bgr = cv2.resize(read_bgr(SAMPLE_IMAGE), (width, height), interpolation=cv2.INTER_LINEAR)
    return bgr[:, :, ::-1].copy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls of each model (median; at least 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls of each model first")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="rdet's Detector precision; bf16 also runs torchvision under CPU bf16 autocast")
    ap.add_argument("--size", default="1333x800", help="image WIDTHxHEIGHT (default 1333x800)")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be at least 5")
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    width, height = (int(v) for v in args.size.lower().split("x"))

    import torch
    from torchvision.models.detection import retinanet_resnet50_fpn

    import retinanet
    import zoo
    from retinanet.benchmark.measure import device_name
    from timing import time_alternately

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rgb = _image(width, height)

    try:
        ours = retinanet.Detector(zoo.get("r50_fpn_1x").model_config(), None, device="cpu",
                                  precision=args.precision)
    except retinanet.RetinaNetError as e:  # bf16 on a CPU without native support
        print(f"{args.precision}: not measured: {e}")
        return 1
    theirs = retinanet_resnet50_fpn(weights=None, weights_backbone=None).eval()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.precision == "bf16" else nullcontext

    def run_ours():
        return ours.predict(rgb)

    @torch.inference_mode()
    def run_theirs():
        with autocast():
            x = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)  # torchvision's input convention
            return theirs([x])

    t_ours, t_theirs = time_alternately(run_ours, run_theirs, args.warmup, args.repeats)

    m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"device: {device_name('cpu')}; torch {torch.__version__}; image {width}x{height}; "
          f"{args.warmup} warm-up + {args.repeats} timed calls each, alternating")
    print(f"rdet Detector.predict r50_fpn_1x ({args.precision}): median {m_ours * 1000:.1f} ms/image "
          f"(min {min(t_ours) * 1000:.1f}, max {max(t_ours) * 1000:.1f})")
    print(f"torchvision retinanet_resnet50_fpn ({args.precision}): median {m_theirs * 1000:.1f} ms/image "
          f"(min {min(t_theirs) * 1000:.1f}, max {max(t_theirs) * 1000:.1f})")
    print(f"ratio rdet/torchvision: {m_ours / m_theirs:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
