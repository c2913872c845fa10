"""The one image decoder: an image file (path or bytes) -> RGB uint8 `(H, W, 3)`.

Used by `galaxy_core.predict` (the CLI) and the app's uploads. Safe on hostile input:

1. The format is judged by the file's CONTENT (its signature), never its name, and only
   `ACCEPTED_FORMATS` are decoded: PNG, JPEG, TIFF, BMP and WebP. Anything else (e.g. a Radiance
   `.hdr` renamed `.png`, which OpenCV would happily decode into gigabytes) is refused, naming
   what it is when that is known.
2. The header is read (Pillow's parser of that format, without decoding any pixel and without
   Pillow's own `DecompressionBombWarning`/`Error`) and an image over `MAX_IMAGE_PIXELS` is refused
   with its real width and height, before any pixel is decoded.
3. The pixels are decoded with OpenCV (`IMREAD_UNCHANGED`: 8/16-bit, gray, RGB, RGBA, no EXIF
   rotation) and converted with `galaxy_core.preprocessing.preprocess.to_rgb_uint8` (16-bit /257, RGBA on black).
   A file whose header parses but whose data does not decode is reported as truncated or damaged.
   A TIFF whose pixel layout Pillow does not know (e.g. float32 RGB) has its size read from its
   tags and is decoded by OpenCV too (float values must lie in [0, 1]).
4. With `min_side` (predict and the app: `inference.classify.decode_side`: twice the larger of the model input and 256 px), a large image comes
   back smaller: a JPEG decoded at 1/2, 1/4 or 1/8 size by libjpeg; any other format decoded
   whole and shrunk strip by strip (`shrink`) before the colour and bit-depth conversions, which
   used to take several times the decoded size (bench/bench_decode.py, BENCHMARKS.md).

Example:
    >>> import cv2, numpy as np
    >>> ok, png = cv2.imencode(".png", np.zeros((4, 6, 3), np.uint8))
    >>> read_image(png.tobytes()).shape
    (4, 6, 3)
    >>> image_format(png.tobytes())
    'PNG'
"""

from __future__ import annotations

import io
import os
import warnings
from typing import NamedTuple

import numpy as np

from galaxy_core.errors import PreprocessError
from galaxy_core.preprocessing.preprocess import to_rgb_uint8

# Pillow format names of the formats decoded here (judged by content). Their usual file name
# endings, for upload widgets and help texts, are in ACCEPTED_EXTENSIONS.
ACCEPTED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
ACCEPTED_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp")
FORMAT_LABELS = {"PNG": "PNG", "JPEG": "JPEG", "TIFF": "TIFF", "BMP": "BMP", "WEBP": "WebP"}
ACCEPTED_TEXT = ", ".join(FORMAT_LABELS[f] for f in ACCEPTED_FORMATS)

# Largest image accepted (width x height): 40 Mpx, e.g. 6,300 x 6,300. A small, highly compressed
# file can declare 20,000 x 20,000 pixels and take gigabytes to decode, so the size is read from
# the header first. The model sees a few hundred pixels anyway.
MAX_IMAGE_PIXELS = 40_000_000

# Signatures of formats OpenCV decodes but Pillow cannot parse (named in the refusal only).
_OTHER_SIGNATURES = ((b"#?RADIANCE", "a Radiance HDR image"), (b"#?RGBE", "a Radiance HDR image"),
                     (b"v/1\x01", "an OpenEXR image"), (b"PF\n", "a PFM image"), (b"Pf\n", "a PFM image"))
_PREFIX = 16  # bytes Pillow's format checks look at


class ImageHeader(NamedTuple):
    """What the header of an accepted image file says: Pillow `format`, `width`, `height`."""

    format: str
    width: int
    height: int


def image_format(data: bytes) -> str | None:
    """The accepted format (`ACCEPTED_FORMATS` name) that `data` starts like, judged by content.

    Returns None when the bytes start like none of them (whatever the file is called).
    """
    from PIL import Image

    Image.init()
    prefix = bytes(data[:_PREFIX])
    for name in ACCEPTED_FORMATS:
        _, accept = Image.OPEN[name]
        if accept is not None and accept(prefix):
            return name
    return None


def describe_format(data: bytes) -> str | None:
    """A name for what `data` is when it is not an accepted format (e.g. "a GIF image"), or None."""
    from PIL import Image

    prefix = bytes(data[:_PREFIX])
    for signature, name in _OTHER_SIGNATURES:
        if prefix.startswith(signature):
            return name
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        if name not in ACCEPTED_FORMATS and accept is not None:
            try:
                if accept(prefix):
                    return f"a {name} image"
            except Exception:  # noqa: BLE001 - a plugin's check failing means "not this format"
                continue
    return None


def read_header(data: bytes, what: str = "image") -> ImageHeader:
    """Format and size of an image from its header only (no pixel is decoded).

    Args:
        data: the file's bytes (at least its header).
        what: how to name the file in messages, e.g. "image file 'x.png'".

    Raises:
        PreprocessError: not an accepted format (by content), or a header that does not parse
            (truncated or damaged file).
    """
    from PIL import Image

    fmt = image_format(data)
    if fmt is None:
        known = describe_format(data)
        kind = f"it is {known}, not" if known else "not an image in"
        raise PreprocessError(f"Cannot decode {what}: {kind} one of the accepted formats ({ACCEPTED_TEXT}; "
                              f"judged by the content, not the file name). Convert it to PNG or JPEG.")
    factory, _ = Image.OPEN[fmt]
    try:
        # The format's own parser, called directly: it reads the header only and skips
        # Image.open's decompression-bomb check (and its warning), which is done below instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = factory(io.BytesIO(bytes(data)))
        try:
            width, height = (int(v) for v in header.size)
        finally:
            header.close()
    except Exception as err:  # noqa: BLE001 - Pillow raises SyntaxError, OSError, struct.error, ...
        size = _tiff_size(data) if fmt == "TIFF" else None
        if size is not None:  # a valid TIFF of a pixel layout Pillow does not know (e.g. float32 RGB)
            return ImageHeader(fmt, *size)
        raise PreprocessError(f"Cannot decode {what}: the {FORMAT_LABELS[fmt]} file is truncated or damaged "
                              f"(its header does not parse: {err}).") from err
    return ImageHeader(fmt, width, height)


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a TIFF's first directory (its tags only), or None if it does not parse."""
    from PIL import TiffImagePlugin

    try:
        handle = io.BytesIO(bytes(data))
        directory = TiffImagePlugin.ImageFileDirectory_v2(handle.read(8))
        handle.seek(directory.next)
        directory.load(handle)
        width, height = int(directory[256]), int(directory[257])
    except Exception:  # noqa: BLE001 - any failure: a damaged file after all
        return None
    return (width, height) if width > 0 and height > 0 else None


def reduction(header: ImageHeader, min_side: int | None) -> int:
    """The integer factor an image may be shrunk by while decoding, its shorter side staying >= `min_side`.

    JPEG: 1, 2, 4 or 8 (libjpeg scales while decoding); other formats: any integer (decoded whole,
    then averaged over factor x factor blocks before any conversion). 1 when `min_side` is None.
    """
    if not min_side:
        return 1
    factor = max(1, min(header.width, header.height) // int(min_side))
    if header.format == "JPEG":
        factor = max(f for f in (1, 2, 4, 8) if f <= factor)
    return factor


def check_pixel_count(header: ImageHeader, what: str = "image") -> None:
    """Raise PreprocessError if the image declares more than `MAX_IMAGE_PIXELS` pixels (or none)."""
    if header.width < 1 or header.height < 1:
        raise PreprocessError(f"Cannot decode {what}: its header declares {header.width} x {header.height} "
                              f"pixels (the file is damaged).")
    if header.width * header.height > MAX_IMAGE_PIXELS:
        raise PreprocessError(f"{what} is {header.width} x {header.height} pixels "
                              f"({header.width * header.height / 1e6:.0f} Mpx), more than the "
                              f"{MAX_IMAGE_PIXELS // 1_000_000} Mpx accepted; downsize it first "
                              f"(the model sees it at a few hundred pixels anyway).")


def shrink(image: np.ndarray, factor: int, rows_per_strip: int = 64) -> np.ndarray:
    """Average `factor x factor` pixel blocks, a strip of rows at a time (bounded extra memory).

    OpenCV's area resize works in float32 over the whole image (twice a uint16 RGBA image's own
    size); strip by strip it needs a few megabytes. Edge rows/columns that do not fill a block are
    dropped (fewer than `factor`).

    Args:
        image: `(H, W)` or `(H, W, C)` of any OpenCV dtype.
        factor: integer >= 1.

    Returns:
        `(H // factor, W // factor[, C])`, same dtype.
    """
    import cv2

    if factor <= 1:
        return image
    height, width = image.shape[0] // factor, image.shape[1] // factor
    out = np.empty((height, width) + image.shape[2:], image.dtype)
    for top in range(0, height, rows_per_strip):
        bottom = min(height, top + rows_per_strip)
        strip = image[top * factor:bottom * factor, :width * factor]
        out[top:bottom] = cv2.resize(strip, (width, bottom - top), interpolation=cv2.INTER_AREA).reshape(
            out[top:bottom].shape)
    return out


def read_image(source: str | os.PathLike | bytes | bytearray | memoryview,
               min_side: int | None = None) -> np.ndarray:
    """Decode an image file to RGB uint8 (see the module docstring for the checks).

    Args:
        source: a file path, or the file's bytes (e.g. an upload).
        min_side: None (default) for the file's own size; else the image may come back smaller, by
            the integer factor of `reduction`, its shorter side still >= `min_side`: a JPEG is
            decoded at 1/2, 1/4 or 1/8 size by libjpeg (memory of the small image only); any other
            format is decoded whole and shrunk (pixel-area averaging) before the colour and bit-depth
            conversions, which then work on the small image.

    Returns:
        uint8 `(H, W, 3)` RGB (grayscale repeated, RGBA composited on black, 16-bit scaled to 8-bit
        and float in [0, 1] to 0..255 by `galaxy_core.preprocessing.preprocess.to_rgb_uint8`).

    Raises:
        PreprocessError: the file is missing, empty, not an accepted format, larger than
            `MAX_IMAGE_PIXELS`, or truncated/damaged.
    """
    import cv2

    if isinstance(source, (bytes, bytearray, memoryview)):
        what, data = "image bytes", np.frombuffer(source, dtype=np.uint8)
    else:
        what = f"image file {str(source)!r}"
        try:
            # np.fromfile + imdecode (not imread): works for any path encoding, and reads once.
            data = np.fromfile(source, dtype=np.uint8)
        except OSError as err:
            raise PreprocessError(f"Cannot read {what}: {err.strerror or err}") from err
    if data.size == 0:
        raise PreprocessError(f"Cannot decode {what}: it is empty")
    header = read_header(data.tobytes(), what)
    check_pixel_count(header, what)
    factor = reduction(header, min_side)
    damaged = f"Cannot decode {what}: the {FORMAT_LABELS[header.format]} file is truncated or damaged"
    jpeg_scaled = header.format == "JPEG" and factor > 1
    reduced = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    flags = (reduced[factor] | cv2.IMREAD_IGNORE_ORIENTATION) if jpeg_scaled else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as err:
        raise PreprocessError(f"{damaged} ({err}).") from err
    if image is None:
        raise PreprocessError(f"{damaged} (its pixel data does not decode).")
    expected = (-(-header.height // factor), -(-header.width // factor)) if jpeg_scaled else (header.height,
                                                                                              header.width)
    if image.shape[:2] != expected:
        raise PreprocessError(f"{damaged}: the header says {header.width} x {header.height} pixels but "
                              f"{image.shape[1]} x {image.shape[0]} were decoded.")
    if factor > 1 and not jpeg_scaled:
        image = shrink(image, factor)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if np.issubdtype(image.dtype, np.floating) and image.size and not (
            0.0 <= float(np.nanmin(image)) and float(np.nanmax(image)) <= 1.0 and np.isfinite(image).all()):
        raise PreprocessError(f"Cannot use {what}: it is a floating-point {FORMAT_LABELS[header.format]} whose "
                              f"values are not all in [0, 1] (min {float(np.nanmin(image)):g}, max "
                              f"{float(np.nanmax(image)):g}); save it as 8- or 16-bit, or scaled to [0, 1].")
    return to_rgb_uint8(image)

