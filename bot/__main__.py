"""`python -m bot`: check the settings, then run the bot until it is stopped."""

from __future__ import annotations

import fcntl
import signal
import sys
from pathlib import Path
from typing import TextIO

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
            *([settings.database_url.get_secret_value()] if settings.database_url else []),
        ],
        json_lines=settings.log_format == "json",
    )
    # PostgreSQL takes turns itself; two processes on one SQLite file would run jobs twice.
    lock = True if settings.database_url else hold_database(settings.database_path)
    if lock is None:
        print(
            f"Another bot is already running on {settings.database_path}; stop it first.",
            file=sys.stderr,
        )
        return 1
    # Until the bot handles them itself (from its setup), SIGTERM stops it like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # The composition root: the one place the core reaches for the Discord adapter.
    from adapter.app import run

    return run(settings)


def hold_database(database: Path) -> TextIO | None:
    """Take the database for this process alone; two bots on one file would run jobs twice."""
    database.parent.mkdir(parents=True, exist_ok=True)
    handle = (database.parent / f"{database.name}.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle  # held until the process ends


if __name__ == "__main__":
    sys.exit(main())
