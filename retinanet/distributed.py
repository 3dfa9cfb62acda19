"""torchrun support: one process per device, NCCL on GPUs and gloo on the CPU, rank 0 gathers and reports."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from retinanet.launch_env import torchrun_launch


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return torchrun_launch().world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment; a no-op for a single process."""
    launch = torchrun_launch()
    if launch.world_size == 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(launch.local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), launch.local_rank)


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Under torchrun each process takes the GPU of its local rank."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def shard(items: list, info: DistInfo) -> list:
    """This rank's share of `items` (strided, so shards differ in length by at most one)."""
    return items[info.rank::info.world_size]


def gather_to_main(obj, info: DistInfo):
    """Every rank's `obj` as a list on rank 0 (None elsewhere)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its device (its local rank's GPU under torchrun) and its place in the group."""

    device: torch.device
    dist: DistInfo

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def close(self) -> None:
        cleanup(self.dist)


def start_runtime(device: str | torch.device = "auto") -> Runtime:
    """The one distributed set-up: resolve the device, join torchrun's process group (a no-op for a single
    process) and take the local rank's GPU. `close()` the result when done."""
    from retinanet.inference.detector import resolve_device

    dev = resolve_device(device)
    info = init_distributed(dev)
    return Runtime(local_device(dev, info), info)
