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

from bot.delivery import DeliveryRefused
from bot.messages import describe_failure
from bot.models import VideoModel
from bot.observability import job_event
from bot.polling import PollSchedule
from bot.segmind import JobStatus, SegmindClient, SegmindError, VideoTooLarge

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
    video_url: str | None = None
    # Set (and stored) just before the video is posted: after a crash, only a job with this set
    # may have been posted already.
    delivering_at: float | None = None
    credits: int = 0
    # How to reach the member again, kept with the job so that a restarted bot still can.
    interaction_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: float | None = None
    status_message_id: int | None = None
    filesize_limit: int | None = None
    # Not stored: what this process knows of the job.
    cancel_requested: bool = False
    recovered: bool = False

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
    """Whoever shows jobs to people: told of every outcome."""

    async def deliver(self, job: Job, video: Path, video_url: str) -> None: ...

    async def already_delivered(self, job: Job) -> bool: ...

    async def failed(self, job: Job, message: str) -> None: ...

    async def cancelled(self, job: Job) -> None: ...


class Journal(Protocol):
    """Where a job's progress is written before the step that depends on it."""

    async def save_job(self, job: Job) -> None: ...

    async def finish_job(self, job: Job) -> None: ...


# Discord may be down for a while; the video URL stays valid for days, so keep trying.
DELIVERY_RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0)


@dataclass
class JobRunner:
    segmind: SegmindClient
    journal: Journal
    reporter: Reporter | None = None
    poll_interval_max: float = 10.0
    download_max_bytes: int = 500 * 1024 * 1024
    download_dir: Path | None = None
    delivery_retry_delays: tuple[float, ...] = DELIVERY_RETRY_DELAYS

    async def run(self, job: Job) -> None:
        """Carry a job from wherever it stands to its end; every ending is reported.

        A job picked up after a restart resumes at its recorded state: a submitted one is polled
        again, a completed one delivered, and a queued one submitted.
        """
        try:
            if job.state is JobState.QUEUED:
                await self._submit(job)
            if job.state is JobState.SUBMITTED:
                await self._wait(job)
            if job.state is JobState.COMPLETED:
                await self._deliver(job)
        except asyncio.CancelledError:
            if not job.cancel_requested:
                raise  # the bot is stopping: the job stays as recorded, for the next start
            await self.finish(job, JobState.CANCELLED)
        except SegmindError as error:
            job_event(job, "provider_failure", logging.WARNING, reason=type(error).__name__)
            await self.finish(job, JobState.FAILED, describe_failure(error))
        except Exception as error:
            # A bug, a full disk, Discord refusing for good: the member still hears of it.
            log.exception("job %s broke", job.id)
            job_event(job, "broke", logging.ERROR, reason=type(error).__name__)
            message = describe_failure(error, video_url=job.video_url)
            await self.finish(job, JobState.FAILED, message)

    async def finish(self, job: Job, state: JobState, error: str | None = None) -> None:
        """Record the end (and settle the credits) first, then tell the member."""
        job.state, job.error, job.finished_at = state, error, time.time()
        await self.journal.finish_job(job)
        job_event(job, state.value, seconds=round(job.finished_at - job.created_at, 1))
        if self.reporter is None:
            return
        try:
            if state is JobState.CANCELLED:
                await self.reporter.cancelled(job)
            elif state is JobState.FAILED:
                await self.reporter.failed(job, error or "")
        except Exception:
            log.exception("could not tell the member about job %s", job.id)

    async def _submit(self, job: Job) -> None:
        # On disk before the POST: a crash from here on must never lead to a second submit.
        job.state = JobState.SUBMITTING
        await self.journal.save_job(job)
        job_event(job, "submitting")
        job.request_id = await self.segmind.submit(job.model.slug, job.payload())
        job.state, job.submitted_at = JobState.SUBMITTED, time.time()
        await self.journal.save_job(job)
        job_event(job, "submitted")

    async def _wait(self, job: Job) -> None:
        assert job.request_id is not None
        schedule = PollSchedule(job.model.typical_seconds, max_interval=self.poll_interval_max)

        async def note(status: JobStatus) -> None:
            job.provider_state = status.state

        result = await self.segmind.wait(
            job.request_id, schedule, submitted_at=job.submitted_at, on_status=note
        )
        job.state, job.video_url = JobState.COMPLETED, result.video_url
        await self.journal.save_job(job)
        job_event(job, "completed")

    async def _deliver(self, job: Job) -> None:
        assert job.video_url is not None and self.reporter is not None
        if job.delivering_at is not None and await self.reporter.already_delivered(job):
            await self.finish(job, JobState.DELIVERED)  # posted just before a crash
            return
        job.delivering_at = time.time()
        await self.journal.save_job(job)
        for attempt, pause in enumerate((*self.delivery_retry_delays, None)):
            # A failed attempt may have posted all the same (the answer was lost, say).
            if attempt and await self.reporter.already_delivered(job):
                break
            try:
                await self._download_and_post(job)
                break
            except (SegmindError, DeliveryRefused):
                raise
            except Exception:
                if pause is None:
                    raise
                log.exception("delivery of job %s failed (attempt %d)", job.id, attempt + 1)
                job_event(job, "delivery_retry", logging.WARNING, attempt=attempt + 1)
                await asyncio.sleep(pause)
        await self.finish(job, JobState.DELIVERED)

    async def _download_and_post(self, job: Job) -> None:
        assert job.video_url is not None and self.reporter is not None
        try:
            video = await self.segmind.download(
                job.video_url, max_bytes=self.download_max_bytes, directory=self.download_dir
            )
        except VideoTooLarge as error:
            error.detail = job.video_url  # the video exists; its link is still worth having
            raise
        try:
            await self.reporter.deliver(job, video, job.video_url)
        finally:
            video.unlink(missing_ok=True)
