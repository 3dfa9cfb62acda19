"""The weights cache: one directory, files under their published names, only verified files under those names.

Next to a file `NAME` the cache may hold `NAME.part` (a download in progress or interrupted, resumable),
`NAME.lock` (the inter-process lock of whoever writes NAME) and `NAME.<random>.tmp` (a copy being verified).
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PART_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"
TEMP_SUFFIX = ".tmp"


def default_cache_dir() -> Path:
    """$RDET_CACHE when set, else the platform's user cache directory for rdet."""
    env = os.environ.get("RDET_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("rdet")) / "weights"


def part_path(dest: Path) -> Path:
    """Where the bytes of `dest` land until they are verified."""
    return dest.with_name(dest.name + PART_SUFFIX)


def lock_path(dest: Path) -> Path:
    return dest.with_name(dest.name + LOCK_SUFFIX)


def final_name(path: Path) -> str:
    """The published file name a cache file belongs to: `x.pth` for x.pth, x.pth.part and x.pth.1a2b.tmp."""
    name = path.name
    if name.endswith(PART_SUFFIX):
        return name[: -len(PART_SUFFIX)]
    if name.endswith(TEMP_SUFFIX):
        return name[: -len(TEMP_SUFFIX)].rsplit(".", 1)[0]
    return name


class Cache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root else default_cache_dir()

    def path(self, filename: str) -> Path:
        """Where a file of this published name lives (whether or not it is there)."""
        return self.root / filename

    def has(self, filename: str) -> bool:
        """True when the verified file is present (only verified files ever take the final name)."""
        p = self.path(filename)
        return p.is_file() and p.stat().st_size > 0

    def part(self, filename: str) -> Path:
        return part_path(self.path(filename))

    def files(self) -> list[Path]:
        """Every file in the cache but the lock files: complete ones, .part and .tmp, sorted by name."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_file() and not p.name.endswith(LOCK_SUFFIX))

    def leftovers(self, filename: str) -> list[Path]:
        """The partial and temporary files of one published name."""
        return [p for p in self.files() if p.name != filename and final_name(p) == filename]
