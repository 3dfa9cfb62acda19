"""The engine's own small configuration: everything needed to build and run one RetinaNet.

It knows nothing of manifests or downloads; `zoo` turns a manifest entry into one of these.
Defaults are MMDetection v2.0's RetinaNet settings (see the facts sheet, sections 2, 3 and 5).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from retinanet.errors import ArgumentError
from retinanet.values import check_fraction, check_number, check_whole, is_finite_number, is_whole, plain_fields

STYLES = ("pytorch", "caffe")
DEPTHS = (18, 34, 50, 101, 152)  # the ResNet depths the backbone builds
MAX_SEED = 2 ** 32 - 1  # training seeds: numpy's range (each epoch's order is seeded with seed * 100003 + epoch)
TEST_SCALE = (1333, 800)  # the reference's test (and training) scale: long edge <= 1333, short edge <= 800


# a synthetic or test size's sides (--size, the benchmark's training images): below 32 the network's 7x7 stem and
# strided stages run out of pixels; above 4096 (3x the reference's 1333) it is a typo, and its buffers are gigabytes
MIN_SIDE, MAX_SIDE = 32, 4096


def check_size(size, name: str = "size") -> None:
    """ArgumentError unless `size` is (width, height), each a whole number from MIN_SIDE to MAX_SIDE."""
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(is_whole(v) and MIN_SIDE <= v <= MAX_SIDE for v in size)):
        raise ArgumentError(f"{name} must be two integers from {MIN_SIDE} to {MAX_SIDE} (width, height), not "
                            f"{size!r}")


PRECISION_NAMES = ("fp32", "tf32", "bf16", "fp16")  # inference precisions; named here so checking one needs no torch


def reduced_precision(device_type: str) -> str:
    """What `--amp` asks for: fp16 on CUDA, bf16 on the CPU."""
    return "fp16" if device_type == "cuda" else "bf16"


MAX_GROUP_WIDTH = 32 * 48  # ResNeXt-101 32x48d (829M parameters), the widest published; the zoo's widest is 64x4d


def check_lr_steps(steps) -> None:
    """ArgumentError unless `steps` (after values.plain_fields) is a tuple of epochs, each a positive integer."""
    if not (isinstance(steps, tuple) and all(is_whole(v) and v >= 1 for v in steps)):
        raise ArgumentError(f"lr_steps must be a list of epochs (positive integers), not {steps!r}")


@dataclass(frozen=True)
class ModelConfig:
    # Backbone: ResNet (groups=1, base_width=64) or ResNeXt (e.g. groups=32, base_width=4).
    depth: int = 50
    groups: int = 1
    base_width: int = 64
    style: str = "pytorch"  # "caffe": stride on the first 1x1 conv of a block; "pytorch": on the 3x3
    frozen_stages: int = 1  # stem + layer1 get no gradient while training
    num_classes: int = 80
    class_names: tuple[str, ...] | None = None  # None: the 80 COCO classes (when num_classes == 80)
    # Input normalisation, applied after the optional BGR->RGB swap.
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    to_rgb: bool = True
    # Test-time resize (keep ratio) and padding.
    scale: tuple[int, int] = TEST_SCALE
    size_divisor: int = 32
    # Test-time post-processing (v2.0 AnchorHead.get_bboxes).
    nms_pre: int = 1000
    score_thr: float = 0.05
    nms_iou: float = 0.5
    max_per_img: int = 100
    # Neck and head widths.
    fpn_channels: int = 256
    head_convs: int = 4
    # Training schedule (epochs at the reference batch of 16 images, lr 0.01).
    epochs: int = 12
    lr_steps: tuple[int, ...] = (8, 11)
    base_lr: float = 0.01
    base_batch: int = 16
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        plain_fields(self)
        if self.style not in STYLES:
            raise ArgumentError(f"style must be one of {STYLES}, not {self.style!r}")
        if not (is_whole(self.depth) and self.depth in DEPTHS):
            raise ArgumentError(f"depth must be one of {', '.join(map(str, DEPTHS))} (ResNet depths), "
                                f"not {self.depth!r}")
        for name in ("groups", "base_width", "fpn_channels", "num_classes", "size_divisor", "nms_pre",
                     "max_per_img", "epochs", "base_batch"):
            check_whole(getattr(self, name), name)
        check_whole(self.head_convs, "head_convs", 0)
        if not (is_whole(self.frozen_stages) and -1 <= self.frozen_stages <= 4):
            raise ArgumentError(f"frozen_stages must be an integer from -1 (none frozen) to 4, not "
                                f"{self.frozen_stages!r}")
        if self.depth < 50 and (self.groups != 1 or self.base_width != 64):
            raise ArgumentError("depth 18/34 (basic blocks) support only groups=1, base_width=64")
        if self.groups * self.base_width > MAX_GROUP_WIDTH:  # the weights alone would take tens of gigabytes
            raise ArgumentError(f"groups x base_width {self.groups} x {self.base_width} is wider than any published "
                                f"ResNeXt (at most {MAX_GROUP_WIDTH}: 32x48d)")
        if self.class_names is not None:
            # strings, nothing more: a checkpoint's or dataset's own names (repeated or empty) are taken as they are
            if not (isinstance(self.class_names, tuple) and all(isinstance(c, str) for c in self.class_names)):
                raise ArgumentError(f"class_names must be a list of strings, or None, not {self.class_names!r}")
            if len(self.class_names) != self.num_classes:
                raise ArgumentError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        if not isinstance(self.to_rgb, bool):
            raise ArgumentError(f"to_rgb must be True or False, not {self.to_rgb!r}")
        # a config also comes from files (an export's metadata, a checkpoint's): values that would run but give
        # nothing (a 0x0 scale, NaN thresholds) are refused here, where every config passes
        if not (isinstance(self.scale, tuple) and len(self.scale) == 2
                and all(is_whole(v) and v >= 1 for v in self.scale)):
            raise ArgumentError(f"scale must be two positive integers (width, height), not {self.scale!r}")
        for name in ("score_thr", "nms_iou"):
            check_fraction(getattr(self, name), name)
        if not (isinstance(self.mean, tuple) and isinstance(self.std, tuple) and len(self.mean) == len(self.std) == 3
                and all(is_finite_number(v) for v in self.mean)
                and all(is_finite_number(v) and v > 0 for v in self.std)):
            raise ArgumentError(f"mean and std must be 3 finite numbers each, std positive, not {self.mean!r}, "
                                f"{self.std!r}")
        check_lr_steps(self.lr_steps)
        check_number(self.base_lr, "base_lr", positive=True)
        if not isinstance(self.extra, dict):
            raise ArgumentError(f"extra must be a dict, not {self.extra!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """Class names in label order."""
        from retinanet.data.classes import COCO_CLASSES

        if self.class_names is not None:
            return tuple(self.class_names)
        if self.num_classes == len(COCO_CLASSES):
            return COCO_CLASSES
        return tuple(f"class_{i}" for i in range(self.num_classes))

    def replace(self, **changes) -> "ModelConfig":
        d = asdict(self)
        unknown = sorted(set(changes) - set(d))
        if unknown:  # else a TypeError about __init__, a name the caller never used
            raise ArgumentError(f"ModelConfig has no field {', '.join(unknown)}; its fields: {', '.join(d)}")
        d.update(changes)
        return ModelConfig(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def check_config(cfg) -> None:
    """ArgumentError unless `cfg` is a ModelConfig (a dict or None failed as an AttributeError deep inside)."""
    if not isinstance(cfg, ModelConfig):
        raise ArgumentError(f"cfg must be a retinanet.ModelConfig, not {type(cfg).__name__}")
