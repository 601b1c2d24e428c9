"""A job's public status message, rendered from the job's state at the moment it is sent."""

from __future__ import annotations

from dataclasses import dataclass

from bot.durations import DurationEstimate
from bot.formats import clock, progress_bar, quoted
from bot.jobs.job import Job, JobState


@dataclass(frozen=True)
class StatusText:
    """What the status message should be now: its text (None: delete it), and whether it
    still carries a Cancel button."""

    text: str | None
    cancellable: bool = False


def header(job: Job) -> str:
    defaults = ""
    if job.defaults_used:
        used = ", ".join(f"{option} {value}" for option, value in job.defaults_used.items())
        defaults = f"\n⚙️ Server defaults: {used}"
    return f"🎬 **{job.title}** for <@{job.member_id}>{quoted(job.prompt)}{defaults}"


def render_status(
    job: Job,
    place: tuple[int, int] | None,
    now: float,
    estimate: DurationEstimate | None = None,
) -> StatusText:
    top = header(job)
    state = job.state
    if state is JobState.QUEUED:
        if place is None:  # its turn came, but the provider asked the bot to wait
            return StatusText(f"{top}\n⏳ Waiting to be sent to the provider.", cancellable=True)
        position, waiting = place
        return StatusText(
            f"{top}\n⏳ Waiting in line: place {position} of {waiting}.", cancellable=True
        )
    if state is JobState.SUBMITTED and job.processing_at is not None and estimate is not None:
        running = now - job.processing_at
        left = estimate.left(running)
        done = running / (running + left) if running + left > 0 else 1.0
        return StatusText(
            f"{top}\n⚙️ Generating: {clock(running)} so far, about {clock(left)} left."
            f"\n{progress_bar(done)}",
            cancellable=True,
        )
    if state in (JobState.SUBMITTING, JobState.SUBMITTED):
        elapsed = now - (job.submitted_at or job.created_at)
        stage = "Queued at the provider" if job.provider_state == "QUEUED" else "Generating"
        usual = f", usually about {clock(job.model.typical_seconds)}" if job.model else ""
        return StatusText(f"{top}\n⚙️ {stage}: {clock(elapsed)} so far{usual}.", cancellable=True)
    if state is JobState.COMPLETED:
        return StatusText(f"{top}\n📤 Finished; posting the video…")
    if state is JobState.DELIVERED:
        return StatusText(None)  # the video itself is the news
    if state in (JobState.CANCELLED_SENDING, JobState.CANCELLED_RUNNING, JobState.CANCELLED):
        return StatusText(f"{top}\n🚫 Cancelled.")
    return StatusText(f"{top}\n❌ This video did not finish.")
