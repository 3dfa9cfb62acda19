"""The detections of every zoo row's architecture on the bundled photo and a synthetic test image, with small
random reference-format checkpoints at a reduced test scale: recorded once into tests/data/zoo_detections.npz,
compared bit for bit by tests/test_zoo_detections.py so that a refactoring provably changes no detection.

Re-record (only when a change is meant to move detections): python tests/zoo_detections.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RECORD = HERE / "data" / "zoo_detections.npz"
SCALE = (256, 192)  # reduced from the reference's test scale so that all six architectures run in seconds


def architecture_key(entry) -> str:
    """Rows that differ only in their schedule share one architecture (and one set of detections)."""
    return f"d{entry.depth}_g{entry.groups}_w{entry.base_width}_{entry.style}"


def test_images() -> dict:
    """The bundled photo (a path, read by the engine) and a synthetic RGB image (odd size, so padding matters)."""
    import cv2

    from retinanet.assets import SAMPLE_IMAGE

    rng = np.random.default_rng(7)
    shapes = rng.integers(0, 255, (203, 301, 3), dtype=np.uint8)
    cv2.circle(shapes, (80, 90), 40, (250, 20, 20), thickness=-1)
    cv2.rectangle(shapes, (170, 40), (260, 150), (20, 240, 30), thickness=-1)
    return {"astronaut": str(SAMPLE_IMAGE), "shapes": shapes}


def cpu_signature() -> str:
    """The float arithmetic a CPU does: oneDNN picks kernels by instruction set, so the last bits of a forward
    pass differ between machines, though never between runs on one."""
    import platform

    import torch

    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()} torch {torch.__version__.split('+')[0]}"


def zoo_detections(tmp_dir: Path) -> dict[str, np.ndarray]:
    """{f"{arch}/{image}/{boxes|scores|labels}": array} for every distinct architecture of the bundled zoo.

    Each checkpoint is random (seeded) with its head calibrated to a trained model's output load on the bundled
    photo (model.reference_layout.trained_like_state_dict: ~2000 candidates, 100 detections): fully random heads
    give saturated scores and thousands of ties, which test the order of ties rather than the engine."""
    from retinanet import Detector
    from retinanet.data.images import read_bgr
    from retinanet.model.reference_layout import (reference_state_dict, save_reference_checkpoint,
                                                  trained_like_state_dict)
    from zoo.manifest import Zoo

    zoo = Zoo.load()
    images = test_images()
    photo = read_bgr(images["astronaut"])
    out: dict[str, np.ndarray] = {}
    for name in zoo.names():
        entry = zoo.get(name)
        arch = architecture_key(entry)
        if f"{arch}/astronaut/boxes" in out:
            continue
        path = tmp_dir / f"{arch}.pth"
        cfg = entry.model_config(scale=SCALE)
        state = trained_like_state_dict(reference_state_dict(entry.depth, entry.groups, entry.base_width, seed=1),
                                        cfg, photo, seed=1)
        save_reference_checkpoint(path, state)
        det = Detector(cfg, path, device="cpu")
        for image_name, image in images.items():
            (res,) = det.predict(image)
            out[f"{arch}/{image_name}/boxes"] = res.boxes
            out[f"{arch}/{image_name}/scores"] = res.scores
            out[f"{arch}/{image_name}/labels"] = res.labels
        path.unlink()
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        arrays = zoo_detections(Path(d))
    np.savez_compressed(RECORD, cpu=np.array(cpu_signature()), **arrays)
    print(f"{RECORD}: {len(arrays)} arrays, {RECORD.stat().st_size} bytes")
