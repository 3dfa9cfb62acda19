"""Installed package versions, read from package metadata (no imports): rdet's own for `rdet --version` and for
what rdet writes (checkpoints, exports), and the libraries' for provenance records."""
from __future__ import annotations


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
