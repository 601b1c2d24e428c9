"""The account-wide request budget every Segmind call draws from."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable


class RequestBudget:
    """At most `limit` requests in any `period` seconds, shared by every job of the bot.

    A sliding log of the last `limit` send times: a caller waits until the oldest of them is
    more than a period old. Waiters queue on a lock, so they are served in arrival order and a
    busy job cannot starve the others. `margin` widens the window a little, because a request
    reaches Segmind a moment after it leaves and Segmind counts arrivals, not departures.
    """

    def __init__(
        self,
        limit: int,
        period: float = 60.0,
        *,
        margin: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_grant: Callable[[float], None] | None = None,
    ) -> None:
        """`clock` and `sleep` are the time it runs on (a virtual one in tests); `on_grant` is
        told the moment of every slot it grants."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window = period + margin
        self._clock = clock
        self._sleep = sleep
        self._on_grant = on_grant
        self._sent: collections.deque[float] = collections.deque(maxlen=limit)
        self._turn = asyncio.Lock()
        self._resume_at = 0.0

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""
        async with self._turn:
            # The wait is for a moment in time, not for an event: sleeping until it is right.
            while (wait := self.waiting_time()) > 0:
                await self._sleep(wait)
            granted = self._clock()
            self._sent.append(granted)
            if self._on_grant is not None:
                self._on_grant(granted)

    def hold(self, seconds: float) -> None:
        """Send nothing for `seconds`: Segmind said the account is rate limited until then."""
        self._resume_at = max(self._resume_at, self._clock() + seconds)

    def waiting_time(self) -> float:
        """How long a request made now would wait (0 when it could go at once)."""
        now = self._clock()
        wait = self._resume_at - now
        if len(self._sent) == self.limit:
            wait = max(wait, self._sent[0] + self.window - now)
        return max(0.0, wait)
