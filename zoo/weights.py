"""The zoo's files in the cache: each model's checkpoint and ImageNet backbone, fetched, imported, listed,
verified and removed. predict / eval / bench / train call ensure_weights / ensure_pretrained.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .cache import BAD_SUFFIX, Cache, final_name, read_record
from .checksum import check_cached, is_pinned, mismatch_message, sha256_file
from .download import fetch, install_copy
from .errors import CacheError, DownloadError, ManifestError
from .lock import locked
from .progress import TransferProgress
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
           quiet: bool = False, progress: TransferProgress | None = None, **options) -> Path:
    """The verified local path of `wf`, downloaded first when missing; `options` go to download.fetch."""
    return fetch(wf.url, wf.sha256, _cache(cache).path(wf.filename), hint=wf.import_hint, offline=offline,
                 quiet=quiet, progress=progress, **options)


def ensure_weights(entry: Entry, cache: Cache | str | os.PathLike | None = None, *, offline: bool | None = None,
                   quiet: bool = False, progress: TransferProgress | None = None, **options) -> Path:
    """The verified local path of the entry's checkpoint, downloaded first when missing."""
    return ensure(checkpoint_file(entry), cache, offline=offline, quiet=quiet, progress=progress, **options)


def ensure_pretrained(entry: Entry, cache: Cache | str | os.PathLike | None = None, *,
                      offline: bool | None = None, quiet: bool = False, progress: TransferProgress | None = None,
                      **options) -> Path:
    """The verified local path of the ImageNet backbone file the entry trains from, downloaded when missing."""
    return ensure(pretrained_file(entry), cache, offline=offline, quiet=quiet, progress=progress, **options)


def import_weights(entry: Entry, file: str | os.PathLike, cache: Cache | str | os.PathLike | None = None, *,
                   pretrained: bool = False, quiet: bool = False, progress: TransferProgress | None = None) -> Path:
    """Place a file obtained by other means into the cache under its published name, once its checksum matches.

    A bad file raises DownloadError (expected vs actual) and leaves the cache as it was.
    """
    wf = pretrained_file(entry) if pretrained else checkpoint_file(entry)
    return install_copy(file, wf.sha256, _cache(cache).path(wf.filename), url=wf.url, quiet=quiet,
                        progress=progress)


def is_cached(wf: WeightFile, cache: Cache | str | os.PathLike | None = None) -> bool:
    """True when the cache holds this entry's own file, verified when it took its name (no re-hash: for
    listings; every use re-hashes)."""
    path = _cache(cache).path(wf.filename)
    record = read_record(path)
    return path.is_file() and record is not None and record.owns(wf.url, wf.sha256)


def recorded_digest(wf: WeightFile, cache: Cache | str | os.PathLike | None = None) -> str | None:
    """The full SHA-256 recorded for this entry's file when it was first verified (to pin in a manifest)."""
    record = read_record(_cache(cache).path(wf.filename))
    return record.sha256 if record is not None and record.owns(wf.url, wf.sha256) else None


# ---------------------------------------------------------------------------------------------------- the cache

COMPLETE, PARTIAL, BAD, FOREIGN, UNKNOWN = "complete", "partial", "bad", "foreign", "unknown"


@dataclass(frozen=True)
class CachedFile:
    """A file in the cache and the zoo files it stands for (several models may share one backbone file).

    `refs` are the entries it belongs to: those whose URL and digest its record names (an entry of another
    manifest with the same file name is not among them)."""

    path: Path
    size: int
    # COMPLETE: verified when it took its name; PARTIAL: .part/.tmp; BAD: failed a later verification, set aside;
    # FOREIGN: a zoo file name whose record binds it to no entry here; UNKNOWN: not a zoo file name
    state: str
    refs: tuple[WeightFile, ...] = ()
    sha256: str | None = None  # the full digest recorded when it was first verified

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.refs))

    def to_dict(self) -> dict:
        return {"names": self.names, "file": self.path.name, "path": str(self.path), "size": self.size,
                "state": self.state, "kind": self.refs[0].kind if self.refs else None,
                "verified": self.state == COMPLETE, "sha256": self.sha256,
                "pinned": bool(self.refs) and all(is_pinned(r.sha256) for r in self.refs)}


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


def _describe(path: Path, candidates: list[WeightFile]) -> CachedFile:
    size = path.stat().st_size
    if not candidates:
        return CachedFile(path, size, UNKNOWN)
    if final_name(path) != path.name:
        return CachedFile(path, size, BAD if path.name.endswith(BAD_SUFFIX) else PARTIAL, tuple(candidates))
    record = read_record(path)
    if record is None:  # from an older rdet: verified when it took its name, bound to an entry at next use
        return CachedFile(path, size, COMPLETE, tuple(candidates))
    owners = tuple(wf for wf in candidates if record.owns(wf.url, wf.sha256))
    return CachedFile(path, size, COMPLETE if owners else FOREIGN, owners or tuple(candidates), record.sha256)


def cache_contents(zoo: Zoo, cache: Cache | str | os.PathLike | None = None) -> list[CachedFile]:
    """Every file in the cache (locks and records aside), matched to the zoo's entries."""
    known = zoo_files(zoo)
    out = []
    for path in _cache(cache).files():
        try:
            out.append(_describe(path, known.get(final_name(path), [])))
        except FileNotFoundError:
            pass  # gone while we looked (a download finished, a rm)
    return out


@dataclass(frozen=True)
class Verdict:
    file: CachedFile
    ok: bool | None  # None: a file no entry here owns, nothing to check it against
    actual: str
    problem: str | None = None  # why it failed (it has then been moved aside to NAME.bad)

    @property
    def message(self) -> str:
        if self.ok is None:
            return f"{self.file.path.name}: not this zoo's file, not checked"
        return f"{self.file.path.name}: ok" if self.ok else self.problem or f"{self.file.path.name}: bad"

    def to_dict(self) -> dict:
        status = "unknown" if self.ok is None else "ok" if self.ok else "bad"
        # "verified" says what this re-hash found; "sha256" is the digest to pin (recorded at first verification)
        return {**self.file.to_dict(), "verified": bool(self.ok), "status": status, "actual_sha256": self.actual,
                "expected_sha256": self.file.refs[0].sha256 if self.file.refs else None,
                "sha256": self.actual if self.ok else None, "problem": self.problem}


def verify_file(item: CachedFile) -> Verdict:
    """Re-hash one complete cached file against each entry that owns it (each against its own digest) and the
    digest recorded at its first verification. A bad file is moved aside (NAME.bad) and never used again."""
    if item.state == BAD:
        return Verdict(item, False, "", f"{item.path.name}: set aside after failing verification; `rdet download` "
                                        "fetches the file again, `rdet cache rm` removes this copy")
    if item.state != COMPLETE or not item.refs:
        return Verdict(item, None, "")
    actual = sha256_file(item.path)
    results = [check_cached(item.path, wf.url, wf.sha256, actual) for wf in item.refs]
    problem = next((p for ok, p in results if p), None)
    if problem is None and not all(ok for ok, _ in results):  # no record yet, and the entries disagree on url
        problem = f"{item.path.name} matches no single entry: " + ", ".join(
            mismatch_message(wf.model, wf.sha256, actual) for wf in item.refs if not actual.startswith(wf.sha256))
    return Verdict(item, problem is None, actual, problem)


def _remove(cache: Cache, filename: str) -> list[Path]:
    """Delete a file with its partial, temporary and set-aside copies and its record, unless another process
    is writing it right now (DownloadError)."""
    dest = cache.path(filename)
    if not dest.exists() and not cache.leftovers(filename):
        return []
    with locked(dest, wait=False):
        paths = [p for p in (dest, *cache.leftovers(filename)) if p.exists()]
        for p in paths:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise CacheError(f"cannot remove {p}: {e.strerror or e}") from None
    return paths


def remove_weights(entry: Entry, cache: Cache | str | os.PathLike | None = None, *,
                   pretrained: bool = False) -> list[Path]:
    """Delete the entry's checkpoint (and its backbone file with `pretrained`); returns the removed paths."""
    cache = _cache(cache)
    wfs = [checkpoint_file(entry)] + ([pretrained_file(entry)] if pretrained else [])
    return [p for wf in wfs for p in _remove(cache, wf.filename)]


def clear_cache(zoo: Zoo, cache: Cache | str | os.PathLike | None = None,
                failed: list | None = None) -> list[Path]:
    """Delete every zoo file from the cache, complete or partial; returns the removed paths.

    A file another process is writing, or one that cannot be removed, does not stop the others: its error is
    appended to `failed` when given, else the first is raised once the rest are removed. Files the zoo does not
    name are left alone (the cache directory may have been pointed somewhere shared)."""
    cache = _cache(cache)
    names = dict.fromkeys(final_name(i.path) for i in cache_contents(zoo, cache) if i.state != UNKNOWN)
    removed, errors = [], []
    for name in names:
        try:
            removed += _remove(cache, name)
        except (DownloadError, CacheError) as e:
            errors.append(e)
    if failed is not None:
        failed.extend(errors)
    elif errors:
        raise type(errors[0])(f"{errors[0]} ({len(removed)} other files removed)")
    return removed
