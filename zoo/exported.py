"""A zoo name with an exported file (`--weights model.onnx` / `model.pt2`): run it only when it is that model."""
from __future__ import annotations

import os

from retinanet.errors import ExportError

from .manifest import Entry


def load_export(entry: Entry, path: str | os.PathLike, device: str = "auto", *, precision: str = "fp32",
                compile: bool = False, overrides: dict | None = None):
    """An ExportedDetector for `path`; ExportError (one line) when the file is another model than `entry`."""
    from retinanet.export.detector import ExportedDetector

    if precision != "fp32" or compile:
        raise ExportError(f"{path}: --precision and --compile apply to checkpoints; an export runs as it was "
                          "exported (see `rdet export --precision`)")
    det = ExportedDetector(path, device=device)
    info = det.info
    if info.model and info.model != entry.name:
        raise ExportError(f"{path} was exported from {info.model}, not {entry.name}: ask for {info.model} instead")
    why = info.mismatch(entry.model_config(), entry.name)
    if why:
        raise ExportError(f"{path} does not fit {entry.name}: {why}")
    overrides = dict(overrides or {})
    fixed = sorted(k for k, v in overrides.items() if k != "score_thr" and not _same(v, getattr(det.cfg, k)))
    if fixed:
        raise ExportError(f"{path}: {', '.join(fixed)} cannot change in an exported model (exported with "
                          + ", ".join(f"{k} {getattr(det.cfg, k)}" for k in fixed) + ")")
    if "score_thr" in overrides:
        det.cfg = det.cfg.replace(score_thr=overrides["score_thr"])
    return det


def _same(a, b) -> bool:
    return tuple(a) == tuple(b) if isinstance(a, (list, tuple)) else a == b
