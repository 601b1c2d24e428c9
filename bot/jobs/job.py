"""What a job is: who asked for which video where, and how far it has come.

A `Job` is a snapshot of one row of the store. Code reads it; only a transition of the job's
life (`bot.jobs.life`) writes a new state, and hands back the new snapshot.
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from bot.models import CATALOGUE, VideoModel


class JobState(enum.StrEnum):
    QUEUED = "queued"  # admitted, credits reserved, waiting for its turn (or to retry a submit)
    SUBMITTING = "submitting"  # the POST is about to be written, or on the wire
    SUBMITTED = "submitted"  # Segmind accepted it: a request id to poll
    COMPLETED = "completed"  # the video exists and is owed to the member
    # Cancelled while its submit was on the wire: the answer says whether Segmind took it.
    CANCELLED_SENDING = "cancelled_sending"
    # Cancelled after Segmind took it: polled quietly to its end, because Segmind bills a run
    # it finishes and not one that FAILED, and only its answer says which this is.
    CANCELLED_RUNNING = "cancelled_running"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


ENDED = frozenset({JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED})
# The member's work in progress: what counts against their room in the queue and `/jobs` lists.
IN_PROGRESS = (JobState.QUEUED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.COMPLETED)
# What a restart must pick up again.
UNFINISHED = (*IN_PROGRESS, JobState.CANCELLED_SENDING, JobState.CANCELLED_RUNNING)


def new_job_id() -> str:
    return secrets.token_hex(6)


@dataclass(eq=False)
class Job:
    guild_id: int
    channel_id: int
    member_id: int
    slug: str
    # The validated parameters, as they will be sent (the image already a URL).
    parameters: dict[str, Any]
    id: str = field(default_factory=new_job_id)
    state: JobState = JobState.QUEUED
    provider_state: str | None = None
    request_id: str | None = None
    video_url: str | None = None
    credits: int = 0
    created_at: float = field(default_factory=time.time)
    submitted_at: float | None = None
    # When the provider was first seen PROCESSING it (its start, bracketed by two polls).
    processing_at: float | None = None
    finished_at: float | None = None
    # What the member was told went wrong, and its kind for the operator (an exception name).
    error: str | None = None
    failure: str | None = None
    # How to reach the member again, kept with the job so that a restarted bot still can.
    interaction_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: float | None = None
    status_message_id: int | None = None
    filesize_limit: int | None = None
    # The input image's bytes kept beside the database (`bot.images.ImageKeeper`), and when the
    # member gave it: its link may have stopped working by the time the job is (re)sent.
    image_file: str | None = None
    image_taken_at: float | None = None
    # The message the video was posted in (None: sent as a link, or not posted).
    video_message_id: int | None = None
    # The options the server's defaults filled in (the member left them empty).
    defaults_used: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> VideoModel | None:
        """The catalogue entry; None for a model the catalogue no longer has."""
        return CATALOGUE.get(self.slug)

    @property
    def title(self) -> str:
        return self.model.title if self.model else self.slug

    @property
    def command(self) -> str:
        return self.model.command if self.model else self.slug

    @property
    def prompt(self) -> str | None:
        return self.parameters.get("prompt")

    @property
    def seed(self) -> int | None:
        return self.parameters.get("seed")

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def in_progress(self) -> bool:
        return self.state in IN_PROGRESS

    def payload(self) -> dict[str, Any]:
        """The JSON body Segmind receives, checked again against today's catalogue.

        Raises InvalidParameters when the catalogue no longer accepts what was stored.
        """
        model = self.model
        assert model is not None, "a job of a retired model is never submitted"
        return model.payload(model.validate(self.parameters))
