"""rdet's zoo: the manifest of models, the weights cache and downloads, and `load` to get a ready Detector.

>>> import zoo
>>> det = zoo.load("r50_fpn_1x", device="cpu")          # downloads and verifies the weights if needed
>>> det = zoo.load("r50_fpn_1x", weights="my.pth")       # the architecture from the entry, weights from a file
>>> det = zoo.load("r50_fpn_1x", weights="r50.onnx")     # an `rdet export` file, run by onnxruntime
"""
from __future__ import annotations

import os
from dataclasses import fields

from .errors import DownloadError, ManifestError, UnknownModelError, ZooError
from .exported import load_export
from .manifest import Entry, Zoo

RANDOM_WEIGHTS_SEED = 0

__all__ = ["load", "get", "Zoo", "Entry", "ZooError", "ManifestError", "UnknownModelError", "DownloadError"]


def get(name: str, zoo_file: str | os.PathLike | None = None) -> Entry:
    """The manifest entry for a name or alias (bundled zoo plus `zoo_file` or $RDET_ZOO)."""
    return Zoo.load(zoo_file).get(name)


def load(name: str, weights: str | os.PathLike | None = None, device: str = "auto", *,
         zoo_file: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
         offline: bool | None = None, quiet: bool = False, random_weights: bool = False, precision: str = "fp32",
         compile: bool = False, autotune: bool = False, layout: str = "auto", **config_overrides):
    """A retinanet.Detector for a zoo model: weights from `weights`, else the verified cached checkpoint.

    `precision` (fp32, tf32, bf16, fp16), `compile`, `autotune` and `layout` are the Detector's fast-path options
    (an export runs as it was exported: autotune and layout do not apply to it); other keyword
    arguments override fields of the entry's ModelConfig (e.g. score_thr=0.3). `random_weights`: a random model
    from a fixed seed (RANDOM_WEIGHTS_SEED: the same run gives the same detections, and they mean nothing) whose
    head is calibrated on the bundled photo to a trained model's output load (~2000 candidates, 100 detections),
    so that timings include realistic post-processing (retinanet.model.trained_like)."""
    from retinanet import Detector, ModelConfig
    from retinanet.export.metadata import export_format

    unknown = sorted(set(config_overrides) - {f.name for f in fields(ModelConfig)})
    if unknown:
        raise ZooError(f"zoo.load() got unknown option(s) {', '.join(unknown)}; it takes weights, device, zoo_file, "
                       "cache_dir, offline, quiet, random_weights, precision, compile, autotune, layout, or "
                       "ModelConfig fields "
                       "(e.g. score_thr)")
    from retinanet.inference.detector import resolve_device
    from retinanet.inference.fast import channels_last_for, check_precision
    from retinanet.values import check_flag, check_path

    for flag, value in (("random_weights", random_weights), ("quiet", quiet), ("compile", compile),
                        ("autotune", autotune)):
        check_flag(value, flag)
    if offline is not None:
        check_flag(offline, "offline")
    if weights is not None:
        check_path(weights, "weights")
        if random_weights:  # the weights were ignored without a word (rdet predict/eval --weights --random-weights)
            raise ZooError("weights (--weights) and random_weights (--random-weights) exclude each other: give one")
    entry = get(name, zoo_file)
    cfg = entry.model_config(**config_overrides)
    if weights is not None and not random_weights and export_format(weights):
        return load_export(entry, weights, device, precision=precision, compile=compile,
                           overrides=config_overrides)
    dev = resolve_device(device)
    check_precision(dev, precision)  # a device or precision that cannot run: before downloading
    channels_last_for(dev, precision, layout)  # an unknown layout: before downloading too
    if random_weights:
        import torch

        with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random state
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            det = Detector(cfg, None, device=device, precision=precision, compile=compile, autotune=autotune,
                           layout=layout)
        calibrate_random_head(det)
        return det
    if weights is None:
        from .cache import Cache
        from .weights import ensure_weights

        weights = ensure_weights(entry, Cache(cache_dir), offline=offline, quiet=quiet)
    return Detector(cfg, weights, device=device, precision=precision, compile=compile, autotune=autotune,
                    layout=layout)


def calibrate_random_head(det) -> None:
    """Give a random Detector's head a trained model's output load on the bundled photo (deterministic)."""
    import torch

    from retinanet.assets import SAMPLE_IMAGE
    from retinanet.data.preprocess import collate
    from retinanet.model.trained_like import calibrate_head

    from retinanet.errors import ImageError

    with torch.inference_mode():
        try:
            prepared = det.prepare(SAMPLE_IMAGE)[0]
        except ImageError as e:  # e.g. an RDET_MAX_PIXELS below the photo's size: say why it is read at all
            raise ImageError(f"random weights are calibrated on the bundled photo, which cannot be read: {e}") from None
        batch = collate([prepared], det.cfg.size_divisor)
        if det.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        calibrate_head(det.model, batch, score_thr=det.cfg.score_thr)
