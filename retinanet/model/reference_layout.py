"""Random checkpoints in the reference format, built from the published files' key table (not from our model), so
that loading them proves our module layout matches the published files. Tests, tools/compare_reference.py and
anyone trying the engine without a download use them."""
from __future__ import annotations

import math

import torch

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _bn(sd, key, n, g):
    sd[f"{key}.weight"] = 1 + 0.1 * torch.randn(n, generator=g)
    sd[f"{key}.bias"] = 0.1 * torch.randn(n, generator=g)
    sd[f"{key}.running_mean"] = 0.1 * torch.randn(n, generator=g)
    sd[f"{key}.running_var"] = 1 + torch.rand(n, generator=g)
    sd[f"{key}.num_batches_tracked"] = torch.tensor(0)


def _conv(sd, key, cout, cin, k, g, bias=False):
    sd[f"{key}.weight"] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(2.0 / (cin * k * k))
    if bias:
        sd[f"{key}.bias"] = torch.zeros(cout)


def reference_state_dict(depth=50, groups=1, base_width=64, num_classes=80, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd: dict = {}
    _conv(sd, "backbone.conv1", 64, 3, 7, g)
    _bn(sd, "backbone.bn1", 64, g)
    bottleneck = depth >= 50
    expansion = 4 if bottleneck else 1
    inplanes = 64
    for s, n in enumerate(BLOCKS[depth]):
        planes = 64 * 2**s
        width = planes * base_width // 64 * groups
        for b in range(n):
            key = f"backbone.layer{s + 1}.{b}"
            if bottleneck:
                _conv(sd, f"{key}.conv1", width, inplanes, 1, g)
                _bn(sd, f"{key}.bn1", width, g)
                _conv(sd, f"{key}.conv2", width, width // groups, 3, g)
                _bn(sd, f"{key}.bn2", width, g)
                _conv(sd, f"{key}.conv3", planes * 4, width, 1, g)
                _bn(sd, f"{key}.bn3", planes * 4, g)
            else:
                _conv(sd, f"{key}.conv1", planes, inplanes, 3, g)
                _bn(sd, f"{key}.bn1", planes, g)
                _conv(sd, f"{key}.conv2", planes, planes, 3, g)
                _bn(sd, f"{key}.bn2", planes, g)
            if b == 0 and (s > 0 or inplanes != planes * expansion):
                _conv(sd, f"{key}.downsample.0", planes * expansion, inplanes, 1, g)
                _bn(sd, f"{key}.downsample.1", planes * expansion, g)
            inplanes = planes * expansion
    c = [64 * expansion * 2**i for i in range(4)]
    for i, cin in enumerate(c[1:]):
        _conv(sd, f"neck.lateral_convs.{i}.conv", 256, cin, 1, g, bias=True)
    for i, cin in enumerate([256, 256, 256, c[3], 256]):
        _conv(sd, f"neck.fpn_convs.{i}.conv", 256, cin, 3, g, bias=True)
    for branch in ("cls", "reg"):
        for i in range(4):
            _conv(sd, f"bbox_head.{branch}_convs.{i}.conv", 256, 256, 3, g, bias=True)
    sd["bbox_head.retina_cls.weight"] = 0.01 * torch.randn(9 * num_classes, 256, 3, 3, generator=g)
    sd["bbox_head.retina_cls.bias"] = torch.full((9 * num_classes,), -2.0)
    sd["bbox_head.retina_reg.weight"] = 0.01 * torch.randn(36, 256, 3, 3, generator=g)
    sd["bbox_head.retina_reg.bias"] = torch.zeros(36)
    return sd


def save_reference_checkpoint(path, state_dict, classes=None) -> None:
    meta = {"mmdet_version": "2.0.0", "epoch": 12, "iter": 87936}
    if classes is not None:
        meta["CLASSES"] = tuple(classes)
    torch.save({"meta": meta, "state_dict": state_dict}, path)


def trained_like_state_dict(state_dict: dict, cfg, image_bgr, seed: int = 0, **targets) -> dict:
    """`state_dict` with its two final head convolutions redrawn to give a trained model's output load on
    `image_bgr` (retinanet.model.trained_like): realistic scores and small deltas, so that float rounding is not
    amplified by exp() of deltas in the tens as with fully random weights. The keys stay the reference's."""
    from retinanet.data.preprocess import collate, prepare
    from retinanet.model.checkpoint import load_state
    from retinanet.model.retinanet import RetinaNet
    from retinanet.model.trained_like import calibrate_head

    model = RetinaNet(cfg).eval()
    load_state(model, state_dict)
    tensor, _ = prepare(image_bgr, cfg)
    calibrate_head(model, collate([tensor], cfg.size_divisor), seed=seed, score_thr=cfg.score_thr, **targets)
    out = dict(state_dict)
    for name in ("retina_cls", "retina_reg"):
        conv = getattr(model.bbox_head, name)
        out[f"bbox_head.{name}.weight"] = conv.weight.detach().clone()
        out[f"bbox_head.{name}.bias"] = conv.bias.detach().clone()
    return out
