"""The one atomic write: a temporary file beside the target, flushed to disk, renamed over it, the directory
flushed too, so a crash leaves the old file or the new one, never half of one. `zoo` uses it as well.

Each write has a temporary name of its own (`NAME.<random>.tmp`): two processes writing one file at once (two
`rdet export --out same.onnx`) then each rename a whole file of their own, and the last one wins, instead of
writing into one shared temporary file and renaming a mix of both."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
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


_TOKEN_BYTES = 4
_TEMPORARY = re.compile(rf"(?P<target>.+)\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.tmp")


def temporary_name(path: str | os.PathLike) -> Path:
    """A name beside `path` that no other write uses: `NAME.<random>.tmp` (a crash may leave one; *.tmp is
    litter, never a result)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp")


def temporary_target(name: str) -> str | None:
    """The file name that `name`, a temporary_name, was to become; None when `name` is no temporary_name."""
    match = _TEMPORARY.fullmatch(name)
    return match["target"] if match else None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """`with atomic_path(p) as tmp: write(tmp)`: p gets the written file only when the block succeeds. A link
    stays a link (its target gets the file); a device or pipe (/dev/null, /dev/stdout, a FIFO) gets the bytes
    written into it: renamed over, it would be replaced by a plain file (as root, /dev/null itself)."""
    path = Path(os.path.realpath(path))
    special = path.exists() and not path.is_file() and not path.is_dir()
    if special:
        fd, name = tempfile.mkstemp(suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
    else:
        tmp = temporary_name(path)
    try:
        yield tmp
        if special:
            with open(tmp, "rb") as src, open(path, "wb") as dest:
                shutil.copyfileobj(src, dest)
            tmp.unlink()
        else:
            replace_durably(tmp, path)
    except BaseException:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
