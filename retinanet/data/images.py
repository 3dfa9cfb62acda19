"""Reading images the way the reference does: OpenCV's IMREAD_COLOR, giving 3-channel BGR uint8.

That one decode call already does what the reference's loader does with odd inputs: EXIF orientation applied,
grayscale replicated to 3 channels, alpha dropped, palettes expanded, 16-bit scaled to 8-bit. Before decoding we
reject what OpenCV would misread silently: empty, truncated or non-image files and decompression bombs.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from retinanet.errors import ImageError

MAX_PIXELS = 16384 * 16384 // 2  # about 134 MP: larger images are treated as decompression bombs


def _check_header(data: bytes, name: str) -> None:
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
            fmt = im.format
            if fmt == "PNG":
                im.verify()  # walks the chunks and checks their CRCs: catches truncation and corruption
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image too large (decompression bomb?)") from None
    except Exception as err:  # PIL raises many types for bad data
        if isinstance(err, Image.UnidentifiedImageError):  # its text names the BytesIO object: say it plainly
            raise ImageError(f"{name}: not an image file (no known image format)") from None
        raise ImageError(f"{name}: not a readable image ({err.__class__.__name__}: {err})") from None
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name}: image too large ({w}x{h} pixels; decompression bomb?)")
    if fmt == "JPEG" and b"\xff\xd9" not in data[-64 * 1024:]:
        raise ImageError(f"{name}: truncated JPEG (no end-of-image marker)")


def decode_bgr(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded bytes -> HxWx3 uint8 BGR, as cv2.imdecode(IMREAD_COLOR) gives the reference."""
    _check_header(data, name)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise ImageError(f"{name}: OpenCV could not decode the image")
    return img


def read_bgr(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory") from None
    except OSError as err:
        raise ImageError(f"{path}: cannot read ({err.strerror or err})") from None
    return decode_bgr(data, str(path))


def to_bgr(image) -> np.ndarray:
    """A path, a PIL image or an HxWx3 RGB (or HxW gray) uint8 array -> HxWx3 uint8 BGR."""
    if isinstance(image, (str, os.PathLike)):
        return read_bgr(image)
    if isinstance(image, Image.Image):
        from PIL import ImageOps

        image = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[0] == 0 or image.shape[1] == 0:
            raise ImageError(f"an image array must be HxWx3 (RGB), not shape {image.shape}")
        if image.dtype != np.uint8:
            if image.dtype == np.uint16:
                image = (image >> 8).astype(np.uint8)
            else:
                raise ImageError(f"an image array must be uint8, not {image.dtype}")
        return np.ascontiguousarray(image[:, :, 2::-1])  # RGB(A) -> BGR
    raise ImageError(f"cannot read an image from a {type(image).__name__}")
