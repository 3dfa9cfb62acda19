"""Why a path given as an input file is not one: missing, a directory, a device or pipe (reading one could block
or never end), or out of reach. One phrase for the caller's one-line error. And reading such a file whole, when
it must be small (an image, a manifest), without a race between the check and the read."""
from __future__ import annotations

import os
import stat


def file_problem(path: str | os.PathLike) -> str | None:
    """None for a regular file (or a link to one), else why `path` is none."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "no such file"
    except OSError as e:  # permission denied on a parent, a symlink loop, a name too long
        return f"cannot be reached ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, pipe or socket)"
    return None


class FileProblem(Exception):
    """Why read_small_file could not read a file: one phrase, as file_problem says it (the caller names the file)."""


class FileTooLarge(FileProblem):
    def __init__(self, size: int):
        super().__init__(f"{size} bytes")
        self.size = size


def read_small_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, checked on the open descriptor (no race); FileProblem
    or FileTooLarge otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever (regular files ignore the flag)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise FileProblem("no such file") from None
    except OSError as e:
        raise FileProblem(f"cannot be read ({e.strerror or e})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileProblem("is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("not a regular file (a device, pipe or socket)")
        if info.st_size > max_bytes:
            raise FileTooLarge(info.st_size)
        f, fd = os.fdopen(fd, "rb"), None  # the file object closes it from here on
    finally:
        if fd is not None:
            os.close(fd)
    try:
        with f:
            # the size read is what fstat said (read(n) allocates n bytes up front: never the limit itself)
            data = f.read(info.st_size + 1)
    except OSError as e:  # EISDIR cannot happen here; an I/O error, a file on a vanished mount
        raise FileProblem(f"cannot be read ({e.strerror or e})") from None
    if len(data) > info.st_size:
        raise FileProblem("grew while being read (is it still being written?)")
    return data
