"""`python -m bot` pointed at the loopback fake Discord, for tests and benchmarks that run the bot
as a process of its own (to kill it, or to measure it).

Run as a script, it takes the fake's addresses from FAKE_DISCORD_API and FAKE_DISCORD_GATEWAY;
everything else is the real entry point with its real settings from the environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fakediscord import FakeDiscord

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
        "DATABASE_PATH": str(database),
        **{name.upper(): str(value) for name, value in settings.items()},
    }


if __name__ == "__main__":
    import discord
    import yarl

    discord.http.Route.BASE = os.environ["FAKE_DISCORD_API"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_DISCORD_GATEWAY"])

    from bot.__main__ import main

    sys.exit(main())
