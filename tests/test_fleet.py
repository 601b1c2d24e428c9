"""A fleet's claims on the store (bot.jobs.fleet): each job to one process, a server's
concurrency and its members' turns over the whole fleet, a quiet process's work taken over once
its leases lapse, never before; messages leased the same way. On both backends."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.jobs.fleet import Fleet, ShardsTaken
from bot.jobs.job import Job
from bot.jobs.life import Event, Lifecycle, Limits
from bot.jobs.service import JobService
from bot.queue import QueueLimits
from bot.quotas import Quotas
from bot.store import Store
from tests.conftest import OpenStore
from tests.test_quotas import NeverRuns
from tests.test_store import a_job

LEASE = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def admitted(store: Store, **changes: object) -> Job:
    return (await Lifecycle(store).admit(a_job(**changes), Limits())).job


def fleet_of(store: Store, clock: Clock, guild_concurrency: int = 2, **options: object) -> Fleet:
    limits = QueueLimits(guild_concurrency=guild_concurrency)
    return Fleet(store, limits, lease_seconds=LEASE, clock=clock, **options)  # type: ignore[arg-type]


async def two_processes(open_store: OpenStore) -> tuple[Store, Clock, Fleet, Fleet]:
    """Two processes on one database (each with its own connection and shard), one clock."""
    one, two = await open_store(), await open_store()
    clock = Clock()
    first = fleet_of(one, clock, shard_count=2, shards=[0])
    return one, clock, first, fleet_of(two, clock, shard_count=2, shards=[1])


async def running_at_segmind(store: Store, fleet: Fleet) -> Job:
    """A job the fleet's process took and submitted (request "req-1")."""
    await admitted(store)
    [taken] = (await fleet.claim(capacity=1)).fresh
    life = Lifecycle(store)
    await life.apply(taken.id, Event.SUBMIT_STARTING)
    return (await life.apply(taken.id, Event.SUBMITTED, request_id="req-1")).job


async def test_processes_claiming_at_once_take_each_job_once_within_the_servers_limit(
    open_store: OpenStore,
) -> None:
    stores = [await open_store() for _ in range(3)]
    clock = Clock()
    for guild_id in (1, 2):
        for member_id in range(4):
            await admitted(stores[0], guild_id=guild_id, member_id=member_id)
    fleets = [fleet_of(store, clock, guild_concurrency=3) for store in stores]

    claims = await asyncio.gather(*(fleet.claim(capacity=4) for fleet in fleets * 2))

    taken = [job for claim in claims for job in claim.fresh]
    assert len({job.id for job in taken}) == len(taken)  # nobody took a job twice
    per_guild = {guild: sum(job.guild_id == guild for job in taken) for guild in (1, 2)}
    assert per_guild == {1: 3, 2: 3}  # each server's limit, counted over the fleet


async def test_members_take_turns_across_the_fleet_as_in_one_process(
    open_store: OpenStore,
) -> None:
    one, two = await open_store(), await open_store()
    clock = Clock()
    alice = [await admitted(one, member_id=10, parameters={"prompt": f"a{n}"}) for n in range(3)]
    bob = await admitted(one, member_id=20, parameters={"prompt": "b0"})
    fleets = [fleet_of(one, clock, guild_concurrency=1), fleet_of(two, clock, guild_concurrency=1)]

    order = []
    for turn in range(4):
        fleet = fleets[turn % 2]  # the turns alternate between processes
        [job] = (await fleet.claim(capacity=1)).fresh
        order.append(job.id)
        await fleet.release(job.id)
        await Lifecycle(one).apply(job.id, Event.CANCEL_REQUESTED)  # done: frees the slot

    assert order == [alice[0].id, bob.id, alice[1].id, alice[2].id]


async def test_a_quiet_processs_running_job_is_taken_over_once_its_lease_lapses(
    open_store: OpenStore,
) -> None:
    one, clock, first, second = await two_processes(open_store)
    await first.join()
    await second.join()
    job = await running_at_segmind(one, first)

    clock.now += LEASE - 1
    assert (await second.claim(capacity=5)).orphans == []  # still held
    await first.keep([job.id])  # renewed: held a lease longer
    clock.now += LEASE - 1
    assert (await second.claim(capacity=5)).orphans == []

    clock.now += 2  # the first process went quiet a whole lease ago
    [orphan] = (await second.claim(capacity=5)).orphans
    assert (orphan.id, orphan.request_id) == (job.id, "req-1")
    assert (await first.claim(capacity=5)).orphans == []  # now the second one's
    held = {p.id: p.jobs_held for p in await one.processes(clock.now)}
    assert held == {first.id: 0, second.id: 1}  # what the owner's /botstats shows


async def test_a_process_with_no_room_left_still_takes_over_a_quiet_ones_running_jobs(
    open_store: OpenStore,
) -> None:
    one, clock, first, second = await two_processes(open_store)
    taken = await running_at_segmind(one, first)

    clock.now += LEASE + 1  # the first process went quiet
    claimed = await second.claim(capacity=0)  # its own slots all taken

    assert [job.id for job in claimed.orphans] == [taken.id]  # polled on, within the lease
    assert claimed.fresh == []


async def test_a_stopping_process_keeps_its_messages_until_it_has_left(
    open_store: OpenStore,
) -> None:
    one, _, first, second = await two_processes(open_store)
    service = JobService(Lifecycle(one), Quotas(one), first.limits, NeverRuns(), first)
    await admitted(one)  # owes its status message
    now = time.time() + 10_000
    [row] = await one.due_messages(now, lease=first.lease)  # its upload under way, say

    await service.close()
    # Still held: let go while its upload goes on, the message would be posted twice.
    assert await second.store.due_messages(now, lease=second.lease) == []

    await service.leave_fleet()  # once this process sends nothing more
    assert [r.seq for r in await second.store.due_messages(now, lease=second.lease)] == [row.seq]


async def test_a_process_renews_its_leases_before_it_claims_any_work(
    open_store: OpenStore,
) -> None:
    one, clock, first, _ = await two_processes(open_store)
    await first.join()
    service = JobService(Lifecycle(one), Quotas(one), first.limits, NeverRuns(), first)
    clock.now += LEASE / 2

    service.keep_leases()  # at start-up, before Discord is ready (and the claims start)

    async def heard_from() -> bool:
        [record] = await one.processes(clock.now)
        return record.heartbeat_at == clock.now

    try:
        for _ in range(500):
            if await heard_from():
                break
            await asyncio.sleep(0.01)
        assert await heard_from()
    finally:
        await service.close()
        await service.leave_fleet()


async def test_a_process_that_leaves_frees_its_jobs_at_once(open_store: OpenStore) -> None:
    one, _, first, second = await two_processes(open_store)
    job = await admitted(one)
    [taken] = (await first.claim(capacity=1)).fresh
    assert (await second.claim(capacity=1)).fresh == []

    await first.leave()

    assert taken.id == job.id
    assert [j.id for j in (await second.claim(capacity=1)).fresh] == [job.id]


async def test_a_message_taken_by_one_process_is_not_sent_by_another_until_its_lease_lapses(
    open_store: OpenStore,
) -> None:
    one, _, first, second = await two_processes(open_store)
    job = await admitted(one)  # owes its status message
    now = time.time() + 10_000  # the message is long due

    [row] = await one.due_messages(now, lease=first.lease)
    assert row.job_id == job.id
    assert await second.store.due_messages(now, lease=second.lease) == []
    assert await one.due_messages(now, lease=first.lease) != []  # still its own

    later = now + LEASE + 1
    assert [r.seq for r in await second.store.due_messages(later, lease=second.lease)] == [row.seq]


async def test_a_process_for_shards_a_live_one_runs_refuses_to_join(
    open_store: OpenStore,
) -> None:
    one, two, three = await open_store(), await open_store(), await open_store()
    clock = Clock()
    await fleet_of(one, clock, shard_count=3, shards=[0, 1]).join()
    await fleet_of(two, clock, shard_count=3, shards=[2]).join()  # its own shard: welcome

    clash = fleet_of(three, clock, shard_count=3, shards=[1])
    clash.lease = type(clash.lease)(clash.id, 0.05)  # a short wait for a crashed predecessor
    with pytest.raises(ShardsTaken, match=r"shard\(s\) 0, 1 of 3"):
        await clash.join(poll=0.01)
