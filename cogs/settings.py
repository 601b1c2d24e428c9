"""`/settings` for server managers: where and by whom videos are made, and which models."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.models import CATALOGUE, InvalidParameters
from bot.refusals import describe_refusal
from bot.server_defaults import checked_default, settable
from bot.server_rules import RuleKind
from bot.store import Store
from cogs.managing import MANAGERS, MODEL_CHOICES, guild_of, reply, server_lines

if TYPE_CHECKING:
    from adapter.app import VideoBot

VideoChannel = (
    discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.ForumChannel
)


class SettingsCog(commands.Cog):
    settings = app_commands.Group(
        name="settings",
        description="Where and by whom videos are made in this server",
        guild_only=True,
        default_permissions=MANAGERS,
    )
    channels = app_commands.Group(
        name="channels", description="The channels video commands work in", parent=settings
    )
    roles = app_commands.Group(
        name="roles", description="The roles that may make videos", parent=settings
    )

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    @property
    def store(self) -> Store:
        return self.bot.store

    # The permission is checked here too: default_permissions only hides the commands.

    @channels.command(name="add", description="Allow video commands in this channel")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def channels_add(
        self, interaction: discord.Interaction[VideoBot], channel: VideoChannel
    ) -> None:
        await self._change(interaction, RuleKind.CHANNEL, channel, add=True)

    @channels.command(name="remove", description="Stop allowing video commands in a channel")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def channels_remove(
        self, interaction: discord.Interaction[VideoBot], channel: VideoChannel
    ) -> None:
        await self._change(interaction, RuleKind.CHANNEL, channel, add=False)

    @channels.command(name="clear", description="Allow video commands in every channel")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def channels_clear(self, interaction: discord.Interaction[VideoBot]) -> None:
        await self._clear(interaction, RuleKind.CHANNEL, "The channel list is cleared.")

    @channels.command(name="show", description="The channels video commands work in")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def channels_show(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True)
        await self._answer(interaction, "")

    @roles.command(name="add", description="Let members with this role make videos")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def roles_add(
        self, interaction: discord.Interaction[VideoBot], role: discord.Role
    ) -> None:
        await self._change(interaction, RuleKind.ROLE, role, add=True)

    @roles.command(name="remove", description="Take a role off the list of roles that may")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def roles_remove(
        self, interaction: discord.Interaction[VideoBot], role: discord.Role
    ) -> None:
        await self._change(interaction, RuleKind.ROLE, role, add=False)

    @roles.command(name="clear", description="Let every member make videos")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def roles_clear(self, interaction: discord.Interaction[VideoBot]) -> None:
        await self._clear(interaction, RuleKind.ROLE, "The role list is cleared.")

    @roles.command(name="show", description="The roles that may make videos")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def roles_show(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True)
        await self._answer(interaction, "")

    async def _change(
        self,
        interaction: discord.Interaction[VideoBot],
        kind: RuleKind,
        target: VideoChannel | discord.Role,
        *,
        add: bool,
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        guild = guild_of(interaction)
        if add:
            changed = await self.store.add_rule(guild, kind, target.id)
            head = f"{target.mention} is listed." if changed else f"{target.mention} was listed."
        else:
            changed = await self.store.remove_rule(guild, kind, target.id)
            head = f"{target.mention} is no longer listed." if changed else (
                f"{target.mention} was not listed."
            )  # fmt: skip
        await self._answer(interaction, head)

    async def _clear(
        self, interaction: discord.Interaction[VideoBot], kind: RuleKind, head: str
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        await self.store.clear_rules(guild_of(interaction), kind)
        await self._answer(interaction, head)

    @settings.command(name="model", description="Switch a model's command on or off here")
    @app_commands.describe(model="The model", enabled="Whether members may use it")
    @app_commands.choices(model=MODEL_CHOICES)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def model(
        self,
        interaction: discord.Interaction[VideoBot],
        model: app_commands.Choice[str],
        enabled: bool,
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        guild = guild_of(interaction)
        if enabled:
            await self.store.remove_rule(guild, RuleKind.DISABLED_MODEL, model.value)
        else:
            await self.store.add_rule(guild, RuleKind.DISABLED_MODEL, model.value)
        state = "on" if enabled else "off"
        await self._answer(interaction, f"`{model.name}` is switched {state} in this server.")

    @settings.command(name="default", description="A value for an option members leave empty")
    @app_commands.describe(
        model="The model", option="One of its options", value="What members get unless they say"
    )
    @app_commands.choices(model=MODEL_CHOICES)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def default(
        self,
        interaction: discord.Interaction[VideoBot],
        model: app_commands.Choice[str],
        option: str,
        value: str,
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        guild, entry = guild_of(interaction), CATALOGUE[model.value]
        others = (await self.store.server_defaults(guild)).get(entry.slug, {})
        others = {name: v for name, v in others.items() if name != option}
        try:
            checked = checked_default(entry, option, value, others)
        except InvalidParameters as refused:
            await reply(interaction, "That default was not set.\n" + describe_refusal(refused))
            return
        await self.store.set_server_default(guild, entry.slug, option, checked)
        await self._answer(interaction, f"`/{entry.command}` now defaults to {option} {checked}.")

    @default.autocomplete("option")
    async def _options(
        self, interaction: discord.Interaction[VideoBot], typed: str
    ) -> list[app_commands.Choice[str]]:
        entry = CATALOGUE.get(getattr(interaction.namespace, "model", None) or "")
        names_ = settable(entry) if entry else []
        return [app_commands.Choice(name=n, value=n) for n in names_ if typed.lower() in n][:25]

    @settings.command(name="default-clear", description="Drop a model's server defaults")
    @app_commands.describe(model="The model", option="One option (leave empty for all of them)")
    @app_commands.choices(model=MODEL_CHOICES)
    @app_commands.checks.has_permissions(manage_guild=True)
    async def default_clear(
        self,
        interaction: discord.Interaction[VideoBot],
        model: app_commands.Choice[str],
        option: str | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        entry = CATALOGUE[model.value]
        dropped = await self.store.clear_server_defaults(guild_of(interaction), entry.slug, option)
        what = f"the default for {option}" if option else "every default"
        head = f"Dropped {what} of `/{entry.command}`." if dropped else "There was none to drop."
        await self._answer(interaction, head)

    default_clear.autocomplete("option")(_options)

    @settings.command(name="alerts", description="Warn a channel before the credits run out")
    @app_commands.describe(
        channel="Where to post the warnings",
        below="Warn when the bot's Segmind credits fall below this",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def alerts(
        self,
        interaction: discord.Interaction[VideoBot],
        channel: discord.TextChannel,
        below: app_commands.Range[int, 0, 10_000_000],
    ) -> None:
        await interaction.response.defer(ephemeral=True)
        await self.store.set_alerts(guild_of(interaction), channel.id, float(max(below, 0)))
        await self._answer(
            interaction,
            f"{channel.mention} will be told when the bot's Segmind credits fall below {below},"
            " and when they run out.",
        )

    @settings.command(name="alerts-off", description="Post no credit alerts in this server")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def alerts_off(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True)
        await self.store.set_alerts(guild_of(interaction), None, 0.0)
        await self._answer(interaction, "No credit alerts will be posted here.")

    @settings.command(name="show", description="Everything /settings holds for this server")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def show(self, interaction: discord.Interaction[VideoBot]) -> None:
        await interaction.response.defer(ephemeral=True)
        await self._answer(interaction, "")

    async def _answer(self, interaction: discord.Interaction[VideoBot], head: str) -> None:
        """What changed, then the server's rules as they now stand."""
        lines = await server_lines(self.store, guild_of(interaction), alerts=True)
        text = "\n".join(line for line in (head, *lines) if line)
        await reply(interaction, text)


async def setup(bot: VideoBot) -> None:
    await bot.add_cog(SettingsCog(bot))
