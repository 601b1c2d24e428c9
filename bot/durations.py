"""Learned durations: how long a model's runs take, from the runs the bot has seen.

Every finished run is recorded (`durations` in the store) with the time it spent QUEUED at the
provider and the time it spent PROCESSING, under its model and parameter bucket (the parameters
its duration depends on: frames and steps for CogVideoX, duration and quality for PixVerse...).
An estimate is a log-normal per phase, fitted robustly (a weighted median and median absolute
deviation of the logarithms, recent runs weighing more) and shrunk towards what is known more
broadly: a bucket with few runs borrows from its model's runs, a model with none from the
catalogue's typical time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.models import VideoModel

# How far a run's duration scatters around the typical one before anything is learned.
PRIOR_SIGMA = 0.35
# A log-normal's sigma from the median absolute deviation of the logarithms.
_MAD_TO_SIGMA = 1.4826
_SIGMA_FLOOR = 0.03
_STANDARD = statistics.NormalDist()


class DurationLog(Protocol):
    async def recent_durations(
        self, model: str, bucket: str | None, limit: int
    ) -> list[tuple[str, float | None, float]]: ...


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


@dataclass(frozen=True)
class DurationEstimate:
    queued: LogNormal | None  # None: nothing learned about the wait in the provider's queue
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
class Fit:
    mu: float
    sigma: float
    weight: float  # the number of runs behind it


class Durations:
    def __init__(
        self,
        log: DurationLog,
        *,
        recent: int = 100,
        half_life: float = 10.0,
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
        everyone = await self.log.recent_durations(model.slug, None, self.recent)
        mine = [p for b, _, p in everyone if b == bucket]
        prior = Fit(math.log(model.typical_seconds), PRIOR_SIGMA, self.borrow)
        processing = _shrunk(self._fit(mine), self._model_fit(everyone, prior), self.borrow)
        queued_runs = [q for _, q, _ in everyone if q is not None and q > 0]
        fitted = self._fit(queued_runs)
        queued = LogNormal(fitted.mu, fitted.sigma) if fitted is not None else None
        return DurationEstimate(
            queued, LogNormal(processing.mu, processing.sigma), samples=len(mine)
        )

    def _model_fit(self, runs: Sequence[tuple[str, float | None, float]], prior: Fit) -> Fit:
        """What the model's runs say of any bucket: their middle, and the spread found within
        buckets (buckets differ on purpose; that is not scatter)."""
        overall = self._fit([p for _, _, p in runs])
        if overall is None:
            return prior
        by_bucket = [[p for other, _, p in runs if other == b] for b in {b for b, _, _ in runs}]
        spreads = [fit for seconds in by_bucket if (fit := self._fit(seconds)) is not None]
        weight = sum(fit.weight for fit in spreads)
        sigma = math.sqrt(sum(fit.weight * fit.sigma**2 for fit in spreads) / weight)
        return _shrunk(Fit(overall.mu, sigma, overall.weight), prior, self.borrow)

    def _fit(self, seconds: Sequence[float]) -> Fit | None:
        """Newest first. The weighted median and MAD of the logs: a few odd runs (a cold
        start counted as processing, say) move it little."""
        values = [(math.log(s), 0.5 ** (rank / self.half_life)) for rank, s in enumerate(seconds)
                  if s > 0]  # fmt: skip
        if not values:
            return None
        mu = _weighted_median(values)
        spread = _weighted_median([(abs(v - mu), w) for v, w in values]) * _MAD_TO_SIGMA
        return Fit(mu, max(spread, _SIGMA_FLOOR), float(len(values)))


def _shrunk(own: Fit | None, broader: Fit, borrow: float) -> Fit:
    """`own`, pulled towards `broader` as if it were `borrow` more runs."""
    if own is None:
        return broader
    total = own.weight + borrow
    mu = (own.weight * own.mu + borrow * broader.mu) / total
    variance = (own.weight * own.sigma**2 + borrow * broader.sigma**2) / total
    return Fit(mu, max(math.sqrt(variance), _SIGMA_FLOOR), total)


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
