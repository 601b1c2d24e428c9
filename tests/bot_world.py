"""A whole bot world for end-to-end tests: fake Discord, the simulator, the real bot."""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiosqlite
from PIL import Image

from adapter.app import VideoBot
from bot.config import Settings
from bot.jobs.job import Job
from bot.simulator import Simulator
from cogs.video import SENDING
from tests.conftest import API_KEY
from tests.fakediscord import (
    FakeDiscord,
    FakeGuild,
    FakeInteraction,
    FakeMember,
    FakeMessage,
    run_bot,
)

INTERIM_REPLY = SENDING.split("{")[0]


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
        """The ephemeral answer the member ends up with: the deferred reply once settled, and
        past the interim "Sending job…" a video command shows while it admits the job."""

        def final() -> bool:
            original = interaction.original
            return (
                original is not None
                and not original.loading
                and not original.content.startswith(INTERIM_REPLY)
            )

        await self.fake.wait_for(final, message="the reply never reached its final words")
        assert interaction.original is not None
        return interaction.original.content

    async def status_message(self, interaction: FakeInteraction) -> FakeMessage:
        """The job's public status message (the deferred reply is settled first, so it is a
        followup of its own): the first public followup that is not the video."""

        def statuses() -> list[FakeMessage]:
            return [m for m in interaction.followups if not m.ephemeral and not m.attachments]

        await self.fake.wait_for(statuses, message="no status message")
        return statuses()[0]

    async def notice(self, interaction: FakeInteraction) -> FakeMessage:
        """The private message the requester gets about how the job ended (a failure, or a
        video sent as a link). A job that fails fast may never have shown a status message."""

        def private() -> list[FakeMessage]:
            return [m for m in interaction.followups if m.ephemeral]

        await self.fake.wait_for(private, message="no notice")
        return private()[0]

    async def unfinished(self) -> list[Job]:
        return await self.bot.store.unfinished_jobs()

    async def settled(self) -> bool:
        """Nothing left to do: every job ended and every message it was owed went out."""
        store = self.bot.store
        return not await store.unfinished_jobs() and await store.next_due_at() is None

    async def credit_states(self) -> list[str]:
        """Where each job's credits stand: reserved, captured or released, oldest job first."""
        return [state for _, state in (await self.bot.store.credit_states()).values()]

    async def rewrite_jobs(self, change: str) -> None:
        """Change the jobs table as an operator (or an older version) could have left it,
        from a second connection, as another process would: `change` is an UPDATE's SET."""
        async with aiosqlite.connect(self.bot.settings.database_path) as db:
            await db.execute(f"UPDATE jobs {change}")
            await db.commit()

    async def delivered(self, count: int = 1, timeout: float = 10.0) -> list[FakeMessage]:  # noqa: ASYNC109
        await self.fake.wait_for(
            lambda: len(self.videos()) >= count, timeout=timeout, message="no video posted"
        )
        return self.videos()


def test_settings(simulator: Simulator, database: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": "fake-token",
        "segmind_api_key": API_KEY,
        "segmind_base_url": simulator.url,
        "segmind_upload_url": f"{simulator.url}/upload-asset",
        "database_path": database,
        "segmind_poll_interval_max": 0.05,
        "segmind_requests_per_minute": 100_000,
        "segmind_retry_attempts": 3,
        "segmind_retry_base_delay": 0.01,
        "status_update_seconds": 0.05,
        "message_retry_seconds": 0.05,
        "shutdown_grace_seconds": 1.0,
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


async def job_states(database: Path) -> dict[str, tuple[str, str, str, int]]:
    """prompt -> (job id, state, where its credits stand, credits), read as a second SQLite
    client would; the credits stand at the job's last ledger entry."""
    async with (
        aiosqlite.connect(database) as db,
        db.execute(
            "SELECT id, parameters, state, (SELECT entry FROM ledger WHERE job_id = jobs.id"
            " ORDER BY seq DESC LIMIT 1), credits FROM jobs"
        ) as cursor,
    ):
        rows = await cursor.fetchall()
    return {
        json.loads(row[1]).get("prompt", "svd"): (row[0], row[2], row[3], row[4]) for row in rows
    }


async def states_become(database: Path, fake: FakeDiscord, wanted: dict[str, str]) -> None:
    async def reached() -> bool:
        if not database.exists():
            return False
        states = await job_states(database)
        return all(states.get(prompt, ("", ""))[1] == state for prompt, state in wanted.items())

    await fake.wait_for(reached, timeout=30, message=f"job states {wanted}")
