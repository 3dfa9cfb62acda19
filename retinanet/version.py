"""Installed package versions, read from package metadata (no imports): rdet's own for `rdet --version` and for
what rdet writes (checkpoints, exports), and the libraries' for provenance records."""
from __future__ import annotations

import platform


def installed_version(name: str) -> str | None:
    """The installed version of distribution `name`, None where it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def package_version() -> str:
    """rdet's installed version, or why there is none."""
    return installed_version("rdet") or "unknown (not installed)"


def library_versions() -> dict[str, str | None]:
    """The libraries that decide a result, read from package metadata (re-scoring need not import torch)."""
    return {"python": platform.python_version(), "torch": installed_version("torch"),
            "torchvision": installed_version("torchvision"),
            "opencv": installed_version("opencv-python-headless") or installed_version("opencv-python"),
            "pillow": installed_version("pillow"), "numpy": installed_version("numpy")}
