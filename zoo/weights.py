"""The zoo's files in the cache: each model's checkpoint and ImageNet backbone, fetched, imported, listed,
verified and removed. predict / eval / bench / train call ensure_weights / ensure_pretrained.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .cache import Cache, final_name
from .checksum import matches, mismatch_message, sha256_file
from .download import fetch, install_copy
from .lock import locked
from .progress import Reporter
from .errors import ManifestError
from .manifest import Entry, Zoo

CHECKPOINT, PRETRAINED = "checkpoint", "pretrained"


@dataclass(frozen=True)
class WeightFile:
    """One file a model needs: its checkpoint, or the ImageNet backbone it is trained from."""

    model: str
    kind: str  # CHECKPOINT or PRETRAINED
    url: str
    sha256: str
    filename: str

    @property
    def import_hint(self) -> str:
        """What to do with a copy fetched by other means."""
        flag = "--pretrained " if self.kind == PRETRAINED else ""
        return f"run `rdet import {flag}{self.model} FILE`"


def checkpoint_file(entry: Entry) -> WeightFile:
    return WeightFile(entry.name, CHECKPOINT, entry.url, entry.sha256, entry.filename)


def pretrained_file(entry: Entry) -> WeightFile:
    """The backbone file; ManifestError when the entry names none or has no checksum for it."""
    if not entry.pretrained_url:
        raise ManifestError(f"{entry.source}: model '{entry.name}' has no pretrained_url (the ImageNet backbone "
                            "weights training starts from)")
    if not entry.pretrained_sha256:
        raise ManifestError(f"{entry.source}: model '{entry.name}' has a pretrained_url but no pretrained_sha256 "
                            "to verify it with")
    return WeightFile(entry.name, PRETRAINED, entry.pretrained_url, entry.pretrained_sha256,
                      entry.pretrained_filename)


def _cache(cache: Cache | str | os.PathLike | None) -> Cache:
    return cache if isinstance(cache, Cache) else Cache(cache)


def ensure(wf: WeightFile, cache: Cache | str | os.PathLike | None = None, *, offline: bool | None = None,
           quiet: bool = False, progress: Reporter | None = None, **options) -> Path:
    """The verified local path of `wf`, downloaded first when missing; `options` go to download.fetch."""
    return fetch(wf.url, wf.sha256, _cache(cache).path(wf.filename), hint=wf.import_hint, offline=offline,
                 quiet=quiet, progress=progress, **options)


def ensure_weights(entry: Entry, cache: Cache | str | os.PathLike | None = None, *, offline: bool | None = None,
                   quiet: bool = False, progress: Reporter | None = None, **options) -> Path:
    """The verified local path of the entry's checkpoint, downloaded first when missing."""
    return ensure(checkpoint_file(entry), cache, offline=offline, quiet=quiet, progress=progress, **options)


def ensure_pretrained(entry: Entry, cache: Cache | str | os.PathLike | None = None, *,
                      offline: bool | None = None, quiet: bool = False, progress: Reporter | None = None,
                      **options) -> Path:
    """The verified local path of the ImageNet backbone file the entry trains from, downloaded when missing."""
    return ensure(pretrained_file(entry), cache, offline=offline, quiet=quiet, progress=progress, **options)


def import_weights(entry: Entry, file: str | os.PathLike, cache: Cache | str | os.PathLike | None = None, *,
                   pretrained: bool = False, quiet: bool = False, progress: Reporter | None = None) -> Path:
    """Place a file obtained by other means into the cache under its published name, once its checksum matches.

    A bad file raises DownloadError (expected vs actual) and leaves the cache as it was.
    """
    wf = pretrained_file(entry) if pretrained else checkpoint_file(entry)
    return install_copy(file, wf.sha256, _cache(cache).path(wf.filename), quiet=quiet, progress=progress)


# ---------------------------------------------------------------------------------------------------- the cache

COMPLETE, PARTIAL, UNKNOWN = "complete", "partial", "unknown"


@dataclass(frozen=True)
class CachedFile:
    """A file in the cache and the zoo files it stands for (several models may share one backbone file)."""

    path: Path
    size: int
    state: str  # COMPLETE (verified when it took its name), PARTIAL (.part/.tmp) or UNKNOWN (not a zoo file)
    refs: tuple[WeightFile, ...] = ()

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.refs))

    def to_dict(self) -> dict:
        return {"names": self.names, "file": self.path.name, "path": str(self.path), "size": self.size,
                "state": self.state, "kind": self.refs[0].kind if self.refs else None,
                "verified": self.state == COMPLETE}


def zoo_files(zoo: Zoo) -> dict[str, list[WeightFile]]:
    """Published file name -> the zoo files of that name."""
    files: dict[str, list[WeightFile]] = {}
    for entry in zoo:
        wfs = [checkpoint_file(entry)]
        if entry.pretrained_url and entry.pretrained_sha256:
            wfs.append(pretrained_file(entry))
        for wf in wfs:
            files.setdefault(wf.filename, []).append(wf)
    return files


def cache_contents(zoo: Zoo, cache: Cache | str | os.PathLike | None = None) -> list[CachedFile]:
    """Every file in the cache (lock files aside), matched to the zoo by published name."""
    known = zoo_files(zoo)
    out = []
    for path in _cache(cache).files():
        name = final_name(path)
        refs = tuple(known.get(name, ()))
        state = UNKNOWN if not refs else COMPLETE if name == path.name else PARTIAL
        out.append(CachedFile(path, path.stat().st_size, state, refs))
    return out


@dataclass(frozen=True)
class Verdict:
    file: CachedFile
    ok: bool | None  # None: a file the zoo does not know, nothing to check it against
    actual: str

    @property
    def message(self) -> str:
        if self.ok is None:
            return f"{self.file.path.name}: not a zoo file, not checked"
        if self.ok:
            return f"{self.file.path.name}: ok"
        return mismatch_message(self.file.path.name, self.file.refs[0].sha256, self.actual)

    def to_dict(self) -> dict:
        status = "unknown" if self.ok is None else "ok" if self.ok else "bad"
        # "verified" now says what this re-hash found, not what was true when the file took its name
        return {**self.file.to_dict(), "verified": bool(self.ok), "status": status, "actual_sha256": self.actual,
                "expected_sha256": self.file.refs[0].sha256 if self.file.refs else None}


def verify_file(item: CachedFile) -> Verdict:
    """Re-hash one complete cached file against the manifest."""
    actual = sha256_file(item.path)
    ok = any(matches(actual, r.sha256) for r in item.refs) if item.refs else None
    return Verdict(item, ok, actual)


def _remove(cache: Cache, filename: str) -> list[Path]:
    """Delete a file with its partial and temporary copies, unless another process is writing it right now."""
    dest = cache.path(filename)
    if not dest.exists() and not cache.leftovers(filename):
        return []
    with locked(dest, wait=False):
        paths = [p for p in (dest, *cache.leftovers(filename)) if p.exists()]
        for p in paths:
            p.unlink()
    return paths


def remove_weights(entry: Entry, cache: Cache | str | os.PathLike | None = None, *,
                   pretrained: bool = False) -> list[Path]:
    """Delete the entry's checkpoint (and its backbone file with `pretrained`); returns the removed paths."""
    cache = _cache(cache)
    wfs = [checkpoint_file(entry)] + ([pretrained_file(entry)] if pretrained else [])
    return [p for wf in wfs for p in _remove(cache, wf.filename)]


def clear_cache(zoo: Zoo, cache: Cache | str | os.PathLike | None = None) -> list[Path]:
    """Delete every zoo file from the cache, complete or partial. Files the zoo does not name are left alone
    (the cache directory may have been pointed somewhere shared)."""
    cache = _cache(cache)
    names = dict.fromkeys(final_name(i.path) for i in cache_contents(zoo, cache) if i.state != UNKNOWN)
    return [p for name in names for p in _remove(cache, name)]
