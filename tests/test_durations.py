"""Learned durations on a real SQLite file: buckets, fallbacks, recency, robustness, restarts."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.durations import PRIOR_SIGMA, Durations
from bot.jobs.job import Job
from bot.jobs.life import Event, Lifecycle, Limits
from bot.models import CATALOGUE
from bot.simulator import Simulator
from bot.store import Store
from tests.bot_world import bot_world
from tests.conftest import OpenStore

PIXVERSE = CATALOGUE["pixverse-5-video"]  # typical 67 s; learned by duration and quality
SHORT = {"prompt": "x", "duration": 5, "quality": "540p"}
LONG = {"prompt": "x", "duration": 8, "quality": "720p"}


@pytest.fixture
async def store(open_store: OpenStore) -> AsyncIterator[Store]:
    opened = await open_store()
    yield opened
    await opened.close()


MOMENTS = itertools.count(1_000_000)


async def runs(store: Store, parameters: dict, *seconds: float, queued: float = 5.0) -> None:
    """Finished runs, oldest first, as the job's life records them."""
    bucket = PIXVERSE.duration_bucket(parameters)
    work = PIXVERSE.duration_work(parameters)
    for taken in seconds:
        async with store.transaction() as tx:
            await tx.record_duration(
                PIXVERSE.slug, bucket, queued, taken, at=next(MOMENTS), work=work
            )


async def test_with_no_runs_the_catalogue_typical_time_stands(store: Store) -> None:
    estimate = await Durations(store).estimate(PIXVERSE, SHORT)

    assert estimate.processing.median == pytest.approx(67.0)
    assert estimate.processing.sigma == pytest.approx(PRIOR_SIGMA)
    assert estimate.queued is None and estimate.samples == 0


async def test_a_bucket_with_many_runs_is_its_own_and_buckets_differ(store: Store) -> None:
    await runs(store, SHORT, *([40.0, 42.0, 44.0] * 20))
    await runs(store, LONG, *([120.0, 125.0, 130.0] * 20))
    durations = Durations(store)

    short = await durations.estimate(PIXVERSE, SHORT)
    long = await durations.estimate(PIXVERSE, LONG)

    assert 40 < short.processing.median < 50
    assert 110 < long.processing.median < 135
    assert short.processing.sigma < 0.2  # the runs agree: a narrow distribution


async def test_a_bucket_with_few_runs_borrows_from_its_model(store: Store) -> None:
    await runs(store, LONG, *([120.0] * 60))
    await runs(store, SHORT, 40.0)  # one run of its own

    short = await Durations(store).estimate(PIXVERSE, SHORT)

    assert short.samples == 1
    assert 40 < short.processing.median < 120  # between its one run and the model's many


async def test_recent_runs_weigh_more_when_a_model_slows_down(store: Store) -> None:
    await runs(store, SHORT, *([60.0] * 80))
    await runs(store, SHORT, *([90.0] * 20))  # the provider became 1.5x slower

    estimate = await Durations(store).estimate(PIXVERSE, SHORT)

    assert estimate.processing.median > 80


async def test_a_bucket_follows_its_models_slow_down_before_it_has_runs_of_its_own(
    store: Store,
) -> None:
    await runs(store, LONG, *([120.0, 125.0, 130.0] * 7))
    await runs(store, SHORT, *([58.0, 60.0, 62.0] * 14))
    await runs(store, SHORT, *([90.0] * 12))  # the provider became 1.5x slower since
    durations = Durations(store)

    long = await durations.estimate(PIXVERSE, LONG)
    short = await durations.estimate(PIXVERSE, SHORT)

    assert long.samples == 21  # all of them from before the slow-down
    assert long.processing.median > 165  # about 1.5 x 125, not the 125 its own runs say
    assert short.processing.median == pytest.approx(90.0, rel=0.05)


async def test_a_few_odd_runs_barely_move_the_estimate(store: Store) -> None:
    await runs(store, SHORT, *([50.0] * 30))
    await runs(store, SHORT, 900.0, 3.0)

    estimate = await Durations(store).estimate(PIXVERSE, SHORT)

    assert estimate.processing.median == pytest.approx(50.0, rel=0.1)


async def test_a_run_of_alike_durations_does_not_hide_the_scatter_seen_before(
    store: Store,
) -> None:
    await runs(store, SHORT, *([60.0 * math.exp(0.15), 60.0 * math.exp(-0.15)] * 18))
    await runs(store, SHORT, *([60.0] * 6))  # the newest six happen to agree exactly

    estimate = await Durations(store).estimate(PIXVERSE, SHORT)

    assert estimate.processing.median == pytest.approx(60.0, rel=0.05)
    # The next run scatters as the model's runs do, not within the 3 % floor.
    assert 0.1 < estimate.processing.sigma < 0.3


async def test_warm_and_cold_starts_are_learned_as_two_kinds_of_wait(store: Store) -> None:
    for number in range(60):
        await runs(store, SHORT, 45.0, queued=120.0 if number % 3 == 0 else 2.0)

    queue = (await Durations(store).estimate(PIXVERSE, SHORT)).queued

    assert queue is not None
    assert queue.cdf(10.0) == pytest.approx(2 / 3, abs=0.08)  # the warm runs, started
    assert queue.cdf(60.0) - queue.cdf(10.0) < 0.05  # hardly any start between the kinds
    assert queue.median < 5.0  # a typical run starts as the warm ones do
    assert queue.quantile(0.9) > 60.0  # and one in three waits minutes


async def test_the_time_left_shrinks_as_a_run_goes_on(store: Store) -> None:
    await runs(store, SHORT, *([40.0, 50.0, 60.0] * 20))
    estimate = await Durations(store).estimate(PIXVERSE, SHORT)

    lefts = [estimate.left(running) for running in (0, 20, 40, 55)]

    assert lefts == sorted(lefts, reverse=True)
    assert lefts[0] == pytest.approx(estimate.processing.median, rel=0.01)
    assert estimate.left(10_000) == 0.0


async def test_a_completed_run_is_learned_from_what_the_bot_saw_and_survives_a_restart(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    moments = iter([100.0, 100.0, 110.0, 118.0, 160.0])  # admit, start, sent, running, done
    life = Lifecycle(store, clock=lambda: next(moments))
    job = (await life.admit(Job(1, 2, 3, PIXVERSE.slug, dict(LONG), credits=1), Limits())).job
    await life.apply(job.id, Event.SUBMIT_STARTING)
    await life.apply(job.id, Event.SUBMITTED, request_id="r-1")
    await life.apply(job.id, Event.PROVIDER_PROCESSING)
    await life.apply(job.id, Event.COMPLETED, video_url="https://files.example.test/v.mp4")
    await store.close()

    reopened = await open_store()
    [(_, _, queued, processing)] = await reopened.recent_durations(
        PIXVERSE.slug, PIXVERSE.duration_bucket(LONG), 10
    )
    estimate = await Durations(reopened).estimate(PIXVERSE, LONG)
    await reopened.close()

    assert (queued, processing) == (8.0, 42.0)  # first seen PROCESSING 8 s after the submit
    assert estimate.samples == 1
    guess = 67.0 * PIXVERSE.duration_work(LONG)  # the catalogue's, scaled by the work
    assert math.log(42.0) < estimate.processing.mu < math.log(guess)


async def test_the_providers_own_timings_win_over_the_bots_brackets(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    life = Lifecycle(store)
    job = (await life.admit(Job(1, 2, 3, PIXVERSE.slug, dict(SHORT), credits=1), Limits())).job
    for event in (Event.SUBMIT_STARTING, Event.SUBMITTED):
        await life.apply(job.id, event, **({"request_id": "r"} if event is Event.SUBMITTED else {}))
    await life.apply(
        job.id, Event.COMPLETED, video_url="https://files.example.test/v.mp4",
        metrics={"queue_time": 3.5, "inference_time": 61.25},
    )  # fmt: skip

    [(_, _, queued, processing)] = await store.recent_durations(PIXVERSE.slug, None, 10)
    assert (queued, processing) == (3.5, 61.25)
    await store.close()


# --- End to end: the real bot learns a model's duration and polls accordingly ---


def detection_delays(simulator: Simulator) -> dict[str, tuple[float, int]]:
    """Per request id: how long after its finish a poll first saw it COMPLETED, and the polls
    it took, as Segmind would have counted them."""
    seen: dict[str, tuple[float, int]] = {}
    for job in simulator.jobs.values():
        polls = [e for e in simulator.requests("status") if e.request_id == job.request_id]
        finished = job.created + job.duration
        found = next(e.at for e in polls if e.at >= finished)
        seen[job.request_id] = (found - finished, len(polls))
    return seen


async def test_the_bot_learns_how_long_a_model_takes_and_finds_its_videos_sooner(
    simulator: Simulator, tmp_path: Path
) -> None:
    # svd runs take 2 s at this simulator, where the catalogue guesses 30 s; polls may be as
    # far apart as in production.
    simulator.speed = 2.0 / CATALOGUE["svd"].typical_seconds
    async with bot_world(
        simulator, tmp_path / "bot.db", segmind_poll_interval_max=30.0, queue_guild_concurrency=8
    ) as world:

        members = [world.guild.add_member(f"member {n}") for n in range(8)]

        async def wave(count: int) -> dict[str, tuple[float, int]]:
            before, wanted = set(simulator.jobs), len(world.videos()) + count
            for member in members[:count]:
                attachment = world.image()
                await world.slash(member, "svd", {}, attachments={"image": attachment})
            await world.fake.wait_for(lambda: len(world.videos()) >= wanted, timeout=60)
            delays = detection_delays(simulator)
            return {rid: delays[rid] for rid in set(simulator.jobs) - before}

        guessing = await wave(8)
        assert len(await world.bot.store.recent_durations("svd", None, 100)) == 8
        learned = await wave(8)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    # On the guess, the first polls came long after these short runs were over ...
    assert mean([delay for delay, _ in guessing.values()]) > 2.0
    # ... once learned, each video is found soon after it is ready, for no more polls.
    assert mean([delay for delay, _ in learned.values()]) < 0.5 * mean(
        [delay for delay, _ in guessing.values()]
    )
    assert mean([polls for _, polls in learned.values()]) <= 1 + mean(
        [polls for _, polls in guessing.values()]
    )
