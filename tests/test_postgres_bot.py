"""The whole bot on PostgreSQL: a member's video made, delivered and billed as on SQLite."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from adapter.app import VideoBot
from bot.config import Settings
from bot.healthcheck import problems
from bot.jobs.fleet import ShardsTaken
from bot.observability import Heartbeat
from bot.simulator import Simulator
from bot.store import Store
from tests.bot_world import bot_world, restarted
from tests.postgres import PostgresServer


async def test_a_video_is_delivered_once_and_billed_once_on_postgresql(
    simulator: Simulator, tmp_path: Path, postgres_url: str
) -> None:
    simulator.speed = 0.02
    async with bot_world(simulator, tmp_path / "bot.db", database_url=postgres_url) as world:
        alice = world.guild.add_member("alice")
        await world.slash(alice, "grok-video", {"prompt": "a lighthouse at dusk"})
        await world.fake.wait_for(lambda: len(world.videos()) == 1, timeout=60)
        await world.fake.wait_for(world.settled, timeout=60, message="the job ended")

        [job] = await world.bot.store.finished_videos(world.guild.id, alice.id, 10)
        assert job.state.value == "delivered"
        assert await world.bot.store.credit_states() == {job.id: (job.credits, "captured")}
    assert len(simulator.jobs) == 1  # one submit
    assert not (tmp_path / "bot.db").exists()  # nothing went to a SQLite file


async def test_a_restart_on_postgresql_picks_the_running_job_up_by_its_request_id(
    simulator: Simulator, tmp_path: Path, postgres_url: str
) -> None:
    simulator.speed = 0.02
    simulator.add_fault("slow", endpoint="file", delay=3)  # the video is slow to fetch
    async with bot_world(simulator, tmp_path / "bot.db", database_url=postgres_url) as world:
        alice = world.guild.add_member("alice")
        await world.slash(alice, "grok-video", {"prompt": "rain on a window"})
        await world.fake.wait_for(lambda: len(simulator.jobs) == 1, timeout=60)
        await world.bot.close()
        async with restarted(world, tmp_path / "bot.db", database_url=postgres_url) as again:
            await again.fake.wait_for(lambda: len(again.videos()) == 1, timeout=60)
            await again.fake.wait_for(again.settled, timeout=60, message="the job ended")
            totals = await again.bot.store.ledger_totals()
    assert len(simulator.jobs) == 1  # polled again, never submitted again
    assert (totals.reserved, totals.captured, totals.held) == (1, 1, 0)


async def test_a_second_bot_for_the_same_shards_refuses_to_start(
    simulator: Simulator, tmp_path: Path, postgres_url: str
) -> None:
    """Two processes on one Discord shard would both answer its commands."""
    async with bot_world(
        simulator, tmp_path / "one.db", database_url=postgres_url, job_lease_seconds=2
    ):
        second = Settings(
            _env_file=None, discord_token="fake-token", segmind_api_key="k",  # type: ignore[call-arg]
            database_url=postgres_url, database_path=tmp_path / "two.db", job_lease_seconds=2,
        )
        async with VideoBot(second) as bot:
            with pytest.raises(ShardsTaken, match="every shard"):
                await bot.setup_hook()


async def test_the_owners_botstats_shows_each_process_of_the_fleet(
    simulator: Simulator, tmp_path: Path, postgres_url: str
) -> None:
    async with bot_world(simulator, tmp_path / "bot.db", database_url=postgres_url) as world:
        world.bot.owner_id = world.manager.id
        stats = await world.reply_to(await world.slash(world.manager, "botstats"))
        fleet = world.bot.fleet
        assert fleet is not None

    assert "Fleet:" in stats
    assert f"`{fleet.id}` (this one): every shard, 0 job(s) held, heard" in stats


async def test_the_health_check_fails_when_postgresql_cannot_be_reached(
    tmp_path: Path, postgres: PostgresServer | None
) -> None:
    if postgres is None:
        pytest.skip("no PostgreSQL on this machine (.ci/run installs it)")
    own = PostgresServer(postgres.bin)  # a server of this test's own, to stop under the bot
    own.start()
    try:
        store = await Store.open(tmp_path / "bot.db", url=own.new_database())
        beat = Heartbeat(tmp_path / "health.json", {"database_writable": store.check_writable})
        await beat.write()
        healthy = json.loads((tmp_path / "health.json").read_text())
        own.stop()
        await beat.write()
        unhealthy = json.loads((tmp_path / "health.json").read_text())
    finally:
        own.stop()
    assert not [p for p in problems(healthy, time.time(), 90) if "database" in p]
    assert [p for p in problems(unhealthy, time.time(), 90) if "database is not writable" in p]
