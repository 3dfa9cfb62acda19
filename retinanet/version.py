"""rdet's installed version: shown by `rdet --version` and recorded in what rdet writes (exports)."""
from __future__ import annotations


def package_version() -> str:
    """rdet's installed version, or why there is none."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rdet")
    except PackageNotFoundError:
        return "unknown (not installed)"
