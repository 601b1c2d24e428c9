"""`python -m bot`: check the settings, then run the bot until it is stopped."""

from __future__ import annotations

import sys

import discord
from pydantic import ValidationError

from bot.config import Settings, describe_settings_error
from bot.observability import configure_logging


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as error:
        for line in describe_settings_error(error):
            print(f"Configuration error: {line}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_level,
        secrets=[
            settings.discord_token.get_secret_value(),
            settings.segmind_api_key.get_secret_value(),
        ],
        json_lines=settings.log_format == "json",
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
