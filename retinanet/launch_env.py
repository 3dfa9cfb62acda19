"""What torchrun says about this process (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), read without
importing torch and checked before a process group waits on it: a junk or inconsistent value is one line, not a
traceback from torch's rendezvous or a wait for ranks that will never come."""
from __future__ import annotations

import os
from dataclasses import dataclass

from retinanet.errors import RetinaNetError


@dataclass(frozen=True)
class Launch:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def _whole(name: str, low: int, high: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    value = int(raw) if raw.isascii() and raw.isdigit() else None
    if value is None or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise RetinaNetError(f"{name}={raw!r} is not a whole number {bound}: the torchrun variables (RANK, "
                             "WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) are inconsistent; unset them to run "
                             "one process")
    return value


def torchrun_launch() -> Launch:
    """This process's place among torchrun's: a single process unless both RANK and WORLD_SIZE are set."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Launch()
    world = _whole("WORLD_SIZE", 1)
    if world == 1:
        return Launch()
    rank = _whole("RANK", 0, world - 1)
    local_rank = _whole("LOCAL_RANK", 0) if os.environ.get("LOCAL_RANK", "").strip() else 0
    if not os.environ.get("MASTER_ADDR", "").strip():
        raise RetinaNetError("WORLD_SIZE is set but MASTER_ADDR is not: start several processes with torchrun, or "
                             "unset RANK and WORLD_SIZE to run one")
    _whole("MASTER_PORT", 1, 65535)
    return Launch(rank, world, local_rank)


def is_main_process() -> bool:
    """Rank 0, or a single process; also when torchrun's variables are junk (this process then says so)."""
    try:
        return torchrun_launch().rank == 0
    except RetinaNetError:
        return True
