"""RetinaNet = backbone (C2..C5) + FPN (P3..P7) + RetinaHead, module names as in the reference checkpoints."""
from __future__ import annotations

import torch
from torch import nn

from retinanet.model.anchors import AnchorGenerator
from retinanet.model.backbone import Backbone
from retinanet.config import ModelConfig, check_config
from retinanet.model.head import RetinaHead
from retinanet.model.neck import FPN


class RetinaNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        check_config(cfg)
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.neck = FPN(self.backbone.out_channels, cfg.fpn_channels)
        self.anchor_generator = AnchorGenerator()
        self.bbox_head = RetinaHead(cfg.num_classes, cfg.fpn_channels, self.anchor_generator.num_anchors,
                                    cfg.head_convs)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Padded normalised images (B, 3, H, W) -> per-level class logits (B, A*K, h, w), deltas (B, A*4, h, w)."""
        return self.bbox_head(self.neck(self.backbone(images)))

    def init_weights(self) -> None:
        """The reference's initialisation of the parts a backbone checkpoint does not cover."""
        self.neck.init_weights()
        self.bbox_head.init_weights()
