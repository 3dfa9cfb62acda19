"""Checks of single values that come from files (JSON, TOML, checkpoints, export metadata) or from callers.

Booleans are not numbers here: Python counts True as 1, so `"image_id": true` or `depth = true` would otherwise
pass as an integer. NumPy's integers and floats are numbers (`numbers.Integral` / `numbers.Real`); `plain` turns
them into Python's, which JSON and every later check take.
"""
from __future__ import annotations

import math
import numbers
import os

from retinanet.errors import ArgumentError


def is_whole(v) -> bool:
    # `type(v) is int` first: the ABC check is slow, and half a million COCO results are checked at a time
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def is_finite_number(v) -> bool:
    if type(v) is float or type(v) is int:  # the common cases, without the slow ABC check
        return math.isfinite(v)
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_numpy_bool(v) -> bool:
    """numpy.bool_ (numpy.bool in NumPy 2), told without importing NumPy."""
    return type(v).__module__ == "numpy" and getattr(v, "shape", None) == () and v.dtype.kind == "b"


def plain(v):
    """A NumPy (or other) integer, float or bool as Python's; anything else as it is."""
    if _is_numpy_bool(v):  # no numbers.Real
        return bool(v)
    if isinstance(v, (bool, int, float)) or not isinstance(v, numbers.Real):
        return v
    return int(v) if isinstance(v, numbers.Integral) else float(v)


def plain_fields(obj) -> None:
    """In a (frozen) dataclass, lists and 1-D arrays become tuples and NumPy numbers Python's, so that one built
    from arrays or JSON equals, hashes and serialises as one built from literals (a str is left whole, not split)."""
    from dataclasses import fields

    for f in fields(obj):
        value = getattr(obj, f.name)
        if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 1:  # e.g. scale=np.array([w, h])
            value = value.tolist()
        if isinstance(value, (list, tuple)):
            value = tuple(plain(v) for v in value)
        object.__setattr__(obj, f.name, plain(value))


def check_fraction(value, name: str) -> None:
    """ArgumentError (a ValueError) unless `value` is a number from 0 to 1 (a threshold; NaN is not)."""
    if not (is_finite_number(value) and 0 <= value <= 1):
        raise ArgumentError(f"{name} must be a number from 0 to 1, not {value!r}")


def check_whole(value, name: str, low: int = 1) -> None:
    """ArgumentError unless `value` is an integer (not a bool) of at least `low`."""
    if not (is_whole(value) and value >= low):
        what = "a positive integer" if low == 1 else f"an integer of at least {low}"
        raise ArgumentError(f"{name} must be {what}, not {value!r}")


def check_number(value, name: str, positive: bool = False) -> None:
    """ArgumentError unless `value` is a finite number (not a bool): above 0 when `positive`, else at least 0."""
    if not (is_finite_number(value) and (value > 0 if positive else value >= 0)):
        what = "a positive number" if positive else "a number of at least 0"
        raise ArgumentError(f"{name} must be {what}, not {value!r}")


def check_batch_size(value) -> None:
    check_whole(value, "batch_size")


def check_flag(value, name: str) -> None:
    """ArgumentError unless `value` is True or False (a string such as "no" would count as true)."""
    if not (isinstance(value, bool) or _is_numpy_bool(value)):
        raise ArgumentError(f"{name} must be True or False, not {value!r}")


def check_path(value, name: str, error: type[Exception] = ArgumentError) -> None:
    """`error` unless `value` names a file the way open() takes it from Python code: a str or an os.PathLike
    (a number would be taken as a file descriptor, bytes need an encoding)."""
    if not isinstance(value, (str, os.PathLike)) or not isinstance(os.fspath(value), str) or not os.fspath(value):
        raise error(f"{name} must be a path (a non-empty str or os.PathLike), not {value!r}")
