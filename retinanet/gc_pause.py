"""No full garbage collection inside a long inference loop. Once torch, OpenCV and a model are loaded, some 340k
objects are alive, and a full collection walks them all: 150-210 ms, in which the GPU's queue runs dry. Eval's
result dicts pile up long-lived objects and set one off about once per 500 images: on an H200 it was the one
~0.2 s wait between two results of an fp16 eval (17 ms at most with the collector off). Young collections go on
as before, so cycles made in the loop are still freed; the full walk waits until the loop is over.

gc.freeze was tried first and did not help there: libraries had frozen objects of their own already, and a
freeze cannot be undone without undoing theirs."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_NEVER = 1 << 30  # young collections between two full ones: more than any loop makes


@contextmanager
def no_full_collections() -> Iterator[None]:
    """Inside the with block the collector runs no full collection by itself (gc.collect() still does one);
    its thresholds are as they were after, whatever the caller had set."""
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], _NEVER)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
