"""`/jobs` and the Cancel button: a member's own work in progress, and a way to stop it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.jobs import Job, JobState
from bot.observability import fit
from bot.service import CancelOutcome

if TYPE_CHECKING:
    from bot.app import VideoBot

UNKNOWN_JOB = "That job is no longer known to the bot."


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"job:cancel:(?P<id>[0-9a-f]+)"
):
    """Cancel one job; the custom_id carries the job id, so it works after a restart."""

    def __init__(self, job_id: str, *, label: str = "Cancel") -> None:
        super().__init__(
            discord.ui.Button(
                label=label, style=discord.ButtonStyle.secondary, custom_id=f"job:cancel:{job_id}"
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> CancelButton:
        return cls(match["id"])

    async def callback(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = await cancel_for(interaction, self.job_id)
        await interaction.edit_original_response(content=reply)


async def cancel_for(interaction: discord.Interaction[VideoBot], job_id: str) -> str:
    """Cancel the job if this member may; the answer says what happened."""
    service = interaction.client.jobs
    job = await service.find(job_id)
    if job is None:
        return UNKNOWN_JOB
    if not may_manage(interaction, job):
        return "Only the member who asked for this video, or a server manager, can cancel it."
    outcome = await service.cancel(job)
    if outcome is CancelOutcome.LEFT_QUEUE:
        return "Cancelled: the job left the queue before it started. Nothing was spent."
    if outcome is CancelOutcome.STOPPED:
        return (
            "Cancelled: the bot stopped waiting and will not post the video. The provider cannot"
            " be told to stop, so the run may still finish (and be billed) on its side."
        )
    if outcome is CancelOutcome.TOO_LATE:
        return "Too late to cancel: the video is finished and is being posted."
    return "That job has already finished."


def may_manage(interaction: discord.Interaction, job: Job) -> bool:
    if interaction.user.id == job.member_id:
        return True
    return interaction.guild_id == job.guild_id and interaction.permissions.manage_guild


class JobsCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(CancelButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(CancelButton)

    @app_commands.command(name="jobs", description="Your queued and running videos here")
    @app_commands.guild_only()
    async def jobs(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if interaction.guild_id is None:
            await interaction.edit_original_response(content="This command works in servers only.")
            return
        mine = self.bot.jobs.unfinished(interaction.guild_id, interaction.user.id)
        if not mine:
            await interaction.edit_original_response(
                content="You have no queued or running videos here."
            )
            return
        view = discord.ui.View(timeout=None)
        lines = []
        for number, job in enumerate(mine[:25], start=1):
            lines.append(f"{number}. {self._describe(job)}")
            view.add_item(CancelButton(job.id, label=f"Cancel {number}"))
        await interaction.edit_original_response(
            content=fit("\n".join(lines)),
            view=view,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    def _describe(self, job: Job) -> str:
        where = (
            f"waiting, place {self.bot.jobs.position(job)} in line"
            if job.state is JobState.QUEUED
            else "running at the provider"
        )
        prompt = f": {shorten(job.prompt, 80)}" if job.prompt else ""
        return f"**/{job.model.command}** (`{job.id}`), {where}{prompt}"


def shorten(text: str, limit: int) -> str:
    """Echo user text safely: no markdown tricks, no more than `limit` characters."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return discord.utils.escape_markdown(flat)


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(JobsCog(bot))
