"""Per-guild job queues with fair turns and concurrency limits.

The queue knows nothing of Discord or Segmind, and holds no truth about a job: the store does.
It only decides which waiting job runs next and hands it to the `run` coroutine it was given
(which finds out from the job's life whether the job still wants to run). Inside a guild members
take turns (round-robin), so one member's five jobs do not starve the others; guilds take turns
for the global slots too. How many jobs may wait is checked at admission, in the store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T", bound="QueuedItem")


class QueuedItem(Protocol):
    """What the queue needs of a job: who asked where, and a unique id."""

    id: str
    guild_id: int
    member_id: int


@dataclass(frozen=True)
class QueueLimits:
    guild_concurrency: int = 2
    global_concurrency: int = 8
    member_pending_max: int = 3
    guild_length_max: int = 25


@dataclass
class GuildLine(Generic[T]):
    """One server's line: its waiting jobs by member, its running ones, the members' turns.
    (A fleet builds one from the store for each claim, `bot.jobs.fleet`.)"""

    # member id -> that member's waiting jobs, oldest first
    waiting: dict[int, collections.deque[T]] = field(default_factory=dict)
    # job id -> (member id, the task running it)
    running: dict[str, tuple[int, asyncio.Task[None]]] = field(default_factory=dict)
    # member id -> when they last had a turn (a counter); the least recently served go first
    served: dict[int, int] = field(default_factory=dict)
    turns: int = 0

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self.waiting.values())

    def _members_in_turn_order(self) -> list[int]:
        # Never served first, then least recently served; ties keep their arrival order.
        return sorted(self.waiting, key=lambda member: self.served.get(member, -1))

    def in_turn_order(self) -> Iterator[T]:
        """Waiting jobs in the order they will start: one per member per round."""
        lanes = [list(self.waiting[member]) for member in self._members_in_turn_order()]
        for round_ in range(max((len(lane) for lane in lanes), default=0)):
            for lane in lanes:
                if round_ < len(lane):
                    yield lane[round_]

    def take_next(self) -> T:
        member = self._members_in_turn_order()[0]
        lane = self.waiting[member]
        job = lane.popleft()
        if not lane:
            del self.waiting[member]
        self.turns += 1
        self.served[member] = self.turns  # back of the line until everyone else had a turn
        return job


class JobQueue(Generic[T]):
    def __init__(
        self,
        run: Callable[[T], Awaitable[None]],
        limits: QueueLimits | None = None,
    ) -> None:
        self._run = run
        self.limits = limits or QueueLimits()
        self._guilds: dict[int, GuildLine[T]] = {}
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopped = False

    # --- Lifecycle ---

    def start(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="job-dispatcher")

    async def close(self) -> None:
        """Stop starting jobs and cancel the running ones (they stay recoverable elsewhere)."""
        tasks = [task for guild in self._guilds.values() for _, task in guild.running.values()]
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dispatcher = None

    # --- What callers do ---

    def add(self, job: T) -> int:
        """Queue a job; returns its 1-based place in its guild's line."""
        guild = self._guilds.setdefault(job.guild_id, GuildLine())
        guild.waiting.setdefault(job.member_id, collections.deque()).append(job)
        self._wake.set()
        return self.position(job) or 1

    def adopt(self, job: T) -> None:
        """Run a job at once, outside the line: it was already running before a restart."""
        self._guilds.setdefault(job.guild_id, GuildLine())
        self._start(job.guild_id, job)

    def position(self, job: T) -> int | None:
        """1-based place among the guild's waiting jobs, None once it has started or left."""
        guild = self._guilds.get(job.guild_id)
        if guild is None:
            return None
        for place, waiting in enumerate(guild.in_turn_order(), start=1):
            if waiting.id == job.id:
                return place
        return None

    def waiting(self, guild_id: int) -> list[T]:
        guild = self._guilds.get(guild_id)
        return list(guild.in_turn_order()) if guild else []

    def running_ids(self) -> list[str]:
        """The jobs this queue runs now."""
        return [job_id for guild in self._guilds.values() for job_id in guild.running]

    def remove_waiting(self, job: T) -> bool:
        """Take a job out of line before it starts; False if it was not waiting."""
        guild = self._guilds.get(job.guild_id)
        lane = guild.waiting.get(job.member_id) if guild else None
        if guild is None or lane is None:
            return False
        for waiting in lane:
            if waiting.id == job.id:
                lane.remove(waiting)
                break
        else:
            return False
        if not lane:
            del guild.waiting[job.member_id]
        self._wake.set()
        return True

    # --- The one dispatcher ---

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._start_what_fits()

    def stop_starting(self) -> None:
        """Start no more waiting jobs (a shutdown): they stay waiting, as stored."""
        self._stopped = True

    def _start_what_fits(self) -> None:
        if self._stopped:
            return
        started = True
        while started and self._running_count() < self.limits.global_concurrency:
            started = False
            # One job per guild per pass, so guilds share the global slots fairly.
            for guild_id, guild in list(self._guilds.items()):
                if self._running_count() >= self.limits.global_concurrency:
                    break
                if guild.waiting and len(guild.running) < self.limits.guild_concurrency:
                    self._start(guild_id, guild.take_next())
                    started = True
            self._rotate_guilds()

    def _start(self, guild_id: int, job: T) -> None:
        guild = self._guilds[guild_id]
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        guild.running[job.id] = (job.member_id, task)
        task.add_done_callback(lambda done: self._finished(guild_id, job.id, done))

    def _finished(self, guild_id: int, job_id: str, task: asyncio.Task[None]) -> None:
        guild = self._guilds[guild_id]
        guild.running.pop(job_id, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("job %s crashed", job_id, exc_info=error)
        if not guild.waiting and not guild.running:
            del self._guilds[guild_id]
        self._wake.set()

    def _running_count(self) -> int:
        return sum(len(guild.running) for guild in self._guilds.values())

    def _rotate_guilds(self) -> None:
        with contextlib.suppress(StopIteration):
            first = next(iter(self._guilds))
            self._guilds[first] = self._guilds.pop(first)
