"""A fleet of real `python -m bot` processes on one PostgreSQL database, one Discord shard each,
against the sharded fake Discord and the simulator; one of them is killed (SIGKILL) mid-run."""

from __future__ import annotations

import json
import time
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg

from bot.simulator import Simulator
from tests.bot_process import bot_process, slash_queued
from tests.fakediscord import FakeDiscord, FakeGuild
from tests.fakediscord.gateway import shard_of
from tests.test_restart import result_messages

SHARDS = 3
LEASE = 4.0
# Requests a minute for the whole fleet: less than the run needs in its first minute, more than
# any one process makes, so only a budget held in common keeps the fleet under it.
BUDGET = 60


def a_guild_on_each_shard(fake: FakeDiscord) -> list[FakeGuild]:
    """Guilds until every shard carries one (a guild's shard follows from its id)."""
    on: dict[int, FakeGuild] = {}
    while len(on) < SHARDS:
        guild = fake.add_guild(f"Studio {len(fake.guilds)}")
        on.setdefault(shard_of(guild.id, SHARDS), guild)
    return [on[shard] for shard in range(SHARDS)]


async def test_a_process_killed_mid_run_loses_nothing_and_its_jobs_move_within_the_lease(
    simulator: Simulator, tmp_path: Path, postgres_url: str
) -> None:
    simulator.speed = 0.08  # grok: about 5.6 s a video
    async with FakeDiscord() as fake, AsyncExitStack() as stack:
        guilds = a_guild_on_each_shard(fake)
        members = [(guild, guild.add_member(f"m{n}")) for guild in guilds for n in range(2)]
        processes = []
        for shard in range(SHARDS):
            home = tmp_path / f"process-{shard}"
            home.mkdir()
            processes.append(await stack.enter_async_context(bot_process(
                fake, simulator, home / "bot.db", home / "bot.log",
                database_url=postgres_url, shard_count=SHARDS, shard_ids=shard,
                job_lease_seconds=LEASE, segmind_requests_per_minute=BUDGET,
                queue_guild_concurrency=2, segmind_poll_interval_max=1.0,
            )))  # fmt: skip
        every_shard = [(n, SHARDS) for n in range(SHARDS)]
        await fake.wait_for(
            lambda: sorted(s for s in fake.live_shards if s) == every_shard,
            timeout=60, message="every shard connected",
        )  # fmt: skip
        await fake.wait_for(lambda: fake.commands, timeout=30, message="commands synced")
        db = await asyncpg.connect(postgres_url)
        stack.push_async_callback(db.close)

        async def every_process_claims() -> bool:
            # A process claims work once Discord has said where it is (its first renewal).
            running = await db.fetchval(
                "SELECT COUNT(*) FROM processes WHERE heartbeat_at > started_at"
            )
            return running == SHARDS

        await fake.wait_for(every_process_claims, timeout=60, message="every process claiming")
        prompts = [f"scene {n}" for n in range(len(members) * 2)]
        order = members * 2
        for prompt, (guild, member) in zip(prompts, order, strict=True):
            await slash_queued(fake, guild, member, "grok-video", {"prompt": prompt})

        # The victim: whichever process runs a job at Segmind first (who wins a claim varies).
        async def a_process_runs_a_job() -> bool:
            return bool(await db.fetchval(
                "SELECT COUNT(*) FROM jobs WHERE runner IS NOT NULL AND state = 'submitted'"
            ))  # fmt: skip

        await fake.wait_for(a_process_runs_a_job, timeout=60, message="a job at Segmind")
        victim, shards = (await db.fetch(
            "SELECT p.id, p.shards FROM processes AS p JOIN jobs AS j ON j.runner = p.id"
            " WHERE j.state = 'submitted' LIMIT 1"
        ))[0]  # fmt: skip
        killed = json.loads(shards)[0]
        processes[killed].kill()
        killed_at = time.monotonic()
        await processes[killed].wait()
        # As the kill left them: a job caught mid-submit cannot be known to be at Segmind or
        # not, and must end as such, never be sent again; a submitted one must be delivered.
        held = dict(await db.fetch(
            "SELECT id, state FROM jobs WHERE runner = $1 AND state IN ('submitted', 'submitting')",
            victim,
        ))  # fmt: skip
        assert held, "the victim ran nothing at Segmind when it was killed"
        unknown = {job_id for job_id, state in held.items() if state == "submitting"}

        async def taken_over() -> bool:
            # Each of the victim's jobs held by a live process, or moved on already.
            rows = await db.fetch(
                "SELECT id, runner, state FROM jobs WHERE id = ANY($1::text[])", list(held)
            )
            return all(runner not in (None, victim) or held[job_id] != state
                       for job_id, runner, state in rows)  # fmt: skip

        async def all_ended() -> bool:
            states = await db.fetch("SELECT state FROM jobs")
            return len(states) == len(prompts) and all(
                r[0] in ("delivered", "failed") for r in states
            )

        await fake.wait_for(taken_over, timeout=60, message="the victim's jobs taken over")
        takeover = time.monotonic() - killed_at

        async def settled() -> bool:
            owed = await db.fetchval("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL")
            return await all_ended() and owed == 0

        await fake.wait_for(settled, timeout=180, message="every job delivered")
        jobs = await db.fetch("SELECT id, guild_id, state, failure FROM jobs")
        ledger = dict(await db.fetch(
            "SELECT entry, SUM(credits) FROM ledger GROUP BY entry"
        ))  # fmt: skip

    by_id = {guild.id: guild for guild in guilds}
    delivered = {job_id for job_id, _, state, _ in jobs if state == "delivered"}
    assert {job_id for job_id, _, state, _ in jobs if state != "delivered"} == unknown
    assert all(failure == "SubmitOutcomeUnknown" for job_id, *_, failure in jobs
               if job_id in unknown)  # fmt: skip
    assert all(
        len(result_messages(fake, by_id[g], job_id)) == (job_id in delivered)
        for job_id, g, _, _ in jobs
    )  # each video once; none for a job whose submit's fate is unknown
    submitted = [job.payload.get("prompt") for job in simulator.jobs.values()]
    assert len(submitted) == len(set(submitted))  # one submit per job, none sent again
    assert len(delivered) <= len(submitted) <= len(prompts)
    # Balanced: every credit reserved was spent on a video or given back.
    assert ledger.get("reserve") == len(prompts)
    assert (ledger.get("capture"), ledger.get("release", 0)) == (len(delivered), len(unknown))
    assert simulator.busiest_window(60.0) <= BUDGET
    # The lease lapses at most LEASE after the kill; a live process claims every second.
    assert takeover <= LEASE + 3, f"taken over after {takeover:.1f} s"
