"""What an operator relies on: job logs with their fields and no secrets, health, /botstats."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.observability import configure_logging, health_file
from bot.simulator import Simulator
from tests.bot_world import bot_world
from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_every_job_event_is_logged_with_its_fields_and_no_secret(
    simulator: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    simulator.speed = 0.005
    configure_logging("DEBUG", secrets=["fake-token", API_KEY])  # discord.py's chatter included
    async with bot_world(simulator, tmp_path / "bot.db") as world:
        interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
        await world.delivered()
        await world.fake.wait_for(world.settled)
    logged = capsys.readouterr().err

    events = [line for line in logged.splitlines() if "event=" in line and " INFO " in line]
    names = [line.split("event=")[1].split()[0] for line in events]
    assert names == ["queued", "submitting", "submitted", "completed", "delivered"]
    request_id = next(iter(simulator.jobs))
    for line in events:
        assert f"guild={world.guild.id}" in line and "model=grok-imagine-video" in line
        assert "job=" in line
    assert all(f"request_id={request_id}" in line for line in events[2:])
    for secret in (API_KEY, "fake-token", interaction.token):
        assert secret not in logged
    assert "/webhooks/" in logged  # discord.py did log its webhook calls, token blanked


def healthcheck(database: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.healthcheck"],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "DATABASE_PATH": str(database)},
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_the_healthcheck_follows_discord_and_the_database(
    simulator: Simulator, tmp_path: Path
) -> None:
    database = tmp_path / "bot.db"
    beat = health_file(database)
    assert healthcheck(database).returncode == 1  # no heartbeat yet

    async with bot_world(simulator, database, health_interval_seconds=0.1) as world:
        await world.fake.wait_for(
            lambda: beat.exists() and json.loads(beat.read_text())["discord_connected"]
        )
        assert healthcheck(database).returncode == 0
        assert stat.S_IMODE(beat.stat().st_mode) == 0o600  # beside the database, as private

        blocker = sqlite3.connect(database, timeout=0, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            await world.fake.wait_for(
                lambda: json.loads(beat.read_text())["database_writable"] is False, timeout=15
            )
            failed = healthcheck(database)
            assert failed.returncode == 1 and "database is not writable" in failed.stderr
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await world.fake.wait_for(lambda: json.loads(beat.read_text())["database_writable"])

        # discord.py keeps is_ready() true while it reconnects; the heartbeat must not.
        world.bot.dispatch("disconnect")
        await world.fake.wait_for(lambda: not json.loads(beat.read_text())["discord_connected"])
        assert "not connected to Discord" in healthcheck(database).stderr
        world.bot.dispatch("resumed")
        await world.fake.wait_for(lambda: json.loads(beat.read_text())["discord_connected"])

    stopped = healthcheck(database)
    assert stopped.returncode == 1 and "not connected to Discord" in stopped.stderr


async def test_botstats_shows_this_servers_queue_jobs_failures_and_credits(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.005
    async with bot_world(simulator, tmp_path / "bot.db") as world:
        simulator.add_fault("content_blocked", endpoint="submit")
        await world.slash(world.alice, "grok-video", {"prompt": "blocked"})
        await world.slash(world.bob, "grok-video", {"prompt": "fine"})
        await world.delivered()
        await world.fake.wait_for(world.settled)

        refused = await world.reply_to(await world.slash(world.alice, "botstats", strict=False))
        stats = await world.reply_to(await world.slash(world.manager, "botstats"))
        await asyncio.sleep(0)

    assert "Manage Server" in refused
    assert "this server" in stats
    assert "Queue: 0 waiting, 0 running" in stats
    assert "/grok-video 1 delivered, 1 failed" in stats
    assert "safety filter" in stats
    assert "Credits spent: 1" in stats
    assert "Average time to video: /grok-video" in stats


async def test_botstats_counts_the_submits_whose_outcome_is_unknown(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.005
    async with bot_world(simulator, tmp_path / "bot.db") as world:
        simulator.add_fault("accepted_504", endpoint="submit")
        lost = await world.slash(world.alice, "grok-video", {"prompt": "lost answer"})
        assert "may or may not have started" in (await world.notice(lost)).content

        stats = await world.reply_to(await world.slash(world.manager, "botstats"))

    assert "unknown outcome (may have run and been billed unseen): 1" in stats
    assert len(simulator.requests("submit")) == 1 and len(simulator.jobs) == 1
