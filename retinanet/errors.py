"""Errors the engine raises for bad input; `str(err)` is one line a user can act on."""


class RetinaNetError(Exception):
    exit_code = 2


class CheckpointError(RetinaNetError):
    """A weights file that cannot be loaded into the model (unreadable, wrong keys or shapes)."""


class ImageError(RetinaNetError):
    """An image that cannot be decoded (corrupt, truncated, not an image, too large)."""

    exit_code = 1


class DatasetError(RetinaNetError):
    """A COCO-format dataset that cannot be used (missing or malformed annotations, missing images)."""


class ExportError(RetinaNetError):
    """An export that cannot be written, read or run, or that does not match the model asked for."""
