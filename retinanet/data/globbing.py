"""Recursive globs that end: `dir/**/*.jpg` walks each real directory once, however symlinks loop.

glob.glob(recursive=True) follows a symlink to a directory every time it meets one, so `a -> .` makes the walk
infinite (two such links) or lists each file once per path to it (one link). Here a directory reached again
through a link is skipped, and a file reached by several paths is listed once, under the first path found.
"""
from __future__ import annotations

import fnmatch
import glob
import os


def _split(pattern: str) -> tuple[str, str]:
    """(the part before the first component with a wildcard, the rest)."""
    parts = pattern.split(os.sep)
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return os.sep.join(parts[:i]) or ("." if i == 0 else os.sep), os.sep.join(parts[i:])
    return pattern, ""


def _matches(pattern: list[str], parts: list[str]) -> bool:
    """Path components against pattern components, as glob does: `**` spans any number of directories (none
    included); other wildcards stay within one name and, like glob's, skip names starting with a dot."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(pattern[1:], parts[i:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    if not parts or (parts[0].startswith(".") and not pattern[0].startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], pattern[0]) and _matches(pattern[1:], parts[1:])


def recursive_glob(pattern: str) -> list[str]:
    """The files matching a pattern with `**`, each real file once, sorted; other patterns go to glob."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern))
    root, rest = _split(pattern)
    wanted = rest.split(os.sep)
    seen_dirs, seen_files, found = set(), set(), []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen_dirs:  # reached again through a link: walked already
            dirnames[:] = []
            continue
        seen_dirs.add((info.st_dev, info.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if not _matches(wanted, os.path.relpath(path, root).split(os.sep)):
                continue
            try:
                key = (os.stat(path).st_dev, os.stat(path).st_ino)
            except OSError:
                continue  # a dangling link
            if key not in seen_files:
                seen_files.add(key)
                found.append(path)
    if root == "." and not pattern.startswith("."):  # as glob gives them: a.jpg, not ./a.jpg
        found = [os.path.relpath(p) for p in found]
    return sorted(found)
