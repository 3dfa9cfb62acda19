"""Keeping Python's full garbage collections out of a long inference loop. Once torch, OpenCV and a model are
loaded, some 340k objects are alive, and a full collection walks them all: 60-150 ms, a stall of the GPU's queue
when it lands mid-loop. Eval's result dicts pile up long-lived objects and so set such collections off (one
~0.2 s wait per 500 images on an H200). Freezing what is alive before the loop (gc.freeze) leaves a collection
only the loop's own objects to walk; cycles among the frozen objects are collected after the loop, as before."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The objects alive now are out of the collector's sight inside the with block, and back after. Where the
    caller has frozen objects itself (gc.freeze before forking a server's workers) or turned the collector off,
    nothing is done, so that its freeze is never undone."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
