"""Checks on an input image before any job is queued: type, size and pixel count.

Pillow reads the bytes themselves, so a renamed zip or a truncated PNG is caught, whatever the
file name or the content type Discord reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

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



# A Discord attachment link is signed for about a day; an image older than this is checked
# before it is sent to Segmind again (Regenerate, or a job picked up late).
CHECK_LINKS_OLDER_THAN = 3600.0
_KINDS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WebP": ("webp", "image/webp"),
}
_TYPES = {f".{extension}": content_type for extension, content_type in _KINDS.values()}


class ImageKeeper:
    """Keeps the bytes of each checked input image beside the database, so that a job can
    still be sent once the image's own link has stopped working: they are uploaded to
    Segmind's storage instead. Files are named by their content, shared by the jobs that use
    them, readable by the owner only, and removed with the last job that uses them."""

    def __init__(
        self,
        directory: Path,
        *,
        link_works: Callable[[str], Awaitable[bool]],
        upload: Callable[[bytes, str], Awaitable[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._link_works = link_works
        self._upload = upload
        self._clock = clock

    def keep(self, data: bytes, checked: CheckedImage) -> str:
        """Write the image (once) and return the name a job keeps to find it again."""
        extension, _ = _KINDS[checked.format]
        name = f"{hashlib.sha256(data).hexdigest()}.{extension}"
        path = self.directory / name
        if path.exists():
            self.keep_again(name)
            return name
        self.directory.mkdir(parents=True, exist_ok=True)
        # A name of its own per write: two admissions of one image may write it at once.
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".part")  # 0600
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
        return name

    def keep_again(self, name: str) -> None:
        """A new job uses a kept image: not to be swept as unused for a while (forget_unused)."""
        with contextlib.suppress(FileNotFoundError):
            (self.directory / name).touch()

    async def usable_link(self, link: str, kept: str | None, taken_at: float) -> str:
        """The link to send: the original while it may still work, else a fresh upload."""
        if kept is None or self._clock() - taken_at < CHECK_LINKS_OLDER_THAN:
            return link
        if await self._link_works(link):
            return link
        path = self.directory / kept
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return link  # nothing better to offer: Segmind will say what it thinks
        return await self._upload(data, _TYPES[path.suffix])

    def forget_unused(self, used: set[str]) -> int:
        """Remove the kept images no job refers to any more. One kept in the last hour may
        belong to a job being admitted right now, not yet in `used`: it stays for now."""
        if not self.directory.exists():
            return 0
        removed, recent = 0, self._clock() - 3600.0
        for path in self.directory.iterdir():
            if path.name not in used and path.stat().st_mtime < recent:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
