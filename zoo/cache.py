"""The weights cache: one directory, files under their published names, only verified files under those names.

Next to a file `NAME` the cache may hold `NAME.verified` (the record of its verification: the full SHA-256 of the
first verified copy and the manifest URL it belongs to), `NAME.part` (a download in progress or interrupted,
resumable), `NAME.lock` (the lock of whoever writes NAME, removed on release), `NAME.<random>.tmp` (a copy being
verified) and `NAME.bad` (a file that failed a later verification, kept aside for inspection, never used).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from retinanet.atomic_write import replace_durably
from retinanet.values import check_path

from .errors import CacheError

PART_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"
TEMP_SUFFIX = ".tmp"
RECORD_SUFFIX = ".verified"
BAD_SUFFIX = ".bad"
_RECORD_MAX = 64 * 1024  # a record is a few hundred bytes; anything bigger is not ours


def default_cache_dir() -> Path:
    """$RDET_CACHE when set (an absolute path), else the platform's user cache directory for rdet."""
    env = os.environ.get("RDET_CACHE")
    return cache_root(env) if env else Path(platformdirs.user_cache_dir("rdet")) / "weights"


def cache_root(root: str | os.PathLike) -> Path:
    """A cache directory from --cache-dir or RDET_CACHE. A relative RDET_CACHE is refused: it would name a
    different cache in every working directory."""
    path = Path(root).expanduser()
    env = os.environ.get("RDET_CACHE")
    if not path.is_absolute() and env and Path(env).expanduser() == path:  # --cache-dir takes RDET_CACHE too
        raise CacheError(f"RDET_CACHE must be an absolute path, not '{root}' (a relative one names a different "
                         "cache in every directory)")
    return path.absolute()


def part_path(dest: Path) -> Path:
    """Where the bytes of `dest` land until they are verified."""
    return dest.with_name(dest.name + PART_SUFFIX)


def lock_path(dest: Path) -> Path:
    return dest.with_name(dest.name + LOCK_SUFFIX)


def record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + RECORD_SUFFIX)


def bad_path(dest: Path) -> Path:
    return dest.with_name(dest.name + BAD_SUFFIX)


def final_name(path: Path) -> str:
    """The published file name a cache file belongs to: `x.pth` for x.pth, x.pth.part, x.pth.bad,
    x.pth.verified and x.pth.1a2b.tmp."""
    name = path.name
    for suffix in (PART_SUFFIX, BAD_SUFFIX, RECORD_SUFFIX, LOCK_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    if name.endswith(TEMP_SUFFIX):
        return name[: -len(TEMP_SUFFIX)].rsplit(".", 1)[0]
    return name


@dataclass(frozen=True)
class Record:
    """What the cache knows about a verified file: its full SHA-256 and the manifest URL it was verified for.

    The digest is taken from the first verified copy (trust on first use, where the manifest has only the
    published 8-digit prefix); every later use re-hashes the file and compares with it. The URL binds the
    file to its entry: another manifest's entry with the same file name does not count as having it."""

    sha256: str
    url: str

    def owns(self, url: str, expected: str) -> bool:
        """True when this record is of the file that an entry with `url` and digest (prefix) `expected` names."""
        return self.url == url and self.sha256.startswith(expected.lower())


def read_record(dest: Path) -> Record | None:
    """The record beside `dest`; None when there is none or it is not one rdet wrote."""
    try:
        with open(record_path(dest), "rb") as f:
            raw = json.loads(f.read(_RECORD_MAX))
        record = Record(str(raw["sha256"]), str(raw["url"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):  # RecursionError: JSON nested too deep
        return None
    return record if len(record.sha256) == 64 else None


def write_record(dest: Path, record: Record) -> None:
    """Write the record atomically (a torn record would read as none, which is safe but loses the pin)."""
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}-record{TEMP_SUFFIX}")  # a leftover `cache rm` finds
    try:
        tmp.write_text(json.dumps({"sha256": record.sha256, "url": record.url}), encoding="utf-8")
        replace_durably(tmp, record_path(dest))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Cache:
    def __init__(self, root: str | os.PathLike | None = None):
        if root not in (None, ""):  # "" (an empty --cache-dir) means the default, as it always has
            check_path(root, "cache_dir", CacheError)
        self.root = cache_root(root) if root else default_cache_dir()
        try:
            os.stat(self.root)
        except (FileNotFoundError, NotADirectoryError):
            pass  # created on first download; a file in its way is reported by ensure_dir and files()
        except OSError as e:  # a name too long, a parent without permission, a symlink loop: every use would fail
            raise CacheError(f"cannot use the cache directory {self.root}: {e.strerror or e} (set RDET_CACHE or "
                             "--cache-dir to a usable directory)") from None

    def path(self, filename: str) -> Path:
        """Where a file of this published name lives (whether or not it is there)."""
        return self.root / filename

    def ensure_dir(self) -> Path:
        """The cache directory, created when missing; CacheError when it cannot be one."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            pass
        except OSError as e:
            raise CacheError(f"cannot create the cache directory {self.root}: {e.strerror or e} (set RDET_CACHE "
                             "or --cache-dir to a writable directory)") from None
        if not self.root.is_dir():
            raise self._not_a_directory()
        return self.root

    def ensure_room(self, filename: str) -> Path:
        """ensure_dir, and nothing but files where `filename` and its companions go: a directory in one of their
        places would fail a download half-way, or after its bytes arrived. Returns the file's path."""
        self.ensure_dir()
        dest = self.path(filename)
        for p in (dest, part_path(dest), lock_path(dest), record_path(dest), bad_path(dest)):
            if p.exists() and not p.is_file():
                raise CacheError(f"{p} is in the way: not a file, where the cache keeps one of its own; remove it or "
                                 "use another cache directory")
        return dest

    def _not_a_directory(self) -> CacheError:
        return CacheError(f"the cache directory {self.root} is not a directory (set RDET_CACHE or --cache-dir to a "
                          "directory)")

    def files(self) -> list[Path]:
        """Every file in the cache but lock files and records: complete ones, .part, .tmp and .bad, by name."""
        if not self.root.exists():
            return []
        if not self.root.is_dir():
            raise self._not_a_directory()
        try:
            return sorted(p for p in self.root.iterdir()
                          if p.is_file() and not p.name.endswith((LOCK_SUFFIX, RECORD_SUFFIX)))
        except OSError as e:
            raise CacheError(f"cannot read the cache directory {self.root}: {e.strerror or e}") from None

    def leftovers(self, filename: str) -> list[Path]:
        """The partial, temporary and set-aside files of one published name, and its record."""
        rec = record_path(self.path(filename))
        return [p for p in self.files() if p.name != filename and final_name(p) == filename] + \
            ([rec] if rec.is_file() else [])
