"""A job's life at the provider: submit, wait, download, then hand the video over.

The runner knows Segmind and the catalogue, not Discord: whoever shows jobs to people implements
`Reporter` and is told of each outcome.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.messages import describe_failure
from bot.models import VideoModel
from bot.polling import PollSchedule
from bot.queue import JobQueue, QueueLimits
from bot.segmind import JobResult, JobStatus, SegmindClient, SegmindError, VideoTooLarge

log = logging.getLogger(__name__)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED})


def new_job_id() -> str:
    return secrets.token_hex(6)


@dataclass(eq=False)
class Job:
    guild_id: int
    channel_id: int
    member_id: int
    model: VideoModel
    # The validated parameters, as they will be sent (the image already a URL).
    parameters: dict[str, Any]
    id: str = field(default_factory=new_job_id)
    state: JobState = JobState.QUEUED
    provider_state: str | None = None
    request_id: str | None = None
    created_at: float = field(default_factory=time.time)
    submitted_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    # What the Discord layer needs to reach the member again; opaque to the core.
    context: Any = None

    @property
    def prompt(self) -> str | None:
        return self.parameters.get("prompt")

    @property
    def seed(self) -> int | None:
        return self.parameters.get("seed")

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def payload(self) -> dict[str, Any]:
        return {**self.parameters, **self.model.fixed_payload}


class Reporter(Protocol):
    async def deliver(self, job: Job, video: Path, result: JobResult) -> None: ...

    async def failed(self, job: Job, message: str) -> None: ...

    async def cancelled(self, job: Job) -> None: ...


@dataclass
class JobRunner:
    segmind: SegmindClient
    reporter: Reporter
    poll_interval_max: float = 10.0
    download_max_bytes: int = 500 * 1024 * 1024
    download_dir: Path | None = None

    async def run(self, job: Job) -> None:
        """Carry one job to its end; every way out is reported."""
        try:
            await self._generate(job)
        except asyncio.CancelledError:
            self._finish(job, JobState.CANCELLED)
            await self.reporter.cancelled(job)
        except SegmindError as error:
            log.warning("job %s failed: %s", job.id, error, extra={"request_id": job.request_id})
            self._finish(job, JobState.FAILED, describe_failure(error))
            await self.reporter.failed(job, job.error or "")

    async def _generate(self, job: Job) -> None:
        job.state = JobState.SUBMITTING
        job.request_id = await self.segmind.submit(job.model.slug, job.payload())
        job.state, job.submitted_at = JobState.SUBMITTED, time.time()
        schedule = PollSchedule(job.model.typical_seconds, max_interval=self.poll_interval_max)

        async def note(status: JobStatus) -> None:
            job.provider_state = status.state

        result = await self.segmind.wait(
            job.request_id, schedule, submitted_at=job.submitted_at, on_status=note
        )
        job.state = JobState.COMPLETED
        try:
            video = await self.segmind.download(
                result.video_url, max_bytes=self.download_max_bytes, directory=self.download_dir
            )
        except VideoTooLarge as error:
            # The video exists; the link is still worth having.
            error.detail = result.video_url
            raise
        try:
            await self.reporter.deliver(job, video, result)
        finally:
            video.unlink(missing_ok=True)
        self._finish(job, JobState.DELIVERED)

    @staticmethod
    def _finish(job: Job, state: JobState, error: str | None = None) -> None:
        job.state, job.error, job.finished_at = state, error, time.time()


class CancelOutcome(enum.Enum):
    LEFT_QUEUE = "left the queue"
    STOPPED = "stopped"
    ALREADY_FINISHED = "already finished"


class JobService:
    """Every job of this process: queued fairly, run by the runner, cancellable, findable."""

    def __init__(self, runner: JobRunner, limits: QueueLimits | None = None) -> None:
        self.runner = runner
        self.queue: JobQueue[Job] = JobQueue(runner.run, limits)
        self._jobs: dict[str, Job] = {}

    def start(self) -> None:
        self.queue.start()

    async def close(self) -> None:
        await self.queue.close()

    def check_room(self, guild_id: int, member_id: int) -> None:
        self.queue.check_room(guild_id, member_id)

    def enqueue(self, job: Job) -> int:
        """Queue the job and return its place in line; raises QueueRefused."""
        position = self.queue.add(job)
        self._jobs[job.id] = job
        return position

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        return self.queue.position(job)

    def unfinished(self, guild_id: int | None = None, member_id: int | None = None) -> list[Job]:
        return [
            job
            for job in self._jobs.values()
            if not job.finished
            and guild_id in (None, job.guild_id)
            and member_id in (None, job.member_id)
        ]

    async def cancel(self, job: Job) -> CancelOutcome:
        if job.finished or not self.queue.cancel(job):
            return CancelOutcome.ALREADY_FINISHED
        if job.state is not JobState.QUEUED:
            return CancelOutcome.STOPPED  # the runner reports it as it unwinds
        job.state, job.finished_at = JobState.CANCELLED, time.time()
        await self.runner.reporter.cancelled(job)
        return CancelOutcome.LEFT_QUEUE
