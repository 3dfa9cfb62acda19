"""Checks of single values that come from files (JSON, TOML, checkpoints, export metadata) or from callers.

Booleans are not numbers here: Python counts True as 1, so `"image_id": true` or `depth = true` would otherwise
pass as an integer.
"""
from __future__ import annotations

import math
import numbers


def is_whole(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_finite_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_fraction(value, name: str) -> None:
    """ValueError unless `value` is a number from 0 to 1 (a threshold; NaN is not)."""
    if not (is_finite_number(value) and 0 <= value <= 1):
        raise ValueError(f"{name} must be a number from 0 to 1, not {value!r}")


def check_batch_size(value) -> None:
    if not (is_whole(value) and value >= 1):
        raise ValueError(f"batch_size must be a positive integer, not {value!r}")
