"""What `rdet train` keeps between runs: RNG states as tensors (so checkpoints load with weights_only=True),
checkpoints written atomically, the latest.pth pointer, and reading a checkpoint back for --resume."""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from retinanet.atomic_write import atomic_path, replace_durably
from retinanet.errors import CheckpointError

LATEST = "latest.pth"


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[x for x in np_state[2:]]]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))


def write_atomically(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def point_latest(work_dir: Path, target: Path) -> None:
    """latest.pth -> target: a relative symlink swapped in atomically, or a copy where symlinks fail."""
    link, tmp = work_dir / LATEST, work_dir / (LATEST + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        os.symlink(target.name, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    replace_durably(tmp, link)


def read_resume_state(path: Path) -> dict:
    """A full training checkpoint (weights_only); CheckpointError when it cannot resume a run."""
    if not path.exists():
        raise CheckpointError(f"nothing to resume: {path} does not exist (train without --resume first)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: cannot resume from it ({first[:200]})") from None
    if not isinstance(ckpt, dict) or not {"state_dict", "optimizer", "train_state"} <= set(ckpt):
        raise CheckpointError(f"{path}: not a training checkpoint written by rdet train (no optimizer or "
                              "train_state); use it with --init instead")
    return ckpt
