"""`python -m bot` pointed at the loopback fake Discord, for tests and benchmarks that run the bot
as a process of its own (to kill it, or to measure it).

Run as a script, it takes the fake's addresses from FAKE_DISCORD_API and FAKE_DISCORD_GATEWAY;
everything else is the real entry point with its real settings from the environment.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.simulator import Simulator
    from tests.fakediscord import FakeDiscord, FakeGuild, FakeInteraction, FakeMember

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent


def environment(
    fake: FakeDiscord, segmind_url: str, api_key: str, database: Path, **settings: object
) -> dict[str, str]:
    """The environment of a bot process: the fake's addresses, the simulator, the settings."""
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "FAKE_DISCORD_API": fake.api_base,
        "FAKE_DISCORD_GATEWAY": fake.gateway_url,
        "DISCORD_TOKEN": fake.token,
        "SEGMIND_API_KEY": api_key,
        "SEGMIND_BASE_URL": segmind_url,
        "SEGMIND_UPLOAD_URL": f"{segmind_url}/upload-asset",
        "DATABASE_PATH": str(database),
        **{name.upper(): str(value) for name, value in settings.items()},
    }


@asynccontextmanager
async def bot_process(
    fake: FakeDiscord, simulator: Simulator, database: Path, log: Path, **settings: object
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m bot` against the fake and the simulator, killed (SIGKILL) on leaving."""
    env = environment(
        fake, simulator.url, simulator.api_key, database,
        **{
            "segmind_poll_interval_max": 0.2, "segmind_requests_per_minute": 100_000,
            "segmind_retry_base_delay": 0.05, "status_update_seconds": 0.3,
            "queue_guild_concurrency": 3, "queue_member_pending_max": 10, "log_level": "INFO",
            **settings,
        },
    )  # fmt: skip
    with log.open("a") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT),
            env=env, cwd=database.parent, stdout=output, stderr=output,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def slash_queued(
    fake: FakeDiscord, guild: FakeGuild, member: FakeMember, command: str, options: dict,
    **kw: Any,
) -> FakeInteraction:
    """A command, once the bot has queued its job: jobs queue in the order they were sent."""
    interaction = await fake.slash(guild, member, command, options, **kw)

    def queued() -> bool:
        reply = interaction.original
        return reply is not None and reply.content.startswith("Queued as job")

    await fake.wait_for(queued, timeout=30, message=f"/{command} queued")
    return interaction


if __name__ == "__main__":
    import faulthandler
    import signal

    import discord
    import yarl

    discord.http.Route.BASE = os.environ["FAKE_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_DISCORD_GATEWAY"])

    from bot.__main__ import main

    faulthandler.register(signal.SIGUSR1)  # a hung test can ask the bot where it is

    sys.exit(main())
