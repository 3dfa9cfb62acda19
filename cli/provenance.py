"""Where a result came from, written into every JSON that predict and bench produce, so that a number can be
traced to the code, the weights and the machine that made it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from retinanet.version import library_versions, package_version


def versions() -> dict:
    """The libraries' versions (one rule with eval's provenance) and the CUDA and cuDNN torch runs with."""
    import torch

    return {**library_versions(), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}


def weights_provenance(entry, weights: Optional[Path], random_weights: bool) -> dict:
    """What the weights were: seeded random, the zoo's verified checkpoint (its manifest SHA-256), or a file of the
    user's (its SHA-256, computed here)."""
    if random_weights:
        from zoo import RANDOM_WEIGHTS_SEED

        return {"source": "random", "seed": RANDOM_WEIGHTS_SEED, "sha256": None}
    if weights is not None:
        from zoo.checksum import sha256_file

        return {"source": "file", "path": str(weights), "sha256": sha256_file(weights)}
    return {"source": "zoo", "url": entry.url, "sha256": entry.sha256, "verified": True}


def provenance(entry, device, precision: str, scale, weights: Optional[Path] = None,
               random_weights: bool = False) -> dict:
    from retinanet.benchmark.measure import device_name

    return {
        "rdet_version": package_version(),
        "model": entry.name,
        "manifest": entry.source,
        "weights": weights_provenance(entry, weights, random_weights),
        "versions": versions(),
        "device": str(device),
        "device_name": device_name(device),  # the CPU model or GPU, as bench reports it
        "precision": precision,
        "scale": list(scale),
    }


def bench_provenance(device, device_name_text: str, precision: str, scale, weights: Optional[Path],
                     random_weights: bool) -> dict:
    """Provenance of a bench over several models: the weights are per model, so only their kind is said."""
    from zoo import RANDOM_WEIGHTS_SEED

    kind = ({"source": "random", "seed": RANDOM_WEIGHTS_SEED} if random_weights else
            {"source": "file", "path": str(weights)} if weights is not None else {"source": "zoo", "verified": True})
    return {"rdet_version": package_version(), "weights": kind, "versions": versions(), "device": str(device),
            "device_name": device_name_text, "precision": precision, "scale": list(scale)}


def random_weights_notice() -> None:
    """Said on stderr wherever --random-weights runs a model, so that no one mistakes its output for a result."""
    from zoo import RANDOM_WEIGHTS_SEED

    from .common import err

    err.print(f"[bold yellow]random weights (seed {RANDOM_WEIGHTS_SEED}): the detections are meaningless; drop "
              "--random-weights to use the published checkpoint[/bold yellow]", highlight=False)
