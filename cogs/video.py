"""The five model commands: from an interaction to an admitted, queued job.

What happens to the job afterwards (its status message, its video) is the job's life and the
outbox sender's business; this cog only turns what a member typed into a job, or a refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from adapter.views import RegenerateButton
from bot.formats import credits_text
from bot.images import ImageLimits, ImageRejected, check_content, check_declared
from bot.jobs.job import Job
from bot.models import CATALOGUE, VideoModel, bounds, choices
from bot.refusals import ModelNotOffered, NotHere, Refused, UnknownJob, describe_refusal
from bot.server_rules import Place

if TYPE_CHECKING:
    from adapter.app import VideoBot

log = logging.getLogger(__name__)

IMAGE_OPTION = "image"
IMAGE_DESCRIPTION = "A PNG, JPEG or WebP image to animate"
GUILD_ONLY = "Video commands work in servers only."
UNKNOWN_JOB = "That job is no longer known to the bot."
# The deferred reply is settled with this before the job exists (see `_queue`).
SENDING = "Sending job `{id}`…"
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


class VideoCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        settings = bot.settings
        self.image_limits = ImageLimits(settings.image_max_bytes, settings.image_max_pixels)

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(RegenerateButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(RegenerateButton)

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
        except Refused as refusal:
            await interaction.edit_original_response(content=describe_refusal(refusal))
            return
        await self._queue(interaction, job)

    async def _job_from(
        self, interaction: discord.Interaction[VideoBot], model: VideoModel, values: dict[str, Any]
    ) -> Job:
        """Judge everything that needs no download first; fetch and decode the image last."""
        if interaction.guild_id is None or interaction.channel_id is None:
            raise NotHere(GUILD_ONLY)
        await self._check_rules(interaction, model.slug)
        server = (await self.bot.store.server_defaults(interaction.guild_id)).get(model.slug, {})
        defaults_used = {option: v for option, v in server.items() if option not in values}
        values = {**defaults_used, **values}
        image: discord.Attachment | None = values.pop(IMAGE_OPTION, None)
        if image is not None:
            assert model.image_parameter is not None
            check_declared(
                image.filename, image.content_type, image.size, self.image_limits,
                width=image.width, height=image.height,
            )  # fmt: skip
            values[model.image_parameter] = image.url
        parameters = model.validate(values).model_dump(exclude_none=True)
        await self.bot.jobs.check_room(interaction.guild_id, interaction.user.id, model.slug)
        kept = await self._check_and_keep(image) if image is not None else None
        return Job(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            member_id=interaction.user.id,
            slug=model.slug,
            parameters=_with_fresh_seed(model, parameters, keep=True),
            image_file=kept,
            image_taken_at=time.time() if kept else None,
            defaults_used=defaults_used,
        )

    async def _check_rules(self, interaction: discord.Interaction[VideoBot], slug: str) -> None:
        """The server's /settings: channels, roles and models, before anything else."""
        assert interaction.guild_id is not None and interaction.channel_id is not None
        rules = await self.bot.store.server_rules(interaction.guild_id)
        channel = interaction.channel
        member = interaction.user
        rules.check(
            Place(
                channel_id=interaction.channel_id,
                parent_id=channel.parent_id if isinstance(channel, discord.Thread) else None,
                role_ids=frozenset(role.id for role in getattr(member, "roles", ())),
                manages_server=interaction.permissions.manage_guild,
            ),
            slug,
        )

    async def _check_and_keep(self, attachment: discord.Attachment) -> str:
        """Download and decode the image; keep its bytes for when its link stops working."""
        try:
            data = await attachment.read()
        except discord.HTTPException:
            raise ImageRejected(
                f"`{attachment.filename}` could not be downloaded from Discord."
            ) from None
        checked = await asyncio.to_thread(
            check_content, attachment.filename, data, self.image_limits
        )
        return await asyncio.to_thread(self.bot.images.keep, data, checked)

    async def _queue(self, interaction: discord.Interaction[VideoBot], job: Job) -> None:
        """Admit, store and queue the job; its status message is owed from then on."""
        job.interaction_id, job.interaction_token = interaction.id, interaction.token
        job.token_expires_at = interaction.expires_at.timestamp()
        job.filesize_limit = interaction.filesize_limit
        # Settle the deferred reply before the job exists: Discord turns the first followup
        # after a defer into that private reply, and no status or video may ever be it.
        await interaction.edit_original_response(content=SENDING.format(id=job.id))
        try:
            admitted = await self.bot.jobs.enqueue(job)
        except Refused as refusal:
            await interaction.edit_original_response(content=describe_refusal(refusal))
            return
        reply = (
            f"Queued as job `{job.id}`, place {admitted.place} in line."
            f" It costs {credits_text(admitted.job.credits)}{await self._left(admitted.job)}."
            " `/jobs` lists it."
        )
        with contextlib.suppress(discord.HTTPException):  # the job runs whatever this says
            await interaction.edit_original_response(content=reply)

    async def _left(self, job: Job) -> str:
        standing = await self.bot.jobs.quotas.allowance(job.guild_id, job.member_id)
        left = standing.left_for_member()
        if left is None:
            return ""
        return f"; you have {credits_text(left)} left this {standing.period}"

    async def regenerate(self, interaction: discord.Interaction[VideoBot], job_id: str) -> None:
        try:
            job = await self._regenerated(interaction, job_id)
        except Refused as refusal:
            await interaction.edit_original_response(content=describe_refusal(refusal))
            return
        await self._queue(interaction, job)

    async def _regenerated(self, interaction: discord.Interaction[VideoBot], job_id: str) -> Job:
        original = await self.bot.jobs.find(job_id)
        if original is None:
            raise UnknownJob(UNKNOWN_JOB)
        if interaction.user.id != original.member_id:
            raise NotHere("Only the member who asked for this video can regenerate it.")
        model = original.model
        if model is None:
            raise ModelNotOffered(
                f"This bot no longer offers `{original.slug}`, so this video cannot be made again."
            )
        await self._check_rules(interaction, model.slug)
        await self.bot.jobs.check_room(original.guild_id, original.member_id, model.slug)
        if original.image_file is not None:
            self.bot.images.keep_again(original.image_file)
        return Job(
            guild_id=original.guild_id,
            channel_id=interaction.channel_id or original.channel_id,
            member_id=original.member_id,
            slug=model.slug,
            parameters=_with_fresh_seed(model, original.parameters, keep=False),
            # The same image, by the same (perhaps by now dead) link and the kept bytes.
            image_file=original.image_file,
            image_taken_at=original.image_taken_at,
            defaults_used=original.defaults_used,
        )


def _with_fresh_seed(
    model: VideoModel, parameters: dict[str, Any], *, keep: bool
) -> dict[str, Any]:
    """Pick the seed the bot will show, so a result can be reproduced; keep one the member set."""
    if "seed" not in model.parameters.model_fields:
        return dict(parameters)
    if keep and parameters.get("seed", -1) not in (None, -1):
        return dict(parameters)
    return {**parameters, "seed": random.randint(0, RANDOM_SEED_MAX)}


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(VideoCog(bot))
