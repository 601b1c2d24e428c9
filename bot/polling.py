"""When to ask Segmind about a running job.

Polls cost requests from the account-wide budget, and every poll before a job finishes is
wasted, so the schedule spends them where finishes happen: around the model's typical duration.
Run times scatter roughly log-normally around that duration. For a fixed number of polls, the
expected detection delay is smallest when the gap between polls grows as 1/sqrt(density of
finishes), which for a log-normal is the shape below: long gaps early, short gaps near the
typical duration, long gaps again after it, always capped at the operator's maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Segmind keeps a request's status for one hour after submission; stop well before that so the
# last answers are still there to read.
RETENTION_SECONDS = 3600.0
GIVE_UP_AFTER_SECONDS = RETENTION_SECONDS - 300.0


@dataclass(frozen=True)
class PollSchedule:
    typical_seconds: float
    max_interval: float = 10.0
    min_interval: float = 1.0
    # Spread of run times around the typical duration (log-normal sigma) and the density scale:
    # tuned with bench/polling.py.
    spread: float = 0.35
    scale: float = 0.45
    give_up_after: float = GIVE_UP_AFTER_SECONDS

    def delay(self, elapsed: float) -> float | None:
        """Seconds to wait before the next status poll, or None when it is time to give up."""
        if elapsed >= self.give_up_after:
            return None
        ratio = max(elapsed, 1.0) / self.typical_seconds
        rarity = math.log(ratio) ** 2 / (4 * self.spread**2)
        # exp() of a large exponent overflows; anything past the cap is the cap anyway.
        gap = self.scale * math.sqrt(elapsed + 1.0) * math.exp(min(rarity, 50.0))
        gap = min(max(gap, self.min_interval), self.max_interval)
        return min(gap, self.give_up_after - elapsed)
