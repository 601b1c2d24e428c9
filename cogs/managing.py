"""What the server managers' cogs (`/quota`, `/settings`) share."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.formats import fit
from bot.models import CATALOGUE

MODEL_CHOICES = [
    app_commands.Choice(name=f"/{model.command}", value=model.slug) for model in CATALOGUE.values()
]
QUIET = discord.AllowedMentions.none()
MANAGERS = discord.Permissions(manage_guild=True)


def guild_of(interaction: discord.Interaction) -> int:
    assert interaction.guild_id is not None  # the commands are guild-only
    return interaction.guild_id


async def reply(interaction: discord.Interaction, text: str) -> None:
    """The private answer, mentioning nobody whatever it names."""
    await interaction.edit_original_response(content=fit(text), allowed_mentions=QUIET)
