"""rdet's RetinaNet engine: model, data, post-processing, training, evaluation and benchmarks.

It knows nothing of manifests, downloads or the command line: give it a ModelConfig and a weights path.
Names are imported on first use, so that `retinanet.config` (and `rdet list`) does not pay for importing torch.
"""
from importlib import import_module

_EXPORTS = {
    "ModelConfig": "config", "Detector": "detector", "Detections": "detector", "resolve_device": "detector",
    "RetinaNet": "model", "build_model": "model", "RetinaNetError": "errors", "CheckpointError": "errors",
    "ImageError": "errors", "DatasetError": "errors", "CocoSet": "coco",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
