"""The account-wide request budget every Segmind call draws from."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol


class BudgetRecord(Protocol):
    """Where the budget writes what it spends, so a restart continues the same window."""

    async def record_send(self, at: float) -> None: ...

    async def record_hold(self, until: float) -> None: ...


class RequestBudget:
    """At most `limit` requests in any `period` seconds, shared by every job of the bot.

    A sliding log of the last `limit` send times: a caller waits until the oldest of them is
    more than a period old. Waiters queue on a lock, so they are served in arrival order and a
    busy job cannot starve the others. `margin` widens the window a little, because a request
    reaches Segmind a moment after it leaves and Segmind counts arrivals, not departures.

    After Segmind answers 429, nothing is sent until the reset it names; then, for one window,
    requests are paced evenly (a window divided by the limit apart) instead of all leaving at
    the reset and provoking the next 429.

    Times are wall-clock (`time.time`), so that the log and a pending reset written to `record`
    mean the same after a restart.
    """

    def __init__(
        self,
        limit: int,
        period: float = 60.0,
        *,
        margin: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_grant: Callable[[float], None] | None = None,
        record: BudgetRecord | None = None,
    ) -> None:
        """`clock` and `sleep` are the time it runs on (a virtual one in tests); `on_grant` is
        told the moment of every slot it grants; `record` keeps the log across restarts."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window = period + margin
        self.record = record
        self._clock = clock
        self._sleep = sleep
        self._on_grant = on_grant
        self._sent: collections.deque[float] = collections.deque(maxlen=limit)
        self._turn = asyncio.Lock()
        self._resume_at = 0.0
        self._paced_until = 0.0

    def restore(self, sent: Iterable[float], resume_at: float = 0.0) -> None:
        """Continue where the last run stopped: its send times, and a reset it was waiting for."""
        now = self._clock()
        # A send "in the future" means the clock was set back since: count it as now.
        self._sent.extend(min(moment, now) for moment in sorted(sent)[-self.limit :])
        if resume_at + self.window > now:  # waiting for the reset, or still pacing after it
            self._pause_until(resume_at)

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""
        async with self._turn:
            # The wait is for a moment in time, not for an event: sleeping until it is right.
            while (wait := self.waiting_time()) > 0:
                await self._sleep(wait)
            granted = self._clock()
            self._sent.append(granted)
            if self.record is not None:
                await self.record.record_send(granted)
            if self._on_grant is not None:
                self._on_grant(granted)

    async def hold_until(self, moment: float) -> None:
        """Send nothing before `moment`: Segmind said the account is rate limited until then."""
        if moment <= self._resume_at:
            return
        self._pause_until(moment)
        if self.record is not None:
            await self.record.record_hold(moment)

    def _pause_until(self, moment: float) -> None:
        self._resume_at = moment
        self._paced_until = moment + self.window

    def waiting_time(self) -> float:
        """How long a request made now would wait (0 when it could go at once)."""
        now = self._clock()
        wait = self._resume_at - now
        # Times past "now" (the wall clock stepped back) count as now: never a longer wait
        # than one window.
        if len(self._sent) == self.limit:
            wait = max(wait, min(self._sent[0], now) + self.window - now)
        if now < self._paced_until and self._sent:
            wait = max(wait, min(self._sent[-1], now) + self.window / self.limit - now)
        return max(0.0, wait)
