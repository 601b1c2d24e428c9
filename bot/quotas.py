"""Credits per period: who may spend how much, and what a model costs in a server.

A job reserves its model's cost when it is admitted, in the transaction that checks the limits
(`Lifecycle.admit`); the job's life then captures or releases it (`bot.jobs.life.TABLE`), and
every figure here is a sum over that ledger.
"""

from __future__ import annotations

import calendar
import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.formats import credits_text
from bot.jobs.job import Job
from bot.jobs.life import Limits, Refusal
from bot.models import CATALOGUE
from bot.refusals import Refused
from bot.store import EVERYONE, GuildQuota, Store


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


class QuotaExceeded(Refused):
    """The job would pass a limit; the message says which, what is left and when it resets."""


@dataclass(frozen=True)
class Allowance:
    """One member's standing in the current period."""

    period: Period
    resets_at: datetime
    # Usage of the whole guild counts from here: the period's start or a later reset.
    guild_since: float
    member_since: float
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

    def left_for_member(self) -> int | None:
        """What the member may still spend, whichever limit is nearer (None: no limit)."""
        left = [n for n in (self.member_left, self.guild_left) if n is not None]
        return min(left) if left else None


class Quotas:
    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))

    async def cost(self, guild_id: int, slug: str) -> int:
        costs = await self.store.model_costs(guild_id)
        model = CATALOGUE.get(slug)
        return costs.get(slug, model.default_cost if model else 1)

    async def costs(self, guild_id: int) -> dict[str, int]:
        """Every catalogue model's cost in this guild."""
        set_here = await self.store.model_costs(guild_id)
        return {slug: set_here.get(slug, m.default_cost) for slug, m in CATALOGUE.items()}

    async def limits(self, guild_id: int, member_id: int) -> Limits:
        """The credit limits a new job of this member is checked against."""
        standing = await self._standing(guild_id, member_id, with_usage=False)
        return Limits(
            member_credits=standing.member_limit,
            member_since=standing.member_since,
            guild_credits=standing.guild_limit,
            guild_since=standing.guild_since,
        )

    async def allowance(self, guild_id: int, member_id: int) -> Allowance:
        return await self._standing(guild_id, member_id, with_usage=True)

    async def _standing(self, guild_id: int, member_id: int, *, with_usage: bool) -> Allowance:
        settings = await self.store.guild_quota(guild_id)
        period = Period(settings.period)
        start, end = period_bounds(period, self.clock())
        member_since = max(start.timestamp(), await self.store.reset_point(guild_id, member_id))
        guild_since = max(start.timestamp(), await self.store.reset_point(guild_id, EVERYONE))
        member_used = guild_used = 0
        if with_usage:
            member_used = await self.store.usage(guild_id, member_since, member_id)
            guild_used = await self.store.usage(guild_id, guild_since)
        return Allowance(
            period=period,
            resets_at=end,
            guild_since=guild_since,
            member_since=member_since,
            member_limit=await self._member_limit(guild_id, member_id, settings),
            member_used=member_used,
            guild_limit=settings.guild_limit,
            guild_used=guild_used,
        )

    async def _member_limit(
        self, guild_id: int, member_id: int, settings: GuildQuota
    ) -> int | None:
        """The member's own override if they have one, else the guild's default."""
        overridden, limit = await self.store.member_override(guild_id, member_id)
        return limit if overridden else settings.member_limit

    async def refusal(self, job: Job, reason: Refusal) -> QuotaExceeded:
        """The refusal for a job its credits do not cover, saying what is left and when."""
        standing = await self.allowance(job.guild_id, job.member_id)
        cost = f"**/{job.command}** costs {credits_text(job.credits)}"
        resets = f"<t:{int(standing.resets_at.timestamp())}:R>"
        if reason is Refusal.MEMBER_CREDITS:
            return QuotaExceeded(
                f"You have used {standing.member_used} of your"
                f" {credits_text(standing.member_limit)} this {standing.period}, and {cost};"
                f" {standing.member_left} left. Your credits reset {resets}."
            )
        return QuotaExceeded(
            f"This server has used {standing.guild_used} of its"
            f" {credits_text(standing.guild_limit)} this {standing.period}, and {cost};"
            f" {standing.guild_left} left. The budget resets {resets}."
        )

