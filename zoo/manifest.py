"""The manifest: one entry per zoo row, parsed from TOML and validated field by field.

The bundled zoo.toml holds the ten published rows; a user manifest (`--zoo FILE` or RDET_ZOO) adds entries or
overrides bundled ones by name. Every problem is reported with the file, the entry and the field.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urlparse

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from retinanet.config import DEPTHS, STYLES, ModelConfig
from retinanet.file_check import FileProblem, FileTooLarge, read_small_file
from retinanet.values import check_path, is_finite_number, is_whole

from .errors import ManifestError, UnknownModelError, ZooError
from .settings import usable_url

# used with fullmatch: `$` would also match before a final newline, letting "name\n" through
_HEX = re.compile(r"[0-9a-fA-F]{8,64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,199}")  # the cache file a URL names: no dot files, no ..
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f-\x9f]*")  # no terminal control sequences from a manifest
_MAX_BYTES = 1 << 20  # a manifest of a thousand entries is ~1 MB; more is not a manifest (or /dev/zero)
MAX_EPOCHS = 10_000  # a schedule (manifest or --epochs) longer than this is a typo
_MAX_CLASSES = 10_000  # above this the classification head alone would be gigabytes
SCHEMA = 1  # the manifest format this rdet reads (`schema = 1` at the top; absent means 1)


@dataclass(frozen=True)
class Entry:
    """One model of the zoo."""

    name: str
    url: str
    sha256: str  # hex prefix (8+ digits) or the full digest of the checkpoint file
    depth: int
    style: str
    aliases: tuple[str, ...] = ()
    backbone: str = ""
    groups: int = 1
    base_width: int = 64
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    to_rgb: bool = True
    num_classes: int = 80
    class_names: tuple[str, ...] | None = None
    schedule: str = "1x"
    epochs: int = 12
    lr_steps: tuple[int, ...] = (8, 11)
    pretrained_url: str | None = None
    pretrained_sha256: str | None = None
    mem_gb: float | None = None
    fps: float | None = None
    box_ap: float | None = None
    log_url: str | None = None
    params: int | None = None  # every parameter; computed by retinanet.benchmark.flops, kept here so that
    gflops: float | None = None  # `rdet list/info` need not import torch (absent: computed when asked)
    source: str = ""  # the manifest file the entry came from

    @property
    def filename(self) -> str:
        """The checkpoint's published file name: the cache keeps it."""
        return url_file_name(self.url)

    @property
    def pretrained_filename(self) -> str | None:
        return url_file_name(self.pretrained_url) if self.pretrained_url else None

    def model_config(self, **overrides) -> ModelConfig:
        """The engine configuration for this entry."""
        cfg = ModelConfig(
            depth=self.depth, groups=self.groups, base_width=self.base_width, style=self.style,
            num_classes=self.num_classes, class_names=self.class_names, mean=self.mean, std=self.std,
            to_rgb=self.to_rgb, epochs=self.epochs, lr_steps=self.lr_steps,
        )
        return cfg.replace(**overrides) if overrides else cfg

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


# field name -> (type check, description for the error, required)
def _int_in(low, high):
    return lambda v: is_whole(v) and low <= v <= high


def _triple(v):
    return isinstance(v, list) and len(v) == 3 and all(is_finite_number(x) for x in v)


def _text(v, limit=200):
    return isinstance(v, str) and len(v) <= limit and bool(_PRINTABLE.fullmatch(v))


def url_file_name(url: str) -> str:
    """The file name a URL's path ends in (what the cache keeps it as); `.` and `..` stay as they are."""
    return urlparse(url).path.rpartition("/")[2]


_URL_RULE = "an http(s) URL (a valid host and port) or a file URL (an absolute path), ending in a file name"


def _url(v):
    return _text(v, 2000) and " " not in v and usable_url(v) and bool(_FILE_NAME.fullmatch(url_file_name(v)))


_FIELDS = {
    "name": (lambda v: isinstance(v, str) and bool(_NAME.fullmatch(v)), "a name of up to 200 letters, digits, _ . -",
             True),
    "url": (_url, _URL_RULE, True),
    "sha256": (lambda v: isinstance(v, str) and bool(_HEX.fullmatch(v)), "8 to 64 hex digits", True),
    "depth": (lambda v: v in DEPTHS and is_whole(v), "one of " + ", ".join(map(str, DEPTHS)), True),
    "style": (lambda v: v in STYLES, "one of " + ", ".join(STYLES), True),
    "aliases": (lambda v: isinstance(v, list) and all(isinstance(a, str) and _NAME.fullmatch(a) for a in v),
                "a list of names", False),
    "backbone": (_text, "a line of text", False),
    "groups": (_int_in(1, 256), "an integer from 1 to 256", False),
    "base_width": (_int_in(1, 1024), "an integer from 1 to 1024", False),
    # pixels are 0-255: past these bounds (x - mean) / std overflows float32 and every detection silently vanishes
    "mean": (lambda v: _triple(v) and all(abs(x) <= 1e4 for x in v), "a list of 3 numbers from -10000 to 10000",
             False),
    "std": (lambda v: _triple(v) and all(1e-4 <= x <= 1e4 for x in v), "a list of 3 numbers from 0.0001 to 10000",
            False),
    "to_rgb": (lambda v: isinstance(v, bool), "true or false", False),
    "num_classes": (_int_in(1, _MAX_CLASSES), f"an integer from 1 to {_MAX_CLASSES}", False),
    "class_names": (lambda v: isinstance(v, list) and len(v) <= _MAX_CLASSES and all(_text(c) and c for c in v)
                    and len(set(v)) == len(v), "a list of distinct class names (lines of text)", False),
    "schedule": (_text, "a line of text", False),
    "epochs": (_int_in(1, MAX_EPOCHS), f"an integer from 1 to {MAX_EPOCHS}", False),
    "lr_steps": (lambda v: isinstance(v, list) and len(v) <= 100 and all(_int_in(1, MAX_EPOCHS)(x) for x in v),
                 "a list of epochs", False),
    "pretrained_url": (_url, _URL_RULE, False),
    "pretrained_sha256": (lambda v: isinstance(v, str) and bool(_HEX.fullmatch(v)), "8 to 64 hex digits", False),
    "mem_gb": (lambda v: is_finite_number(v) and v > 0, "a finite positive number", False),
    "fps": (lambda v: is_finite_number(v) and v > 0, "a finite positive number", False),
    "box_ap": (lambda v: is_finite_number(v) and 0 <= v <= 100, "a number from 0 to 100", False),
    "log_url": (_url, _URL_RULE, False),
    "params": (lambda v: is_whole(v) and v > 0, "a positive integer", False),
    # bounded: `rdet list --cost` counts in FLOPs (x 1e9), which must stay finite; a detector is a few hundred
    "gflops": (lambda v: is_finite_number(v) and 0 < v <= 1e6, "a positive number up to 1000000", False),
}
assert set(_FIELDS) == {f.name for f in fields(Entry)} - {"source"}


def _shown(value) -> str:
    """A bad value for an error message: its repr (which escapes control characters), cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _entry(raw, where: str, source: str) -> Entry:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: each [[model]] must be a table")
    for key in raw:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, _FIELDS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ManifestError(f"{where}: unknown field '{key}'{hint}")
    for key, (ok, what, required) in _FIELDS.items():
        if key not in raw:
            if required:
                raise ManifestError(f"{where}: missing field '{key}'")
            continue
        if not ok(raw[key]):
            raise ManifestError(f"{where}: field '{key}' must be {what}, not {_shown(raw[key])}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    values["sha256"] = values["sha256"].lower()
    if "pretrained_sha256" in values:
        values["pretrained_sha256"] = values["pretrained_sha256"].lower()
    entry = Entry(**values, source=source)
    if entry.pretrained_filename == entry.filename:  # one cache file for both: each download would evict the other
        raise ManifestError(f"{where}: pretrained_url names the same file, {entry.filename}, as url")
    try:
        entry.model_config()
    except ValueError as err:
        raise ManifestError(f"{where}: {err}") from None
    return entry


def parse_manifest(text: str, source: str = "<manifest>") -> list[Entry]:
    """Parse and validate manifest text; raise ManifestError naming the file, entry and field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ManifestError(f"{source}: not valid TOML: {err}") from None
    except RecursionError:
        raise ManifestError(f"{source}: not a manifest (nested too deeply)") from None
    unknown = set(data) - {"schema", "model"}
    if unknown:
        raise ManifestError(f"{source}: unknown top-level key '{sorted(unknown)[0]}' (expected [[model]] tables)")
    if data.get("schema", SCHEMA) != SCHEMA or not is_whole(data.get("schema", SCHEMA)):
        raise ManifestError(f"{source}: schema {_shown(data['schema'])} is not one this rdet reads (schema = {SCHEMA})")
    models = data.get("model", [])
    if not isinstance(models, list):
        raise ManifestError(f"{source}: 'model' must be an array of tables ([[model]])")
    entries, seen = [], {}
    for i, raw in enumerate(models):
        label = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"#{i + 1}"
        entry = _entry(raw, f"{source}: model '{label}'", source)
        for key in (entry.name, *entry.aliases):
            if key in seen:
                raise ManifestError(f"{source}: model '{entry.name}': duplicate name '{key}' "
                                    f"(already used by '{seen[key]}')")
            seen[key] = entry.name
        entries.append(entry)
    return entries


def bundled_manifest_path() -> Path:
    """zoo.toml inside the installed package, or at the repository root in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "zoo.toml", here.parent / "zoo.toml"):
        if candidate.is_file():
            return candidate
    raise ManifestError(f"the bundled manifest zoo.toml is missing from {here}; reinstall rdet")


def read_manifest(path: str | os.PathLike) -> list[Entry]:
    path = Path(path)
    try:
        text = read_small_file(path, _MAX_BYTES).decode("utf-8")
    except FileTooLarge:
        raise ManifestError(f"{path}: not a manifest (over {_MAX_BYTES // (1 << 20)} MiB)") from None
    except FileProblem as e:  # missing, a directory, a FIFO (whose open would wait for a writer forever)
        raise ManifestError(f"manifest {path}: {e}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a manifest (not UTF-8 text)") from None
    return parse_manifest(text, str(path))


class Zoo:
    """The bundled entries, with a user manifest's entries added or overriding by name."""

    def __init__(self, entries: list[Entry]):
        self.entries: dict[str, Entry] = {}
        for e in entries:
            self.entries[e.name] = e  # later manifests override earlier ones
        self._aliases = {a: e.name for e in self.entries.values() for a in e.aliases}

    @classmethod
    def load(cls, user_manifest: str | os.PathLike | None = None) -> "Zoo":
        """The bundled zoo plus `user_manifest` (default: $RDET_ZOO when set)."""
        entries = read_manifest(bundled_manifest_path())
        if user_manifest not in (None, ""):  # "" (an empty RDET_ZOO or --zoo) means none, as it always has
            check_path(user_manifest, "zoo_file", ZooError)
        user_manifest = user_manifest or os.environ.get("RDET_ZOO") or None
        if user_manifest:
            entries += read_manifest(user_manifest)
        return cls(entries)

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self):
        return len(self.entries)

    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> Entry:
        """The entry for a short name or alias; UnknownModelError names the closest ones."""
        if not isinstance(name, str):
            raise ZooError(f"a model name must be a str (see `rdet list`), not {name!r}")
        if name in self.entries:
            return self.entries[name]
        if name in self._aliases:
            return self.entries[self._aliases[name]]
        close = difflib.get_close_matches(name, [*self.entries, *self._aliases], n=3, cutoff=0.5)
        close = list(dict.fromkeys(self._aliases.get(c, c) for c in close))
        hint = f"; did you mean {', '.join(close)}?" if close else "; `rdet list` shows every model"
        raise UnknownModelError(f"unknown model '{name}'{hint}")

    def filter(self, pattern: str | None) -> list[Entry]:
        """Entries whose name or an alias matches a glob, or contains the substring."""
        import fnmatch

        if not pattern:
            return list(self)
        if not isinstance(pattern, str):
            raise ZooError(f"a model name pattern must be a str, not {pattern!r}")
        glob = any(c in pattern for c in "*?[")
        out = []
        for e in self:
            keys = (e.name, *e.aliases)
            if any(fnmatch.fnmatchcase(k, pattern) if glob else pattern in k for k in keys):
                out.append(e)
        return out
