"""Getting words and videos to the member who asked, by Discord's rules.

An interaction's token lives 15 minutes and video jobs can outlast it. A message goes through
the interaction while its token lives, and through the channel, with the bot's own token, once
it is dead. Dead means past its expiry (less a margin for a slow upload), or refused as a token:
401 with code 50027 (Invalid Webhook Token) or 404 with code 10015 (Unknown Webhook). Any other
404 is about the message, not the token: code 10008, Unknown Message, means someone deleted it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import discord

from bot.failures import DeliveryRefused
from bot.formats import megabytes

log = logging.getLogger(__name__)

# Leave room for a slow upload to finish before the token dies.
TOKEN_MARGIN = datetime.timedelta(seconds=60)
_DEAD_TOKEN = frozenset({(401, 50027), (404, 10015)})
_UNKNOWN_MESSAGE = 10008
_PAYLOAD_TOO_LARGE = 413
_FILE_TOO_LARGE_CODE = 40005
# A re-encode of a few minutes of video takes seconds; anything longer is stuck.
SHRINK_TIMEOUT = 300.0


class MessageGone(Exception):
    """The message was deleted (by a moderator, say): it cannot be edited any more."""


def token_refused(error: discord.HTTPException) -> bool:
    return (error.status, error.code) in _DEAD_TOKEN


def message_gone(error: discord.HTTPException) -> bool:
    return error.status == 404 and error.code == _UNKNOWN_MESSAGE


def permanent(error: discord.HTTPException) -> bool:
    """A refusal that trying again will not change (no permission, a bad request...)."""
    return 400 <= error.status < 500 and error.status != 429


@dataclass
class Recipient:
    channel: discord.abc.Messageable
    member_id: int
    webhook: discord.Webhook | None = None
    token_expires_at: datetime.datetime | None = None
    filesize_limit: int = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    # Told once when Discord refuses the token, so the job stops keeping it.
    on_token_refused: Callable[[], Awaitable[None]] | None = None

    def token_alive(self) -> bool:
        if self.webhook is None or self.token_expires_at is None:
            return False
        return discord.utils.utcnow() + TOKEN_MARGIN < self.token_expires_at

    async def send(
        self,
        content: str,
        *,
        file: Path | None = None,
        view: discord.ui.View | None = None,
        private: bool = False,
        ping: bool = False,
    ) -> discord.Message:
        """Send a message. `private` ones are ephemeral while the interaction lives; in the
        channel they become public, so they name and ping the member they are for. `ping`
        pings the member and nobody else, whatever the text says."""
        if self.token_alive():
            assert self.webhook is not None
            try:
                return await self.webhook.send(
                    _with_mention(content, self.member_id) if ping else content,
                    ephemeral=private,
                    allowed_mentions=self._mentions(ping),
                    wait=True,
                    **_extras(file, view),
                )
            except discord.HTTPException as error:
                if not token_refused(error):
                    raise
                await self._token_died(error)
        pinged = ping or private
        return await self.channel.send(
            _with_mention(content, self.member_id) if pinged else content,
            allowed_mentions=self._mentions(pinged),
            **_extras(file, view),
        )

    async def edit(
        self, message_id: int, content: str, *, view: discord.ui.View | None = None
    ) -> None:
        """Edit a message of ours; raises MessageGone when it was deleted."""
        quiet = discord.AllowedMentions.none()
        try:
            if self.token_alive():
                assert self.webhook is not None
                try:
                    await self.webhook.edit_message(
                        message_id, content=content, view=view, allowed_mentions=quiet
                    )
                    return
                except discord.HTTPException as error:
                    if not token_refused(error):
                        raise
                    await self._token_died(error)
            await self._partial(message_id).edit(content=content, view=view, allowed_mentions=quiet)
        except discord.HTTPException as error:
            if message_gone(error):
                raise MessageGone(message_id) from None
            raise

    async def delete(self, message_id: int) -> None:
        """Delete a message of ours; one that is gone already is fine."""
        try:
            if self.token_alive():
                assert self.webhook is not None
                try:
                    await self.webhook.delete_message(message_id)
                    return
                except discord.HTTPException as error:
                    if not token_refused(error):
                        raise
                    await self._token_died(error)
            await self._partial(message_id).delete()
        except discord.HTTPException as error:
            if not message_gone(error):
                raise

    def _partial(self, message_id: int) -> discord.PartialMessage:
        return self.channel.get_partial_message(message_id)  # type: ignore[attr-defined]

    def _mentions(self, ping: bool) -> discord.AllowedMentions:
        if not ping:
            return discord.AllowedMentions.none()
        return discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(self.member_id)], replied_user=False
        )

    async def _token_died(self, error: discord.HTTPException) -> None:
        log.info("interaction token refused (HTTP %s, code %s); using the channel",
                 error.status, error.code)  # fmt: skip
        self.token_expires_at = None
        if self.on_token_refused is not None:
            await self.on_token_refused()


def _extras(file: Path | None, view: discord.ui.View | None) -> dict[str, object]:
    # A fresh File each time: discord.py closes the one it has sent, even when the send failed.
    extras: dict[str, object] = {}
    if file is not None:
        extras["file"] = discord.File(file, "video.mp4")
    if view is not None:
        extras["view"] = view
    return extras


def _with_mention(content: str, member_id: int) -> str:
    return f"<@{member_id}> {content}"


async def send_video(
    recipient: Recipient,
    video: Path,
    *,
    content: str,
    video_url: str,
    view: discord.ui.View | None = None,
) -> discord.Message:
    """Post the video as an .mp4 attachment, or its link (and a smaller copy) when too large.

    Raises DeliveryRefused when Discord refuses for good (no permission to post, say).
    """
    try:
        return await _send_video(recipient, video, content, video_url, view)
    except discord.HTTPException as error:
        if permanent(error):
            raise DeliveryRefused(f"Discord said {error.text or error.status}") from error
        raise


async def _send_video(
    recipient: Recipient,
    video: Path,
    content: str,
    video_url: str,
    view: discord.ui.View | None,
) -> discord.Message:
    limit = recipient.filesize_limit
    size = video.stat().st_size
    if size <= limit:
        try:
            return await recipient.send(content, file=video, view=view, ping=True)
        except discord.HTTPException as error:
            if not _too_large(error):
                raise
            limit = min(limit, size - 1)
    note = (
        f"\nThe video is {megabytes(size)}, over this server's {megabytes(limit)} upload"
        f" limit. Full video: {video_url}"
    )
    smaller = await shrink_video(video, limit)
    if smaller is None:
        return await recipient.send(content + note, view=view, ping=True)
    try:
        note += "\nAttached is a smaller copy."
        return await recipient.send(content + note, file=smaller, view=view, ping=True)
    finally:
        smaller.unlink(missing_ok=True)


def _too_large(error: discord.HTTPException) -> bool:
    return error.status == _PAYLOAD_TOO_LARGE or error.code == _FILE_TOO_LARGE_CODE


async def shrink_video(video: Path, limit: int) -> Path | None:
    """Re-encode the video under `limit` bytes with ffmpeg; None without ffmpeg or on failure."""
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        return None
    duration = await _duration(video)
    if not duration:
        return None
    # Aim below the limit: container overhead and rate control overshoot a little.
    total_kbps = limit * 8 * 0.85 / duration / 1000
    video_kbps = int(total_kbps - 64)
    if video_kbps < 50:
        return None
    handle, name = tempfile.mkstemp(prefix="shrunk-", suffix=".mp4", dir=video.parent)
    out = Path(name)
    os.close(handle)
    try:
        ran = await _run(
            "ffmpeg", "-v", "error", "-y", "-i", str(video),
            "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{video_kbps}k",
            "-maxrate", f"{video_kbps}k", "-bufsize", f"{video_kbps * 2}k",
            "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(out),
        )  # fmt: skip
    except TimeoutError:
        log.warning("ffmpeg took longer than %.0f s; giving up on a smaller copy", SHRINK_TIMEOUT)
        ran = None
    except BaseException:  # cancelled: leave no half-written copy behind
        out.unlink(missing_ok=True)
        raise
    if ran is None or not out.exists() or out.stat().st_size > limit:
        out.unlink(missing_ok=True)
        return None
    return out


async def _duration(video: Path) -> float | None:
    output = await _run(
        "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(video)
    )
    try:
        return float(output) if output else None
    except ValueError:
        return None


async def _run(*command: str) -> str | None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), SHRINK_TIMEOUT)
    except (TimeoutError, asyncio.CancelledError):
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        log.warning("%s failed: %s", command[0], stderr.decode(errors="replace")[-300:])
        return None
    return stdout.decode().strip()
