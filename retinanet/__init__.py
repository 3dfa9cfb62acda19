"""rdet's RetinaNet engine: model, data, post-processing, training, evaluation and benchmarks.

It knows nothing of manifests, downloads or the command line: give it a ModelConfig and a weights path.
"""
from .config import ModelConfig
from .detector import Detections, Detector, resolve_device
from .errors import CheckpointError, DatasetError, ImageError, RetinaNetError
from .model import RetinaNet, build_model

__all__ = ["ModelConfig", "Detector", "Detections", "RetinaNet", "build_model", "resolve_device",
           "RetinaNetError", "CheckpointError", "ImageError", "DatasetError"]
