"""A whole bot world for end-to-end tests: fake Discord, the simulator, the real bot."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from bot.app import VideoBot
from bot.config import Settings
from bot.simulator import Simulator
from tests.conftest import API_KEY
from tests.fakediscord import (
    FakeDiscord,
    FakeGuild,
    FakeInteraction,
    FakeMember,
    FakeMessage,
    run_bot,
)


def png_bytes(
    width: int = 64, height: int = 48, kind: str = "PNG", *, noisy: bool = False
) -> bytes:
    """An image file; `noisy` ones do not compress, so cutting one short really truncates it."""
    if noisy:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), "teal")
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


@dataclass
class World:
    fake: FakeDiscord
    simulator: Simulator
    bot: VideoBot
    guild: FakeGuild
    alice: FakeMember
    bob: FakeMember
    manager: FakeMember

    def image(self, filename: str = "cat.png", data: bytes | None = None, **extra: Any) -> dict:
        data = png_bytes() if data is None else data
        return self.fake.add_attachment(
            filename, data, extra.pop("content_type", "image/png"), **extra
        )

    async def slash(
        self, member: FakeMember, command: str, options: dict | None = None, **kw: Any
    ) -> FakeInteraction:
        return await self.fake.slash(self.guild, member, command, options or {}, **kw)

    def messages(self) -> list[FakeMessage]:
        return self.fake.channel_messages(self.guild.channel)

    def videos(self) -> list[FakeMessage]:
        """Videos posted for everyone to see (a private one would be a bug, not a delivery)."""
        return [
            m
            for m in self.messages()
            if not m.ephemeral and any(a.filename.endswith(".mp4") for a in m.attachments)
        ]

    async def reply_to(self, interaction: FakeInteraction) -> str:
        """The ephemeral answer the member sees once the bot has settled the deferred reply."""
        await self.fake.wait_for(
            lambda: interaction.original is not None and not interaction.original.loading,
            message="the deferred reply was never settled",
        )
        assert interaction.original is not None
        return interaction.original.content

    async def status_message(self, interaction: FakeInteraction) -> FakeMessage:
        # The deferred reply is settled first, so the first followup is a message of its own.
        await self.fake.wait_for(lambda: interaction.followups, message="no status message")
        return interaction.followups[0]

    async def notice(self, interaction: FakeInteraction) -> FakeMessage:
        """The message the requester gets after the status message: the failure notice."""
        await self.fake.wait_for(lambda: len(interaction.followups) >= 2, message="no notice")
        return interaction.followups[1]

    async def delivered(self, count: int = 1) -> list[FakeMessage]:
        await self.fake.wait_for(lambda: len(self.videos()) >= count, message="no video posted")
        return self.videos()


def test_settings(simulator: Simulator, database: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": "fake-token",
        "segmind_api_key": API_KEY,
        "segmind_base_url": simulator.url,
        "database_path": database,
        "segmind_poll_interval_max": 0.05,
        "segmind_requests_per_minute": 100_000,
        "segmind_retry_attempts": 3,
        "segmind_retry_base_delay": 0.01,
        "status_update_seconds": 0.05,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def bot_world(simulator: Simulator, database: Path, **overrides: Any) -> AsyncIterator[World]:
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Studio")
        alice = guild.add_member("alice")
        bob = guild.add_member("bob")
        manager = guild.add_member("manager", manage_guild=True)
        bot = VideoBot(test_settings(simulator, database, **overrides))
        async with run_bot(bot, fake):
            yield World(fake, simulator, bot, guild, alice, bob, manager)


@asynccontextmanager
async def restarted(world: World, database: Path, **overrides: Any) -> AsyncIterator[World]:
    """A new bot on the same Discord, Segmind and database; close the old one first."""
    bot = VideoBot(test_settings(world.simulator, database, **overrides))
    async with run_bot(bot, world.fake):
        yield replace(world, bot=bot)
