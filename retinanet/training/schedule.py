"""The reference's learning-rate schedule (mmcv's step policy with linear warm-up) and its batch-size scaling.

The lr is a pure function of the global iteration and the epoch, so resuming needs only those two counts:
- step: base_lr * gamma ** (number of step epochs <= the current 0-based epoch), fixed for the whole epoch;
- linear warm-up over the first `warmup_iters` iterations: lr * (1 - (1 - i / warmup_iters) * (1 - ratio)).
"""
from __future__ import annotations

from dataclasses import dataclass

WARMUP_ITERS, WARMUP_RATIO, GAMMA = 500, 0.001, 0.1
SGD_MOMENTUM, SGD_WEIGHT_DECAY = 0.9, 1e-4  # the reference's optimizer, on every parameter


def scaled_lr(base_lr: float, base_batch: int, global_batch: int) -> float:
    """The linear scaling rule: base_lr at base_batch images per step (0.01 at 16 for these models)."""
    return base_lr * global_batch / base_batch


@dataclass(frozen=True)
class StepSchedule:
    lr: float  # after warm-up, before any step
    iters_per_epoch: int
    steps: tuple[int, ...] = (8, 11)  # epochs (1-based counts) after which the lr is multiplied by gamma
    gamma: float = GAMMA
    warmup_iters: int = WARMUP_ITERS
    warmup_ratio: float = WARMUP_RATIO

    def regular(self, epoch: int) -> float:
        """The lr of a 0-based epoch, warm-up aside."""
        return self.lr * self.gamma ** sum(1 for s in self.steps if epoch >= s)

    def __call__(self, iteration: int, epoch: int | None = None) -> float:
        """The lr of a 0-based global iteration in a 0-based epoch (by default the one the iteration falls in;
        the trainer passes it, since a run resumed with another batch size changes the epochs' lengths)."""
        lr = self.regular(iteration // self.iters_per_epoch if epoch is None else epoch)
        if iteration < self.warmup_iters:
            return lr * (1 - (1 - iteration / self.warmup_iters) * (1 - self.warmup_ratio))
        return lr


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
