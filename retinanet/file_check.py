"""Why a path given as an input file is not one: missing, a directory, a device or pipe (reading one could block
or never end), or out of reach. One phrase for the caller's one-line error."""
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
