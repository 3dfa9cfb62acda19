"""SHA-256 of files, and giving a verified file its final name: a bad file is deleted, never renamed."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import DownloadError

_HASH_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def matches(digest: str, sha256_prefix: str) -> bool:
    return digest.startswith(sha256_prefix.lower())


def mismatch_message(name: str, expected: str, actual: str) -> str:
    """`expected` is the manifest's prefix; the actual digest is cut to the same length to compare by eye."""
    return f"checksum mismatch for {name}: expected sha256 {expected.lower()}…, got {actual[:len(expected)]}…"


def install_verified(tmp: Path, sha256_prefix: str, dest: Path, source: str, cleanup: str) -> Path:
    """Verify `tmp` and give it the final name; a bad file is deleted, never renamed."""
    actual = sha256_file(tmp)
    if not matches(actual, sha256_prefix):
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{mismatch_message(dest.name, sha256_prefix, actual)} (from {source}); {cleanup}")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())  # the data must be on disk before the name says it is verified
    os.replace(tmp, dest)
    return dest

