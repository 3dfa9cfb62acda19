"""What `rdet train` keeps between runs: RNG states as tensors (so checkpoints load with weights_only=True),
checkpoints written atomically, the latest.pth pointer, and reading a checkpoint back for --resume."""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from retinanet.atomic_write import atomic_path, replace_durably, temporary_name
from retinanet.config import MAX_SEED
from retinanet.errors import CheckpointError
from retinanet.model.checkpoint import checked_state, load_weights_only

LATEST = "latest.pth"  # a link to the newest checkpoint
INTERRUPTED = "interrupted.pth"  # written when a signal stops a run mid-epoch


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
    """Save a checkpoint under `path` only once all of it is on disk; a failing write (a full disk) is a
    one-line CheckpointError that leaves no temporary file and every earlier checkpoint, latest.pth too, intact."""
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}; the earlier checkpoints and "
                              f"{LATEST} are intact") from None
    except RuntimeError:  # torch's zip writer reports a failed write as one, in various words
        raise CheckpointError(f"cannot write checkpoint {path}: the write failed (disk full?); the earlier "
                              f"checkpoints and {LATEST} are intact") from None


def point_latest(work_dir: Path, target: Path) -> None:
    """latest.pth -> target: a relative symlink swapped in atomically, or a copy where symlinks fail."""
    link, tmp = work_dir / LATEST, temporary_name(work_dir / LATEST)
    try:
        try:
            os.symlink(target.name, tmp)
        except OSError:
            shutil.copyfile(target, tmp)
        replace_durably(tmp, link)
    except BaseException:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        raise


def read_resume_state(path: Path) -> dict:
    """A full training checkpoint (weights_only); CheckpointError when it cannot resume a run."""
    if path.is_symlink() and not path.exists():
        raise CheckpointError(f"{path} points at {os.readlink(path)}, which is missing; point it at the checkpoint "
                              f"to resume from (ln -sf epoch_N.pth {path}) or train again with --overwrite")
    if not path.exists():
        raise CheckpointError(f"nothing to resume: {path} does not exist (train without --resume first)")
    ckpt = load_weights_only(path)
    if not isinstance(ckpt, dict) or not {"state_dict", "optimizer", "train_state"} <= set(ckpt):
        raise CheckpointError(f"{path}: not a training checkpoint written by rdet train (no optimizer or "
                              "train_state); use it with --init instead")
    _check_train_state(ckpt["train_state"], path)
    if not isinstance(ckpt["optimizer"], dict):
        raise CheckpointError(f"{path}: its optimizer state is not a dict; cannot resume from it")
    return {**ckpt, "state_dict": checked_state(path, ckpt["state_dict"])}


_MAX_COUNT = 1 << 62  # epochs and iterations beyond this are not a run's: arithmetic on them would overflow
_TRAIN_STATE = {"epoch": int, "iter_in_epoch": int, "iter": int, "seed": int, "rng": dict}
_RNG_STATE = ("torch", "python", "numpy")


def _check_train_state(state, path: Path) -> None:
    """Every field resuming reads, so that a damaged or foreign checkpoint is one line, not a KeyError."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its train_state is not a dict; cannot resume from it")
    for key, kind in _TRAIN_STATE.items():
        if key not in state:
            raise CheckpointError(f"{path}: its train_state lacks '{key}'; cannot resume from it")
        if not isinstance(state[key], kind) or isinstance(state[key], bool) or \
                (kind is int and not 0 <= state[key] <= _MAX_COUNT):
            raise CheckpointError(f"{path}: its train_state's '{key}' is not a valid {kind.__name__}")
    if state["seed"] > MAX_SEED:
        raise CheckpointError(f"{path}: its train_state's seed {state['seed']} is beyond {MAX_SEED}")
    missing = [k for k in _RNG_STATE if k not in state["rng"]]
    if missing:
        raise CheckpointError(f"{path}: its train_state's 'rng' lacks '{missing[0]}'; cannot resume from it")
