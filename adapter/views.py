"""The buttons on the bot's messages. Their custom ids carry the job id, so they keep working
after a restart; each delegates to the cog that owns what it does."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

import discord

if TYPE_CHECKING:
    from adapter.app import VideoBot


class CancelHandler(Protocol):
    async def cancel_from_button(self, interaction: discord.Interaction, job_id: str) -> None: ...


class RegenerateHandler(Protocol):
    async def regenerate(self, interaction: discord.Interaction, job_id: str) -> None: ...


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"job:cancel:(?P<id>[0-9a-f]+)"
):
    """Cancel one job (its member, or a server manager)."""

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
        handler: CancelHandler = interaction.client.get_cog("JobsCog")  # type: ignore[assignment]
        await handler.cancel_from_button(interaction, self.job_id)


class RegenerateButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"job:regenerate:(?P<id>[0-9a-f]+)"
):
    """Run a finished job again with a new seed (its member only)."""

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
        handler: RegenerateHandler = interaction.client.get_cog("VideoCog")  # type: ignore[assignment]
        await handler.regenerate(interaction, self.job_id)


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def regenerate_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RegenerateButton(job_id))
    return view


def regenerate_marker(job_id: str) -> str:
    """The custom id that marks a job's posted video: how the channel is searched for it."""
    return f"job:regenerate:{job_id}"


def custom_ids(message: discord.Message) -> set[str]:
    ids = set()
    for row in message.components:
        for item in getattr(row, "children", [row]):
            if custom_id := getattr(item, "custom_id", None):
                ids.add(custom_id)
    return ids
