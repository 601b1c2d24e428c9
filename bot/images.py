"""Checks on an input image before any job is queued: type, size and pixel count.

Pillow reads the bytes themselves, so a renamed zip or a truncated PNG is caught, whatever the
file name or the content type Discord reports.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from bot.formats import megabytes
from bot.refusals import Refused

ACCEPTED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}
ACCEPTED_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})


class ImageRejected(Refused):
    """The image cannot be used; the message says why, in words for the member."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 4096 * 4096


@dataclass(frozen=True)
class CheckedImage:
    format: str
    width: int
    height: int


def check_declared(
    filename: str,
    content_type: str | None,
    size: int,
    limits: ImageLimits,
    *,
    width: int | None = None,
    height: int | None = None,
) -> None:
    """What can be judged from the attachment's description alone, before downloading it.

    Discord reports the size, the type and, for images it could read, the width and height;
    the download and the decoding check all of them again on the bytes themselves.
    """
    _check_size(filename, size, limits)
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind and kind not in ACCEPTED_TYPES:
        raise ImageRejected(f"`{filename}` is {kind}, not a PNG, JPEG or WebP image.")
    if width and height:
        _check_pixels(filename, width, height, limits)


def check_content(filename: str, data: bytes, limits: ImageLimits) -> CheckedImage:
    """Decode the image fully; raise ImageRejected when it is not a usable picture."""
    _check_size(filename, len(data), limits)
    try:
        # Our pixel limit sits far below Pillow's own bomb threshold, and is checked before any
        # decoding; Pillow's DecompressionBombError still stops anything absurd at open().
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
            if kind not in ACCEPTED_FORMATS:
                raise ImageRejected(
                    f"`{filename}` is a {kind} image; use a PNG, JPEG or WebP image."
                )
            _check_pixels(filename, width, height, limits)
            image.load()  # decodes every byte: a truncated file fails here
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        # Pillow refuses to open images far beyond any sane size: ours is far below that.
        raise ImageRejected(
            f"`{filename}` has far too many pixels; images may have at most"
            f" {limits.max_pixels:,} pixels."
        ) from None
    except UnidentifiedImageError:
        raise ImageRejected(f"`{filename}` is not a PNG, JPEG or WebP image.") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRejected(f"`{filename}` is damaged or incomplete and cannot be read.") from None
    return CheckedImage(ACCEPTED_FORMATS[kind], width, height)


def _check_pixels(filename: str, width: int, height: int, limits: ImageLimits) -> None:
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"`{filename}` is {width}x{height} pixels; images may have at most"
            f" {limits.max_pixels:,} pixels."
        )


def _check_size(filename: str, size: int, limits: ImageLimits) -> None:
    if size == 0:
        raise ImageRejected(f"`{filename}` is empty.")
    if size > limits.max_bytes:
        raise ImageRejected(
            f"`{filename}` is {megabytes(size)}; images may be at most"
            f" {megabytes(limits.max_bytes)}."
        )

