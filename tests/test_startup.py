"""A start-up that speaks plainly: the real `python -m bot`, and what it prints."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from adapter.startup import QuietDiscordLogs
from bot.simulator import Simulator
from tests.bot_process import ROOT, SCRIPT
from tests.fakediscord import FakeDiscord


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def start_bot(
    port: int, simulator: Simulator, tmp_path: Path, *, token: str = "fake-token", **extra: str
) -> tuple[asyncio.subprocess.Process, Path]:
    """`python -m bot` told that Discord is on `port` (where nothing may listen yet)."""
    log = tmp_path / "bot.log"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "FAKE_DISCORD_API": f"http://127.0.0.1:{port}/api/v10",
        "FAKE_DISCORD_GATEWAY": f"ws://127.0.0.1:{port}/gateway",
        "DISCORD_TOKEN": token,
        "SEGMIND_API_KEY": simulator.api_key,
        "SEGMIND_BASE_URL": simulator.url,
        "DATABASE_PATH": str(tmp_path / "bot.db"),
        **extra,
    }
    with log.open("w") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), env=env, cwd=tmp_path, stdout=output, stderr=output
        )
    return process, log


async def ended(process: asyncio.subprocess.Process, within: float = 30) -> int:
    try:
        async with asyncio.timeout(within):
            return await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def lines_appear(log: Path, text: str, count: int, within: float = 30) -> list[str]:
    async with asyncio.timeout(within):
        # Another process writes the file: nothing here could be woken by it.
        while len(found := [ln for ln in log.read_text().splitlines() if text in ln]) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return found


async def test_a_token_discord_refuses_is_one_line_naming_it(
    simulator: Simulator, tmp_path: Path
) -> None:
    async with FakeDiscord(token="the-right-token") as fake:
        process, log = await start_bot(fake._port, simulator, tmp_path, token="a-wrong-token")
        status = await ended(process)

    output = log.read_text().strip().splitlines()
    assert status == 1
    assert output == ["Configuration error: DISCORD_TOKEN was refused by Discord"]
    assert "a-wrong-token" not in log.read_text()


async def test_discord_unreachable_then_reachable_is_retried_a_line_at_a_time(
    simulator: Simulator, tmp_path: Path
) -> None:
    port = free_port()
    process, log = await start_bot(port, simulator, tmp_path)
    try:
        attempts = await lines_appear(log, "Discord is unreachable", 2)
        async with FakeDiscord(port=port) as fake:
            await fake.wait_until_connected(timeout=30)
            await lines_appear(log, "connected to Discord as", 1)
            process.send_signal(signal.SIGTERM)
            status = await ended(process)
    finally:
        if process.returncode is None:
            process.kill()

    text = log.read_text()
    assert status == 0
    assert "Traceback" not in text
    assert "voice will NOT be supported" not in text
    assert f"cannot connect to 127.0.0.1:{port}" in attempts[0]
    assert "attempt 1 failed, trying again in 1 s" in attempts[0]
    assert "attempt 2 failed, trying again in 2 s" in attempts[1]


async def test_a_limit_on_attempts_gives_up_with_one_line_and_a_failing_status(
    simulator: Simulator, tmp_path: Path
) -> None:
    port = free_port()
    process, log = await start_bot(port, simulator, tmp_path, DISCORD_CONNECT_ATTEMPTS="2")
    status = await ended(process)

    lines = log.read_text().strip().splitlines()
    assert status == 1
    assert "Traceback" not in log.read_text()
    assert len(lines) == 2  # the first failed attempt, then giving up
    assert "attempt 1 failed" in lines[0]
    assert lines[1].startswith("Discord is unreachable (cannot connect to 127.0.0.1:")
    assert lines[1].endswith("gave up after 2 attempts (DISCORD_CONNECT_ATTEMPTS)")


def test_a_reconnect_after_a_lost_connection_is_one_line_not_a_traceback() -> None:
    try:
        raise aiohttp.ClientConnectionError("Connection reset by peer")
    except aiohttp.ClientConnectionError:
        record = logging.LogRecord(
            "discord.client", logging.ERROR, __file__, 1, "Attempting a reconnect in %.2fs",
            (4.57,), sys.exc_info(),
        )  # fmt: skip

    assert QuietDiscordLogs().filter(record)
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert line == (
        "WARNING Discord connection lost (ClientConnectionError: Connection reset by peer);"
        " attempting a reconnect in 4.57s"
    )
