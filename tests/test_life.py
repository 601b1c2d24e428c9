"""The job's life on a real SQLite file: the table row by row, every other pair refused, and a
property test over random event sequences with restarts."""

from __future__ import annotations

import asyncio
import collections
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.jobs.job import ENDED, Job, JobState
from bot.jobs.life import (
    TABLE,
    Applied,
    Credit,
    Event,
    Lifecycle,
    Limits,
    Owed,
    Transition,
    TransitionRefused,
)
from bot.jobs.service import recovery_event
from bot.store import Store
from tests.conftest import OpenStore

FACTS: dict[Event, dict[str, Any]] = {
    Event.SUBMITTED: {"request_id": "r-1"},
    Event.COMPLETED: {"video_url": "https://files.example.test/v.mp4"},
}


def facts(event: Event) -> dict[str, Any]:
    return FACTS.get(event, {})


def a_job(member: int = 3) -> Job:
    return Job(1, 2, member, "grok-imagine-video", {"prompt": "waves"}, credits=2)


def paths_to_every_state() -> dict[JobState | None, list[Event]]:
    """The shortest event path from nothing to each state, found in the table itself."""
    paths: dict[JobState | None, list[Event]] = {None: []}
    frontier: collections.deque[JobState | None] = collections.deque([None])
    while frontier:
        state = frontier.popleft()
        for (source, event), transition in TABLE.items():
            if source == state and transition.to not in paths:
                paths[transition.to] = [*paths[state], event]
                frontier.append(transition.to)
    return paths


PATHS = paths_to_every_state()


@pytest.fixture
async def life(open_store: OpenStore) -> AsyncIterator[Lifecycle]:
    store = await open_store()
    yield Lifecycle(store)
    await store.close()


async def job_in(life: Lifecycle, state: JobState | None) -> Job:
    path = PATHS[state]
    job = (await life.admit(a_job(), Limits())).job
    for event in path[1:]:
        job = (await life.apply(job.id, event, **facts(event))).job
    return job


async def pending(life: Lifecycle, job_id: str) -> collections.Counter[Owed]:
    return collections.Counter(row.kind for row in await life.store.pending_messages(job_id))


def test_every_state_is_reachable() -> None:
    assert set(PATHS) == {None, *JobState}


@pytest.mark.parametrize(
    ("state", "event"),
    [pair for pair in TABLE if pair[0] is not None],
    ids=[f"{s}-{e}" for s, e in TABLE if s is not None],
)
async def test_each_row_of_the_table_moves_the_job_books_the_credit_and_owes_the_messages(
    life: Lifecycle, state: JobState, event: Event
) -> None:
    job = await job_in(life, state)
    entries_before = await life.store.ledger_entries(job.id)
    owed_before = await pending(life, job.id)
    row: Transition = TABLE[(state, event)]

    applied = await life.apply(job.id, event, **facts(event))

    stored = await life.store.job(job.id)
    assert stored is not None and stored.state is row.to is applied.job.state
    entries = await life.store.ledger_entries(job.id)
    added = entries[len(entries_before) :]
    assert added == ([(row.credit.value, 2)] if row.credit else [])
    owed = await pending(life, job.id)
    if row.quiet:
        assert owed == collections.Counter()
    else:
        for kind in (Owed.NOTICE, Owed.VIDEO):
            assert owed[kind] - owed_before[kind] == row.owed.count(kind)
        if Owed.STATUS in row.owed:
            assert owed[Owed.STATUS] == 1  # one pending status is enough: it shows the latest
    if row.to in ENDED:
        assert stored.finished_at is not None


ALL_PAIRS = [(state, event) for state in (None, *JobState) for event in Event]
REFUSED = [pair for pair in ALL_PAIRS if pair not in TABLE]


@pytest.mark.parametrize(("state", "event"), REFUSED, ids=[f"{s}-{e}" for s, e in REFUSED])
async def test_every_other_pair_is_refused_and_changes_nothing(
    life: Lifecycle, state: JobState | None, event: Event
) -> None:
    if state is None:
        with pytest.raises(TransitionRefused):
            await life.apply("no-such-job", event, **facts(event))
        return
    job = await job_in(life, state)
    entries = await life.store.ledger_entries(job.id)
    owed = await life.store.pending_messages(job.id)

    with pytest.raises(TransitionRefused):
        await life.apply(job.id, event, **facts(event))

    assert (await life.store.job(job.id)).state is state  # type: ignore[union-attr]
    assert await life.store.ledger_entries(job.id) == entries
    assert await life.store.pending_messages(job.id) == owed


async def test_an_event_may_set_only_its_own_facts(life: Lifecycle) -> None:
    job = await job_in(life, JobState.SUBMITTING)
    with pytest.raises(ValueError, match="does not set"):
        await life.apply(job.id, Event.SUBMITTED, request_id="r", credits=0)
    assert (await life.store.job(job.id)).state is JobState.SUBMITTING  # type: ignore[union-attr]


@pytest.mark.parametrize("first", ["cancel", "completion"])
async def test_concurrent_cancel_and_completion_resolve_to_one_story(
    life: Lifecycle, first: str
) -> None:
    """Whichever takes the store's lock first wins; the other is refused or becomes a quiet
    end, never both. Both are in flight together, asked in either order: which one the lock
    takes first is the database's to decide (PostgreSQL's connections race for it)."""
    job = await job_in(life, JobState.SUBMITTED)
    racers = {
        "cancel": life.apply(job.id, Event.CANCEL_REQUESTED),
        "completion": life.apply(job.id, Event.COMPLETED, **facts(Event.COMPLETED)),
    }
    order = [first, *(name for name in racers if name != first)]

    results = await asyncio.gather(*(racers[name] for name in order), return_exceptions=True)
    outcomes = dict(zip(order, results, strict=True))

    assert all(isinstance(o, Applied | TransitionRefused) for o in outcomes.values()), outcomes
    final = await life.store.job(job.id)
    assert final is not None
    entries = [entry for entry, _ in await life.store.ledger_entries(job.id)]
    owed = await pending(life, job.id)
    assert isinstance(outcomes["completion"], Applied)  # the provider's news is never refused
    if final.state is JobState.COMPLETED:  # the cancel came too late: the video will be posted
        assert isinstance(outcomes["cancel"], TransitionRefused)
        assert owed[Owed.VIDEO] == 1
        assert entries == ["reserve"]
    else:  # cancelled first: watched to its end, paid for, never posted
        assert isinstance(outcomes["cancel"], Applied)
        assert final.state is JobState.CANCELLED and owed[Owed.VIDEO] == 0
        assert entries == ["reserve", "capture"]


async def test_two_cancels_cancel_once(life: Lifecycle) -> None:
    job = await job_in(life, JobState.QUEUED)
    first, second = await asyncio.gather(
        life.apply(job.id, Event.CANCEL_REQUESTED),
        life.apply(job.id, Event.CANCEL_REQUESTED),
        return_exceptions=True,
    )
    assert [isinstance(o, TransitionRefused) for o in (first, second)].count(True) == 1
    assert [e for e, _ in await life.store.ledger_entries(job.id)] == ["reserve", "release"]


async def test_cancel_then_failed_at_the_provider_gives_the_credits_back(life: Lifecycle) -> None:
    job = await job_in(life, JobState.SUBMITTED)
    await life.apply(job.id, Event.CANCEL_REQUESTED)
    await life.apply(job.id, Event.FAILED, error="x", failure="JobFailed")
    assert [e for e, _ in await life.store.ledger_entries(job.id)] == ["reserve", "release"]
    assert (await pending(life, job.id))[Owed.NOTICE] == 0  # told once, at Cancel


# --- Every life the table allows, walked in full ---

RESTART = "restart"


def every_life() -> list[list[Event | str]]:
    """Every sequence of events the table takes, from admission until the job ends, using
    each (state, event) pair at most once, with a restart possible at any point (once)."""
    lives: list[list[Event | str]] = []

    def walk(job: Job, used: frozenset[Any], path: list[Event | str], restarted: bool) -> None:
        if job.ended:
            lives.append(path)
            return
        options = [pair for pair in TABLE if pair[0] is job.state and pair not in used]
        if not restarted:
            recovered = recovery_event(job)
            after = replace(job, state=TABLE[(job.state, recovered)].to) if recovered else job
            walk(after, used, [*path, RESTART], True)
        if not options:
            lives.append(path)
        for pair in options:
            moved = replace(job, state=TABLE[pair].to, **facts(pair[1]))
            walk(moved, used | {pair}, [*path, pair[1]], restarted)

    walk(replace(a_job(), state=JobState.QUEUED), frozenset(), [Event.ADMITTED], False)
    return lives


def test_every_life_books_credits_once_submits_once_and_tells_the_member_once() -> None:
    lives = every_life()
    assert len(lives) > 5000
    for life_ in lives:
        job = replace(a_job(), state=None)  # type: ignore[arg-type]
        entries: list[Credit] = []
        accepted = told = 0
        quiet = False
        for step in life_:
            event = recovery_event(job) if step == RESTART else step
            if event is None:
                continue
            transition = TABLE[(job.state, event)]  # type: ignore[index]
            job = replace(job, state=transition.to, **facts(event))
            entries += [transition.credit] if transition.credit else []
            accepted += event in (Event.SUBMITTED, Event.SUBMIT_OUTCOME_UNKNOWN)
            told += transition.told
            quiet = quiet or transition.quiet
        story = f"{[str(step) for step in life_]} -> {job.state}"
        assert entries[0] is Credit.RESERVE and entries.count(Credit.RESERVE) == 1, story
        assert len(entries) == (2 if job.ended else 1), story  # settled once, when it ends
        assert accepted <= 1, story
        # Once the bot has left the server nobody can be told; before that, exactly once.
        assert told == 1 if job.ended and not quiet else told <= 1, story


# --- The property: random event sequences on the store, restarts included ---

EVENTS = [*Event]
# (which job, which event, whether any event or one the job's state takes), or None: a restart.
# Mostly events the state takes, so that sequences go deep into the table.
Step = tuple[int, int, bool] | None


def takes(state: JobState) -> list[Event]:
    return [event for (source, event) in TABLE if source is state]


def as_the_sender(event: Event, owed: list[Any]) -> dict[str, Any]:
    """A video's fate is reported by the sender together with its outbox row, as it does."""
    videos = [message.seq for message in owed if message.kind is Owed.VIDEO]
    if not videos or event not in (
        Event.DELIVERED, Event.DELIVERED_AS_LINK, Event.DELIVERY_FAILED
    ):
        return {}
    posted = event is not Event.DELIVERY_FAILED
    return {"settles": videos[0], "settled_as": "sent" if posted else "undeliverable"}


async def run_sequence(steps: list[Step], directory: Path) -> dict[str, Any]:
    store = await Store.open(directory / "bot.db")
    life = Lifecycle(store)
    jobs = [(await life.admit(a_job(member=n), Limits())).job.id for n in range(6)]
    accepted: collections.Counter[str] = collections.Counter()
    cancel_replies: collections.Counter[str] = collections.Counter()
    quiet: set[str] = set()

    def note(job_id: str, event: Event, transition: Transition) -> None:
        if event in (Event.SUBMITTED, Event.SUBMIT_OUTCOME_UNKNOWN):
            accepted[job_id] += 1  # a submit that Segmind may have taken
        if event is Event.CANCEL_REQUESTED:
            cancel_replies[job_id] += 1  # the button's answer tells the member, not the outbox
        if transition.quiet:
            quiet.add(job_id)

    for step in steps:
        if step is None:  # a restart: a new store on the same file, then recovery
            await store.close()
            store = await Store.open(directory / "bot.db")
            life = Lifecycle(store)
            for job in await store.unfinished_jobs():
                if (recovered := recovery_event(job)) is not None:
                    applied = await life.apply(job.id, recovered)
                    note(job.id, recovered, applied.transition)
            continue
        index, choice, anything = step
        job_id = jobs[index]
        current = await store.job(job_id)
        assert current is not None
        options = EVENTS if anything else (takes(current.state) or EVENTS)
        event = options[choice % len(options)]
        try:
            applied = await life.apply(job_id, event, **facts(event), **as_the_sender(
                event, await store.pending_messages(job_id)
            ))
        except TransitionRefused:
            continue
        note(job_id, event, applied.transition)
    told: collections.Counter[str] = collections.Counter()
    for job_id in jobs:  # what the outbox holds for the member about how the job ended
        for kind, outcome in await store.message_outcomes(job_id):
            told[job_id] += kind == Owed.NOTICE or (kind == Owed.VIDEO and outcome == "sent")
        told[job_id] += cancel_replies[job_id]
    result = {
        "totals": await store.ledger_totals(),
        "entries": {job_id: await store.ledger_entries(job_id) for job_id in jobs},
        "jobs": {job_id: await store.job(job_id) for job_id in jobs},
        "accepted": accepted,
        "told": told,
        "quiet": quiet,
    }
    await store.close()
    return result


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(st.integers(0, 5), st.integers(0, 50), st.booleans()),
            st.tuples(st.integers(0, 5), st.integers(0, 50), st.just(False)),
            st.none(),
        ),
        max_size=80,
    )
)
def test_any_sequence_of_events_keeps_the_books_and_the_promises(steps: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        result = asyncio.run(run_sequence(steps, Path(directory)))

    # What the ledger holds is exactly the credits of the jobs not yet over.
    unfinished = sum(job.credits for job in result["jobs"].values() if not job.ended)
    assert result["totals"].held == unfinished
    for job_id, job in result["jobs"].items():
        entries = [entry for entry, _ in result["entries"][job_id]]
        assert entries.count(Credit.RESERVE.value) == 1
        settled = [e for e in entries if e != Credit.RESERVE.value]
        assert len(settled) <= 1, f"captured and released, or twice: {entries}"
        assert bool(settled) == job.ended, f"{job.state} with ledger {entries}"
        assert result["accepted"][job_id] <= 1, "submitted twice"
        if job.ended and job_id not in result["quiet"]:
            assert result["told"][job_id] == 1, f"told {result['told'][job_id]} times"
        else:
            assert result["told"][job_id] <= 1
