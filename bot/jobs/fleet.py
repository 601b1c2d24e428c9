"""This process's part in a fleet: several bot processes sharing one PostgreSQL store.

Any process may run any job. A process takes a job under a lease (the job's `runner` and
`lease_until`) and renews it while it runs the job; a process that dies stops renewing, and once
its leases lapse a live process takes the jobs over: one watched at Segmind is polled again by
its request id, one caught mid-submit is ended as outcome unknown (never sent again), exactly
as after a restart. Messages owed (the outbox) are taken and renewed the same way.

The claim is one transaction, and every process's transactions take turns on one advisory lock
(`bot.database`), so two processes never take the same job, and a server's concurrency and its
members' turns are counted over the whole fleet, in the order one process would keep
(`bot.queue.GuildLine`). PostgreSQL's own locking does this rather than a job library
(procrastinate, pgqueuer): the claim has to sit in the same transaction as the job life's rows
(the job row is the queue entry, beside its ledger and outbox), and those libraries keep their
jobs in tables of their own.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.jobs.job import Job
from bot.queue import GuildLine, QueueLimits
from bot.store import Lease, ProcessRecord, Store, Transaction

log = logging.getLogger(__name__)

# A process not heard from for a day is forgotten (it shows in /botstats until then).
_FORGET_AFTER = 24 * 3600.0
# At most this many jobs of quiet processes taken over by one claim (the rest at the next).
_ORPHANS_PER_CLAIM = 100


class ShardsTaken(Exception):
    """A live process of the fleet already runs one of this process's shards."""


@dataclass(frozen=True)
class Claimed:
    # Jobs at (or on their way to) Segmind whose process went quiet: this one takes them over.
    orphans: list[Job]
    # Waiting jobs whose turn came: this one submits them.
    fresh: list[Job]


class Fleet:
    def __init__(
        self,
        store: Store,
        limits: QueueLimits,
        *,
        shard_count: int | None = None,
        shards: Iterable[int] | None = None,
        lease_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.limits = limits
        self.shard_count = shard_count
        self.shards = tuple(sorted(shards)) if shards is not None else None
        self.id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.lease = Lease(self.id, lease_seconds)
        self.clock = clock
        self.started_at = clock()
        # Every waiting job's (place, of how many) in its server's line, as of the last claim.
        self._places: dict[str, tuple[int, int]] = {}

    @property
    def lease_seconds(self) -> float:
        return self.lease.seconds

    # --- joining and leaving ---

    async def join(self, poll: float = 0.5) -> None:
        """Enter the fleet with this process's shards, or raise ShardsTaken.

        A process that died still looks alive until its heartbeat is a lease old, so a clash
        is waited out that long (a restart after a crash) before it counts as a live one.
        """
        waits = math.ceil(self.lease_seconds / poll) + 2
        for waited in itertools.count():
            clash = await self._clash()
            if clash is None:
                break
            if waited >= waits:
                raise ShardsTaken(
                    f"process {clash.id} already runs {shards_text(clash)} on this database"
                    f" (this one would run {shards_text(self._record())})"
                )
            await asyncio.sleep(poll)
        await self.store.register_process(
            self._record(), forget_before=self.clock() - _FORGET_AFTER
        )
        log.info("joined the fleet as %s with %s", self.id, shards_text(self._record()))

    async def leave(self) -> None:
        """Let go of every job and message at once, for the rest of the fleet to take."""
        await self.store.leave_fleet(self.id)

    async def _clash(self) -> ProcessRecord | None:
        now = self.clock()
        live = [
            other for other in await self.store.processes(now)
            if other.id != self.id and other.heartbeat_at >= now - self.lease_seconds
        ]  # fmt: skip
        return next((other for other in live if _overlap(other, self._record())), None)

    def _record(self) -> ProcessRecord:
        now = self.clock()
        return ProcessRecord(self.id, self.shard_count, self.shards, self.started_at, now)

    # --- leases ---

    async def keep(self, running: Iterable[str]) -> None:
        """Renew the leases of the jobs this process runs (and its messages); say it lives."""
        now = self.clock()
        await self.store.keep_leases(
            self.id, list(running), now=now, until=now + self.lease_seconds
        )

    async def release(self, job_id: str) -> None:
        await self.store.release_job(self.id, job_id)

    async def claim(self, capacity: int) -> Claimed:
        """Take the jobs of quiet processes, and up to `capacity` jobs in all: waiting ones
        whose turn came (each server's concurrency counted over the fleet)."""
        now = self.clock()
        until = now + self.lease_seconds
        async with self.store.transaction() as tx:
            # Whatever room is left: they run at Segmind already, and must be polled (or, caught
            # mid-submit, ended) within a lease of their process going quiet.
            orphans = await tx.orphans(now, _ORPHANS_PER_CLAIM)
            for job in orphans:
                await tx.take(job, self.id, until=until, served=None)
            fresh = await self._take_turns(tx, now, until, max(capacity - len(orphans), 0))
        if orphans:
            log.info("took over %d job(s) of processes gone quiet", len(orphans))
        return Claimed(orphans, fresh)

    async def _take_turns(
        self, tx: Transaction, now: float, until: float, capacity: int
    ) -> list[Job]:
        if capacity <= 0:
            return []
        waiting = await tx.unheld_waiting(now)
        lines = _lines(waiting, await tx.turns({job.guild_id for job in waiting}))
        running = await tx.running_per_guild(now)
        # A share of what waits, so the fleet's processes split the work (and a crash hits
        # fewer jobs); the others claim theirs within a poll.
        live = await tx.live_processes(now - self.lease_seconds)
        capacity = min(capacity, max(1, math.ceil(len(waiting) / max(live, 1))))
        taken: list[Job] = []
        progress = True
        while progress and len(taken) < capacity:
            progress = False
            # One job per server per pass, so servers share this process's slots fairly.
            for guild_id, line in lines.items():
                if len(taken) >= capacity:
                    break
                if line.waiting and running.get(guild_id, 0) < self.limits.guild_concurrency:
                    job = line.take_next()
                    await tx.take(job, self.id, until=until, served=line.turns)
                    running[guild_id] = running.get(guild_id, 0) + 1
                    taken.append(job)
                    progress = True
        self._places = {
            job.id: (place, len(line))
            for line in lines.values()
            for place, job in enumerate(line.in_turn_order(), start=1)
        }
        return taken

    def place(self, job: Job) -> tuple[int, int] | None:
        """(place in line, jobs waiting) of a waiting job, as the last claim saw the line."""
        return self._places.get(job.id)


def _lines(waiting: list[Job], turns: dict[int, dict[int, int]]) -> dict[int, GuildLine[Job]]:
    """Each server's line as one process would hold it: oldest server first (by its oldest
    waiting job), each member's jobs oldest first, the members' turns as stored."""
    lines: dict[int, GuildLine[Job]] = {}
    for job in waiting:
        line = lines.get(job.guild_id)
        if line is None:
            served = turns.get(job.guild_id, {})
            line = lines[job.guild_id] = GuildLine(
                served=dict(served), turns=max(served.values(), default=0)
            )
        line.waiting.setdefault(job.member_id, collections.deque()).append(job)
    return lines


def _overlap(one: ProcessRecord, other: ProcessRecord) -> bool:
    # Different splits of the shards cannot be compared: they count as a clash.
    if one.shard_count != other.shard_count or one.shards is None or other.shards is None:
        return True
    return bool(set(one.shards) & set(other.shards))


def shards_text(process: ProcessRecord) -> str:
    """The shards a process runs, in words."""
    if process.shards is None:
        return "every shard" if process.shard_count is None else f"all {process.shard_count} shards"
    listed = ", ".join(str(shard) for shard in process.shards)
    return f"shard(s) {listed} of {process.shard_count}"
