"""The jobs of this bot: admitted against quotas and queue room, queued fairly, recovered.

Everything here asks the job's life (`bot.jobs.life`) to move a job and keeps no state of its
own beyond the queue's order of turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.failures import ModelRetired, RestartedMidSubmit, describe_failure
from bot.jobs.fleet import Fleet
from bot.jobs.job import Job, JobState
from bot.jobs.life import (
    AdmissionRefused,
    Credit,
    Event,
    Lifecycle,
    Limits,
    Refusal,
    TransitionRefused,
)
from bot.queue import JobQueue, QueueLimits
from bot.quotas import Quotas
from bot.refusals import QueueFull
from bot.store import Store

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What carries a job through its time at Segmind (`bot.jobs.worker.JobRunner`)."""

    async def run(self, job: Job) -> None: ...

    def stop_submitting(self) -> None: ...

    async def wire_clear(self, timeout: float) -> bool: ...  # noqa: ASYNC109


# How many times a lease is renewed within its length.
_RENEWALS_PER_LEASE = 6


class CancelOutcome(enum.Enum):
    LEFT_QUEUE = "left the queue"  # never sent: nothing spent
    PROVIDER_HAS_IT = "the provider has it"  # Segmind may run it: it decides what it costs
    TOO_LATE = "too late"  # the video is made and being posted
    ALREADY_CANCELLED = "already cancelled"
    ALREADY_FINISHED = "already finished"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Admitted:
    job: Job
    place: int


class JobService:
    """The jobs of one process; with a `fleet`, of one process among several on one store,
    which takes its jobs from the store (`bot.jobs.fleet`) instead of keeping a line itself."""

    def __init__(
        self,
        life: Lifecycle,
        quotas: Quotas,
        limits: QueueLimits,
        runner: Runner,
        fleet: Fleet | None = None,
        *,
        fleet_poll: float = 1.0,
    ) -> None:
        self.runner = runner
        self.life = life
        self.store: Store = life.store
        self.quotas = quotas
        self.limits = limits
        self.fleet = fleet
        self.queue: JobQueue[Job] = JobQueue(
            runner.run if fleet is None else self._run_held, limits
        )
        # Jobs admitted or ended by other processes show only in the store: looked at this often.
        self._fleet_poll = fleet_poll
        self._fleet_wake = asyncio.Event()
        self._fleet_task: asyncio.Task[None] | None = None
        self._keeping: asyncio.Task[None] | None = None
        self._claiming = asyncio.Lock()
        self._stopping = False

    def start(self) -> None:
        self.queue.start()
        if self.fleet is not None and self._fleet_task is None:
            self.keep_leases()
            self._fleet_task = asyncio.create_task(self._take_fleet_work(), name="fleet-claims")

    def keep_leases(self) -> None:
        """In a fleet, renew this process's leases from now on: the messages the sender takes
        before Discord is ready (before `start`) are held under them too."""
        if self.fleet is not None and self._keeping is None:
            self._keeping = asyncio.create_task(self._renew_leases(), name="fleet-leases")

    async def close(self, grace: float = 0.0) -> None:
        """Stop: no new submit starts; one on the wire gets up to `grace` seconds to be answered
        and recorded; then everything else (polls, waits) simply stops, as recorded. A
        process of a fleet keeps its leases until `leave_fleet` (once nothing of it runs)."""
        self._stopping = True
        self.queue.stop_starting()
        self.runner.stop_submitting()
        if not await self.runner.wire_clear(grace):
            log.warning("a submit was still on the wire after %.0f s; it is left to"
                        " the next start as outcome unknown", grace)  # fmt: skip
        if self._fleet_task is not None:
            self._fleet_task.cancel()
            await asyncio.gather(self._fleet_task, return_exceptions=True)
        await self.queue.close()

    async def leave_fleet(self) -> None:
        """Let go of every job and message at once, for the others to take over: only once
        this process sends nothing more (a message let go while its upload is still under way
        would be posted again by another process)."""
        if self.fleet is None:
            return
        if self._keeping is not None:
            self._keeping.cancel()
            await asyncio.gather(self._keeping, return_exceptions=True)
        try:
            await self.fleet.leave()
        except Exception:  # the database is gone: the leases lapse by themselves
            log.exception("could not let go of this process's jobs; they move on when"
                          " their leases lapse")  # fmt: skip

    # --- a process of a fleet ---

    async def _renew_leases(self) -> None:
        assert self.fleet is not None
        while True:
            try:
                # Under the claim's lock: a job taken but not yet running would look like one
                # this process no longer holds, and be let go.
                async with self._claiming:
                    await self.fleet.keep(self.queue.running_ids())
            except Exception:  # the database hiccuped: renewed at the next turn
                log.exception("could not renew this process's leases; trying again shortly")
            # Often, so that a stall of the loop or the database has most of a lease to pass.
            await asyncio.sleep(self.fleet.lease_seconds / _RENEWALS_PER_LEASE)

    async def _take_fleet_work(self) -> None:
        while True:
            self._fleet_wake.clear()
            try:
                await self._claim()
            except Exception:  # the database hiccuped: the jobs are still there
                log.exception("could not take the fleet's work; trying again shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fleet_wake.wait(), timeout=self._fleet_poll)

    async def _claim(self) -> None:
        assert self.fleet is not None
        async with self._claiming:
            if self._stopping or self._fleet_task is None:
                return  # stopping, or not started yet (Discord has not said where the bot is)
            room = self.limits.global_concurrency - len(self.queue.running_ids())
            claimed = await self.fleet.claim(max(room, 0))
            for job in [*claimed.orphans, *claimed.fresh]:
                # A stop that came while the claim was under way: the job stays for others.
                if self._stopping or not await self._resume(job):
                    await self.fleet.release(job.id)

    async def _run_held(self, job: Job) -> None:
        assert self.fleet is not None
        await self.runner.run(job)
        # Ended, or at the video's delivery (the outbox's business): free for the others.
        await self.fleet.release(job.id)
        self._fleet_wake.set()

    # --- admission ---

    async def check_room(self, guild_id: int, member_id: int, slug: str) -> int:
        """What can be judged before any download: room in the queue, credits. Returns the cost.

        Raises QueueFull or QuotaExceeded; `enqueue` checks both again, atomically.
        """
        cost = await self.quotas.cost(guild_id, slug)
        pending, waiting = await self.store.room(guild_id, member_id)
        if pending >= self.limits.member_pending_max:
            raise _queue_full(Refusal.MEMBER_PENDING, pending, self.limits)
        if waiting >= self.limits.guild_length_max:
            raise _queue_full(Refusal.GUILD_QUEUE, waiting, self.limits)
        standing = await self.quotas.allowance(guild_id, member_id)
        left = standing.left_for_member()
        if left is not None and left < cost:
            probe = Job(guild_id, 0, member_id, slug, {}, credits=cost)
            reason = (
                Refusal.MEMBER_CREDITS
                if standing.member_left is not None and standing.member_left < cost
                else Refusal.GUILD_CREDITS
            )
            raise await self.quotas.refusal(probe, reason)
        return cost

    async def enqueue(self, job: Job) -> Admitted:
        """Reserve the job's credits, store it and queue it; returns it with its place in line.

        Raises QueueFull or QuotaExceeded, having reserved and stored nothing.
        """
        job.credits = await self.quotas.cost(job.guild_id, job.slug)
        job.created_at = self.quotas.clock().timestamp()
        credit = await self.quotas.limits(job.guild_id, job.member_id)
        limits = Limits(
            member_pending_max=self.limits.member_pending_max,
            guild_queue_max=self.limits.guild_length_max,
            member_credits=credit.member_credits,
            member_since=credit.member_since,
            guild_credits=credit.guild_credits,
            guild_since=credit.guild_since,
        )
        try:
            applied = await self.life.admit(job, limits)
        except AdmissionRefused as refused:
            if refused.reason in (Refusal.MEMBER_CREDITS, Refusal.GUILD_CREDITS):
                raise await self.quotas.refusal(job, refused.reason) from None
            raise _queue_full(refused.reason, refused.count, self.limits) from None
        if self.fleet is None:
            return Admitted(applied.job, self.queue.add(applied.job))
        try:
            await self._claim()  # its turn may have come already, here or in another process
        except Exception:  # the job is admitted all the same: the claim loop takes it up
            log.exception("could not claim work right after admitting job %s", applied.job.id)
            self._fleet_wake.set()
        where = self.fleet.place(applied.job)
        return Admitted(applied.job, where[0] if where else 1)

    # --- what members do ---

    async def cancel(self, job_id: str) -> CancelOutcome:
        try:
            applied = await self.life.apply(job_id, Event.CANCEL_REQUESTED)
        except TransitionRefused as refused:
            return _refused_cancel(refused.state)
        if applied.transition.credit is Credit.RELEASE:
            self.queue.remove_waiting(applied.job)
            return CancelOutcome.LEFT_QUEUE
        return CancelOutcome.PROVIDER_HAS_IT

    async def find(self, job_id: str) -> Job | None:
        return await self.store.job(job_id)

    async def in_progress(self, guild_id: int, member_id: int) -> list[Job]:
        return await self.store.jobs_in_progress(guild_id, member_id)

    async def finished_videos(self, guild_id: int, member_id: int, limit: int = 10) -> list[Job]:
        return await self.store.finished_videos(guild_id, member_id, limit)

    def place(self, job: Job) -> tuple[int, int] | None:
        """(place in line, jobs waiting) while the job waits in its server's line."""
        if self.fleet is not None:
            return self.fleet.place(job)
        position = self.queue.position(job)
        if position is None:
            return None
        return position, len(self.queue.waiting(job.guild_id))

    # --- what happens to servers and models ---

    async def server_left(self, guild_id: int) -> int:
        """The bot was removed: waiting jobs are released unsent, running ones end quietly."""
        ended = 0
        for job in await self.store.unfinished_jobs(guild_id):
            try:
                applied = await self.life.apply(job.id, Event.SERVER_LEFT)
            except TransitionRefused:
                continue  # moved on meanwhile
            self.queue.remove_waiting(applied.job)
            ended += 1
        log.info("left guild %s: %d unfinished job(s) let go", guild_id, ended)
        return ended

    async def servers_left_meanwhile(
        self, present: set[int], carried: Callable[[int], bool] = lambda guild_id: True
    ) -> None:
        """Discord does not replay a removal the bot missed while it was down: a server with
        unfinished jobs that is not among the bot's servers now was left meanwhile. (Only a
        server this process's shards carry can be judged here.)"""
        unfinished = {job.guild_id for job in await self.store.unfinished_jobs()}
        gone = {guild_id for guild_id in unfinished if carried(guild_id)} - present
        for guild_id in gone:
            await self.server_left(guild_id)

    async def recover(self) -> list[Job]:
        """Pick up every unfinished job of the last run, in the order they were made. (A
        process of a fleet takes the jobs of processes gone quiet as it claims work.)"""
        if self.fleet is not None:
            return []
        recovered = []
        for job in await self.store.unfinished_jobs():
            recovered.append(job)
            try:
                await self._resume(job)
            except TransitionRefused:
                log.warning("job %s could not be resumed from %s", job.id, job.state)
        if recovered:
            log.info("recovered %d unfinished job(s)", len(recovered))
        return recovered

    async def _resume(self, job: Job) -> bool:
        """Run the job on from its recorded state; False if it had to end instead (or is
        past Segmind: a COMPLETED job's video is in the outbox, which the sender drains)."""
        event = recovery_event(job)
        if event is not None:
            error = ModelRetired() if event is Event.MODEL_RETIRED else RestartedMidSubmit()
            await self.life.apply(
                job.id, event, error=describe_failure(error), failure=_failure_name(event, error)
            )
            return False
        if job.state is JobState.QUEUED:
            if self.fleet is None:
                self.queue.add(job)
            else:
                self.queue.adopt(job)  # its turn came in the fleet's line
            return True
        if job.state in (JobState.SUBMITTED, JobState.CANCELLED_RUNNING):
            self.queue.adopt(job)  # already running at the provider
            return True
        return False


def recovery_event(job: Job) -> Event | None:
    """What a restart must record about an unfinished job before anything runs it, if anything.

    A waiting job whose model left the catalogue is retired (one already at Segmind is still
    watched and posted: that needs only its request id); a job caught mid-submit, with no
    request id recorded, may or may not be running at Segmind, which nobody can find out: it
    is never sent again.
    """
    if job.model is None and job.state is JobState.QUEUED:
        return Event.MODEL_RETIRED
    if job.state in (JobState.SUBMITTING, JobState.CANCELLED_SENDING):
        return Event.SUBMIT_OUTCOME_UNKNOWN
    return None


def _failure_name(event: Event, error: Exception) -> str:
    # Counted with the submits whose answer was lost, for the operator's /botstats.
    return "SubmitOutcomeUnknown" if event is Event.SUBMIT_OUTCOME_UNKNOWN else type(error).__name__


def _refused_cancel(state: JobState | None) -> CancelOutcome:
    if state is None:
        return CancelOutcome.UNKNOWN
    if state is JobState.COMPLETED:
        return CancelOutcome.TOO_LATE
    if state in (JobState.CANCELLED_SENDING, JobState.CANCELLED_RUNNING, JobState.CANCELLED):
        return CancelOutcome.ALREADY_CANCELLED
    return CancelOutcome.ALREADY_FINISHED


def _queue_full(reason: Refusal, count: int, limits: QueueLimits) -> QueueFull:
    if reason is Refusal.MEMBER_PENDING:
        return QueueFull(
            f"You already have {count} jobs waiting or running here, the most allowed"
            f" ({limits.member_pending_max}). Try again when one has finished."
        )
    return QueueFull(
        f"This server's queue is full ({limits.guild_length_max} jobs waiting)."
        " Try again in a few minutes."
    )
