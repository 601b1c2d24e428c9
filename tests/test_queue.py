"""The queue on its own: fair turns, concurrency limits, taking a waiting job out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bot.queue import JobQueue, QueueLimits


@dataclass(eq=False)
class Work:
    id: str
    guild_id: int
    member_id: int
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Recorder:
    """Runs each job until the test lets it finish, noting the start order."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def run(self, work: Work) -> None:
        self.started.append(work.id)
        await work.done.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_members_take_turns_inside_a_guild() -> None:
    recorder = Recorder()
    queue: JobQueue[Work] = JobQueue(
        recorder.run, QueueLimits(guild_concurrency=1, member_pending_max=10)
    )
    queue.start()
    jobs = [Work(f"a{n}", 1, 100) for n in range(4)] + [Work("b0", 1, 200), Work("c0", 1, 300)]
    for job in jobs:
        queue.add(job)
    assert [job.id for job in queue.waiting(1)] == ["a0", "b0", "c0", "a1", "a2", "a3"]

    for _ in range(6):
        await settle()
        next(job for job in jobs if job.id == recorder.started[-1]).done.set()
    await settle()

    assert recorder.started == ["a0", "b0", "c0", "a1", "a2", "a3"]
    await queue.close()


async def test_guild_and_global_concurrency_limits_hold() -> None:
    recorder = Recorder()
    queue: JobQueue[Work] = JobQueue(
        recorder.run, QueueLimits(guild_concurrency=2, global_concurrency=3)
    )
    queue.start()
    for guild in (1, 2):
        for member in (10, 20, 30):
            queue.add(Work(f"g{guild}m{member}", guild, member))
    await settle()

    assert len(recorder.started) == 3  # the global limit
    per_guild = [sum(1 for job in recorder.started if job.startswith(g)) for g in ("g1", "g2")]
    assert sorted(per_guild) == [1, 2]  # both guilds got a turn, neither over its limit of 2
    await queue.close()


async def test_a_waiting_job_can_be_taken_out_and_a_running_one_cannot() -> None:
    recorder = Recorder()
    queue: JobQueue[Work] = JobQueue(recorder.run, QueueLimits(guild_concurrency=1))
    queue.start()
    running, waiting = Work("run", 1, 100), Work("wait", 1, 200)
    queue.add(running)
    queue.add(waiting)
    await settle()
    assert queue.position(waiting) == 1

    assert queue.remove_waiting(Work("wait", 1, 200))  # found by id: a fresh snapshot will do
    assert queue.position(waiting) is None
    assert not queue.remove_waiting(running)
    running.done.set()
    await settle()

    assert recorder.started == ["run"]
    await queue.close()


async def test_a_member_who_just_had_a_turn_waits_behind_a_newcomer() -> None:
    recorder = Recorder()
    queue: JobQueue[Work] = JobQueue(recorder.run, QueueLimits(guild_concurrency=1))
    queue.start()
    first = Work("a0", 1, 100)
    queue.add(first)
    await settle()  # a0 runs; alice's lane is empty now
    for job in (Work("a1", 1, 100), Work("a2", 1, 100), Work("b0", 1, 200)):
        queue.add(job)

    assert [job.id for job in queue.waiting(1)] == ["b0", "a1", "a2"]
    first.done.set()
    await settle()
    assert recorder.started == ["a0", "b0"]
    await queue.close()
