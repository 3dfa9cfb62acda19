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


class CacheError(ZooError):
    """The cache directory cannot be used: not a directory, read-only, full, a file vanished under us."""

    exit_code = 1


class LockTimeoutError(DownloadError):
    """Another rdet process held a file's lock for longer than RDET_LOCK_TIMEOUT."""

    exit_code = 75  # EX_TEMPFAIL: try again later
