"""What the server managers' cogs (`/quota`, `/settings`) share."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.formats import fit
from bot.models import CATALOGUE
from bot.server_defaults import describe as describe_defaults
from bot.server_rules import ServerRules
from bot.store import Store

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


async def server_lines(
    store: Store, guild_id: int, *, alerts: bool, rules: ServerRules | None = None
) -> list[str]:
    """A server's /settings as they stand: rules (read here unless given), defaults and, for
    managers, credit alerts."""
    if rules is None:
        rules = await store.server_rules(guild_id)
    defaults = await store.server_defaults(guild_id)
    shown = [describe_defaults(CATALOGUE[slug], values) for slug, values in defaults.items()
             if slug in CATALOGUE and values]  # fmt: skip
    lines = [*rules.describe(), "**Defaults:** " + ("; ".join(shown) or "none")]
    if alerts:
        where = await store.alerts_of(guild_id)
        told = f"<#{where[0]}> below {where[1]:g} credits" if where else "none"
        lines.append(f"**Credit alerts:** {told}")
    return lines
