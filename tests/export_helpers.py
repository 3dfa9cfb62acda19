"""Small reference-format checkpoints for every zoo architecture, and their exports, shared by the export tests."""
from __future__ import annotations

from pathlib import Path

from reference_ckpt import reference_state_dict, save_reference_checkpoint
from retinanet import Detector
from tiny_zoo import CLASSES

SCALE = (320, 256)  # small inputs: a fixed-size export takes 256x320


def calm_checkpoint(path: Path, depth: int, groups: int = 1, base_width: int = 64, style: str = "pytorch",
                    seed: int = 0) -> Path:
    """A 3-class checkpoint whose head gives distinct scores and boxes a few pixels wide (random heads saturate
    every score at 1.0, and ties make a comparison of two runs meaningless)."""
    sd = reference_state_dict(depth=depth, groups=groups, base_width=base_width, num_classes=len(CLASSES),
                              seed=seed)
    for key in sd:  # residual branches at a fifth, as in trained networks: 101 random blocks blow activations up
        if key.endswith(("bn3.weight", "bn3.bias")) or (depth < 50 and key.endswith(("bn2.weight", "bn2.bias"))):
            sd[key] *= 0.2
    if style == "caffe":  # its input is not divided by a std of ~58: shrink the stem to match
        sd["backbone.conv1.weight"] /= 58.0
    sd["bbox_head.retina_cls.weight"] *= 0.1
    sd["bbox_head.retina_cls.bias"].fill_(-1.0)
    sd["bbox_head.retina_reg.weight"] *= 0.05
    save_reference_checkpoint(path, sd, classes=CLASSES)
    return path


def reference_detector(entry, directory: Path) -> Detector:
    """The plain fp32 PyTorch detector of a zoo entry's architecture with a small checkpoint."""
    ckpt = directory / f"{entry.name}.pth"
    if not ckpt.exists():
        calm_checkpoint(ckpt, entry.depth, entry.groups, entry.base_width, entry.style)
    return Detector(entry.model_config(scale=SCALE), ckpt, device="cpu", fast=False)
