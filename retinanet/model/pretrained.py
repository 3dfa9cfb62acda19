"""Where training starts from: an ImageNet backbone, or a detector checkpoint to fine-tune.

ImageNet files name the backbone's tensors without the `backbone.` prefix:
- torchvision's (resnet50-19c8e357.pth, pytorch style): conv1, bn1, layer1..4, plus the classifier `fc.*`;
- open-mmlab's (resnet50_msra-*.pth converted from Detectron for the caffe rows, resnext101_*.pth) use the same
  names, sometimes inside {'state_dict': ...} and without num_batches_tracked;
- Detectron's own caffe2 names (conv1_w, res_conv1_bn_s, res2_0_branch2a_w, ...; BN as a scale and a shift) are
  renamed here, with the running mean 0 and variance 1 that its affine-channel layers amount to.
The classifier is dropped; every backbone tensor must then be present with the right shape.
"""
from __future__ import annotations

import os
import re

import torch
from torch import nn

from retinanet.model.checkpoint import class_names_from_meta, load_state, read_checkpoint
from retinanet.model.head import PRIOR_PROB, prior_bias

DETECTOR_PREFIXES = ("backbone.", "neck.", "bbox_head.")
CLASSIFIER = ("fc.", "pred_", "classifier.", "head.")
_DETECTRON_BLOCK = re.compile(r"^res(\d)_(\d+)_branch(1|2[abc])_(w|bn_s|bn_b)$")


def is_detector_state(state: dict) -> bool:
    return any(k.startswith(DETECTOR_PREFIXES[1:]) for k in state)


def _detectron_to_torch(state: dict) -> dict:
    """Detectron (caffe2) ResNet names -> torchvision names; BN scale/shift -> weight/bias with identity stats."""
    out = {}
    for key, value in state.items():
        if key == "conv1_w":
            out["conv1.weight"] = value
            continue
        if key in ("res_conv1_bn_s", "res_conv1_bn_b"):
            out["bn1.weight" if key.endswith("_s") else "bn1.bias"] = value
            continue
        m = _DETECTRON_BLOCK.match(key)
        if not m:
            continue  # the classifier (pred_w, pred_b) and momentum blobs
        stage, block, branch, kind = m.groups()
        base = f"layer{int(stage) - 1}.{block}."
        if branch == "1":
            conv, bn = base + "downsample.0", base + "downsample.1"
        else:
            index = "abc".index(branch[1]) + 1
            conv, bn = base + f"conv{index}", base + f"bn{index}"
        if kind == "w":
            out[conv + ".weight"] = value
        else:
            out[bn + (".weight" if kind == "bn_s" else ".bias")] = value
    for key in [k for k in out if k.endswith(".bias") and ("bn" in k or "downsample.1" in k)]:
        n = out[key].shape[0]
        stem = key[: -len(".bias")]
        out.setdefault(stem + ".running_mean", torch.zeros(n))
        out.setdefault(stem + ".running_var", torch.ones(n))
    return out


def imagenet_backbone_state(state: dict) -> dict:
    """An ImageNet classification checkpoint's tensors, renamed to our backbone's keys (no prefix)."""
    if "conv1_w" in state:
        state = _detectron_to_torch(state)
    state = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(CLASSIFIER)}


def load_imagenet_backbone(model: nn.Module, path: str | os.PathLike, ckpt: dict | None = None) -> None:
    """Load ImageNet weights into `model.backbone`; CheckpointError (one line) when they do not fit."""
    state = imagenet_backbone_state((ckpt or read_checkpoint(path))["state_dict"])
    load_state(model, {f"backbone.{k}": v for k, v in state.items()}, source=f"{path} (ImageNet backbone)",
               prefix="backbone.")


def init_classifier(conv: nn.Conv2d, prior_prob: float = PRIOR_PROB) -> None:
    """The reference's retina_cls initialisation: normal(0, 0.01) weights, bias at the 0.01 prior."""
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, prior_bias(prior_prob))


def load_detector_weights(model: nn.Module, path: str | os.PathLike, ckpt: dict | None = None) -> str:
    """Fine-tuning start: every tensor of a detector checkpoint; when its classes differ from the model's, all but
    the classification layer, which is re-initialised. Returns a line saying which."""
    ckpt = ckpt or read_checkpoint(path)
    state, names = ckpt["state_dict"], class_names_from_meta(ckpt["meta"])
    own = model.bbox_head.retina_cls.weight
    theirs = state.get("bbox_head.retina_cls.weight")
    same_shape = theirs is not None and tuple(theirs.shape) == tuple(own.shape)
    if same_shape and (names is None or tuple(names) == tuple(model.cfg.names)):
        load_state(model, state, source=str(path))
        return f"all weights from {path}"
    load_state(model, state, source=str(path), ignore=("bbox_head.retina_cls.",))
    init_classifier(model.bbox_head.retina_cls)
    old = len(names) if names is not None else (theirs.shape[0] // model.anchor_generator.num_anchors
                                                 if theirs is not None else "?")
    return (f"weights from {path} except the classification layer ({old} classes there, "
            f"{model.cfg.num_classes} here), re-initialised")


def initialise(model: nn.Module, init: str | os.PathLike | None) -> str:
    """The reference's initialisation of neck and head, then `init`: None (random backbone), an ImageNet backbone
    file, or a detector checkpoint (told apart by its keys). Returns a line saying what was loaded."""
    model.init_weights()
    if init is None:
        return "random (no pretrained weights)"
    ckpt = read_checkpoint(init)
    if is_detector_state(ckpt["state_dict"]):
        return load_detector_weights(model, init, ckpt)
    load_imagenet_backbone(model, init, ckpt)
    return f"ImageNet backbone from {init}"
