"""Learned durations: how long a model's runs take, from the runs the bot has seen.

Every finished run is recorded (`durations` in the store) with the time it spent QUEUED at the
provider and the time it spent PROCESSING, under its model and parameter bucket (the parameters
its duration depends on: frames and steps for CogVideoX, duration and quality for PixVerse...).
The processing time is a log-normal, fitted robustly (weighted medians and median absolute
deviations of the logarithms, recent runs weighing more, and more slowly so for the scatter).
Its typical time is the model's pace now, read from all its runs, plus the bucket's offset from
it; a bucket with few runs borrows its scatter from its model's runs, a model with none takes
the catalogue's typical time. The wait in the queue is the model's recent
waits themselves (`QueueTime`): warm and cold starts are two kinds of wait, not one log-normal.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from bot.models import VideoModel

# How far a run's duration scatters around the typical one before anything is learned.
PRIOR_SIGMA = 0.35
# A log-normal's sigma from the median absolute deviation of the logarithms.
_MAD_TO_SIGMA = 1.4826
_SIGMA_FLOOR = 0.03
_STANDARD = statistics.NormalDist()
_FAR_TAIL = 30.0
_SPREAD_RUNS = 3  # a bucket's scatter is read from this many runs of it
# A run's scatter drifts less than its typical time and takes more runs to read: it is read
# with a memory this many times longer.
_SPREAD_MEMORY = 4.0
# The wait in the provider's queue: how many recent waits shape it, with a memory this many
# times the typical time's (how often a cold start comes takes more runs to tell), how far each
# seen wait spreads (in log seconds), and the prior's weight among them, counted in runs.
# Tuned with bench/polling.py.
_QUEUE_RUNS = 40
_QUEUE_MEMORY = 2.0
_QUEUE_KERNEL = 0.3
_QUEUE_PRIOR_RUNS = 1.0
_QUEUE_GRID = 200


class Run(NamedTuple):
    """One finished run as recorded: its bucket, its work relative to the model's defaults
    (`VideoModel.duration_work`), and its seconds QUEUED (None: not seen apart) and PROCESSING."""

    bucket: str
    work: float
    queued: float | None
    processing: float


class DurationLog(Protocol):
    async def recent_durations(self, model: str, bucket: str | None, limit: int) -> list[Run]: ...


@dataclass(frozen=True)
class LogNormal:
    mu: float  # of log seconds
    sigma: float

    @property
    def median(self) -> float:
        return math.exp(self.mu)

    def quantile(self, p: float) -> float:
        return math.exp(self.mu + self.sigma * _probit(p))

    def cdf(self, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        return 0.5 * (1 + math.erf((math.log(seconds) - self.mu) / (self.sigma * math.sqrt(2))))

    def log_survival(self, seconds: float) -> float:
        """log P(longer than `seconds`), exact far into the tail, where 1 - cdf is 0 in floats
        (a run taking many times its usual time must still be told apart from one far past)."""
        if seconds <= 0:
            return 0.0
        z = (math.log(seconds) - self.mu) / self.sigma
        if z < _FAR_TAIL:
            return math.log(0.5 * math.erfc(z / math.sqrt(2)))
        return -z * z / 2 - math.log(z * math.sqrt(2 * math.pi))  # the Mills ratio's limit


# Before any wait is learned: most runs start within seconds, some wait minutes.
PRIOR_QUEUE = LogNormal(math.log(4.0), 1.5)


@dataclass(frozen=True)
class QueueTime:
    """The wait in the provider's queue, shaped by the recent waits themselves (each a narrow
    log-normal around what was seen) and a share of the broad prior (a wait longer than any
    seen). The wait is two kinds of run, a warm worker within seconds and a cold start of
    minutes: one log-normal fitted to both puts the likeliest start in the gap between them."""

    parts: tuple[tuple[float, LogNormal], ...]  # (weight, summing to 1; one wait's shape)
    # The cdf on a grid of log seconds, for quantiles read many times a second.
    _grid: tuple[list[float], list[float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        low = min(part.mu - 6 * part.sigma for _, part in self.parts)
        high = max(part.mu + 6 * part.sigma for _, part in self.parts)
        step = (high - low) / (_QUEUE_GRID - 1)
        logs = [low + step * k for k in range(_QUEUE_GRID)]
        cdfs = [self.cdf(math.exp(x)) for x in logs]
        object.__setattr__(self, "_grid", (logs, cdfs))

    @property
    def median(self) -> float:
        return self.quantile(0.5)

    def cdf(self, seconds: float) -> float:
        return sum(weight * part.cdf(seconds) for weight, part in self.parts)

    def log_survival(self, seconds: float) -> float:
        logs = [math.log(weight) + part.log_survival(seconds) for weight, part in self.parts]
        top = max(logs)
        return top + math.log(sum(math.exp(value - top) for value in logs))

    def quantile(self, p: float) -> float:
        logs, cdfs = self._grid
        k = min(max(bisect.bisect_left(cdfs, p), 1), len(cdfs) - 1)
        below, above = cdfs[k - 1], cdfs[k]
        share = 0.0 if above <= below else min(max((p - below) / (above - below), 0.0), 1.0)
        return math.exp(logs[k - 1] + (logs[k] - logs[k - 1]) * share)


@dataclass(frozen=True)
class DurationEstimate:
    queued: QueueTime | LogNormal | None  # None: nothing learned of the wait in the queue
    processing: LogNormal
    samples: int  # the runs of this very bucket it rests on

    def typical_total(self) -> float:
        return self.processing.median + (self.queued.median if self.queued else 0.0)

    def left(self, running_for: float) -> float:
        """The median time left for a run that has been PROCESSING for `running_for` seconds."""
        survived = 1.0 - self.processing.cdf(running_for)
        if survived <= 1e-9:
            return 0.0
        # The median of the remaining life: where the survival halves from here.
        target = 1.0 - survived / 2
        return max(0.0, self.processing.quantile(target) - running_for)


@dataclass(frozen=True)
class Spread:
    sigma: float  # of log seconds, around the typical time
    weight: float  # the number of runs behind it


class Durations:
    def __init__(
        self,
        log: DurationLog,
        *,
        recent: int = 100,
        half_life: float = 4.0,
        borrow: float = 5.0,
    ) -> None:
        """`half_life`: a run this many runs older counts half as much (durations drift).
        `borrow`: how many runs' weight the broader estimate counts for."""
        self.log = log
        self.recent = recent
        self.half_life = half_life
        self.borrow = borrow

    async def estimate(self, model: VideoModel, parameters: Mapping[str, Any]) -> DurationEstimate:
        bucket = model.duration_bucket(parameters)
        work = model.duration_work(parameters)
        everyone = await self.log.recent_durations(model.slug, None, self.recent)
        # Seconds per unit of work: a run of other parameters still says how fast the model
        # is these days; the bucket's own runs correct the guess of how work scales.
        per_work = [(run.bucket, run.processing / run.work) for run in everyone if run.work > 0]
        mine = [seconds for other, seconds in per_work if other == bucket]
        prior = Spread(PRIOR_SIGMA, self.borrow)
        spread = _shrunk(self._spread(mine), self._model_spread(per_work, prior), self.borrow)
        waits = [run.queued for run in everyone if run.queued and run.queued > 0]
        queued = self._queue_fit(waits[:_QUEUE_RUNS])
        pace = self._pace(per_work, bucket, math.log(model.typical_seconds))
        processing = LogNormal(pace + math.log(work), spread.sigma)
        return DurationEstimate(queued, processing, samples=len(mine))

    def _pace(self, runs: Sequence[tuple[str, float]], bucket: str, guessed: float) -> float:
        """Log seconds per unit of work for `bucket` now. How fast the model is these days is
        read from all its recent runs, each bucket's corrected by how far it strays from the
        catalogue's guess of how work scales: when the provider slows down, a bucket rarely
        asked for follows its model within a few runs instead of waiting for runs of its own."""
        logs = [(other, math.log(seconds)) for other, seconds in runs if seconds > 0]
        if not logs:
            return guessed
        # Each run is read by its own bucket's offset as measured: pulled towards none, a
        # rare bucket's runs would tell the model's pace wrong for every bucket.
        offsets = self._offsets(logs)
        level = _weighted_median(
            [(value - offsets[other], 0.5 ** (rank / self.half_life))
             for rank, (other, value) in enumerate(logs)]
        )  # fmt: skip
        # With few runs of the model at all, the catalogue's typical time still counts: as
        # much as when a bucket borrowed from its model, which borrowed from the catalogue.
        guess = (self.borrow / (len(logs) + self.borrow)) ** 2
        own = sum(1 for other, _ in logs if other == bucket)
        offset = offsets.get(bucket, 0.0) * own / (own + self.borrow)  # few runs: a hint
        return (1 - guess) * level + guess * guessed + offset

    def _offsets(self, logs: Sequence[tuple[str, float]]) -> dict[str, float]:
        """How much slower, in log seconds per unit of work, each bucket runs than its model's
        runs of the same days (a long memory, since how work scales drifts less than the pace;
        both sides weighed alike, so a slow-down cancels out)."""
        memory = self.half_life * _SPREAD_MEMORY
        weighted = [
            (other, value, 0.5 ** (rank / memory)) for rank, (other, value) in enumerate(logs)
        ]
        overall = _weighted_median([(value, weight) for _, value, weight in weighted])
        offsets = {}
        for bucket in {other for other, _, _ in weighted}:
            own = [(value, weight) for other, value, weight in weighted if other == bucket]
            offsets[bucket] = _weighted_median(own) - overall
        return offsets

    def _model_spread(self, runs: Sequence[tuple[str, float]], prior: Spread) -> Spread:
        """What the model's runs say of any bucket's scatter: the spread found within buckets
        (buckets differ on purpose; that is not scatter)."""
        overall = self._spread([seconds for _, seconds in runs])
        if overall is None:
            return prior
        by_bucket = [[s for other, s in runs if other == b] for b in {b for b, _ in runs}]
        spreads = [self._spread(seconds) for seconds in by_bucket if len(seconds) >= _SPREAD_RUNS]
        weight = sum(fit.weight for fit in spreads if fit is not None)
        sigma = overall.sigma  # until some bucket has runs enough to show its own scatter
        if weight:
            sigma = math.sqrt(sum(f.weight * f.sigma**2 for f in spreads if f) / weight)
        return _shrunk(Spread(sigma, overall.weight), prior, self.borrow)

    def _spread(self, seconds: Sequence[float]) -> Spread | None:
        """Newest first. The weighted MAD of the logs: a few odd runs (a cold start counted
        as processing, say) move it little."""
        logs = [math.log(s) for s in seconds if s > 0]
        if not logs:
            return None
        # A handful of recent runs' deviations, read alone, mostly understate the scatter.
        longer = self.half_life * _SPREAD_MEMORY
        remembered = [(v, 0.5 ** (rank / longer)) for rank, v in enumerate(logs)]
        middle = _weighted_median(remembered)
        spread = _weighted_median([(abs(v - middle), w) for v, w in remembered]) * _MAD_TO_SIGMA
        return Spread(max(spread, _SIGMA_FLOOR), float(len(logs)))

    def _queue_fit(self, seconds: Sequence[float]) -> QueueTime | None:
        """Newest first; recent waits weigh more (the provider's load changes)."""
        if not seconds:
            return None
        longer = self.half_life * _QUEUE_MEMORY
        weights = [0.5 ** (rank / longer) for rank in range(len(seconds))]
        total = sum(weights) + _QUEUE_PRIOR_RUNS
        parts = [
            (weight / total, LogNormal(math.log(wait), _QUEUE_KERNEL))
            for weight, wait in zip(weights, seconds, strict=True)
        ]
        return QueueTime((*parts, (_QUEUE_PRIOR_RUNS / total, PRIOR_QUEUE)))


def _shrunk(own: Spread | None, broader: Spread, borrow: float) -> Spread:
    """`own`, pulled towards `broader` as if it were `borrow` more runs."""
    if own is None:
        return broader
    total = own.weight + borrow
    variance = (own.weight * own.sigma**2 + borrow * broader.sigma**2) / total
    return Spread(max(math.sqrt(variance), _SIGMA_FLOOR), total)


def _weighted_median(values: Sequence[tuple[float, float]]) -> float:
    ordered = sorted(values)
    half = sum(weight for _, weight in ordered) / 2
    running = 0.0
    for value, weight in ordered:
        running += weight
        if running >= half:
            return value
    return ordered[-1][0]


def _probit(p: float) -> float:
    return _STANDARD.inv_cdf(min(max(p, 1e-12), 1 - 1e-12))
