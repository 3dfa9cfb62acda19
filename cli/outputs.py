"""Output paths, checked before any work starts: a bad --out fails in one line before the model loads, not
after the whole inference; a write that still fails later (a full disk) is one line too."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .common import Fail


def _probe(directory: Path, flag: str) -> None:
    """Prove that files can be created in `directory` (permissions alone do not tell: root, read-only mounts)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise Fail(f"{flag} {directory}: cannot write there ({e.strerror or e})") from None


def output_dir(path: Path, flag: str = "--out") -> Path:
    """A directory to write results into, created when missing and proven writable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise Fail(f"{flag} {path}: exists and is not a directory; give a directory") from None
    except OSError as e:
        raise Fail(f"{flag} {path}: cannot create the directory ({e.strerror or e})") from None
    _probe(path, flag)
    return path


def output_file(path: Path, flag: str = "--out", inputs=()) -> Path:
    """A file to write results into: not a directory, in a directory that exists (created) and is writable, and
    none of the `inputs` (paths this run reads; None skipped), which writing it would destroy."""
    if path.is_dir():
        raise Fail(f"{flag} {path}: is a directory; give a file name")
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise Fail(f"{flag} {path}: is the input {source}, which writing it would destroy; give another {flag}")
    real = Path(os.path.realpath(path))  # a link is written through (retinanet.atomic_write): check its target
    output_dir(real.parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise Fail(f"{flag} {path}: the file is not writable")
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (links and relative spellings included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): the same file only if they resolve alike
        return a.resolve() == b.resolve()


@contextmanager
def writing(path: Path):
    """Turn a failing write of `path`, or of a file in it (disk full, removed directory, a directory where the
    file goes), into a one-line error naming the file."""
    try:
        yield
    except OSError as e:
        where = getattr(e, "filename2", None) or getattr(e, "filename", None) or path  # a rename's target first
        raise Fail(f"cannot write {where}: {e.strerror or e}", code=1) from None


OUTPUT_LOCK = ".rdet.lock"  # held while a run writes into an output directory, removed after


def held_output_dir(path: Path, flag: str = "--out"):
    """A with block during which this run alone writes into the directory `path`: another rdet writing there
    at the same time is refused in one line, rather than both overwriting each other's files."""
    from retinanet.process_lock import held_alone

    return held_alone(path / OUTPUT_LOCK, f"{flag} {path}: another rdet is writing there; wait for it to end, or "
                                          f"give another {flag}")
