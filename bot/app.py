"""The Discord bot: opens the shared resources and loads the cogs."""

from __future__ import annotations

import logging

import aiohttp
import discord
from discord.ext import commands

from bot.config import Settings
from bot.ratelimit import RequestBudget
from bot.segmind import SegmindClient

log = logging.getLogger(__name__)

# Each cog is one concern; the list grows as the commands land.
EXTENSIONS: tuple[str, ...] = ()


class VideoBot(commands.Bot):
    session: aiohttp.ClientSession
    segmind: SegmindClient

    def __init__(self, settings: Settings) -> None:
        # Slash commands need no privileged intent; the guild cache is enough.
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None)
        self.settings = settings

    async def setup_hook(self) -> None:
        self.session = aiohttp.ClientSession()
        self.segmind = SegmindClient(
            self.session,
            self.settings.segmind_api_key.get_secret_value(),
            base_url=self.settings.segmind_base_url,
            budget=RequestBudget(self.settings.segmind_requests_per_minute),
        )
        for extension in EXTENSIONS:
            await self.load_extension(extension)

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s in %d guild(s)", self.user, len(self.guilds))

    async def close(self) -> None:
        await super().close()
        if hasattr(self, "session"):
            await self.session.close()
