"""rdet's RetinaNet engine: give it a ModelConfig and a weights path; it knows nothing of manifests or the CLI.

    retinanet/model/       the network: backbone, neck, head, anchors, box coder, assigner, losses, checkpoints
    retinanet/data/        images, the reference's pre-processing, COCO sets, training batches
    retinanet/inference/   Detector, post-processing, fast paths, drawing
    retinanet/training/    Trainer, schedule, resumable state
    retinanet/evaluation/  COCO box AP
    retinanet/benchmark/   fps and memory as published

The public names below are imported on first use, so that `retinanet.config` (which `rdet list` needs) does not
pay for importing torch; the TYPE_CHECKING block shows IDEs and type checkers the same names.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retinanet.config import ModelConfig
    from retinanet.data.coco import CocoSet
    from retinanet.errors import ArgumentError, CheckpointError, DatasetError, ImageError, RetinaNetError
    from retinanet.inference.detector import Detections, Detector, resolve_device
    from retinanet.model.retinanet import RetinaNet

_EXPORTS = {
    "ModelConfig": "config", "Detector": "inference.detector", "Detections": "inference.detector",
    "resolve_device": "inference.detector", "RetinaNet": "model.retinanet", "RetinaNetError": "errors",
    "CheckpointError": "errors", "ImageError": "errors", "DatasetError": "errors", "ArgumentError": "errors",
    "CocoSet": "data.coco",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"retinanet.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
