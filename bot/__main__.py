"""`python -m bot`: check the settings, then run the bot until it is stopped."""

from __future__ import annotations

import logging
import sys

import discord
from pydantic import ValidationError

from bot.config import Settings, describe_settings_error


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as error:
        for line in describe_settings_error(error):
            print(f"Configuration error: {line}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from bot.app import VideoBot

    bot = VideoBot(settings)
    try:
        bot.run(settings.discord_token.get_secret_value(), log_handler=None)
    except discord.LoginFailure:
        print("Configuration error: DISCORD_TOKEN was refused by Discord", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
