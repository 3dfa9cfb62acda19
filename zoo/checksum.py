"""SHA-256 of files; giving a verified file its final name and its record; checking a cached file at each use.

A manifest gives a full digest (64 hex digits) or only the published 8-digit prefix. With a prefix, the full
digest of the first verified copy is recorded beside it (cache.Record) and every later use must match it, so a
file forged to the same 32-bit prefix later cannot replace it unnoticed.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from retinanet.atomic_write import replace_durably

from .cache import Record, bad_path, read_record, record_path, write_record
from .errors import CacheError, DownloadError

_HASH_CHUNK = 1 << 20
FULL_DIGEST = 64


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def matches(digest: str, sha256_prefix: str) -> bool:
    return digest.startswith(sha256_prefix.lower())


def is_pinned(expected: str) -> bool:
    """True when the manifest gives the full digest, not just a prefix."""
    return len(expected) == FULL_DIGEST


def mismatch_message(name: str, expected: str, actual: str) -> str:
    """The actual digest is cut to the expected one's length to compare by eye."""
    cut = "" if is_pinned(expected) else "…"
    return f"checksum mismatch for {name}: expected sha256 {expected.lower()}{cut}, got {actual[:len(expected)]}{cut}"


def install_verified(tmp: Path, expected: str, dest: Path, source: str, cleanup: str, url: str) -> Path:
    """Verify `tmp`, record its full digest for `url`, and give it the final name; a bad file is deleted."""
    try:
        actual = sha256_file(tmp)
    except FileNotFoundError:
        raise CacheError(f"{tmp} vanished before it could be verified (removed by another program?); run "
                         "again") from None
    if not matches(actual, expected):
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{mismatch_message(dest.name, expected, actual)} (from {source}); {cleanup}")
    record_path(dest).unlink(missing_ok=True)  # never a moment where an old record vouches for the new file
    replace_durably(tmp, dest)  # the data is on disk before the name says it is verified
    write_record(dest, Record(actual, url))
    bad_path(dest).unlink(missing_ok=True)  # a copy set aside earlier is superseded now
    return dest


def check_cached(dest: Path, url: str, expected: str, actual: str | None = None) -> tuple[bool, str | None]:
    """Whether the file under `dest` is the one the entry (`url`, `expected`) names, by a full re-hash.

    Returns (ok, problem): (False, None) when there is no file or it is another entry's (left alone);
    (False, message) when it fails verification: it is then moved aside to NAME.bad and never used.
    A file without a record (from an older rdet) that matches is adopted: its full digest is recorded now.
    `actual` is the file's digest when the caller has just computed it.
    """
    if not (dest.is_file() and dest.stat().st_size > 0):
        return False, None
    record = read_record(dest)
    if record is not None and record.url != url:
        return False, None  # another manifest's entry with the same file name: not this entry's file
    actual = actual or sha256_file(dest)
    if record is None and matches(actual, expected):
        try:
            write_record(dest, Record(actual, url))
        except OSError:
            pass  # a read-only cache (shared, pre-filled) stays usable; the pin waits for a writable one
        return True, None
    if record is not None and actual == record.sha256 and matches(actual, expected):
        return True, None
    if record is not None and actual == record.sha256:
        problem = (f"{dest.name} is the file first verified for this entry (sha256 {record.sha256}) but the "
                   f"manifest now expects {expected}")
    else:
        pinned = record.sha256 if record else expected
        problem = f"{dest.name} failed verification: {mismatch_message(dest.name, pinned, actual)}"
    set_aside(dest)
    return False, f"{problem}; moved to {bad_path(dest).name} and never used"


def set_aside(dest: Path) -> None:
    """Move a file that failed verification out of the way (to NAME.bad) and drop its record."""
    try:
        record_path(dest).unlink(missing_ok=True)
        os.replace(dest, bad_path(dest))
    except FileNotFoundError:
        pass  # another process set it aside first
    except OSError as e:
        raise CacheError(f"{dest} failed verification and cannot be moved aside: {e.strerror or e}; delete "
                         "it") from None
