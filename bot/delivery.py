"""Getting words and videos to the member who asked.

An interaction's token lives 15 minutes and video jobs can outlast it, so every message goes
through the interaction while its token lives and through the channel, with the bot's own token
and a mention of the requester, after that or when Discord refuses the token.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import discord

log = logging.getLogger(__name__)

# Leave room for a slow upload to finish before the token dies.
TOKEN_MARGIN = datetime.timedelta(seconds=60)
# Discord's answers when an interaction token is no longer good.
_DEAD_TOKEN_STATUSES = frozenset({401, 404})
_PAYLOAD_TOO_LARGE = 413


@dataclass
class Recipient:
    channel: discord.abc.Messageable
    member_id: int
    webhook: discord.Webhook | None = None
    token_expires_at: datetime.datetime | None = None
    filesize_limit: int = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    def token_alive(self) -> bool:
        if self.webhook is None or self.token_expires_at is None:
            return False
        return discord.utils.utcnow() + TOKEN_MARGIN < self.token_expires_at

    async def send(
        self,
        content: str,
        *,
        file: discord.File | None = None,
        view: discord.ui.View | None = None,
        ephemeral: bool = False,
        mention: bool = False,
    ) -> discord.Message:
        """Send a message; `mention` pings the requester and nobody else, whatever the text says."""
        extras = {"file": file} if file is not None else {}
        if view is not None:
            extras["view"] = view
        if self.token_alive():
            assert self.webhook is not None
            try:
                return await self.webhook.send(
                    _with_mention(content, self.member_id) if mention else content,
                    ephemeral=ephemeral,
                    allowed_mentions=self._mentions(mention),
                    wait=True,
                    **extras,
                )
            except discord.HTTPException as error:
                if error.status not in _DEAD_TOKEN_STATUSES:
                    raise
                self._token_died(error)
                if file is not None:
                    file.reset()
        # Without the interaction nothing can be ephemeral: say whom it is for.
        return await self.channel.send(
            _with_mention(content, self.member_id),
            allowed_mentions=self._mentions(True),
            **extras,
        )

    async def edit(
        self, message_id: int, content: str, *, view: discord.ui.View | None = None
    ) -> None:
        if self.token_alive():
            assert self.webhook is not None
            try:
                await self.webhook.edit_message(
                    message_id,
                    content=content,
                    view=view,
                    allowed_mentions=discord.AllowedMentions.none(),
                )
                return
            except discord.HTTPException as error:
                if error.status not in _DEAD_TOKEN_STATUSES:
                    raise
                self._token_died(error)
        await self._partial(message_id).edit(
            content=content, view=view, allowed_mentions=discord.AllowedMentions.none()
        )

    async def delete(self, message_id: int) -> None:
        try:
            if self.token_alive():
                assert self.webhook is not None
                await self.webhook.delete_message(message_id)
            else:
                await self._partial(message_id).delete()
        except discord.HTTPException as error:
            log.info("could not delete message %s: %s", message_id, error)

    def _partial(self, message_id: int) -> discord.PartialMessage:
        return self.channel.get_partial_message(message_id)  # type: ignore[attr-defined]

    def _mentions(self, mention: bool) -> discord.AllowedMentions:
        if not mention:
            return discord.AllowedMentions.none()
        return discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(self.member_id)], replied_user=False
        )

    def _token_died(self, error: discord.HTTPException) -> None:
        log.info("interaction token refused (HTTP %s); using the channel", error.status)
        self.token_expires_at = None


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
    """Post the video as an .mp4 attachment, or its link (and a smaller copy) when too large."""
    limit = recipient.filesize_limit
    size = video.stat().st_size
    if size <= limit:
        try:
            return await recipient.send(
                content, file=discord.File(video, "video.mp4"), view=view, mention=True
            )
        except discord.HTTPException as error:
            if error.status != _PAYLOAD_TOO_LARGE:
                raise
            limit = min(limit, size - 1)
    note = (
        f"\nThe video is {_megabytes(size)}, over this server's {_megabytes(limit)} upload"
        f" limit. Full video: {video_url}"
    )
    smaller = await shrink_video(video, limit)
    if smaller is None:
        return await recipient.send(content + note, view=view, mention=True)
    try:
        note += "\nAttached is a smaller copy."
        return await recipient.send(
            content + note, file=discord.File(smaller, "video.mp4"), view=view, mention=True
        )
    finally:
        smaller.unlink(missing_ok=True)


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
    ran = await _run(
        "ffmpeg", "-v", "error", "-y", "-i", str(video),
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{video_kbps}k",
        "-maxrate", f"{video_kbps}k", "-bufsize", f"{video_kbps * 2}k",
        "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(out),
    )  # fmt: skip
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
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        log.warning("%s failed: %s", command[0], stderr.decode(errors="replace")[-300:])
        return None
    return stdout.decode().strip()


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
