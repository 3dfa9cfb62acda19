"""What produced an evaluation, carried in every JSON eval writes, so that two results can be compared knowing
whether the same code, weights, data and settings were behind them."""
from __future__ import annotations

from retinanet.version import installed_version, library_versions


def provenance(*, model: str | None, entry: dict | None, weights: str | None, weights_sha256: str | None,
               device: str | None, precision: str | None, test_scale: tuple[int, int] | None,
               annotations: str, annotations_sha256: str, images: int, scorer: str) -> dict:
    """The record: `entry` is the zoo entry as a dict, `weights` the checkpoint file (None: the detections were
    re-scored from a results file, so device, precision and scale are unknown), digests are full SHA-256."""
    return {
        "rdet_version": installed_version("rdet"),
        "model": model,
        "zoo_entry": entry,
        "weights": weights,
        "weights_sha256": weights_sha256,
        "device": device,
        "precision": precision,
        "test_scale": list(test_scale) if test_scale else None,
        "annotations": annotations,
        "annotations_sha256": annotations_sha256,
        "images": images,
        "scorer": f"{scorer} {installed_version(scorer)}",
        "versions": library_versions(),
    }

