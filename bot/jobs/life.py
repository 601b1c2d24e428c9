"""A job's life as one table: (state, event) -> next state, credit entry, messages owed.

Nothing else changes a job's state. `Lifecycle.apply` looks the pair up, and in one store
transaction writes the new state, the ledger entry and the outbox rows of the messages the
member is owed, so what was decided and what the member will be told can never drift apart.
A pair that is not in the table is refused, which is how races resolve: a cancel that arrives
after the video was made finds COMPLETED, which takes no cancel.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from bot.alerts import remaining_credits
from bot.jobs.job import ENDED, Job, JobState
from bot.observability import job_event

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)


class Event(enum.StrEnum):
    ADMITTED = "admitted"
    SUBMIT_STARTING = "submit_starting"  # the POST is about to be written
    SUBMITTED = "submitted"  # Segmind answered with a request id
    SUBMIT_REFUSED = "submit_refused"  # the answer proves nothing was accepted, for good
    SUBMIT_DEFERRED = "submit_deferred"  # ...nothing accepted, and worth trying again later
    SUBMIT_OUTCOME_UNKNOWN = "submit_outcome_unknown"  # sent, but no answer says what happened
    PROVIDER_QUEUED = "provider_queued"
    PROVIDER_PROCESSING = "provider_processing"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"  # FAILED by the provider's safety filter
    EXPIRED = "expired"  # the provider no longer has it, or polling had to give up
    CANCEL_REQUESTED = "cancel_requested"
    DELIVERED = "delivered"
    DELIVERED_AS_LINK = "delivered_as_link"  # the file could not be posted; its link was
    DELIVERY_FAILED = "delivery_failed"
    SERVER_LEFT = "server_left"
    MODEL_RETIRED = "model_retired"


class Credit(enum.StrEnum):
    RESERVE = "reserve"  # held against the member's and the server's limits
    CAPTURE = "capture"  # spent: the member got the video, or Segmind billed a cancelled run
    RELEASE = "release"  # given back


class Owed(enum.StrEnum):
    STATUS = "status"  # bring the public status message in line with the job's state
    NOTICE = "notice"  # tell the member, privately, how the job ended (the job's `error`)
    VIDEO = "video"  # post the video


@dataclass(frozen=True)
class Transition:
    to: JobState
    credit: Credit | None = None
    owed: tuple[Owed, ...] = ()
    # With this transition the member knows how the job ended (or will, once `owed` is sent).
    told: bool = False
    # The member can no longer be reached (the bot left the server): drop what is still owed.
    quiet: bool = False


def _t(to: JobState, credit: Credit | None = None, *owed: Owed, told: bool = False) -> Transition:
    return Transition(to, credit, owed, told)


S, E = JobState, Event
RESERVE, CAPTURE, RELEASE = Credit.RESERVE, Credit.CAPTURE, Credit.RELEASE
STATUS, NOTICE, VIDEO = Owed.STATUS, Owed.NOTICE, Owed.VIDEO
# What every job of a server the bot has left comes to; nobody is told.
_QUIET_END = Transition(S.CANCELLED, RELEASE, quiet=True)
_QUIET_RUN = Transition(S.CANCELLED_RUNNING, quiet=True)
_ENDS_TOLD = _t(S.FAILED, RELEASE, STATUS, NOTICE, told=True)

# The life of a job. `None` is the state of a job that does not exist yet.
TABLE: dict[tuple[JobState | None, Event], Transition] = {
    (None, E.ADMITTED): _t(S.QUEUED, RESERVE, STATUS),
    (S.QUEUED, E.SUBMIT_STARTING): _t(S.SUBMITTING),
    (S.QUEUED, E.CANCEL_REQUESTED): _t(S.CANCELLED, RELEASE, STATUS, told=True),
    (S.QUEUED, E.SUBMIT_REFUSED): _ENDS_TOLD,  # refused before sending, or on a last retry
    (S.QUEUED, E.SERVER_LEFT): _QUIET_END,
    # A model taken out of the catalogue: a job not yet sent cannot be; one that was is
    # still watched by its request id and posted.
    (S.QUEUED, E.MODEL_RETIRED): _ENDS_TOLD,
    (S.SUBMITTING, E.SUBMITTED): _t(S.SUBMITTED, None, STATUS),
    (S.SUBMITTING, E.SUBMIT_REFUSED): _ENDS_TOLD,
    (S.SUBMITTING, E.SUBMIT_DEFERRED): _t(S.QUEUED, None, STATUS),
    (S.SUBMITTING, E.SUBMIT_OUTCOME_UNKNOWN): _ENDS_TOLD,
    (S.SUBMITTING, E.CANCEL_REQUESTED): _t(S.CANCELLED_SENDING, None, STATUS, told=True),
    (S.SUBMITTING, E.SERVER_LEFT): Transition(S.CANCELLED_SENDING, quiet=True),
    (S.SUBMITTED, E.PROVIDER_QUEUED): _t(S.SUBMITTED, None, STATUS),
    (S.SUBMITTED, E.PROVIDER_PROCESSING): _t(S.SUBMITTED, None, STATUS),
    (S.SUBMITTED, E.COMPLETED): _t(S.COMPLETED, None, STATUS, VIDEO),
    (S.SUBMITTED, E.FAILED): _ENDS_TOLD,
    (S.SUBMITTED, E.BLOCKED): _ENDS_TOLD,
    (S.SUBMITTED, E.EXPIRED): _ENDS_TOLD,
    (S.SUBMITTED, E.CANCEL_REQUESTED): _t(S.CANCELLED_RUNNING, None, STATUS, told=True),
    (S.SUBMITTED, E.SERVER_LEFT): _QUIET_RUN,
    (S.COMPLETED, E.DELIVERED): _t(S.DELIVERED, CAPTURE, STATUS, told=True),
    (S.COMPLETED, E.DELIVERED_AS_LINK): _t(S.DELIVERED, CAPTURE, STATUS, told=True),
    (S.COMPLETED, E.DELIVERY_FAILED): _ENDS_TOLD,
    # Made and billed, with nowhere left to post it.
    (S.COMPLETED, E.SERVER_LEFT): Transition(S.CANCELLED, CAPTURE, quiet=True),
    # Cancelled once the submit was sent: Segmind decides what it costs, and the member was
    # told at Cancel, so these end without a word.
    (S.CANCELLED_SENDING, E.SUBMITTED): _t(S.CANCELLED_RUNNING),
    (S.CANCELLED_SENDING, E.SUBMIT_REFUSED): _t(S.CANCELLED, RELEASE),
    (S.CANCELLED_SENDING, E.SUBMIT_DEFERRED): _t(S.CANCELLED, RELEASE),
    (S.CANCELLED_SENDING, E.SUBMIT_OUTCOME_UNKNOWN): _t(S.CANCELLED, RELEASE),
    (S.CANCELLED_SENDING, E.SERVER_LEFT): Transition(S.CANCELLED_SENDING, quiet=True),
    (S.CANCELLED_RUNNING, E.PROVIDER_QUEUED): _t(S.CANCELLED_RUNNING),
    (S.CANCELLED_RUNNING, E.PROVIDER_PROCESSING): _t(S.CANCELLED_RUNNING),
    (S.CANCELLED_RUNNING, E.COMPLETED): _t(S.CANCELLED, CAPTURE),
    (S.CANCELLED_RUNNING, E.FAILED): _t(S.CANCELLED, RELEASE),
    (S.CANCELLED_RUNNING, E.BLOCKED): _t(S.CANCELLED, RELEASE),
    (S.CANCELLED_RUNNING, E.EXPIRED): _t(S.CANCELLED, CAPTURE),
    (S.CANCELLED_RUNNING, E.SERVER_LEFT): _QUIET_RUN,
}

# The job's fields an event may set, besides the state and the clock fields set below.
FACTS: dict[Event, frozenset[str]] = {
    E.SUBMITTED: frozenset({"request_id"}),
    E.COMPLETED: frozenset({"video_url"}),
    E.DELIVERED: frozenset({"video_message_id"}),
}
_REASONED = (
    E.SUBMIT_REFUSED, E.SUBMIT_DEFERRED, E.SUBMIT_OUTCOME_UNKNOWN, E.FAILED, E.BLOCKED,
    E.EXPIRED, E.DELIVERED_AS_LINK, E.DELIVERY_FAILED, E.MODEL_RETIRED,
)  # fmt: skip
FACTS.update({event: frozenset({"error", "failure"}) for event in _REASONED})
# The failure (an exception's name, `bot.segmind`) that says the account has no credits left.
OUT_OF_CREDITS = "InsufficientCredits"
_PROVIDER_STATES = {E.PROVIDER_QUEUED: "QUEUED", E.PROVIDER_PROCESSING: "PROCESSING"}


async def _record_duration(
    tx: Any, job: Job, metrics: Mapping[str, Any], *, at: float
) -> None:
    """How long the run took, for learning durations: the provider's own timings where it
    gave them, else the bracket the bot's polls saw (first PROCESSING, then COMPLETED)."""
    if job.submitted_at is None:
        return
    start = job.processing_at
    queued = start - job.submitted_at if start is not None else None
    processing = at - (start if start is not None else job.submitted_at)
    if isinstance(metrics.get("inference_time"), int | float):
        processing = float(metrics["inference_time"])
    if isinstance(metrics.get("queue_time"), int | float):
        queued = float(metrics["queue_time"])
    bucket = job.model.duration_bucket(job.parameters) if job.model else ""
    work = job.model.duration_work(job.parameters) if job.model else 1.0
    await tx.record_duration(job.slug, bucket, queued, max(processing, 0.0), at=at, work=work)


def decide(state: JobState | None, event: Event) -> Transition:
    """The table's answer for this pair, or TransitionRefused."""
    transition = TABLE.get((state, event))
    if transition is None:
        raise TransitionRefused(state, event)
    return transition


class TransitionRefused(Exception):
    """The job's state takes no such event (it moved on first, or never could)."""

    def __init__(self, state: JobState | None, event: Event, job_id: str | None = None) -> None:
        super().__init__(f"a {state or 'new'} job takes no {event} event")
        self.state, self.event, self.job_id = state, event, job_id


class UnknownJob(TransitionRefused):
    """No job has this id (it was pruned, or never existed)."""


class AdmissionRefused(Exception):
    """The job does not fit; `reason` says which limit held it back."""

    def __init__(self, reason: Refusal, count: int = 0) -> None:
        super().__init__(reason.value)
        self.reason, self.count = reason, count


class Refusal(enum.Enum):
    MEMBER_PENDING = "the member has as many jobs waiting or running as allowed"
    GUILD_QUEUE = "the server's queue is full"
    MEMBER_CREDITS = "the member's credits do not cover it"
    GUILD_CREDITS = "the server's budget does not cover it"


@dataclass(frozen=True)
class Limits:
    """What a new job is checked against, and since when usage counts (None: no limit)."""

    member_pending_max: int | None = None
    guild_queue_max: int | None = None
    member_credits: int | None = None
    member_since: float = 0.0
    guild_credits: int | None = None
    guild_since: float = 0.0


@dataclass(frozen=True)
class Applied:
    """What a transition did: the job as it now is, and the table's row that moved it."""

    job: Job
    before: JobState | None
    event: Event
    transition: Transition
    alerts: int = 0  # credit alerts its transaction wrote (bot.alerts)


Listener = Callable[[Applied], None]


class Lifecycle:
    """The one writer of job states, on top of the store's transactions."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Be told after every committed transition (to wake the sender, say)."""
        self._listeners.append(listener)

    async def admit(self, job: Job, limits: Limits) -> Applied:
        """Store a new job with its reservation, if every limit allows it, or raise
        AdmissionRefused having written nothing."""
        transition = decide(None, E.ADMITTED)
        async with self.store.transaction() as tx:
            await tx.check_room(job, limits)
            admitted = replace(job, state=transition.to)
            await tx.insert_job(admitted)
            await self._write(tx, admitted, transition, at=self.clock())
        return self._after(Applied(admitted, None, E.ADMITTED, transition))

    async def apply(
        self,
        job_id: str,
        event: Event,
        *,
        settles: int | None = None,
        settled_as: str = "sent",
        metrics: Mapping[str, Any] | None = None,
        **facts: Any,
    ) -> Applied:
        """Move the job by `event`, in one transaction, or raise TransitionRefused.

        `settles` names an outbox message whose fate this event reports (a posted video, or
        one that could not be), marked done as `settled_as` in the same transaction.
        `metrics` are the provider's own timings of a completed run, when it gave them.
        """
        allowed = FACTS.get(event, frozenset())
        if unexpected := set(facts) - allowed:
            raise ValueError(f"{event} does not set {sorted(unexpected)}")
        async with self.store.transaction() as tx:
            job = await tx.job(job_id)
            if job is None:
                raise UnknownJob(None, event, job_id)
            transition = TABLE.get((job.state, event))
            if transition is None:
                raise TransitionRefused(job.state, event, job_id)
            now = self.clock()
            changes = {**facts, **self._clock_fields(job, event, transition, now)}
            moved = replace(job, state=transition.to, **changes)
            await tx.update_job(job_id, {"state": transition.to.value, **changes})
            await self._write(tx, moved, transition, at=now)
            alerts = 0
            if event is E.COMPLETED:
                await _record_duration(tx, moved, metrics or {}, at=now)
                if (remaining := remaining_credits(metrics or {})) is not None:
                    alerts += await tx.credits_seen(remaining, at=now)
            if facts.get("failure") == OUT_OF_CREDITS:
                alerts += await tx.out_of_credits(at=now)
            if settles is not None:
                await tx.settle(settles, settled_as, at=now)
        return self._after(Applied(moved, job.state, event, transition, alerts))

    @staticmethod
    def _clock_fields(
        job: Job, event: Event, transition: Transition, now: float
    ) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if event in _PROVIDER_STATES:
            changes["provider_state"] = _PROVIDER_STATES[event]
        if event is E.SUBMITTED:
            changes["submitted_at"] = now
        if event is E.PROVIDER_PROCESSING and job.processing_at is None:
            changes["processing_at"] = now
        if transition.to in ENDED and job.state not in ENDED:
            changes["finished_at"] = now
        return changes

    @staticmethod
    async def _write(tx: Any, job: Job, transition: Transition, *, at: float) -> None:
        if transition.credit is not None:
            await tx.enter(job, transition.credit, at=at)
        if transition.quiet:
            await tx.drop_owed(job.id, at=at)
        for owed in transition.owed:
            await tx.owe(job.id, owed, at=at)

    def _after(self, applied: Applied) -> Applied:
        job, transition = applied.job, applied.transition
        details: dict[str, Any] = {"cause": applied.event.value}
        if transition.credit is not None:
            details["credit"] = f"{transition.credit.value}:{job.credits}"
        if job.failure and job.ended:
            details["reason"] = job.failure
        if applied.before != job.state:
            job_event(job, job.state.value, **details)
        else:  # news of the provider's progress, not a step of the job
            job_event(job, applied.event.value, logging.DEBUG, **details)
        for listener in self._listeners:
            listener(applied)
        return applied
