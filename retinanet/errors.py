"""Errors the engine raises for bad input (`str(err)` is one line a user can act on), and telling an allocation
failure from other errors."""


class RetinaNetError(Exception):
    exit_code = 2


class ArgumentError(RetinaNetError, ValueError):
    """A value passed to the Python API that it cannot use (a wrong type, out of range), named in the message; a
    ValueError too, as a Python caller expects of a bad argument."""


class CheckpointError(RetinaNetError):
    """A weights file that cannot be loaded into the model (unreadable, wrong keys or shapes)."""


class ImageError(RetinaNetError):
    """An image that cannot be decoded (corrupt, truncated, not an image, too large)."""

    exit_code = 1


class DatasetError(RetinaNetError):
    """A COCO-format dataset that cannot be used (missing or malformed annotations, missing images)."""


class ExportError(RetinaNetError):
    """An export that cannot be written, read or run, or that does not match the model asked for."""


def listed(items, limit: int = 5) -> str:
    """The first `limit` items, comma-separated, then "..." when there are more: what a one-line error shows of a
    long list (missing files, unknown ids)."""
    items = list(items)
    return ", ".join(map(str, items[:limit])) + (", ..." if len(items) > limit else "")


def first_line(error: BaseException) -> str:
    """An error's message as one line: its first non-blank line, or the error's class name when it says nothing
    (many library errors carry tracebacks, C++ frames or dumps on the lines after)."""
    return (str(error).strip().splitlines() or [error.__class__.__name__])[0]


def described(error: BaseException) -> str:
    """'ClassName: first line' (the class alone when the message is empty), for errors whose kind tells the
    user something (a ValueError from a binary import, a capture failure)."""
    text = str(error).strip()
    return f"{error.__class__.__name__}: {first_line(error)}" if text else error.__class__.__name__


def exhausted_memory(error: BaseException) -> str | None:
    """"host" or "GPU" when `error` is an allocation that failed, whatever its type: MemoryError from Python,
    RuntimeError from torch's CPU allocator, torch.OutOfMemoryError from CUDA, cv2.error from OpenCV."""
    if isinstance(error, MemoryError):
        return "host"
    text = str(error)
    if type(error).__name__ == "OutOfMemoryError" or "CUDA out of memory" in text:
        return "GPU"
    if "can't allocate memory" in text or "Insufficient memory" in text:
        return "host"
    return None
