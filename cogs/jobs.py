"""`/jobs` and the Cancel button: a member's own work in progress, and a way to stop it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from adapter.views import CancelButton
from bot.formats import fit, plural, shorten
from bot.jobs.job import Job, JobState
from bot.jobs.service import CancelOutcome

if TYPE_CHECKING:
    from adapter.app import VideoBot

UNKNOWN_JOB = "That job is no longer known to the bot."
CANCEL_REPLIES = {
    CancelOutcome.LEFT_QUEUE: (
        "Cancelled: the job left the queue before it was sent to the provider."
        " Nothing was spent."
    ),
    CancelOutcome.PROVIDER_HAS_IT: (
        "Cancelled: the bot will not post this video. It had already been sent to the"
        " provider, which cannot be told to stop: its credits stay spent if the provider runs"
        " it, and come back if the provider reports that it failed or never took it."
    ),
    CancelOutcome.TOO_LATE: "Too late to cancel: the video is finished and is being posted.",
    CancelOutcome.ALREADY_CANCELLED: "That job was already cancelled.",
    CancelOutcome.ALREADY_FINISHED: "That job has already finished.",
    CancelOutcome.UNKNOWN: UNKNOWN_JOB,
}


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

    async def cancel_from_button(self, interaction: discord.Interaction, job_id: str) -> None:
        """Cancel the job if this member may; the reply says what it costs them."""
        job = await self.bot.jobs.find(job_id)
        if job is None:
            reply = UNKNOWN_JOB
        elif not may_manage(interaction, job):
            reply = "Only the member who asked for this video, or a server manager, can cancel it."
        else:
            reply = CANCEL_REPLIES[await self.bot.jobs.cancel(job_id)]
        await interaction.edit_original_response(content=reply)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self.bot.jobs.server_left(guild.id)

    @app_commands.command(
        name="jobs", description="Your queued and running videos here, and your last ten made"
    )
    @app_commands.guild_only()
    async def jobs(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if interaction.guild_id is None:
            await interaction.edit_original_response(content="This command works in servers only.")
            return
        mine = await self.bot.jobs.in_progress(interaction.guild_id, interaction.user.id)
        made = await self.bot.jobs.finished_videos(interaction.guild_id, interaction.user.id)
        if not mine and not made:
            await interaction.edit_original_response(
                content="You have no queued or running videos here, and none made yet."
            )
            return
        view = discord.ui.View(timeout=None)
        lines = ["**In progress**"] if mine else ["You have no queued or running videos here."]
        for number, job in enumerate(mine[:20], start=1):
            lines.append(f"{number}. {self._describe(job)}")
            if job.state is not JobState.COMPLETED:
                view.add_item(CancelButton(job.id, label=f"Cancel {number}"))
        if made:
            lines += ["", f"**Your last {plural(len(made), 'video')} here**"]
            lines += [f"- {self._describe_made(job)}" for job in made]
        await interaction.edit_original_response(
            content=fit("\n".join(lines)),
            view=view,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    def _describe_made(self, job: Job) -> str:
        when = f"<t:{int(job.finished_at or job.created_at)}:R>"
        if job.video_message_id is None:
            where = "sent to you as a link"
        else:
            channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            where = channel.get_partial_message(job.video_message_id).jump_url
        prompt = f": {shorten(job.prompt, 60)}" if job.prompt else ""
        return f"**/{job.command}** {when}{prompt} · {where}"

    def _describe(self, job: Job) -> str:
        place = self.bot.jobs.place(job)
        if job.state is JobState.QUEUED:
            where = f"waiting, place {place[0]} in line" if place else "waiting to be sent"
        elif job.state is JobState.COMPLETED:
            where = "finished, being posted"
        else:
            where = "running at the provider"
        prompt = f": {shorten(job.prompt, 80)}" if job.prompt else ""
        return f"**/{job.command}** (`{job.id}`), {where}{prompt}"


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(JobsCog(bot))
