"""Reaching Discord: a start-up that retries plainly, and discord.py's logs kept to one line.

With Discord unreachable (no network yet, a DNS failure, an outage) the bot tries again with
capped backoff, one log line per attempt, and gives up only after `DISCORD_CONNECT_ATTEMPTS`
(default: never). A token Discord refuses is a configuration error, said in one line. Once
connected, discord.py reconnects by itself; its reconnect attempts are logged as one line each
instead of a traceback, and its warnings about voice support (which the bot does not use) are
dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys

import aiohttp
import discord
from discord.utils import MISSING

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 1.0
RETRY_CAP_SECONDS = 60.0
# Failures that say Discord could not be reached, not that it refused the bot.
UNREACHABLE = (aiohttp.ClientError, OSError, TimeoutError, discord.DiscordServerError)


class GaveUp(Exception):
    """Discord stayed unreachable for every attempt allowed."""


async def log_in(client: discord.Client, token: str, attempts: int | None) -> None:
    """Log in, trying again while Discord is unreachable; raises LoginFailure or GaveUp."""
    for attempt in itertools.count(1):
        try:
            await client.login(token)
            return
        except discord.LoginFailure:
            raise
        except UNREACHABLE as error:
            await _forget_session(client)
            if attempts is not None and attempt >= attempts:
                raise GaveUp(
                    f"Discord is unreachable ({describe(error)}); gave up after {attempt}"
                    f" attempt{'s' if attempt > 1 else ''} (DISCORD_CONNECT_ATTEMPTS)"
                ) from None
            delay = min(FIRST_RETRY_SECONDS * 2 ** (attempt - 1), RETRY_CAP_SECONDS)
            log.warning(
                "Discord is unreachable (%s); attempt %d failed, trying again in %.0f s",
                describe(error), attempt, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)


async def _forget_session(client: discord.Client) -> None:
    """discord.py opens a new HTTP session at every login: close the failed one (and the
    connector it owns), so that retries leave nothing unclosed behind them."""
    await client.http.close()
    client.http.connector = MISSING


def describe(error: BaseException) -> str:
    """One line for the operator: what failed, without a traceback (and without the token,
    which these errors never carry)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect to {error.host}:{error.port}: {error.os_error.strerror or error}"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}".splitlines()[0]


class QuietDiscordLogs(logging.Filter):
    """On discord.py's client logger: voice warnings and the line before each login dropped,
    reconnect tracebacks folded into one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "voice will NOT be supported" in message or message == "logging in using static token":
            return False  # the bot's own line says what each attempt did
        if record.exc_info and message.startswith("Attempting a reconnect"):
            error = record.exc_info[1]
            cause = describe(error) if error is not None else "connection lost"
            record.msg = "Discord connection lost (%s); %s"
            record.args = (cause, message[0].lower() + message[1:])
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_discord_logs() -> None:
    logging.getLogger("discord.client").addFilter(QuietDiscordLogs())


def say_gave_up(error: GaveUp) -> None:
    print(str(error), file=sys.stderr)
