"""`python -m bot` pointed at the loopback fake Discord, for tests that kill the bot.

The fake's addresses come from FAKE_DISCORD_API and FAKE_DISCORD_GATEWAY; everything else is
the real entry point with its real settings from the environment.
"""

from __future__ import annotations

import os
import sys

import discord
import yarl

discord.http.Route.BASE = os.environ["FAKE_DISCORD_API"]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_DISCORD_GATEWAY"])

from bot.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
