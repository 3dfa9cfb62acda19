"""The PyTorch detectors the export tests export and compare with: every zoo architecture, small checkpoints."""
from __future__ import annotations

from pathlib import Path

from coco_data import write_calm_weights
from retinanet import Detector

SCALE = (320, 256)  # small inputs: a fixed-size export takes 256x320


def reference_detector(entry, directory: Path) -> Detector:
    """The plain fp32 PyTorch detector of a zoo entry's architecture with a small (3-class, calm) checkpoint."""
    ckpt = directory / f"{entry.name}.pth"
    if not ckpt.exists():
        write_calm_weights(ckpt, depth=entry.depth, groups=entry.groups, base_width=entry.base_width,
                           style=entry.style)
    return Detector(entry.model_config(scale=SCALE), ckpt, device="cpu", fast=False)
