"""Quotas on a real SQLite file with a clock the test moves, admitted as the bot admits jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.jobs.job import Job
from bot.jobs.life import Event, Lifecycle
from bot.jobs.service import JobService
from bot.queue import QueueLimits
from bot.quotas import Period, QuotaExceeded, Quotas, period_bounds
from bot.store import EVERYONE
from tests.conftest import OpenStore

GUILD, OTHER_GUILD = 10, 20
ALICE, BOB = 100, 200


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 25, 15, 30, tzinfo=UTC))  # a Wednesday


class Admitting(Quotas):
    """Quotas, plus admission as the bot does it (the queue itself never runs here)."""

    service: JobService

    async def admit(self, job: Job) -> Job:
        return (await self.service.enqueue(job)).job


class NeverRuns:
    """The queue never starts in these tests: nothing is ever run or stopped."""

    async def run(self, job: Job) -> None:
        raise AssertionError("no job runs in these tests")

    def stop_submitting(self) -> None:
        pass

    async def wire_clear(self, timeout: float) -> bool:  # noqa: ASYNC109
        return True


@pytest.fixture
async def quotas(open_store: OpenStore, clock: Clock) -> AsyncIterator[Admitting]:
    store = await open_store()
    quotas = Admitting(store, clock)
    roomy = QueueLimits(member_pending_max=1000, guild_length_max=1000)
    quotas.service = JobService(Lifecycle(store), quotas, roomy, NeverRuns())
    yield quotas
    await store.close()


def job(member: int = ALICE, guild: int = GUILD, slug: str = "grok-imagine-video") -> Job:
    return Job(guild, 1, member, slug, {"prompt": "waves"})


async def admit_many(quotas: Admitting, count: int, **who: int) -> int:
    admitted = 0
    for _ in range(count):
        try:
            await quotas.admit(job(**who))
            admitted += 1
        except QuotaExceeded:
            pass
    return admitted


async def test_without_limits_everything_is_admitted(quotas: Admitting) -> None:
    assert await admit_many(quotas, 20) == 20


async def test_the_member_default_applies_to_everyone(quotas: Admitting) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=3)

    assert await admit_many(quotas, 5, member=ALICE) == 3
    assert await admit_many(quotas, 5, member=BOB) == 3


async def test_an_override_beats_the_default_either_way(quotas: Admitting) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=3)
    await quotas.store.set_member_override(GUILD, ALICE, 5)
    await quotas.store.set_member_override(GUILD, BOB, None)  # no limit at all

    assert await admit_many(quotas, 8, member=ALICE) == 5
    assert await admit_many(quotas, 8, member=BOB) == 8


async def test_the_guild_budget_caps_everyone_together(quotas: Admitting) -> None:
    await quotas.store.update_guild_quota(GUILD, guild_limit=4)

    assert await admit_many(quotas, 3, member=ALICE) == 3
    assert await admit_many(quotas, 3, member=BOB) == 1


async def test_costs_are_per_model_and_per_guild(quotas: Admitting) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=10)
    await quotas.store.set_model_cost(GUILD, "cog-video-5b-i2v", 4)

    assert await admit_many(quotas, 5, slug="cog-video-5b-i2v") == 2  # 8 of 10
    assert await admit_many(quotas, 5, slug="svd") == 2  # default cost 1: 10 of 10
    assert await quotas.cost(OTHER_GUILD, "cog-video-5b-i2v") == 1


async def test_a_refusal_says_which_limit_what_is_left_and_when_it_resets(
    quotas: Admitting, clock: Clock
) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=3, guild_limit=100)
    await quotas.store.set_model_cost(GUILD, "cog-video-5b-t2v", 2)
    await admit_many(quotas, 2)

    with pytest.raises(QuotaExceeded) as refusal:
        await quotas.admit(job(slug="cog-video-5b-t2v"))

    midnight = int(datetime(2026, 11, 26, tzinfo=UTC).timestamp())
    assert str(refusal.value) == (
        "You have used 2 of your 3 credits this day, and **/cog-video** costs 2 credits;"
        f" 1 left. Your credits reset <t:{midnight}:R>."
    )


async def test_a_refusal_by_the_guild_budget_says_so(quotas: Admitting) -> None:
    await quotas.store.update_guild_quota(GUILD, guild_limit=1)
    await admit_many(quotas, 1, member=BOB)

    with pytest.raises(QuotaExceeded, match="This server has used 1 of its 1 credit this day"):
        await quotas.admit(job(member=ALICE))


@pytest.mark.parametrize(
    ("period", "later", "fresh"),
    [
        (Period.DAY, timedelta(hours=8, minutes=29), False),  # 23:59 the same day
        (Period.DAY, timedelta(hours=8, minutes=30), True),  # midnight UTC
        (Period.WEEK, timedelta(days=4), False),  # Sunday
        (Period.WEEK, timedelta(days=5) - timedelta(hours=15, minutes=30), True),  # Monday 00:00
        (Period.MONTH, timedelta(days=5), False),  # 30 November
        (Period.MONTH, timedelta(days=6) - timedelta(hours=15, minutes=30), True),  # 1 December
    ],
)
async def test_usage_rolls_over_with_the_period(
    quotas: Admitting, clock: Clock, period: Period, later: timedelta, fresh: bool
) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=2, period=period.value)
    assert await admit_many(quotas, 2) == 2

    clock.now += later

    assert await admit_many(quotas, 1) == (1 if fresh else 0)


def test_period_bounds_are_utc_calendar_periods() -> None:
    moment = datetime(2026, 2, 11, 9, 0, tzinfo=UTC)
    assert period_bounds(Period.DAY, moment) == (
        datetime(2026, 2, 11, tzinfo=UTC),
        datetime(2026, 2, 12, tzinfo=UTC),
    )
    assert period_bounds(Period.WEEK, moment)[0] == datetime(2026, 2, 9, tzinfo=UTC)  # Monday
    assert period_bounds(Period.MONTH, moment) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )


async def test_released_credits_can_be_spent_again(quotas: Admitting) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=1)
    first = await quotas.admit(job())
    await quotas.service.life.apply(first.id, Event.CANCEL_REQUESTED)

    assert await admit_many(quotas, 2) == 1


async def test_credits_captured_by_a_cancelled_run_stay_spent(quotas: Admitting) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=1)
    first = await quotas.admit(job())
    life = quotas.service.life
    await life.apply(first.id, Event.SUBMIT_STARTING)
    await life.apply(first.id, Event.SUBMITTED, request_id="r-1")
    await life.apply(first.id, Event.CANCEL_REQUESTED)
    await life.apply(first.id, Event.COMPLETED, video_url="https://files.example.test/v.mp4")

    assert await admit_many(quotas, 1) == 0
    assert (await quotas.allowance(GUILD, ALICE)).member_used == 1


async def test_a_reset_starts_usage_from_zero_for_one_member_or_everyone(
    quotas: Admitting, clock: Clock
) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=1)
    await admit_many(quotas, 1, member=ALICE)
    await admit_many(quotas, 1, member=BOB)
    clock.now += timedelta(seconds=1)

    await quotas.store.reset_usage(GUILD, ALICE, clock().timestamp())
    clock.now += timedelta(seconds=1)
    assert await admit_many(quotas, 1, member=ALICE) == 1
    assert await admit_many(quotas, 1, member=BOB) == 0

    await quotas.store.reset_usage(GUILD, EVERYONE, clock().timestamp())
    clock.now += timedelta(seconds=1)
    assert await admit_many(quotas, 1, member=BOB) == 1


async def test_a_hundred_concurrent_admissions_against_a_limit_of_ten_admit_ten(
    quotas: Admitting,
) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=10)

    results = await asyncio.gather(
        *(quotas.admit(job()) for _ in range(100)), return_exceptions=True
    )

    assert sum(1 for result in results if isinstance(result, Job)) == 10
    assert all(isinstance(r, QuotaExceeded) for r in results if not isinstance(r, Job))
    assert (await quotas.allowance(GUILD, ALICE)).member_used == 10


async def test_guilds_are_isolated(quotas: Admitting) -> None:
    await quotas.store.update_guild_quota(GUILD, member_limit=1, guild_limit=1, period="month")
    await quotas.store.set_member_override(GUILD, ALICE, 0)
    await quotas.store.reset_usage(GUILD, EVERYONE, 0)

    assert await admit_many(quotas, 5, guild=OTHER_GUILD, member=ALICE) == 5
    standing = await quotas.allowance(OTHER_GUILD, ALICE)
    assert (standing.period, standing.member_limit, standing.guild_limit) == (
        Period.DAY, None, None
    )  # fmt: skip
    assert (await quotas.allowance(GUILD, ALICE)).member_used == 0
