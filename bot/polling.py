"""When to ask Segmind about a running job, and what each question is worth.

Every poll spends a request of the account's budget, and a poll before the job has finished
learns nothing but its state. So polls go where the news is likely, judged from the learned
durations (`bot.durations`) and from what the job's own polls have seen:

- While the job is QUEUED (or not yet seen at all), the event to catch is its start: polls
  follow the hazard of the queue time, so a warm start is seen within seconds and a cold start
  is not polled every few seconds for minutes.
- Once PROCESSING is seen, the start lies between the last QUEUED poll and that one, and the
  finish is predicted from the processing-time distribution counted from that bracket.

The gap to the next poll balances a poll's cost against the delay it saves. A gap `g` with a
chance `q(g)` of catching the event is worth it while `g * q(g)` stays below twice the cost of
a poll counted in seconds of delay: the discrete form of the rule that polls should be as
dense as the square root of the hazard. With the cost proportional to the typical run, the
schedule scales with the job: a long run is polled as sparsely, in proportion, as a short one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from bot.durations import PRIOR_QUEUE, PRIOR_SIGMA, DurationEstimate, LogNormal, QueueTime

# Segmind keeps a request's status for one hour after submission; stop well before that so the
# last answers are still there to read.
RETENTION_SECONDS = 3600.0
GIVE_UP_AFTER_SECONDS = RETENTION_SECONDS - 300.0
# A job this old is polled before anything else: its answer must be read within the hour.
URGENT_AFTER_SECONDS = GIVE_UP_AFTER_SECONDS - 600.0
# What the budget's scheduler weighs (bot.ratelimit): a poll is worth its chance of finding
# the job finished, in [0, 1] (more once the job nears the retention hour); a result fetch
# brings a video for sure; a submit starts a job. Tuned with bench/polling.py.
RESULT_WORTH = 3.0
SUBMIT_WORTH = 0.5
URGENT_BOOST = 2.0
# When the budget binds, the request whose job has lost most detection time, as a share of the
# job's expected time, goes first. Per unit of that share a waiting submit gains
# SUBMIT_LATENESS_WORTH, a poll LATENESS_WORTH_PER_RATE for each request a minute the budget
# allows: with few (Segmind's Free plan: 5) a poll spent before its job is likely done is a
# video fewer an hour, so the chance of a find must decide; with more (Pro: 50) there are
# requests to spare for the jobs found late. Tuned with bench/polling.py.
LATENESS_WORTH_PER_RATE = 16.0
SUBMIT_LATENESS_WORTH = 20.0
_LATENESS_STEPS = 8
# How likely the learned durations no longer hold, and how widely runs then scatter.
DRIFT_SHARE = 0.1
DRIFT_SIGMA = 0.6
_BISECTIONS = 24
_START_NODES = 8


@dataclass
class Sighting:
    """What the polls have seen of one job, in seconds since its submit."""

    queued_until: float = 0.0  # the last poll that found it QUEUED (0: the submit itself)
    started_by: float | None = None  # the first poll that found it PROCESSING
    last_look: float = 0.0  # the last poll, whatever it found (or failed to find)

    def saw(self, state: str | None, at: float) -> None:
        """A poll at `at` found `state` (None: the poll failed and found nothing)."""
        self.last_look = max(self.last_look, at)
        if self.started_by is not None or state is None:
            return
        if state == "QUEUED":
            self.queued_until = at
        elif state == "PROCESSING":
            self.started_by = at


class Outlook(NamedTuple):
    chance: float  # that the job is finished by then, given the last look found it not
    # The detection time already lost by then, as a share of the job's expected time:
    # E[(then - finish)+ | not finished at the last look] / expected time.
    lateness: float


@dataclass(frozen=True)
class PollSchedule:
    estimate: DurationEstimate
    max_interval: float = 30.0
    min_interval: float = 1.0
    # A poll's cost in seconds of detection delay, per second of the typical run, while the
    # finish is awaited and while the start is: tuned with bench/polling.py.
    finish_cost: float = 0.0062
    start_cost: float = 0.05
    give_up_after: float = GIVE_UP_AFTER_SECONDS

    @classmethod
    def around(cls, typical_seconds: float, **options: float) -> PollSchedule:
        """A schedule for a run known only by its typical duration (nothing learned yet)."""
        processing = LogNormal(math.log(typical_seconds), PRIOR_SIGMA)
        return cls(DurationEstimate(None, processing, samples=0), **options)

    @property
    def queue(self) -> QueueTime | LogNormal:
        return self.estimate.queued or PRIOR_QUEUE

    def next_poll(self, seen: Sighting) -> float | None:
        """When (seconds since the submit) to poll next; None: time to give up."""
        last = seen.last_look
        if last >= self.give_up_after:
            return None
        typical = self.estimate.processing.median
        if seen.started_by is None:
            # The soonest finish: a run begun right after this look. Catch the start as well,
            # but never so late that a run begun right now would be over.
            finish: _Shifted | _Bracketed = _Shifted(self.estimate.processing, last)
            start = self._gap(
                lambda at: _chance(self.queue, seen.queued_until, at),
                self.start_cost * typical,
                last,
            )
        else:
            finish, start = self._finish_model(seen), math.inf
        gap = self._gap(lambda at: _chance(finish, last, at), self.finish_cost * typical, last)
        return min(last + min(gap, start), self.give_up_after)

    def outlook(self, seen: Sighting, at: float) -> Outlook:
        """What a poll at `at` would find, from one model of the finish (read at every grant
        of a binding budget, for every poll waiting)."""
        last = seen.last_look
        if at <= last:
            return Outlook(0.0, 0.0)
        finish = self._finish_model(seen)
        step = (at - last) / _LATENESS_STEPS
        # The trapezoid rule over the chance of being finished (0 at the last look); its last
        # point is the chance now.
        points = [_chance(finish, last, last + step * k) for k in range(1, _LATENESS_STEPS + 1)]
        lost = step * (sum(points) - points[-1] / 2)
        return Outlook(points[-1], lost / self.expected_time(seen))

    def expected_time(self, seen: Sighting) -> float:
        """The job's time from its submit to its finish, as far as known."""
        processing = self.estimate.processing.median
        queued = self.queue.median if seen.started_by is None else 0.0
        return max(self.estimate.typical_total(), seen.queued_until + queued + processing)

    def _finish_model(self, seen: Sighting) -> _Bracketed:
        """The finish: a processing time counted from a start after the last QUEUED look (and
        by the first PROCESSING one, once seen), where the queue time puts it: a warm start
        early in the bracket, a cold one anywhere."""
        processing = self.estimate.processing
        starts = self._likely_starts(seen.queued_until, seen.started_by)
        # Drift explains a run far past what was learned; not yet running, the job has none.
        drift = DRIFT_SHARE if seen.started_by is not None else 0.0
        return _Bracketed(tuple(_Shifted(processing, start, drift) for start in starts))

    def _likely_starts(self, after: float, by: float | None) -> list[float]:
        """Even quantiles of the queue time between the bounds; spread evenly (or, with no
        upper bound, right after `after`) where the learned queue time has no mass left."""
        queue = self.queue
        below = queue.cdf(after)
        above = 1.0 if by is None else queue.cdf(by)
        fractions = [(k + 0.5) / _START_NODES for k in range(_START_NODES)]
        if above - below < 1e-9:
            return [after] if by is None else [after + (by - after) * f for f in fractions]
        latest = math.inf if by is None else by
        starts = (queue.quantile(below + (above - below) * f) for f in fractions)
        return [min(max(start, after), latest) for start in starts]

    def _gap(self, chance: Callable[[float], float], cost: float, last: float) -> float:
        """The longest gap whose chance of news still justifies the poll, within the bounds."""

        def worth(gap: float) -> float:
            return gap * chance(last + gap)

        high = self.max_interval
        low = min(self.min_interval, high)  # a ceiling below the floor wins
        if worth(low) >= 2 * cost:
            return low
        if worth(high) <= 2 * cost:
            return high
        for _ in range(_BISECTIONS):
            middle = (low + high) / 2
            low, high = (middle, high) if worth(middle) < 2 * cost else (low, middle)
        return high


@dataclass(frozen=True)
class _Shifted:
    """A duration counted from `origin` seconds after the submit."""

    duration: LogNormal
    origin: float
    drift_share: float = DRIFT_SHARE

    def log_survival(self, at: float) -> float:
        """Mostly the learned distribution, with a share of a wide one: a run far past what was
        learned more likely means the provider changed than a freak run, and polls should back
        off there instead of hammering a job that is simply slower now."""
        seconds = at - self.origin
        learned = self.duration.log_survival(seconds)
        if not self.drift_share:
            return learned
        drifted = LogNormal(self.duration.mu, DRIFT_SIGMA).log_survival(seconds)
        return _log_mix(learned, drifted, self.drift_share)


@dataclass(frozen=True)
class _Bracketed:
    """A finish whose start is known only within bounds: one of equally likely starts."""

    starts: tuple[_Shifted, ...]

    def log_survival(self, at: float) -> float:
        logs = [start.log_survival(at) for start in self.starts]
        top = max(logs)
        return top + math.log(sum(math.exp(value - top) for value in logs) / len(logs))


def _log_mix(first: float, second: float, share: float) -> float:
    """log((1 - share) * e^first + share * e^second), without underflow."""
    a, b = first + math.log1p(-share), second + math.log(share)
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def _chance(
    event: _Shifted | _Bracketed | LogNormal | QueueTime, after: float, by: float
) -> float:
    """P(the event comes by `by` | it had not come by `after`)."""
    if by <= after:
        return 0.0
    return -math.expm1(event.log_survival(by) - event.log_survival(after))


class Watch:
    """One job's polls on the wall clock: when the next is due and what it is worth now."""

    def __init__(
        self,
        schedule: PollSchedule,
        submitted_at: float,
        *,
        running_since: float | None = None,
        requests_per_minute: float = 50.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`running_since`: when an earlier run of the bot first saw the job PROCESSING;
        `requests_per_minute`: the budget its polls draw from (50, Segmind's Pro plan, is
        the bot's default)."""
        self.schedule = schedule
        self.lateness_worth = LATENESS_WORTH_PER_RATE * requests_per_minute
        self.submitted_at = submitted_at
        self.seen = Sighting()
        if running_since is not None:
            self.seen.started_by = max(running_since - submitted_at, 0.0)
        self._clock = clock

    def elapsed(self) -> float:
        return self._clock() - self.submitted_at

    def due(self) -> float | None:
        """The moment of the next poll (perhaps already past), or None: give up."""
        at = self.schedule.next_poll(self.seen)
        return None if at is None else self.submitted_at + at

    def saw(self, state: str | None) -> None:
        self.seen.saw(state, self.elapsed())

    def worth(self) -> float:
        """What a poll now is worth to the scheduler of the request budget."""
        now = self.elapsed()
        chance, lateness = self.schedule.outlook(self.seen, now)
        worth = chance + self.lateness_worth * lateness
        if now >= URGENT_AFTER_SECONDS:
            worth += URGENT_BOOST
        return worth


def submit_worth(
    expected_seconds: float, clock: Callable[[], float] = time.time
) -> Callable[[], float]:
    """What a submit waiting from now is worth: it grows as the wait delays the whole job,
    counted, like a poll's lateness, as a share of the job's expected time."""
    since = clock()

    def worth() -> float:
        return SUBMIT_WORTH + SUBMIT_LATENESS_WORTH * (clock() - since) / expected_seconds

    return worth
