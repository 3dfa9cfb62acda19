"""A model's size and cost: parameters, and FLOPs of one forward pass at the test scale.

FLOPs are counted by torch.utils.flop_counter on a model built on the meta device (no memory, no weights, well
under a second), for one image of the test scale padded as the test pipeline pads it (1333x800 -> 1344x800).
The counter counts a multiply-add as 2 FLOPs; MMDetection's get_flops tool reports multiply-adds, so its
figures are about half of these (and at 1280x800). Post-processing (decoding, NMS) is not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from retinanet.config import ModelConfig


@dataclass(frozen=True)
class Cost:
    params: int  # every parameter, frozen ones included
    flops: int  # one forward pass, backbone + neck + head
    input_size: tuple[int, int]  # (width, height) of the padded input counted

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def to_dict(self) -> dict:
        return {"params": self.params, "flops": self.flops, "gflops": round(self.gflops, 1),
                "input_size": list(self.input_size), "flops_convention": "a multiply-add counts 2 FLOPs"}


def padded_test_size(cfg: ModelConfig) -> tuple[int, int]:
    """(width, height) of the input a landscape image of the test scale becomes after padding."""
    w, h = max(cfg.scale), min(cfg.scale)
    d = cfg.size_divisor
    return -(-w // d) * d, -(-h // d) * d


def model_cost(cfg: ModelConfig) -> Cost:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from retinanet.model.retinanet import RetinaNet

    w, h = padded_test_size(cfg)
    with torch.device("meta"):
        model = RetinaNet(cfg).eval()
        image = torch.empty(1, 3, h, w)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return Cost(sum(p.numel() for p in model.parameters()), int(counter.get_total_flops()), (w, h))
