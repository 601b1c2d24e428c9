"""The jobs of this bot: admitted against quotas, stored, queued fairly, run, recovered."""

from __future__ import annotations

import asyncio
import enum
import logging

from bot.jobs import Job, JobRunner, JobState
from bot.observability import job_event
from bot.queue import JobQueue, QueueLimits, QueueRefused
from bot.quotas import Quotas
from bot.store import Store

log = logging.getLogger(__name__)

MAYBE_RAN = (
    "The bot restarted while this job was being sent to the provider, so it may or may not"
    " have run. It was not sent again, to avoid paying twice, and your credits were given back."
)


class CancelOutcome(enum.Enum):
    LEFT_QUEUE = "left the queue"
    STOPPED = "stopped"
    ALREADY_FINISHED = "already finished"
    TOO_LATE = "too late"


class JobService:
    def __init__(
        self,
        runner: JobRunner,
        store: Store,
        quotas: Quotas,
        limits: QueueLimits | None = None,
    ) -> None:
        self.runner = runner
        self.store = store
        self.quotas = quotas
        self.queue: JobQueue[Job] = JobQueue(runner.run, limits)
        self._jobs: dict[str, Job] = {}

    def start(self) -> None:
        self.queue.start()

    async def close(self) -> None:
        await self.queue.close()

    async def submit(self, job: Job) -> int:
        """Reserve credits, store and queue the job; returns its place in line.

        Raises QueueRefused or QuotaExceeded, having reserved and stored nothing.
        """
        self.queue.check_room(job.guild_id, job.member_id)
        await self.quotas.admit(job)
        try:
            position = self.queue.add(job)
        except QueueRefused:
            await self.store.discard_job(job.id)  # the queue filled up meanwhile
            raise
        self._jobs[job.id] = job
        job_event(job, "queued", position=position, credits=job.credits)
        return position

    async def recover(self) -> list[Job]:
        """Pick up every unfinished job of the last run, in the order they were made."""
        recovered = []
        for job in await self.store.unfinished_jobs():
            job.recovered = True
            self._jobs[job.id] = job
            job_event(job, "recovered")
            recovered.append(job)
            if job.state is JobState.SUBMITTING:
                # No request id was recorded: whether Segmind got it is unknowable.
                await self.runner.finish(job, JobState.FAILED, MAYBE_RAN)
            elif job.state is JobState.QUEUED:
                self.queue.add(job, force=True)
            else:
                self.queue.adopt(job)  # already running at the provider
        if recovered:
            log.info("recovered %d unfinished job(s)", len(recovered))
        return recovered

    async def find(self, job_id: str) -> Job | None:
        """A job of this run, or one finished before the last restart."""
        return self._jobs.get(job_id) or await self.store.job(job_id)

    def position(self, job: Job) -> int | None:
        return self.queue.position(job)

    def unfinished(self, guild_id: int | None = None, member_id: int | None = None) -> list[Job]:
        # Finished jobs leave memory here; find() still reaches them in the store.
        for job_id in [job_id for job_id, job in self._jobs.items() if job.finished]:
            del self._jobs[job_id]
        return [
            job
            for job in self._jobs.values()
            if guild_id in (None, job.guild_id) and member_id in (None, job.member_id)
        ]

    async def cancel(self, job: Job) -> CancelOutcome:
        if job.finished:
            return CancelOutcome.ALREADY_FINISHED
        if job.state is JobState.COMPLETED:
            return CancelOutcome.TOO_LATE  # made and paid for; it is being posted
        job.cancel_requested = True
        if self.queue.remove_waiting(job):
            await self.runner.finish(job, JobState.CANCELLED)
            return CancelOutcome.LEFT_QUEUE
        task = self.queue.stop_running(job)
        if task is None:
            return CancelOutcome.ALREADY_FINISHED
        reached_provider = job.state is not JobState.QUEUED
        await asyncio.wait([task])
        if not job.finished:  # cancelled before its first step: the runner never saw it
            await self.runner.finish(job, JobState.CANCELLED)
        return CancelOutcome.STOPPED if reached_provider else CancelOutcome.LEFT_QUEUE

    async def save(self, job: Job) -> None:
        await self.store.save_job(job)
