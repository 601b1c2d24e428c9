"""`/help`: the commands, this server's rules, what each video costs and what the member has."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.formats import credits_text
from bot.models import CATALOGUE, ImageInput
from cogs.managing import guild_of, reply, server_lines

if TYPE_CHECKING:
    from adapter.app import VideoBot

IMAGES = {
    ImageInput.REQUIRED: "from an image",
    ImageInput.OPTIONAL: "from a prompt, or an image",
    ImageInput.NONE: "from a prompt",
}


class HelpCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What this bot does here, and what it costs")
    @app_commands.guild_only()
    async def help(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True)
        guild = guild_of(interaction)
        rules = await self.bot.store.server_rules(guild)
        costs = await self.bot.jobs.quotas.costs(guild)
        standing = await self.bot.jobs.quotas.allowance(guild, interaction.user.id)
        lines = ["**Make a video** (options mirror the provider's; Discord shows each range)"]
        for model in CATALOGUE.values():
            off = " · *switched off here*" if model.slug in rules.disabled_models else ""
            lines.append(
                f"- `/{model.command}`: {model.title}, {IMAGES[model.image]}"
                f" · {credits_text(costs[model.slug])}{off}"
            )
        left = standing.left_for_member()
        resets = f"<t:{int(standing.resets_at.timestamp())}:R>"
        lines += [
            "",
            f"**Your credits:** {credits_text(left)} left this {standing.period}"
            + (f", renewed {resets}" if left is not None else ""),
            "",
            "**In this server**",
            *await server_lines(self.bot.store, guild, alerts=False, rules=rules),
            "",
            "**Also:** `/jobs` (yours, with Cancel, and your last videos), `/usage` (your"
            " credits). For server managers: `/quota`, `/settings`, `/botstats`.",
        ]
        await reply(interaction, "\n".join(lines))


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(HelpCog(bot))
