"""The account-wide request budget every Segmind call draws from."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

Worth = Callable[[], float]
# What a request is worth when its caller does not say: a plain request, served in its turn.
NEUTRAL_WORTH = 0.5
# Slow enough that what a request is worth decides, fast enough that none waits for ever.
AGING_WINDOWS = 10
# When the budget binds, this share of a window is kept for requests worth at least the
# neutral worth (results, submits, polls more likely than not to find a video); long shots
# wait, their chance growing, and are looked at again this often.
RESERVE_SHARE = 0.3
RESERVE_RECHECK_SECONDS = 1.0


class BudgetRecord(Protocol):
    """Where the budget writes what it spends, so a restart continues the same window."""

    async def record_send(self, at: float) -> None: ...

    async def record_hold(self, until: float) -> None: ...


class SharedBudgetRecord(BudgetRecord, Protocol):
    """A record several processes share (PostgreSQL): the slot itself is taken there."""

    async def claim_send(self, at: float, limit: int, window: float) -> float: ...


@dataclass(eq=False)
class _Waiter:
    worth: Worth
    since: float
    granted: asyncio.Future[None]


class RequestBudget:
    """At most `limit` requests in any `period` seconds, shared by every job of the bot.

    A sliding log of the last `limit` send times: a request waits until the oldest of them is
    more than a period old. `margin` widens the window a little, because a request reaches
    Segmind a moment after it leaves and Segmind counts arrivals, not departures.

    When the budget binds, this is the one place that decides which request goes next: each
    waiter says what it is worth now (a poll, its chance of finding the job finished; a result
    fetch, a sure video) and the most valuable goes first. Worth grows by one for every
    `AGING_WINDOWS` windows a request has waited, so nothing starves: not polls behind submits,
    not submits behind polls, and equal requests are served in arrival order.

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
        shared: SharedBudgetRecord | None = None,
    ) -> None:
        """`clock` and `sleep` are the time it runs on (a virtual one in tests); `on_grant` is
        told the moment of every slot it grants; `record` keeps the log across restarts;
        `shared` (instead of `record`) is the one budget of a fleet of processes: each slot
        is claimed there too, so all of them together never pass the limit."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.per_minute = limit * 60.0 / period
        self.window = period + margin
        self.record = record if shared is None else shared
        self._shared = shared
        self._clock = clock
        self._sleep = sleep
        self._on_grant = on_grant
        self._sent: collections.deque[float] = collections.deque(maxlen=limit)
        self._waiting: list[_Waiter] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._resume_at = 0.0
        self._paced_until = 0.0

    def restore(self, sent: Iterable[float], resume_at: float = 0.0) -> None:
        """Continue where the last run stopped: its send times, and a reset it was waiting for."""
        now = self._clock()
        # A send "in the future" means the clock was set back since: count it as now.
        self._sent.extend(min(moment, now) for moment in sorted(sent)[-self.limit :])
        if resume_at + self.window > now:  # waiting for the reset, or still pacing after it
            self._pause_until(resume_at)

    async def acquire(self, worth: Worth | None = None) -> None:
        """Wait for a free slot and take it; `worth` ranks this request against the others
        waiting (read again at every grant, since a poll's chance grows as it waits)."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(worth or _neutral, self._clock(), loop.create_future())
        self._waiting.append(waiter)
        if (
            self._dispatcher is None
            or self._dispatcher.done()
            or self._dispatcher.get_loop() is not loop  # a budget kept across event loops
        ):
            self._dispatcher = asyncio.create_task(self._dispatch())
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            raise

    @property
    def waiters(self) -> int:
        return len(self._waiting)

    async def _dispatch(self) -> None:
        while self._waiting:
            # The wait is for a moment in time, not for an event: sleeping until it is right.
            if (wait := self.waiting_time()) > 0:
                await self._sleep(wait)
                continue
            granted = self._clock()
            aging = self.window * AGING_WINDOWS
            chosen, worth = max(
                ((w, _worth_of(w) + (granted - w.since) / aging) for w in self._waiting),
                key=lambda pair: pair[1],
            )
            if worth < NEUTRAL_WORTH and self._free_slots() <= reserved_slots(self.limit):
                # Spent now on a long shot, the slot would be missing when a video is ready.
                await self._sleep(RESERVE_RECHECK_SECONDS)
                continue
            try:
                if self._shared is not None:
                    # The other processes' sends count too: wait for the fleet's window.
                    if (wait := await self._shared.claim_send(granted, self.limit, self.window)):
                        await self._sleep(min(wait, RESERVE_RECHECK_SECONDS))
                        continue
                elif self.record is not None:
                    await self.record.record_send(granted)
            except Exception as error:  # the slot may be spent; the caller hears why
                self._spend(chosen, granted)
                if not chosen.granted.done():
                    chosen.granted.set_exception(error)
                continue
            self._spend(chosen, granted)
            if self._on_grant is not None:
                self._on_grant(granted)
            if not chosen.granted.done():
                chosen.granted.set_result(None)

    def _spend(self, chosen: _Waiter, granted: float) -> None:
        # A caller cancelled while its slot was being claimed has left the line already.
        if chosen in self._waiting:
            self._waiting.remove(chosen)
        self._sent.append(granted)

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

    def _free_slots(self) -> int:
        now = self._clock()
        return self.limit - sum(1 for moment in self._sent if moment > now - self.window)

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


def reserved_slots(limit: int) -> int:
    """The slots of a window kept back from long shots (`RESERVE_SHARE`) when the budget binds."""
    return math.floor(limit * RESERVE_SHARE)


def busiest(moments: Iterable[float], window: float) -> int:
    """The most of `moments` within any `window` seconds: what the budget promises to bound."""
    times, most, start = sorted(moments), 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


def _neutral() -> float:
    return NEUTRAL_WORTH


def _worth_of(waiter: _Waiter) -> float:
    """A caller's estimate that breaks must not stall every request of the bot."""
    try:
        worth = float(waiter.worth())
    except Exception:
        log.exception("a request's worth could not be read; it waits as a plain one")
        return NEUTRAL_WORTH
    return worth if math.isfinite(worth) else NEUTRAL_WORTH
