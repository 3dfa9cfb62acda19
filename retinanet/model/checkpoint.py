"""Reference-format checkpoints: {'state_dict': {backbone.*, neck.*, bbox_head.*}, 'meta': {...}} or a bare state
dict. Always loaded with weights_only=True, so a checkpoint is never unpickled as code.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from retinanet.errors import CheckpointError, first_line
from retinanet.file_check import file_problem

_OPTIONAL = ("num_batches_tracked",)  # the reference's loader does not need these and FrozenBN-style dumps lack them


def read_checkpoint(path: str | os.PathLike) -> dict:
    """{'state_dict': ..., 'meta': ...} from a file; CheckpointError with one line for anything unusable."""
    path = Path(path)
    obj = load_weights_only(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if "state_dict" in obj:
        state, meta = obj["state_dict"], obj.get("meta") or {}
    elif "model" in obj and isinstance(obj["model"], dict):
        state, meta = obj["model"], obj.get("meta") or {}
    else:
        state, meta = obj, {}
    state = checked_state(path, state)
    meta = meta if isinstance(meta, dict) else {}
    _check_classes_fit_head(path, state, meta)
    return {"state_dict": state, "meta": meta}


def load_weights_only(path: Path):
    """What a file holds, unpickled with weights_only=True; CheckpointError with one line when it cannot be."""
    problem = file_problem(path)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        with warnings.catch_warnings():  # e.g. on a plain pickle: advice about pickle protocols, not for users
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:  # unreadable: permissions, an I/O error
        raise CheckpointError(f"{path}: cannot read it ({err.strerror or err})") from None
    except pickle.UnpicklingError as err:
        # torch's message advises weights_only=False, i.e. running the file's code: say only what was refused
        found = [line.split("error:", 1)[-1].strip() for line in str(err).splitlines()
                 if "Unpickler error:" in line or "unsupported GLOBAL" in line or "Unsupported global" in line]
        found = [f for f in found if f]
        if not found:  # not a refused global: a text or otherwise broken file
            raise CheckpointError(f"{path}: not a loadable checkpoint (truncated, corrupt, or not a PyTorch "
                                  "file)") from None
        # keep what was asked for ("Unsupported global: GLOBAL functools.partial"), not torch's advice after it
        asked = re.split(r"\s+was not an allowed global|\.\s+Please", found[0])[0] if found else "not weights-only"
        raise CheckpointError(f"{path}: refused: it holds more than tensors and plain containers "
                              f"({asked[:200]}); rdet never runs code from a checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, AttributeError, TypeError,
            ImportError, KeyError, IndexError, UnicodeDecodeError) as err:
        # a text or other non-pickle file reaches the legacy unpickler, which fails with e.g. KeyError: 101
        first = first_line(err)
        if isinstance(err, (KeyError, IndexError, UnicodeDecodeError)):
            first = "not a PyTorch file"
        raise CheckpointError(f"{path}: not a loadable checkpoint (truncated, corrupt, or not weights-only: "
                              f"{first[:200]})") from None
    return obj


def checked_state(path: Path, state) -> dict:
    """A state dict of dense tensors under parameter names (a DDP "module." prefix dropped); CheckpointError
    naming the first thing that is not."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: the state dict holds something other than tensors")
    odd_key = next((k for k in state if not isinstance(k, str)), None)
    if odd_key is not None:
        raise CheckpointError(f"{path}: the state dict has a key that is not a parameter name: {odd_key!r:.60}")
    odd_layout = next((k for k, v in state.items() if v.layout != torch.strided or v.is_meta), None)
    if odd_layout is not None:
        kind = "a meta (data-less)" if state[odd_layout].is_meta else f"a {state[odd_layout].layout}"
        raise CheckpointError(f"{path}: {odd_layout} is {kind} tensor, not a dense one")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _check_classes_fit_head(path: Path, state: dict, meta: dict) -> None:
    """The classes a checkpoint's meta names must be those its classification layer scores (anchors x classes
    outputs, the anchors counted from the box layer's 4 per anchor): checked before a model is built for them."""
    names = class_names_from_meta(meta)
    cls_bias, reg_bias = state.get("bbox_head.retina_cls.bias"), state.get("bbox_head.retina_reg.bias")
    if names is None or cls_bias is None or reg_bias is None or reg_bias.numel() == 0:
        return
    if cls_bias.numel() * 4 != len(names) * reg_bias.numel():
        raise CheckpointError(f"{path}: its meta names {len(names)} classes, but its classification layer scores "
                              f"{cls_bias.numel() * 4 / reg_bias.numel():g}; the file is inconsistent")


def _listing(keys, limit=6) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_state(model: nn.Module, state: dict, source: str = "checkpoint", prefix: str = "",
               ignore: tuple[str, ...] = ()) -> None:
    """Strictly load `state` into `model`: every key present with the right shape, nothing unexpected.

    `prefix` restricts the match to one part (e.g. "backbone.") and `ignore` lists key prefixes to skip.
    """
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if k.startswith(prefix) and not k.startswith(ignore)}
    own = {k: v for k, v in own.items() if not k.startswith(ignore)}

    def optional(k):
        return k.endswith(_OPTIONAL)

    missing = [k for k in own if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in own and not optional(k)]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    wrong += [f"{k} is {state[k].dtype}, not floating-point" for k, v in own.items()
              if k in state and v.is_floating_point() and not state[k].is_floating_point()]
    values = {k: state[k].to(v.dtype) for k, v in own.items() if k in state and not wrong}
    non_finite = [k for k, v in values.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes or types (file vs model): {_listing(wrong, 3)}")
    if problems:
        raise CheckpointError(f"{source} does not fit this model: " + "; ".join(problems))
    if non_finite:  # a diverged run's weights: every detection would be NaN or none at all
        raise CheckpointError(f"{source} holds NaN or infinite weights in {len(non_finite)} tensors: "
                              f"{_listing(non_finite, 3)}")
    with torch.no_grad():
        for k, v in own.items():
            if k in values:
                v.copy_(values[k])


def class_names_from_meta(meta: dict) -> tuple[str, ...] | None:
    """The class names a checkpoint's meta lists (MMDetection v2 CLASSES, or v3 dataset_meta), else None."""
    dataset_meta = meta.get("dataset_meta")
    names = meta.get("CLASSES") or meta.get("classes") or (
        dataset_meta.get("classes") if isinstance(dataset_meta, dict) else None)
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def with_checkpoint_classes(cfg, meta: dict):
    """`cfg` with a fine-tuned checkpoint's own classes, which change the head's size; unchanged without them."""
    names = class_names_from_meta(meta)
    return cfg if names is None else cfg.replace(num_classes=len(names), class_names=names)


def with_dataset_classes(cfg, class_names):
    """`cfg` trained on a dataset: its categories become the head's classes (unchanged when they already are)."""
    names = tuple(class_names)
    return cfg if names == tuple(cfg.names) else cfg.replace(num_classes=len(names), class_names=names)
