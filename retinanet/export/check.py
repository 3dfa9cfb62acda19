"""The proof that an export detects what the PyTorch model detects: both run on the same inputs (the bundled
photo and a few generated images), and their detections are compared one by one.

Both sides get the same padded tensor: for a fixed-size export that is the image padded to the export's input
size, so what is compared is the exported graph, not the extra padding (which changes border features a little,
as a batch of mixed sizes does in the reference).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from retinanet.assets import SAMPLE_IMAGE
from retinanet.data.images import read_bgr
from retinanet.data.preprocess import collate
from retinanet.export.detector import ExportedDetector
from retinanet.inference.detector import Detector

BOX_TOL = 0.01  # pixels, in original-image coordinates
SCORE_TOL = 1e-4
# A half-precision network is compared with the fp32 model: its rounding moves scores and boxes more, and swaps
# detections of nearly equal score, so each fp32 detection is matched to the export's same-label detection of
# highest IoU (at least MATCH_IOU) and the differences are taken over the pairs; all but HALF_UNMATCHED of them
# must find a partner.
HALF_BOX_TOL, HALF_SCORE_TOL, MATCH_IOU, HALF_UNMATCHED = 2.0, 1e-2, 0.9, 0.05


def generated_images(portrait: bool, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Deterministic BGR test images: flat-coloured rectangles on a gradient, at a few sizes (landscape, and
    portrait when the export takes any shape)."""
    rng = np.random.default_rng(seed)
    sizes = [(640, 427), (500, 333)] + ([(427, 640)] if portrait else [])
    images = []
    for w, h in sizes:
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (w + h)], axis=-1).astype(np.uint8)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
            img[y0:y1, x0:x1] = rng.integers(0, 255, 3, dtype=np.uint8)
        images.append((f"generated {w}x{h}", img))
    return images


@dataclass
class CheckRow:
    image: str
    torch_detections: int
    export_detections: int
    max_box_diff: float  # largest |difference| of a box coordinate, pixels (nan when the counts differ)
    max_score_diff: float
    labels_agree: bool
    passed: bool


@dataclass
class CheckReport:
    rows: list[CheckRow]
    box_tol: float
    score_tol: float
    runtime: str

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "box_tol": self.box_tol, "score_tol": self.score_tol, "runtime": self.runtime,
                "images": [asdict(r) for r in self.rows]}


def _numpy(detections):
    return [t.detach().float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy() for t in detections]


def compare(name: str, ref, got, box_tol: float, score_tol: float) -> CheckRow:
    """Detections (boxes, scores, labels) of one image, both in descending score order, one to one."""
    (rb, rs, rl), (gb, gs, gl) = _numpy(ref), _numpy(got)
    if len(rs) != len(gs):
        return CheckRow(name, len(rs), len(gs), float("nan"), float("nan"), False, False)
    box = float(np.abs(rb - gb).max()) if len(rs) else 0.0
    score = float(np.abs(rs - gs).max()) if len(rs) else 0.0
    labels = bool((rl == gl).all())
    return CheckRow(name, len(rs), len(gs), box, score, labels, labels and box <= box_tol and score <= score_tol)


def compare_matched(name: str, ref, got, box_tol: float, score_tol: float) -> CheckRow:
    """Detections of one image compared by matching (half precision): see HALF_UNMATCHED."""
    from torchvision.ops import box_iou

    (rb, rs, rl), (gb, gs, gl) = _numpy(ref), _numpy(got)
    iou = box_iou(torch.from_numpy(rb), torch.from_numpy(gb)).numpy() if len(rs) and len(gs) else None
    free = np.ones(len(gs), bool)
    box = score = 0.0
    matched = 0
    for i in range(len(rs)):
        cand = np.flatnonzero(free & (gl == rl[i]))
        if iou is None or not len(cand) or iou[i, cand].max() < MATCH_IOU:
            continue
        j = cand[iou[i, cand].argmax()]
        free[j] = False
        matched += 1
        box, score = max(box, float(np.abs(rb[i] - gb[j]).max())), max(score, float(abs(rs[i] - gs[j])))
    labels = matched >= (1 - HALF_UNMATCHED) * max(len(rs), len(gs))
    return CheckRow(name, len(rs), len(gs), box, score, labels, labels and box <= box_tol and score <= score_tol)


def check_export(exported: ExportedDetector, reference: Detector, images=None) -> CheckReport:
    """Run `exported` and the fp32 PyTorch `reference` on the same padded inputs and compare the detections."""
    if images is None:
        images = [("bundled photo", read_bgr(SAMPLE_IMAGE))] + generated_images(exported.info.input_size is None)
    half = exported.info.precision != "fp32"
    box_tol, score_tol = (HALF_BOX_TOL, HALF_SCORE_TOL) if half else (BOX_TOL, SCORE_TOL)
    rows = []
    for name, bgr in images:
        tensor, meta = reference.prepare(bgr)
        batch = exported.fit_input(collate([tensor], exported.cfg.size_divisor)).to(reference.device)
        ref = reference.detect_tensors(batch, [meta])[0]
        got = exported.detect_tensors(batch, [meta])[0]
        rows.append((compare_matched if half else compare)(name, ref, got, box_tol, score_tol))
    return CheckReport(rows, box_tol, score_tol, exported.runtime)
