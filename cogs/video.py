"""The five model commands, each job's live status message, and the delivered video."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.delivery import DeliveryRefused, Recipient, send_video
from bot.images import ImageLimits, ImageRejected, check_content, check_declared
from bot.jobs import Job, JobState
from bot.models import CATALOGUE, InvalidParameters, VideoModel, bounds, choices
from bot.queue import QueueRefused
from bot.quotas import QuotaExceeded
from cogs.jobs import UNKNOWN_JOB, CancelButton, shorten

if TYPE_CHECKING:
    from bot.app import VideoBot

log = logging.getLogger(__name__)

IMAGE_OPTION = "image"
IMAGE_DESCRIPTION = "A PNG, JPEG or WebP image to animate"
GUILD_ONLY = "Video commands work in servers only."
# Only svd documents its seed range; a 32-bit seed is safe for every model.
RANDOM_SEED_MAX = 2**31 - 1

Callback = Callable[..., Coroutine[Any, Any, None]]


def catalogue_command(model: VideoModel, description: str) -> Callable[[Callback], Any]:
    """A slash command whose options take their ranges, choices and help from the catalogue."""

    def decorate(callback: Callback) -> app_commands.Command[Any, ..., None]:
        command = app_commands.command(name=model.command, description=description)(callback)
        command = app_commands.guild_only()(command)
        for name, option in command._params.items():
            if name == IMAGE_OPTION:
                option.description = IMAGE_DESCRIPTION
                continue
            field_ = model.parameters.model_fields[name]
            option.description = field_.description or name
            if allowed := choices(model.parameters, name):
                option.choices = [app_commands.Choice(name=str(v), value=v) for v in allowed]
            else:
                option.min_value, option.max_value = bounds(model.parameters, name)
        return command

    return decorate


@dataclass
class Delivery:
    """How to reach the member of one job, and where its status message is."""

    recipient: Recipient
    status_text: str = ""
    status_posted: asyncio.Event = field(default_factory=asyncio.Event)
    reposted: bool = False


class RegenerateButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"job:regenerate:(?P<id>[0-9a-f]+)"
):
    """Run a finished job again with a new seed; keyed by job id so it survives restarts."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Regenerate",
                emoji="🔁",
                style=discord.ButtonStyle.primary,
                custom_id=f"job:regenerate:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> RegenerateButton:
        return cls(match["id"])

    async def callback(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        cog = interaction.client.get_cog("VideoCog")
        assert isinstance(cog, VideoCog)
        await cog.regenerate(interaction, self.job_id)


class VideoCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.deliveries: dict[str, Delivery] = {}
        self._status_loop: asyncio.Task[None] | None = None
        settings = bot.settings
        self.image_limits = ImageLimits(settings.image_max_bytes, settings.image_max_pixels)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(RegenerateButton)
        self.bot.jobs.runner.reporter = self
        self._status_loop = asyncio.create_task(self._keep_statuses_fresh(), name="status-loop")

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(RegenerateButton)
        if self._status_loop is not None:
            self._status_loop.cancel()

    # --- The commands: names and types here; ranges, choices and help from the catalogue ---

    @catalogue_command(CATALOGUE["svd"], "Animate an image with Stable Video Diffusion")
    async def svd(
        self,
        interaction: discord.Interaction[VideoBot],
        image: discord.Attachment,
        fps: int | None = None,
        motion: int | None = None,
        cond_aug: float | None = None,
        frames: int | None = None,
        resize_method: str | None = None,
        seed: int | None = None,
    ) -> None:
        await self.start(interaction, CATALOGUE["svd"], locals())

    @catalogue_command(CATALOGUE["cog-video-5b-t2v"], "Make a video from a prompt with CogVideoX")
    async def cogvideo(
        self,
        interaction: discord.Interaction[VideoBot],
        prompt: str,
        negative_prompt: str | None = None,
        input_frames: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        frame_rate: int | None = None,
        seed: int | None = None,
    ) -> None:
        await self.start(interaction, CATALOGUE["cog-video-5b-t2v"], locals())

    @catalogue_command(
        CATALOGUE["cog-video-5b-i2v"], "Animate an image from a prompt with CogVideoX"
    )
    async def cogvideo_i2v(
        self,
        interaction: discord.Interaction[VideoBot],
        image: discord.Attachment,
        prompt: str,
        negative_prompt: str | None = None,
        seed: int | None = None,
    ) -> None:
        await self.start(interaction, CATALOGUE["cog-video-5b-i2v"], locals())

    @catalogue_command(CATALOGUE["pixverse-5-video"], "Make a video, with sound, with PixVerse 5")
    async def pixverse(
        self,
        interaction: discord.Interaction[VideoBot],
        prompt: str,
        image: discord.Attachment | None = None,
        duration: int | None = None,
        quality: str | None = None,
        motion_mode: str | None = None,
        aspect_ratio: str | None = None,
        negative_prompt: str | None = None,
        seed: int | None = None,
        sound_effect_switch: bool | None = None,
        sound_effect_content: str | None = None,
        lip_sync_switch: bool | None = None,
        lip_sync_tts_content: str | None = None,
        lip_sync_tts_speaker_id: str | None = None,
    ) -> None:
        await self.start(interaction, CATALOGUE["pixverse-5-video"], locals())

    @catalogue_command(CATALOGUE["grok-imagine-video"], "Make a video with audio with Grok Imagine")
    async def grok_video(
        self,
        interaction: discord.Interaction[VideoBot],
        prompt: str,
        image: discord.Attachment | None = None,
        duration: int | None = None,
        resolution: str | None = None,
        aspect_ratio: str | None = None,
    ) -> None:
        await self.start(interaction, CATALOGUE["grok-imagine-video"], locals())

    # --- From interaction to queued job ---

    async def start(
        self, interaction: discord.Interaction[VideoBot], model: VideoModel, options: dict[str, Any]
    ) -> None:
        # Acknowledge first: everything after this may take longer than Discord's 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        values = {
            name: value
            for name, value in options.items()
            if name not in ("self", "interaction") and value is not None
        }
        try:
            job = await self._job_from(interaction, model, values)
        except (ImageRejected, InvalidParameters, QueueRefused) as problem:
            await interaction.edit_original_response(content=_problem_text(problem))
            return
        await self._queue(interaction, job)

    async def _job_from(
        self, interaction: discord.Interaction[VideoBot], model: VideoModel, values: dict[str, Any]
    ) -> Job:
        if interaction.guild_id is None or interaction.channel_id is None:
            raise QueueRefused(GUILD_ONLY)
        image = values.pop(IMAGE_OPTION, None)
        if image is not None:
            assert model.image_parameter is not None
            values[model.image_parameter] = await self._checked_image(image)
        parameters = model.validate(values).model_dump(exclude_none=True)
        return Job(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            member_id=interaction.user.id,
            model=model,
            parameters=_with_fresh_seed(model, parameters, keep=True),
        )

    async def _checked_image(self, attachment: discord.Attachment) -> str:
        check_declared(
            attachment.filename, attachment.content_type, attachment.size, self.image_limits
        )
        try:
            data = await attachment.read()
        except discord.HTTPException:
            raise ImageRejected(
                f"`{attachment.filename}` could not be downloaded from Discord."
            ) from None
        await asyncio.to_thread(check_content, attachment.filename, data, self.image_limits)
        return attachment.url

    async def _queue(self, interaction: discord.Interaction[VideoBot], job: Job) -> None:
        """Admit, store and queue the job, then show its public status message."""
        job.interaction_id, job.interaction_token = interaction.id, interaction.token
        job.token_expires_at = interaction.expires_at.timestamp()
        job.filesize_limit = interaction.filesize_limit
        # Settle the deferred reply before the job exists: Discord turns the first followup
        # after a defer into that private reply, and no status or video may ever be it.
        await interaction.edit_original_response(content=f"Sending job `{job.id}`…")
        delivery = self.deliveries[job.id] = self._new_delivery(job)
        try:
            position = await self.bot.jobs.submit(job)
        except (QueueRefused, QuotaExceeded) as refusal:
            del self.deliveries[job.id]
            await interaction.edit_original_response(content=str(refusal))
            return
        try:
            await self._post_status(job, delivery)
        finally:
            delivery.status_posted.set()
        with contextlib.suppress(discord.HTTPException):  # the job runs whatever this says
            await interaction.edit_original_response(
                content=f"Queued as job `{job.id}`, place {position} in line. `/jobs` lists it."
            )

    async def _post_status(self, job: Job, delivery: Delivery) -> None:
        """Post a public status message; without one, the status loop tries again later."""
        delivery.status_text = self._status(job)
        try:
            message = await delivery.recipient.send(delivery.status_text, view=_cancel_view(job))
        except discord.HTTPException as error:
            log.warning("status message of job %s not posted: %s", job.id, error)
            return
        job.status_message_id = message.id
        await self.bot.jobs.save(job)

    async def regenerate(self, interaction: discord.Interaction[VideoBot], job_id: str) -> None:
        original = await self.bot.jobs.find(job_id)
        if original is None:
            await interaction.edit_original_response(content=UNKNOWN_JOB)
            return
        if interaction.user.id != original.member_id:
            await interaction.edit_original_response(
                content="Only the member who asked for this video can regenerate it."
            )
            return
        job = Job(
            guild_id=original.guild_id,
            channel_id=interaction.channel_id or original.channel_id,
            member_id=original.member_id,
            model=original.model,
            parameters=_with_fresh_seed(original.model, original.parameters, keep=False),
        )
        await self._queue(interaction, job)

    # --- Reporter: what the runner tells us ---

    async def deliver(self, job: Job, video: Path, video_url: str) -> None:
        delivery = await self._delivery(job)
        taken = time.time() - job.created_at
        seed = f" · seed {job.seed}" if job.seed is not None else ""
        content = f"🎬 **{job.model.title}**{seed} · took {_clock(taken)}{_quoted(job.prompt)}"
        view = discord.ui.View(timeout=None)
        view.add_item(RegenerateButton(job.id))
        try:
            await send_video(
                delivery.recipient, video, content=content, video_url=video_url, view=view
            )
        except discord.HTTPException as error:
            if 400 <= error.status < 500 and error.status != 429:
                raise DeliveryRefused(f"Discord said {error.text or error.status}") from error
            raise
        await self._retire_status(job, delivery)

    async def already_delivered(self, job: Job) -> bool:
        """Whether the result message is in the channel already (posted just before a crash)."""
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        marker = RegenerateButton(job.id).custom_id
        me = self.bot.user.id if self.bot.user else self.bot.application_id
        # A few minutes' slack: the host's clock and Discord's may disagree; the marker is unique.
        since = (job.delivering_at or job.created_at) - 300
        after = discord.Object(discord.utils.time_snowflake(_utc(since)))
        try:
            async for message in channel.history(limit=100, after=after):
                if message.author.id == me and marker in _custom_ids(message):
                    return True
        except discord.HTTPException as error:
            # Unknowable: posting again risks a duplicate, not posting risks losing the video.
            log.warning("cannot read the history of channel %s: %s", job.channel_id, error)
        return False

    async def failed(self, job: Job, message: str) -> None:
        delivery = await self._delivery(job)
        await delivery.recipient.send(
            f"Your **/{job.model.command}** video (`{job.id}`) did not finish. {message}",
            ephemeral=True,
        )
        await self._retire_status(job, delivery)

    async def cancelled(self, job: Job) -> None:
        delivery = await self._delivery(job)
        if job.status_message_id is not None:
            await delivery.recipient.edit(
                job.status_message_id, self._header(job) + "\n🚫 Cancelled.", view=None
            )
        self.deliveries.pop(job.id, None)

    async def _delivery(self, job: Job) -> Delivery:
        delivery = self.deliveries.get(job.id)
        if delivery is None:  # a job from before a restart
            delivery = self.deliveries[job.id] = self._new_delivery(job)
            delivery.status_posted.set()
        await delivery.status_posted.wait()
        return delivery

    def _new_delivery(self, job: Job) -> Delivery:
        webhook = None
        if job.interaction_token and self.bot.application_id:
            webhook = interaction_webhook(self.bot, job.interaction_token)
        expires = _utc(job.token_expires_at) if job.token_expires_at else None
        recipient = Recipient(
            channel=self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id),
            member_id=job.member_id,
            webhook=webhook,
            token_expires_at=expires,
            filesize_limit=job.filesize_limit or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES,
        )
        return Delivery(recipient)

    async def _retire_status(self, job: Job, delivery: Delivery) -> None:
        if job.status_message_id is not None:
            await delivery.recipient.delete(job.status_message_id)
        self.deliveries.pop(job.id, None)

    # --- Live status ---

    async def _keep_statuses_fresh(self) -> None:
        """One loop edits every status message whose text changed, at most every few seconds."""
        interval = self.bot.settings.status_update_seconds
        while True:
            await asyncio.sleep(interval)
            for job in self.bot.jobs.unfinished():
                try:
                    await self._refresh_status(job)
                except Exception as error:  # one bad message must not freeze every status
                    log.info("status of job %s not updated: %s", job.id, error)

    async def _refresh_status(self, job: Job) -> None:
        delivery = await self._delivery(job)
        if job.status_message_id is None:  # never posted (a crash or a refusal got in the way)
            await self._post_status(job, delivery)
            return
        text = self._status(job)
        if text == delivery.status_text:
            return
        delivery.status_text = text
        if job.recovered and not delivery.recipient.token_alive() and not delivery.reposted:
            # The old status message belongs to a dead interaction: start a fresh one.
            message = await delivery.recipient.send(text, view=_cancel_view(job))
            delivery.reposted = True
            old, job.status_message_id = job.status_message_id, message.id
            await self.bot.jobs.save(job)
            await delivery.recipient.delete(old)
            return
        await delivery.recipient.edit(job.status_message_id, text, view=_cancel_view(job))

    def _status(self, job: Job) -> str:
        header = self._header(job)
        if job.state is JobState.QUEUED:
            position = self.bot.jobs.position(job) or 1
            waiting = len(self.bot.jobs.queue.waiting(job.guild_id))
            return f"{header}\n⏳ Waiting in line: place {position} of {waiting}."
        started = job.submitted_at or job.created_at
        elapsed = time.time() - started
        stage = "queued at the provider" if job.provider_state == "QUEUED" else "generating"
        return (
            f"{header}\n⚙️ {stage.capitalize()}: {_clock(elapsed)} so far,"
            f" usually about {_clock(job.model.typical_seconds)}."
        )

    def _header(self, job: Job) -> str:
        return f"🎬 **{job.model.title}** for <@{job.member_id}>{_quoted(job.prompt)}"


def interaction_webhook(bot: VideoBot, token: str) -> discord.Webhook:
    """The followup webhook of an interaction, rebuilt from its token (it outlives a restart).

    This is how discord.py builds `Interaction.followup`; an application webhook may send
    ephemeral messages, a plain partial webhook may not.
    """
    data = {"id": bot.application_id, "type": 3, "token": token}
    return discord.Webhook.from_state(data, bot._connection)  # type: ignore[arg-type]


def _custom_ids(message: discord.Message) -> set[str]:
    ids = set()
    for row in message.components:
        for item in getattr(row, "children", [row]):
            if custom_id := getattr(item, "custom_id", None):
                ids.add(custom_id)
    return ids


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


def _cancel_view(job: Job) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job.id))
    return view


def _with_fresh_seed(
    model: VideoModel, parameters: dict[str, Any], *, keep: bool
) -> dict[str, Any]:
    """Pick the seed the bot will show, so a result can be reproduced; keep one the member set."""
    if "seed" not in model.parameters.model_fields:
        return dict(parameters)
    if keep and parameters.get("seed", -1) not in (None, -1):
        return dict(parameters)
    return {**parameters, "seed": random.randint(0, RANDOM_SEED_MAX)}


def _quoted(prompt: str | None) -> str:
    return f"\n> {shorten(prompt, 300)}" if prompt else ""


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


def _problem_text(problem: Exception) -> str:
    if isinstance(problem, InvalidParameters):
        return "That did not work:\n" + "\n".join(f"- {line}" for line in problem.problems)
    return str(problem)


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(VideoCog(bot))
