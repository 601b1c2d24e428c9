"""A job: what it is (`job`), its life as one table (`life`), what runs it (`worker`), the
service that admits, queues and recovers jobs (`service`) and the tidying behind them
(`housekeeping`)."""

from __future__ import annotations

from bot.jobs.job import ENDED, IN_PROGRESS, UNFINISHED, Job, JobState
from bot.jobs.life import Event, Lifecycle, TransitionRefused

__all__ = [
    "ENDED",
    "IN_PROGRESS",
    "UNFINISHED",
    "Event",
    "Job",
    "JobState",
    "Lifecycle",
    "TransitionRefused",
]
