"""`/botstats`: how the bot is doing, for server managers (and, across servers, its owner)."""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.formats import fit
from bot.jobs.fleet import shards_text
from bot.jobs.job import JobState
from bot.models import CATALOGUE
from bot.observability import rss_mb
from bot.store import STARTED

if TYPE_CHECKING:
    from adapter.app import VideoBot

DAY = 24 * 3600


class StatsCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @app_commands.command(name="botstats", description="Queue, jobs, failures and credits today")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def botstats(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True)
        # A server's managers see their server; the bot's owner sees every server it is in.
        everywhere = await self.bot.is_owner(interaction.user)
        guild_id = None if everywhere else interaction.guild_id
        stats = await self.bot.store.stats(time.time() - DAY, guild_id)
        lines = [f"**Bot stats, last 24 hours** ({'all servers' if everywhere else 'this server'})"]
        lines.append("Queue: " + await self._queue_depth(guild_id))
        lines.append("Jobs: " + _jobs_line(stats.by_model_and_state))
        if stats.failure_reasons:
            reasons = "; ".join(f"{n}× {_short(reason)}" for reason, n in stats.failure_reasons)
            lines.append(f"Failures: {reasons}")
        lines.append(f"Credits spent: {stats.credits_spent}")
        if stats.outcome_unknown:
            lines.append(
                f"Submits with an unknown outcome (may have run and been billed unseen):"
                f" {stats.outcome_unknown}"
            )
        if stats.average_seconds:
            times = ", ".join(
                f"/{_command(slug)} {seconds:.0f} s"
                for slug, seconds in sorted(stats.average_seconds.items())
            )
            lines.append(f"Average time to video: {times}")
        if everywhere:
            lag = self.bot.loop_lag.percentile(0.99) * 1000
            lines.append(f"Process: {rss_mb():.0f} MB resident, event-loop lag p99 {lag:.0f} ms")
            if self.bot.fleet is not None:
                lines.extend(await self._fleet_lines())
        await interaction.edit_original_response(
            content=fit("\n".join(lines)), allowed_mentions=discord.AllowedMentions.none()
        )

    async def _queue_depth(self, guild_id: int | None) -> str:
        # From the store, not this process's queue: in a fleet, other processes run jobs too.
        per_guild: dict[int, list[int]] = collections.defaultdict(lambda: [0, 0])
        for job in await self.bot.store.unfinished_jobs(guild_id):
            if job.state is JobState.QUEUED:
                per_guild[job.guild_id][0] += 1
            elif job.state in STARTED:
                per_guild[job.guild_id][1] += 1
        depths = sorted(((w, r, g) for g, (w, r) in per_guild.items()), reverse=True)
        waiting = sum(d[0] for d in depths)
        running = sum(d[1] for d in depths)
        line = f"{waiting} waiting, {running} running"
        if guild_id is None and depths:
            # The busiest few by name: a list of every server would not fit in a message.
            busiest = ", ".join(f"{self._guild_name(g)} {w}+{r}" for w, r, g in depths[:5])
            line += f" in {len(depths)} server(s); busiest (waiting+running): {busiest}"
        return line

    async def _fleet_lines(self) -> list[str]:
        """One line per process of the fleet: its shards, the jobs it holds, when last heard."""
        assert self.bot.fleet is not None
        now = time.time()
        lease = self.bot.fleet.lease_seconds
        lines = ["Fleet:"]
        for process in await self.bot.store.processes(now):
            heard = now - process.heartbeat_at
            health = f"heard {heard:.0f} s ago" if heard <= lease else (
                f"silent for {heard:.0f} s: gone, its work moves to the others"
            )  # fmt: skip
            this = " (this one)" if process.id == self.bot.fleet.id else ""
            lines.append(
                f"• `{process.id}`{this}: {shards_text(process)}, {process.jobs_held} job(s)"
                f" held, {health}"
            )
        return lines

    def _guild_name(self, guild_id: int) -> str:
        guild = self.bot.get_guild(guild_id)
        return guild.name if guild else str(guild_id)


def _jobs_line(counts: dict[tuple[str, str], int]) -> str:
    if not counts:
        return "none"
    per_model: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for (slug, state), number in counts.items():
        per_model[slug][state] += number
    return "; ".join(
        f"/{_command(slug)} "
        + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        for slug, states in sorted(per_model.items())
    )


def _command(slug: str) -> str:
    model = CATALOGUE.get(slug)
    return model.command if model else slug


def _short(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(StatsCog(bot))
