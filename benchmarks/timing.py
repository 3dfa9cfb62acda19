"""Timing two ways of doing one thing in the same run, fairly."""
from __future__ import annotations

import time


def time_alternately(first, second, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per call of `first` and of `second` after `warmup` untimed calls of each, called alternately and
    each going first every other round, so drifting load and cache footprints hit both alike."""
    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    for _ in range(warmup):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats):
        order = [(first, times[0]), (second, times[1])]
        for fn, into in (order if i % 2 == 0 else order[::-1]):
            into.append(timed(fn))
    return times
