"""Where r50_fpn_1x's time goes per image, by stage (retinanet.benchmark.stages): decode, pre-process, copy,
forward, post-process medians, and the end-to-end latency's p50/p90/p99, for each precision, random weights with a
trained model's output load, on the bundled photo (JPEG bytes decoded each time).

    python benchmarks/stages_gpu.py --precision fp32,fp16 --images 200 --json stages.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precision", default="fp32,fp16")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import zoo
    from retinanet.assets import SAMPLE_IMAGE
    from retinanet.benchmark.measure import device_name
    from retinanet.benchmark.stages import time_stages

    encoded = [SAMPLE_IMAGE.read_bytes()]
    report = {"device": device_name(args.device), "results": {}}
    for precision in args.precision.split(","):
        det = zoo.load("r50_fpn_1x", random_weights=True, device=args.device, precision=precision)
        for graphs in (True, False):
            res = time_stages(det, encoded, images=args.images, warmup=args.warmup, graphs=graphs)
            key = f"{precision} {'graphed' if res['graphs'] else 'eager'}"
            report["results"][key] = res
            print(key, json.dumps(res), flush=True)
        del det
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
