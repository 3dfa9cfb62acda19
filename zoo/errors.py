"""Errors the zoo raises for bad input: each carries one line a user can act on."""


class ZooError(Exception):
    """A problem with the manifest, a name, the cache or a download. `str(err)` is the one-line message."""

    exit_code = 2


class ManifestError(ZooError):
    """A manifest that cannot be used: bad TOML, a bad field, a duplicate name."""


class UnknownModelError(ZooError):
    """A name that matches no entry or alias."""


class DownloadError(ZooError):
    """A download that failed for good (HTTP error, retries exhausted, checksum mismatch, offline)."""

    exit_code = 1
