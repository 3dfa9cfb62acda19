"""Development aid (never used by tests or CI): compare rdet's detections with the reference implementation's.

Builds a random checkpoint in the reference format for a zoo model, scaled so that every level P3-P7 has a few
dozen (anchor, class) pairs above the 0.05 score threshold (so MMDetection 3.x's pre-NMS rule and v2.0's agree),
runs the reference (../shared/reference/predict.py in its own venv) and rdet on the same images, and reports
how the detections match.

    python tools/compare_reference.py r50_fpn_1x img1.jpg img2.png [--ref-python PATH] [--per-level 40]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

import zoo
from retinanet import Detector
from retinanet.model.reference_layout import reference_state_dict, save_reference_checkpoint

ROOT = Path(__file__).resolve().parents[1]

CLS_BIAS = -6.0
THRESHOLD_LOGIT = math.log(0.05 / 0.95)


def level_scales(det: Detector, image: str, per_level: int) -> list[float]:
    """Per-level factors k such that about `per_level` pairs score above 0.05 (the head is positively
    homogeneous in its input when its biases are zero, so logits scale exactly by k)."""
    tensor, meta = det.prepare(image)
    from retinanet.data.preprocess import collate

    with torch.inference_mode():
        feats = det.model.neck(det.model.backbone(collate([tensor]).contiguous(memory_format=torch.channels_last)))
        scales = []
        for f in feats:
            cls = f
            for conv in det.model.bbox_head.cls_convs:
                cls = conv(cls)
            z = torch.nn.functional.conv2d(cls, det.model.bbox_head.retina_cls.weight, padding=1).flatten()
            q = torch.topk(z, per_level).values[-1].item()
            scales.append((THRESHOLD_LOGIT - CLS_BIAS) / q)
    return scales


def build_checkpoint(entry, image: str, per_level: int, path: Path, seed: int) -> None:
    cfg = entry.model_config()
    sd = reference_state_dict(cfg.depth, cfg.groups, cfg.base_width, cfg.num_classes, seed=seed)
    for key in [k for k in sd if k.startswith(("neck.", "bbox_head.")) and k.endswith(".bias")]:
        sd[key].zero_()
    sd["bbox_head.retina_cls.bias"].fill_(CLS_BIAS)
    save_reference_checkpoint(path, sd)
    det = Detector(cfg, path, device="cpu")
    k = level_scales(det, image, per_level)
    for i in range(3):
        sd[f"neck.fpn_convs.{i}.conv.weight"] *= k[i]
    sd["neck.fpn_convs.3.conv.weight"] *= k[3]
    sd["neck.fpn_convs.4.conv.weight"] *= k[4] / k[3]  # P7 = conv(P6): undo P6's factor, apply P7's
    save_reference_checkpoint(path, sd)


def match(ours: list, ref: list) -> dict:
    """Greedy one-to-one matching of detections with the same label by IoU, then the largest differences."""
    if not ours or not ref:
        return {"ours": len(ours), "ref": len(ref), "matched": 0}
    a = np.array([d["bbox"] + [d["score"], d["label"]] for d in ours], dtype=np.float64)
    b = np.array(ref, dtype=np.float64)
    used, pairs = set(), []
    for i in range(len(a)):
        best, best_iou = None, 0.5
        for j in range(len(b)):
            if j in used or b[j, 5] != a[i, 5]:
                continue
            x1, y1 = max(a[i, 0], b[j, 0]), max(a[i, 1], b[j, 1])
            x2, y2 = min(a[i, 2], b[j, 2]), min(a[i, 3], b[j, 3])
            inter = max(0, x2 - x1) * max(0, y2 - y1)
            union = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            iou = inter / union if union > 0 else 0
            if iou > best_iou:
                best, best_iou = j, iou
        if best is not None:
            used.add(best)
            pairs.append((i, best))
    box = max(float(np.abs(a[i, :4] - b[j, :4]).max()) for i, j in pairs)
    score = max(float(abs(a[i, 4] - b[j, 4])) for i, j in pairs)
    return {"ours": len(a), "ref": len(b), "matched": len(pairs), "max_box_diff_px": box, "max_score_diff": score}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--ref-python", default=os.path.expanduser("~/.cache/rdet-reference/mmdet-venv/bin/python"))
    ap.add_argument("--per-level", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    entry = zoo.get(args.model)
    ref_name = entry.aliases[-1]  # the MMDetection 3.x config name is the last alias
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt.pth"
        build_checkpoint(entry, args.images[0], args.per_level, ckpt, args.seed)
        out = Path(tmp) / "ref.json"
        script = ROOT.parent / "shared/reference/predict.py"
        subprocess.run([args.ref_python, str(script), ref_name, str(ckpt), str(out), *args.images], check=True)
        ref = json.loads(out.read_text())["images"]
        det = Detector(entry.model_config(), ckpt, device="cpu")
        for path, r in zip(args.images, ref):
            ours = det.predict(path)[0]
            print(Path(path).name, (ours.width, ours.height) == (r["width"], r["height"]),
                  match(ours.to_list(), r["detections"]))


if __name__ == "__main__":
    main()
