"""Credits per period: who may spend how much, and the reservation a job holds.

A job reserves its model's cost when it is queued, in the same statement that checks the limits
(see Store.admit_job); it keeps the credits when its video is delivered and gives them back when
it fails, is cancelled, is blocked or expires.
"""

from __future__ import annotations

import calendar
import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.jobs import Job
from bot.store import EVERYONE, Admission, GuildQuota, Store


class Period(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def period_bounds(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """The UTC [start, end) of the period containing `now`; weeks start on Monday."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        return midnight, midnight + timedelta(days=1)
    if period is Period.WEEK:
        start = midnight - timedelta(days=midnight.weekday())
        return start, start + timedelta(days=7)
    start = midnight.replace(day=1)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + timedelta(days=days)


class QuotaExceeded(Exception):
    """The job would pass a limit; the message says which, what is left and when it resets."""


@dataclass(frozen=True)
class Allowance:
    """One member's standing in the current period."""

    period: Period
    resets_at: datetime
    # Usage of the whole guild counts from here: the period's start or a later reset.
    guild_since: float
    member_limit: int | None
    member_used: int
    guild_limit: int | None
    guild_used: int

    @property
    def member_left(self) -> int | None:
        return None if self.member_limit is None else max(0, self.member_limit - self.member_used)

    @property
    def guild_left(self) -> int | None:
        return None if self.guild_limit is None else max(0, self.guild_limit - self.guild_used)


class Quotas:
    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))

    async def admit(self, job: Job) -> None:
        """Reserve the job's cost and store the job, or raise QuotaExceeded. Nothing in between."""
        now = self.clock()
        job.created_at = now.timestamp()
        job.credits = await self.store.model_cost(job.guild_id, job.model.slug)
        settings = await self.store.guild_quota(job.guild_id)
        start, _ = period_bounds(Period(settings.period), now)
        admission = Admission(
            member_limit=await self._member_limit(job.guild_id, job.member_id, settings),
            member_since=max(
                start.timestamp(), await self.store.reset_point(job.guild_id, job.member_id)
            ),
            guild_limit=settings.guild_limit,
            guild_since=max(
                start.timestamp(), await self.store.reset_point(job.guild_id, EVERYONE)
            ),
        )
        if not await self.store.admit_job(job, admission):
            raise QuotaExceeded(await self._refusal(job))

    async def _member_limit(
        self, guild_id: int, member_id: int, settings: GuildQuota
    ) -> int | None:
        """The member's own override if they have one, else the guild's default."""
        overridden, limit = await self.store.member_override(guild_id, member_id)
        return limit if overridden else settings.member_limit

    async def allowance(self, guild_id: int, member_id: int) -> Allowance:
        settings = await self.store.guild_quota(guild_id)
        period = Period(settings.period)
        start, end = period_bounds(period, self.clock())
        member_since = max(start.timestamp(), await self.store.reset_point(guild_id, member_id))
        guild_since = max(start.timestamp(), await self.store.reset_point(guild_id, EVERYONE))
        return Allowance(
            period=period,
            resets_at=end,
            guild_since=guild_since,
            member_limit=await self._member_limit(guild_id, member_id, settings),
            member_used=await self.store.usage(guild_id, member_since, member_id),
            guild_limit=settings.guild_limit,
            guild_used=await self.store.usage(guild_id, guild_since),
        )

    async def _refusal(self, job: Job) -> str:
        standing = await self.allowance(job.guild_id, job.member_id)
        cost = f"**/{job.model.command}** costs {_credits(job.credits)}"
        resets = f"<t:{int(standing.resets_at.timestamp())}:R>"
        if standing.member_left is not None and standing.member_left < job.credits:
            return (
                f"You have used {standing.member_used} of your {_credits(standing.member_limit)}"
                f" this {standing.period}, and {cost}; {standing.member_left} left."
                f" Your credits reset {resets}."
            )
        return (
            f"This server has used {standing.guild_used} of its"
            f" {_credits(standing.guild_limit)} this {standing.period}, and {cost};"
            f" {standing.guild_left} left. The budget resets {resets}."
        )


def _credits(amount: int | None) -> str:
    return f"{amount} credit" if amount == 1 else f"{amount} credits"
