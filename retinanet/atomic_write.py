"""The one atomic write: a temporary file beside the target, flushed to disk, renamed over it, the directory
flushed too, so a crash leaves the old file or the new one, never half of one. `zoo` uses it as well."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory: the rename is as durable as it gets there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Give the finished file `tmp` the name `dest`: its data reaches the disk before the name does."""
    tmp, dest = Path(tmp), Path(dest)
    if not tmp.is_symlink():
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)
    return dest


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """`with atomic_path(p) as tmp: write(tmp)`: p gets the written file only when the block succeeds."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        replace_durably(tmp, path)
    except BaseException:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
