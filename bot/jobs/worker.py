"""What runs a job: submit it to Segmind, then poll it to its end.

The runner only reports what happened, as events of the job's life; every state, credit and
message follows from the table in `bot.jobs.life`. It knows nothing of Discord: the messages it
causes are rows of the outbox, sent by whoever drains it. A cancel does not stop the runner:
the table turns a cancelled job's later events into a quiet end, because Segmind bills a run
it finished and only its answer says whether it did.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from bot.durations import Durations
from bot.failures import describe_failure
from bot.images import ImageKeeper
from bot.jobs.job import Job, JobState
from bot.jobs.life import Event, Lifecycle, TransitionRefused
from bot.models import InvalidParameters
from bot.polling import PollSchedule
from bot.segmind import (
    ContentBlocked,
    JobFailed,
    JobStatus,
    JobTimedOut,
    RequestExpired,
    SegmindClient,
    SegmindError,
    SubmitOutcomeUnknown,
)

log = logging.getLogger(__name__)


class Stopping(Exception):
    """The bot is shutting down: no new submit starts (the job waits for the next run)."""

_PROVIDER_EVENTS = {"QUEUED": Event.PROVIDER_QUEUED, "PROCESSING": Event.PROVIDER_PROCESSING}
_WATCHED = (JobState.SUBMITTED, JobState.CANCELLED_RUNNING)
# Without a catalogue entry (a retired model still being watched) a minute is a fair guess.
_UNKNOWN_TYPICAL_SECONDS = 60.0


@dataclass
class JobRunner:
    segmind: SegmindClient
    life: Lifecycle
    images: ImageKeeper | None = None
    durations: Durations | None = None
    poll_interval_max: float = 30.0
    # Submits between "about to send" and their recorded answer: a shutdown waits for them.
    _on_the_wire: int = 0
    _wire_clear: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False

    def stop_submitting(self) -> None:
        self._stopping = True
        if not self._on_the_wire:
            self._wire_clear.set()

    async def wire_clear(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until no submit is on the wire (up to `timeout`); False if one still is."""
        if not self._on_the_wire:
            return True
        try:
            await asyncio.wait_for(self._wire_clear.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run(self, job: Job) -> None:
        """Carry a job from wherever it stands to the end of its time at Segmind.

        A job picked up after a restart resumes at its recorded state: a queued one is
        submitted, a submitted (or quietly cancelled) one polled again by its request id.
        """
        try:
            if job.state is JobState.QUEUED:
                job = await self._submit(job)
            if job.state in _WATCHED and job.request_id is not None:
                await self._watch(job)
        except TransitionRefused as moved_on:
            # Cancelled while it waited, or the bot left the server: the table said no more.
            log.info("job %s stopped: %s", job.id, moved_on)
        except Stopping:
            log.info("job %s waits for the next start: the bot is stopping", job.id)
        except Exception as error:
            # A bug or a full disk: the member still hears of it, and the credits settle.
            log.exception("job %s broke", job.id)
            await self._report_broken(job, error)

    async def _submit(self, job: Job) -> Job:
        if self._stopping:
            raise Stopping  # not even a budget slot is taken
        try:
            payload = await self._payload(job)
        except (InvalidParameters, SegmindError) as error:  # SegmindError: the image upload
            return await self._report(job, Event.SUBMIT_REFUSED, error)

        sending = False

        async def starting() -> None:
            nonlocal job, sending
            if self._stopping:
                raise Stopping
            # Counted before the commit: a shutdown arriving during it waits for this submit.
            sending = True
            self._on_the_wire += 1
            self._wire_clear.clear()
            job = (await self.life.apply(job.id, Event.SUBMIT_STARTING)).job

        async def deferred(error: SegmindError) -> None:
            nonlocal job, sending  # nothing was accepted: the job waits again, durably
            job = await self._report(job, Event.SUBMIT_DEFERRED, error)
            sending = False
            self._off_the_wire()

        assert job.model is not None
        expected = (await self._schedule(job)).estimate.typical_total()
        try:
            request_id = await self.segmind.submit(
                job.model.slug, payload, before_send=starting, after_refusal=deferred,
                expected_seconds=expected,
            )  # fmt: skip
        except SubmitOutcomeUnknown as error:
            job = await self._report(job, Event.SUBMIT_OUTCOME_UNKNOWN, error)
        except SegmindError as error:
            job = await self._report(job, Event.SUBMIT_REFUSED, error)
        else:
            job = (await self.life.apply(job.id, Event.SUBMITTED, request_id=request_id)).job
        finally:
            if sending:  # the answer, whatever it was, is recorded (or the bot gave up waiting)
                self._off_the_wire()
        return job

    def _off_the_wire(self) -> None:
        self._on_the_wire -= 1
        if not self._on_the_wire:
            self._wire_clear.set()

    async def _payload(self, job: Job) -> dict[str, Any]:
        """The payload, with an image link that still works (a kept copy if it no longer does)."""
        payload = job.payload()
        field_ = job.model.image_parameter if job.model else None
        if self.images is None or field_ is None or field_ not in payload:
            return payload
        payload[field_] = await self.images.usable_link(
            payload[field_], job.image_file, job.image_taken_at or job.created_at
        )
        return payload

    async def _watch(self, job: Job) -> None:
        assert job.request_id is not None
        schedule = await self._schedule(job)

        async def note(status: JobStatus) -> None:
            nonlocal job
            event = _PROVIDER_EVENTS.get(status.state)
            if event is not None and status.state != job.provider_state:
                job = (await self.life.apply(job.id, event)).job

        try:
            result = await self.segmind.wait(
                job.request_id,
                schedule,
                submitted_at=job.submitted_at,
                running_since=job.processing_at,
                on_status=note,
            )
        except ContentBlocked as error:
            await self._report(job, Event.BLOCKED, error)
        except JobFailed as error:
            await self._report(job, Event.FAILED, error)
        except (RequestExpired, JobTimedOut) as error:
            await self._report(job, Event.EXPIRED, error)
        except SegmindError as error:  # the key was revoked mid-run, a result without video...
            await self._report(job, Event.FAILED, error)
        else:
            await self.life.apply(
                job.id, Event.COMPLETED, video_url=result.video_url, metrics=result.metrics
            )

    async def _schedule(self, job: Job) -> PollSchedule:
        """Polls placed by what this model's runs have taken, once there are any."""
        ceiling = self.poll_interval_max
        if job.model is None:
            return PollSchedule.around(_UNKNOWN_TYPICAL_SECONDS, max_interval=ceiling)
        if self.durations is None:
            return PollSchedule.around(job.model.typical_seconds, max_interval=ceiling)
        estimate = await self.durations.estimate(job.model, job.parameters)
        return PollSchedule(estimate, max_interval=ceiling)

    async def _report(self, job: Job, event: Event, error: BaseException) -> Job:
        applied = await self.life.apply(
            job.id, event, error=describe_failure(error), failure=type(error).__name__
        )
        return applied.job

    async def _report_broken(self, job: Job, error: Exception) -> None:
        current = await self.life.store.job(job.id)
        if current is None or current.ended:
            return
        # In the middle of a submit nobody knows what was sent; elsewhere it simply failed.
        event = {
            JobState.QUEUED: Event.SUBMIT_REFUSED,
            JobState.SUBMITTING: Event.SUBMIT_OUTCOME_UNKNOWN,
            JobState.CANCELLED_SENDING: Event.SUBMIT_OUTCOME_UNKNOWN,
        }.get(current.state, Event.FAILED)
        try:
            await self._report(current, event, error)
        except TransitionRefused:
            log.warning("job %s broke in state %s and could not be ended", job.id, current.state)
