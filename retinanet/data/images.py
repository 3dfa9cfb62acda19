"""Reading images the way the reference does: OpenCV's IMREAD_COLOR, giving 3-channel BGR uint8.

That one decode call already does what the reference's loader does with odd inputs: EXIF orientation applied,
grayscale replicated to 3 channels, alpha dropped, palettes expanded, 16-bit scaled to 8-bit. Before decoding we
reject what OpenCV would misread silently: empty, truncated or non-image files and decompression bombs, checking
the file's size and the header's dimensions before anything is decoded. libjpeg recovers from corrupt data with
only a warning on stderr ("Corrupt JPEG data: ..."); those warnings are caught and make the image an error.

Settings: RDET_MAX_PIXELS (default 89478485, Pillow's limit) bounds width x height, and with it the file size;
RDET_ALLOW_CORRUPT_IMAGES=1 decodes JPEGs that libjpeg warns about anyway (with a warning).
"""
from __future__ import annotations

import io
import os
import re
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager

import cv2
import numpy as np
from PIL import Image

from retinanet.errors import ImageError
from retinanet.file_check import FileProblem, FileTooLarge, read_small_file

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's limit: a 0.25 GB decoded image; larger ones are taken for bombs
_MAX_MAX_PIXELS = 1 << 40  # a terapixel: far past any decodable image, and file sizes from it still fit an index
_BYTES_PER_PIXEL = 8  # no image format stores more (16-bit RGBA), so a bigger file cannot be a permitted image
_LIBJPEG_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid JPEG", "Warning")
# FFmpeg's ('[mjpeg @ 0x55d0...] ...'), OpenCV's ('[ERROR:0@1.2] ...', '[ WARN:0@1.2] ...') and libpng's log
# lines, and nothing else: another thread's output caught in the same window (predict reading ahead) must still
# be shown
LIBRARY_LINES = re.compile(r"\[(\s*(ERROR|WARN|INFO|DEBUG|FATAL|VERBOSE):|[^\]]* @ 0x[0-9a-fA-F]+\])|libpng ")
_LOG_PREFIX = re.compile(r"^\[[^]]*\]\s*(global \S+:\d+ \S+ )?")  # '[ERROR:0@1.2] global file.cpp:12 func '
_stderr_lock = threading.Lock()
_pillow_lock = threading.Lock()  # guards Pillow's global MAX_IMAGE_PIXELS


def max_pixels() -> int:
    """RDET_MAX_PIXELS when set, else Pillow's default limit."""
    raw = os.environ.get("RDET_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    # ASCII digits only: str.isdigit() also passes "²", which int() refuses
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _MAX_MAX_PIXELS:
        raise ImageError(f"RDET_MAX_PIXELS must be a positive whole number up to {_MAX_MAX_PIXELS}, not {raw!r}")
    return int(raw)


def max_file_bytes() -> int:
    """The largest file that can hold an image within the pixel limit, headers included."""
    return max_pixels() * _BYTES_PER_PIXEL + (1 << 20)


def _allow_corrupt() -> bool:
    return os.environ.get("RDET_ALLOW_CORRUPT_IMAGES", "").strip().lower() in ("1", "true", "yes", "on")


def _check_header(data: bytes, name: str) -> str:
    """The format, once the header says the image is whole and within the pixel limit (nothing decoded yet)."""
    if not data:
        raise ImageError(f"{name}: empty file")
    if len(data) > max_file_bytes():
        raise ImageError(f"{name}: {len(data)} bytes is more than an image within RDET_MAX_PIXELS can take")
    limit = max_pixels()
    try:
        with _pillow_header_reading(), Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
            fmt = im.format
            if fmt == "PNG" and w * h <= limit:
                im.verify()  # walks the chunks and checks their CRCs: catches truncation and corruption
    except Exception as err:  # PIL raises many types for bad data
        if isinstance(err, Image.UnidentifiedImageError):  # its text names the BytesIO object: say it plainly
            raise ImageError(f"{name}: not an image file (no known image format)") from None
        raise ImageError(f"{name}: not a readable image ({err.__class__.__name__}: {err})") from None
    if w * h > limit:
        raise ImageError(f"{name}: image too large ({w}x{h} = {_megapixels(w * h)} megapixels, over the "
                         f"{_megapixels(limit)} MP limit; a decompression bomb? RDET_MAX_PIXELS raises it)")
    if fmt == "JPEG" and b"\xff\xd9" not in data[-64 * 1024:]:
        raise ImageError(f"{name}: truncated JPEG (no end-of-image marker)")
    return fmt


@contextmanager
def _pillow_header_reading():
    """Pillow's own bomb check off while a header is read, so that our limit decides from the real size (the
    check reports none, and RDET_MAX_PIXELS may be above it); its warnings off too: corrupt EXIF is metadata
    OpenCV copes with, not a reason to print two lines."""
    with _pillow_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _megapixels(pixels: int) -> str:
    """Whole megapixels, or two significant digits below 10 (a small RDET_MAX_PIXELS is not "0 MP")."""
    mp = pixels / 1e6
    return f"{mp:.0f}" if mp >= 10 else f"{mp:.2g}"


@contextmanager
def c_library_messages(keep: tuple[str, ...] | re.Pattern | None = _LIBJPEG_WARNINGS):
    """Collect what C libraries write to stderr (fd 2) meanwhile: libjpeg's warnings go nowhere else. Lines
    starting with `keep` (prefixes, or a pattern matched at the start) are collected, every line when None;
    other output caught in that window (another thread's, while predict reads ahead) is passed on to the real
    stderr, so keep should match only the library's own lines."""
    with _stderr_lock, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        lines: list[str] = []
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to catch
            yield lines
            return
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                if keep is None or (keep.match(line) if isinstance(keep, re.Pattern) else line.startswith(keep)):
                    lines.append(line.strip())
                elif line.strip():
                    print(line, file=sys.stderr)


def decode_bgr(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded bytes -> HxWx3 uint8 BGR, as cv2.imdecode(IMREAD_COLOR) gives the reference."""
    fmt = _check_header(data, name)
    buffer = np.frombuffer(data, np.uint8)
    messages: list[str] = []
    try:
        if fmt == "JPEG":
            with c_library_messages() as messages:
                img = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
            if messages and img is not None:
                if not _allow_corrupt():
                    raise ImageError(f"{name}: corrupt JPEG data ({messages[0]}); RDET_ALLOW_CORRUPT_IMAGES=1 "
                                     "decodes what libjpeg recovers")
                print(f"warning: {name}: corrupt JPEG data, decoded anyway ({messages[0]})", file=sys.stderr)
        else:  # what OpenCV, libpng, libtiff say of a truncated file goes into the one line below, not stderr
            with c_library_messages(keep=LIBRARY_LINES) as messages:
                img = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as err:  # OpenCV's own checks, e.g. its pixel limit when RDET_MAX_PIXELS is above it
        raise ImageError(f"{name}: OpenCV could not decode the image ({getattr(err, 'err', '') or err})") from None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        errors = [m for m in messages if m.startswith(("[ERROR", "libpng error"))] or messages
        why = f" ({_LOG_PREFIX.sub('', errors[0])})" if errors else ""
        raise ImageError(f"{name}: OpenCV could not decode the image{why}")
    return img


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """An image file's bytes, undecoded; its size is checked before it is read (a 10 GB file, /dev/zero)."""
    try:
        return read_small_file(path, max_file_bytes())
    except FileTooLarge as e:
        raise ImageError(f"{path}: {e.size} bytes is more than an image within RDET_MAX_PIXELS can take") from None
    except FileProblem as e:
        raise ImageError(f"{path}: {e}") from None


def read_bgr(path: str | os.PathLike) -> np.ndarray:
    """An image file -> HxWx3 uint8 BGR (read_image_bytes, then decode_bgr)."""
    return decode_bgr(read_image_bytes(path), str(path))


_ONE_IMAGE = (str, os.PathLike, np.ndarray, Image.Image, bytes, bytearray, memoryview)


def image_list(images) -> list:
    """What predict takes: one image (a path, a PIL image, an array or encoded bytes) or an iterable of them -> a
    list. Bytes are one encoded file, not a sequence of numbers."""
    if isinstance(images, _ONE_IMAGE):
        return [images]
    try:
        return list(images)
    except TypeError:
        raise ImageError(f"cannot read an image from a {type(images).__name__}: give a path, a PIL image, an "
                         "HxWx3 uint8 array or encoded bytes, or a list of them") from None


_PIL_16_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # "I": how Pillow opens many 16-bit PNGs


def _pil_array(image: Image.Image) -> np.ndarray:
    """A PIL image as an RGB uint8 array, or a gray uint16 one for 16-bit modes: Pillow's convert("RGB") clips
    those to 255 instead of scaling them (a 16-bit photo would become white), while the uint16 array is scaled
    as OpenCV scales a 16-bit file."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in _PIL_16_BIT:
        array = np.asarray(image)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ImageError(f"a PIL image in mode {image.mode} with values outside 0-65535 has no known range: "
                             "convert it to 8 bits first")
        return array.astype(np.uint16)
    if image.mode == "F":
        raise ImageError("a PIL image in mode F (floating point) has no known range: convert it to 8 bits first")
    return np.asarray(image.convert("RGB"))


def to_bgr(image) -> np.ndarray:
    """A path, a PIL image, an HxWx3 RGB (or HxW gray) uint8 array or an encoded file's bytes -> HxWx3 uint8 BGR."""
    if isinstance(image, (str, os.PathLike)):
        return read_bgr(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_bgr(bytes(image), "<bytes>")  # the file's bytes, decoded as read_bgr decodes a file
    if isinstance(image, Image.Image):
        image = _pil_array(image)
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
        # OpenCV's SIMD channel swap: numpy's reversed-stride copy of a 1333x800 photo took 4-8 ms on a GPU
        # machine's host, more than the whole fp16 forward
        src = image if image.flags.c_contiguous else np.ascontiguousarray(image)
        return cv2.cvtColor(src, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGR)
    raise ImageError(f"cannot read an image from a {type(image).__name__}")
