"""rdet's zoo: the manifest of models, the weights cache and downloads, and `load` to get a ready Detector.

>>> import zoo
>>> det = zoo.load("r50_fpn_1x", device="cpu")          # downloads and verifies the weights if needed
>>> det = zoo.load("r50_fpn_1x", weights="my.pth")       # the architecture from the entry, weights from a file
"""
from __future__ import annotations

import os
from dataclasses import fields

from .errors import DownloadError, ManifestError, UnknownModelError, ZooError
from .manifest import Entry, Zoo

RANDOM_WEIGHTS_SEED = 0

__all__ = ["load", "get", "Zoo", "Entry", "ZooError", "ManifestError", "UnknownModelError", "DownloadError"]


def get(name: str, zoo_file: str | os.PathLike | None = None) -> Entry:
    """The manifest entry for a name or alias (bundled zoo plus `zoo_file` or $RDET_ZOO)."""
    return Zoo.load(zoo_file).get(name)


def load(name: str, weights: str | os.PathLike | None = None, device: str = "auto", *,
         zoo_file: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
         offline: bool | None = None, quiet: bool = False, random_weights: bool = False, precision: str = "fp32",
         compile: bool = False, **config_overrides):
    """A retinanet.Detector for a zoo model: weights from `weights`, else the verified cached checkpoint.

    `precision` (fp32, bf16, fp16) and `compile` are the Detector's fast-path options; other keyword arguments
    override fields of the entry's ModelConfig (e.g. score_thr=0.3). `random_weights` builds the model with the
    reference's training-start initialisation from a fixed seed (RANDOM_WEIGHTS_SEED): the same run gives the
    same detections, and they mean nothing."""
    from retinanet import Detector, ModelConfig

    unknown = sorted(set(config_overrides) - {f.name for f in fields(ModelConfig)})
    if unknown:
        raise ZooError(f"zoo.load() got unknown option(s) {', '.join(unknown)}; it takes weights, device, zoo_file, "
                       "cache_dir, offline, quiet, random_weights, precision, compile, or ModelConfig fields "
                       "(e.g. score_thr)")
    entry = get(name, zoo_file)
    cfg = entry.model_config(**config_overrides)
    if random_weights:
        import torch

        with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random state
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            return Detector(cfg, None, device=device, precision=precision, compile=compile)
    if weights is None:
        from .cache import Cache
        from .weights import ensure_weights

        weights = ensure_weights(entry, Cache(cache_dir), offline=offline, quiet=quiet)
    return Detector(cfg, weights, device=device, precision=precision, compile=compile)
