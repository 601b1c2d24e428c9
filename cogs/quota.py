"""`/quota` for server managers and `/usage` for everyone: credits per period."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.formats import credits_text
from bot.models import CATALOGUE
from bot.quotas import Allowance, Period
from bot.store import EVERYONE, Store
from cogs.managing import MANAGERS, MODEL_CHOICES, guild_of, reply

if TYPE_CHECKING:
    from adapter.app import VideoBot

LIMIT_MAX = 1_000_000
LIMIT = app_commands.Range[int, -1, LIMIT_MAX]
LIMIT_HELP = "Credits per period; -1 for no limit"


class QuotaCog(commands.Cog):
    quota = app_commands.Group(
        name="quota",
        description="How many credits members may spend on videos",
        guild_only=True,
        default_permissions=MANAGERS,
    )

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @property
    def store(self) -> Store:
        return self.bot.store

    # The permission is checked here too: default_permissions only hides the command.
    @quota.command(name="set-default", description="Set the credits each member may spend")
    @app_commands.describe(limit=LIMIT_HELP)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def set_default(self, interaction: discord.Interaction[VideoBot], limit: LIMIT) -> None:
        await interaction.response.defer(ephemeral=True)
        await self.store.update_guild_quota(guild_of(interaction), member_limit=_limit(limit))
        await reply(
            interaction, f"Each member may now spend {credits_text(_limit(limit))} per period."
        )

    @quota.command(name="set-user", description="Set the credits one member may spend")
    @app_commands.describe(user="The member", limit=LIMIT_HELP)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def set_user(
        self, interaction: discord.Interaction[VideoBot], user: discord.Member, limit: LIMIT
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        await self.store.set_member_override(guild_of(interaction), user.id, _limit(limit))
        await reply(
            interaction, f"{user.mention} may now spend {credits_text(_limit(limit))} per period."
        )

    @quota.command(name="set-guild", description="Set the credits the whole server may spend")
    @app_commands.describe(limit=LIMIT_HELP)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def set_guild(self, interaction: discord.Interaction[VideoBot], limit: LIMIT) -> None:
        await interaction.response.defer(ephemeral=True)
        await self.store.update_guild_quota(guild_of(interaction), guild_limit=_limit(limit))
        await reply(
            interaction, f"The server may now spend {credits_text(_limit(limit))} per period."
        )

    @quota.command(name="cost", description="Set how many credits one video of a model costs")
    @app_commands.describe(model="The model", credits="Credits per video")
    @app_commands.choices(model=MODEL_CHOICES)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def cost(
        self,
        interaction: discord.Interaction[VideoBot],
        model: str,
        credits: app_commands.Range[int, 0, 1000],
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        # Discord shows the choices and range; what arrives is checked here all the same.
        if model not in CATALOGUE or not 0 <= credits <= 1000:
            await reply(interaction, "Choose one of the listed models and 0 to 1000 credits.")
            return
        await self.store.set_model_cost(guild_of(interaction), model, credits)
        await reply(
            interaction, f"**/{CATALOGUE[model].command}** now costs {credits_text(credits)}."
        )

    @quota.command(name="period", description="Set how often credits reset (UTC)")
    @app_commands.describe(period="day, week (from Monday) or month")
    @app_commands.choices(period=[app_commands.Choice(name=p.value, value=p.value) for p in Period])
    @app_commands.checks.has_permissions(manage_guild=True)
    async def period(self, interaction: discord.Interaction[VideoBot], period: str) -> None:
        await interaction.response.defer(ephemeral=True)
        if period not in set(Period):
            await reply(interaction, "The period must be day, week or month.")
            return
        await self.store.update_guild_quota(guild_of(interaction), period=period)
        await reply(interaction, f"Credits now reset every {period} (UTC).")

    @quota.command(name="show", description="Limits, usage and top spenders this period")
    @app_commands.describe(user="Show this member's standing too")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def show(
        self, interaction: discord.Interaction[VideoBot], user: discord.Member | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        guild_id = guild_of(interaction)
        quotas = self.bot.jobs.quotas
        standing = await quotas.allowance(guild_id, user.id if user else EVERYONE)
        settings = await self.store.guild_quota(guild_id)
        lines = [
            f"**Credits this {standing.period}** (resets {_when(standing)})",
            f"Each member: {credits_text(settings.member_limit)}. Server budget:"
            f" {credits_text(standing.guild_limit)}, {standing.guild_used} used.",
            "Costs: " + await self._cost_lines(guild_id),
        ]
        if user is not None:
            lines.append(
                f"{user.mention}: {standing.member_used} used of"
                f" {credits_text(standing.member_limit)}."
            )
        spenders = await self.store.top_spenders(guild_id, standing.guild_since)
        if spenders:
            ranking = ", ".join(f"<@{member}> {used}" for member, used in spenders)
            lines.append(f"Top spenders: {ranking}")
        await reply(interaction, "\n".join(lines))

    @quota.command(name="reset", description="Start this period's usage from zero")
    @app_commands.describe(user="Only this member (default: everyone)")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def reset(
        self, interaction: discord.Interaction[VideoBot], user: discord.Member | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        now = self.bot.jobs.quotas.clock().timestamp()
        await self.store.reset_usage(guild_of(interaction), user.id if user else EVERYONE, now)
        who = user.mention if user else "everyone in this server"
        await reply(interaction, f"Usage reset for {who}.")

    @app_commands.command(name="usage", description="Your video credits: used, left, next reset")
    @app_commands.guild_only()
    async def usage(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True)
        guild_id = guild_of(interaction)
        standing = await self.bot.jobs.quotas.allowance(guild_id, interaction.user.id)
        if standing.member_limit is None:
            mine = (
                f"You have used {standing.member_used} credits this {standing.period};"
                " you have no limit."
            )
        else:
            mine = (
                f"You have used {standing.member_used} of your"
                f" {credits_text(standing.member_limit)}"
                f" this {standing.period}; {standing.member_left} left."
            )
        server = ""
        if standing.guild_limit is not None:
            budget = credits_text(standing.guild_limit)
            server = f"\nThe server has {standing.guild_left} of its {budget} left."
        costs = await self._cost_lines(guild_id)
        await reply(
            interaction, f"{mine} Credits reset {_when(standing)}.{server}\nCosts: {costs}"
        )

    async def _cost_lines(self, guild_id: int) -> str:
        costs = await self.bot.jobs.quotas.costs(guild_id)
        return ", ".join(f"/{CATALOGUE[slug].command} {cost}" for slug, cost in costs.items())


def _limit(value: int) -> int | None:
    # Range is not enforced by discord.py on what arrives: clamp rather than store nonsense.
    return None if value < 0 else min(value, LIMIT_MAX)


def _when(standing: Allowance) -> str:
    return f"<t:{int(standing.resets_at.timestamp())}:R>"


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(QuotaCog(bot))
