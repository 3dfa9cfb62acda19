"""What an exported file says about itself, so that running it needs nothing else and a mismatch is caught.

Stored as one JSON document: in ONNX under the metadata_props key "rdet", in a .pt2 as the extra file "rdet.json".
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from retinanet.config import ModelConfig
from retinanet.errors import ExportError
from retinanet.version import package_version

FORMATS = {"onnx": ".onnx", "exported-program": ".pt2"}  # format -> file suffix
PRECISIONS = ("fp32", "fp16")  # an export's weights and arithmetic (named here, torch-free, for early checks)
KEY = "rdet"
SCHEMA = 1
ARCHITECTURE = ("depth", "groups", "base_width", "style")
PREPROCESSING = ("mean", "std", "to_rgb")
# The file's own, as a checkpoint's classes are: a fine-tuned head, or the input scale a fixed size was made for.
OWN = ("num_classes", "scale", "size_divisor")
POSTPROCESSING = ("nms_pre", "nms_iou", "max_per_img")


def export_format(path: str | os.PathLike) -> str | None:
    """"onnx" or "exported-program" for a file that is one by its suffix, else None (a checkpoint)."""
    suffix = Path(path).suffix.lower()
    return next((fmt for fmt, ext in FORMATS.items() if ext == suffix), None)


@dataclass(frozen=True)
class ExportInfo:
    model: str  # zoo entry name ("" when exported from a bare config)
    weights_sha256: str  # of the checkpoint file the weights came from ("" for random weights)
    config: dict  # the ModelConfig fields that define the network, its inputs and its post-processing
    class_names: tuple[str, ...]
    format: str  # "onnx" or "exported-program"
    input_size: tuple[int, int] | None  # (H, W) of the padded input; None: any size (--dynamic)
    with_postprocess: bool
    precision: str
    rdet_version: str
    schema: int = SCHEMA

    @classmethod
    def create(cls, cfg: ModelConfig, **kw) -> "ExportInfo":
        keep = ARCHITECTURE + PREPROCESSING + OWN + POSTPROCESSING + ("score_thr",)
        config = json.loads(json.dumps({k: v for k, v in cfg.to_dict().items() if k in keep}))  # as stored
        return cls(config=config, class_names=tuple(cfg.names), rdet_version=package_version(), **kw)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> "ExportInfo":
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
                raise ValueError(f"schema {doc.get('schema') if isinstance(doc, dict) else '?'} (expected {SCHEMA})")
            doc = {f.name: doc[f.name] for f in fields(cls)}
            doc["class_names"] = tuple(str(n) for n in doc["class_names"])
            doc["input_size"] = tuple(int(v) for v in doc["input_size"]) if doc["input_size"] else None
            info = cls(**doc)
            info.model_config()  # the stored config must build
        except RecursionError:
            raise ExportError(f"{source}: unreadable rdet export metadata (JSON nested too deeply)") from None
        except (ValueError, KeyError, TypeError) as err:
            raise ExportError(f"{source}: unreadable rdet export metadata ({err})") from None
        return info

    def model_config(self) -> ModelConfig:
        cfg = dict(self.config)
        for key in ("mean", "std", "scale"):
            cfg[key] = tuple(cfg[key])
        return ModelConfig(**cfg, class_names=self.class_names)

    def describe(self) -> str:
        c = self.config
        arch = f"ResNe{'X' if c['groups'] > 1 else 't'}-{c['depth']}"
        if c["groups"] > 1:
            arch += f" {c['groups']}x{c['base_width']}d"
        return f"{self.model or 'a custom model'} ({arch}, {c['style']} style, {c['num_classes']} classes)"

    def mismatch(self, cfg: ModelConfig, name: str = "") -> str | None:
        """Why this export cannot stand for `cfg` (the zoo entry `name`), or None when it can."""
        own = self.model_config()
        for key in ARCHITECTURE + PREPROCESSING:
            if getattr(own, key) != getattr(cfg, key):
                what = f"zoo model '{name}'" if name else "the requested model"
                return (f"it was exported from {self.describe()}, which differs from {what} in {key} "
                        f"({getattr(own, key)} vs {getattr(cfg, key)})")
        return None
