"""Benchmark polling: requests per video and detection delay, with and without a tight budget.

A deterministic discrete-event simulation on a virtual clock (an asyncio loop whose time jumps
to the next timer, so a simulated hour takes a moment and repeats exactly). The decisions are
the bot's real code: the schedule and its watch (`bot.polling`), the learned durations
(`bot.durations`, fed the runs as they finish) and the request budget with its scheduler
(`bot.ratelimit`). The world is written down here: the five-model mix, parameters drawn from
a plausible spread, a wait in Segmind's queue (most runs start within seconds, about a third
cold-start for 20 s to 4 min), then a log-normal processing time (15 % spread) that depends on
the parameters; in the middle third of the first scenario PixVerse is 1.5x slower.

Strategies, on the same jobs: fixed 1 s (the SDK's default), fixed 2 s (the seed examples),
the schedule the bot had before learned durations (copied below as it was: catalogue typical
time, gaps capped at 10 s, first come first served at the budget), the bot's schedule now, and
the bound: an oracle that polls once, at the finish.

Run from the repository root: python bench/polling.py [--seed S]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import selectors
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.durations import Durations, Run
from bot.models import CATALOGUE, VideoModel
from bot.polling import (
    GIVE_UP_AFTER_SECONDS,
    RESULT_WORTH,
    SUBMIT_WORTH,
    PollSchedule,
    Watch,
    submit_worth,
)
from bot.ratelimit import RequestBudget, busiest

CEILING = 30.0  # SEGMIND_POLL_INTERVAL_MAX's default
SPREAD = 0.15
SLOWER = 1.5
SLOWED = "pixverse-5-video"
WARM_UP = 100  # jobs of the first scenario before its figures count
MIX = {
    "svd": 0.25,
    "cog-video-5b-t2v": 0.15,
    "cog-video-5b-i2v": 0.10,
    "pixverse-5-video": 0.25,
    "grok-imagine-video": 0.25,
}
# Other values than the defaults, each drawn as often (the defaults are drawn 60 % of the time).
CHOICES: dict[str, dict[str, Sequence[Any]]] = {
    "svd": {"frames": [25]},
    "cog-video-5b-t2v": {"input_frames": [16, 24, 32, 60], "steps": [25, 30, 50]},
    "cog-video-5b-i2v": {},
    "pixverse-5-video": {"duration": [5, 8], "quality": ["360p", "720p"]},
    "grok-imagine-video": {"duration": [3, 6, 10, 15], "resolution": ["720p", "1080p"]},
}
_RESOLUTION = {"360p": 0.75, "480p": 0.9, "540p": 1.0, "720p": 1.3, "1080p": 2.0}


def true_seconds(slug: str, p: dict[str, Any]) -> float:
    """The world's median processing time: not the catalogue's guess of how work scales."""
    if slug == "svd":
        return 30 * (p["frames"] / 14) ** 0.8
    if slug == "cog-video-5b-t2v":
        return 229 * (0.2 + 0.8 * p["input_frames"] / 49) * p["steps"] / 45
    if slug == "cog-video-5b-i2v":
        return 356.0
    if slug == "pixverse-5-video":
        return 67 * (p["duration"] / 5) ** 0.9 * _RESOLUTION[p["quality"]]
    return 70 * (0.4 + 0.1 * p["duration"]) * _RESOLUTION[p["resolution"]] / 0.9


@dataclass
class Spec:
    number: int
    model: VideoModel
    parameters: dict[str, Any]
    queued: float
    processing: float


def draw_jobs(rng: random.Random, count: int, *, slow: range = range(0)) -> list[Spec]:
    specs = []
    for number in range(count):
        slug = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        model = CATALOGUE[slug]
        fields_ = model.parameters.model_fields
        parameters = {key: fields_[key].default for key in CHOICES[slug]}
        if rng.random() > 0.6:
            parameters = {key: rng.choice(values) for key, values in CHOICES[slug].items()}
        if slug == "pixverse-5-video" and parameters.get("quality") == "1080p":
            parameters["duration"] = 5
        cold = rng.random() < 1 / 3
        queued = rng.uniform(20, 240) if cold else rng.uniform(0.5, 5)
        seconds = true_seconds(slug, parameters) * math.exp(rng.gauss(0, SPREAD))
        if slug == SLOWED and number in slow:
            seconds *= SLOWER
        specs.append(Spec(number, model, parameters, queued, seconds))
    return specs


# --- A virtual clock for asyncio ---


class _Jump(selectors.SelectSelector):
    """Instead of waiting for the next timer, move the clock to it (nothing does real I/O)."""

    def __init__(self, loop: VirtualLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list:  # type: ignore[override]
        if timeout is None:
            raise RuntimeError("every task waits and no timer is set: the simulation is stuck")
        self._loop.now += max(timeout, 0.0)
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 1_000_000.0
        super().__init__(_Jump(self))

    def time(self) -> float:
        return self.now


# --- The log of finished runs the bot learns from, in memory ---


@dataclass
class MemoryLog:
    runs: dict[str, list[Run]] = field(default_factory=dict)

    async def recent_durations(self, model: str, bucket: str | None, limit: int) -> list[Run]:
        newest = reversed(self.runs.get(model, []))
        return [run for run in newest if bucket in (None, run.bucket)][:limit]

    def record(self, spec: Spec) -> None:
        # Segmind's metrics on the result carry queue_time and inference_time.
        run = Run(
            spec.model.duration_bucket(spec.parameters),
            spec.model.duration_work(spec.parameters),
            spec.queued,
            spec.processing,
        )
        self.runs.setdefault(spec.model.slug, []).append(run)


# --- Strategies ---


@dataclass
class Outcome:
    spec: Spec
    requests: int = 0
    delay: float | None = None  # from the finish at Segmind to the poll that saw it
    run_time: float = 0.0  # submit to finish
    time_to_video: float | None = None  # from the job's arrival


Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Sim:
    loop: VirtualLoop
    budget: RequestBudget
    log: MemoryLog

    def now(self) -> float:
        return self.loop.time()

    async def request(self, outcome: Outcome, worth: Callable[[], float] | None) -> float:
        await self.budget.acquire(worth)
        outcome.requests += 1
        return self.now()


def todays_delay(typical: float, elapsed: float) -> float | None:
    """The bot's schedule before learned durations, as it was (bot/polling.py at 7097681)."""
    spread, scale, low, high = 0.35, 0.45, 1.0, 10.0
    if elapsed >= GIVE_UP_AFTER_SECONDS:
        return None
    ratio = max(elapsed, 1.0) / typical
    rarity = math.log(ratio) ** 2 / (4 * spread**2)
    gap = scale * math.sqrt(elapsed + 1.0) * math.exp(min(rarity, 50.0))
    return min(min(max(gap, low), high), GIVE_UP_AFTER_SECONDS - elapsed)


async def run_with_delays(
    sim: Sim, spec: Spec, outcome: Outcome, delay: Callable[[float], float | None]
) -> None:
    """Fixed intervals and the old schedule: a gap after each poll, first come first served."""
    submitted = await sim.request(outcome, None)
    finish = submitted + spec.queued + spec.processing
    outcome.run_time = finish - submitted
    while (gap := delay(sim.now() - submitted)) is not None:
        await asyncio.sleep(gap)
        asked = await sim.request(outcome, None)
        if asked >= finish:
            outcome.delay = asked - finish
            await sim.request(outcome, None)
            return


def fixed(seconds: float) -> Callable[[Sim, Spec, Outcome], Awaitable[None]]:
    async def run(sim: Sim, spec: Spec, outcome: Outcome) -> None:
        await run_with_delays(
            sim, spec, outcome, lambda e: None if e >= GIVE_UP_AFTER_SECONDS else seconds
        )

    return run


async def todays(sim: Sim, spec: Spec, outcome: Outcome) -> None:
    await run_with_delays(
        sim, spec, outcome, lambda e: todays_delay(spec.model.typical_seconds, e)
    )


async def ours(sim: Sim, spec: Spec, outcome: Outcome) -> None:
    """What SegmindClient.wait does, on the virtual clock, with the bot's own parts."""
    estimate = await Durations(sim.log).estimate(spec.model, spec.parameters)
    submitted = await sim.request(outcome, submit_worth(estimate.typical_total(), sim.now))
    start, finish = submitted + spec.queued, submitted + spec.queued + spec.processing
    outcome.run_time = finish - submitted
    schedule = PollSchedule(estimate, max_interval=CEILING)
    watch = Watch(schedule, submitted, requests_per_minute=sim.budget.per_minute, clock=sim.now)
    while (due := watch.due()) is not None:
        await asyncio.sleep(max(due - sim.now(), 0.0))
        asked = await sim.request(outcome, watch.worth)
        if asked >= finish:
            outcome.delay = asked - finish
            await sim.request(outcome, lambda: RESULT_WORTH)
            sim.log.record(spec)
            return
        watch.saw("QUEUED" if asked < start else "PROCESSING")


async def oracle(sim: Sim, spec: Spec, outcome: Outcome) -> None:
    submitted = await sim.request(outcome, lambda: SUBMIT_WORTH)
    outcome.run_time = spec.queued + spec.processing
    await asyncio.sleep(outcome.run_time)
    outcome.delay = await sim.request(outcome, lambda: RESULT_WORTH) - (
        submitted + outcome.run_time
    )
    await sim.request(outcome, lambda: RESULT_WORTH)


STRATEGIES: dict[str, Callable[[Sim, Spec, Outcome], Awaitable[None]]] = {
    "fixed 1 s": fixed(1.0),
    "fixed 2 s": fixed(2.0),
    "before": todays,
    "ours": ours,
    "oracle": oracle,
}


# --- Scenarios ---


@dataclass
class Scenario:
    name: str
    specs: list[Spec]
    limit: int | None  # requests per minute; None: unlimited
    in_flight: int | None  # None: every job runs at once
    spacing: float  # seconds between arrivals (0: all at the start)
    warm: list[Spec] = field(default_factory=list)  # runs learned before it starts


@dataclass
class Result:
    outcomes: list[Outcome]
    grants: list[float]
    started: float
    ended: float


def simulate(scenario: Scenario, strategy: str) -> Result:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(_simulate(loop, scenario, strategy))
    finally:
        loop.close()


async def _simulate(loop: VirtualLoop, scenario: Scenario, strategy: str) -> Result:
    grants: list[float] = []
    limit = scenario.limit or 10**9
    budget = RequestBudget(
        limit, 60.0, margin=1.0, clock=loop.time, sleep=asyncio.sleep, on_grant=grants.append
    )
    log = MemoryLog()
    for spec in scenario.warm:
        log.record(spec)
    sim, run = Sim(loop, budget, log), STRATEGIES[strategy]
    slots = asyncio.Semaphore(scenario.in_flight or len(scenario.specs))
    started = loop.time()

    async def one(spec: Spec) -> Outcome:
        outcome = Outcome(spec)
        await asyncio.sleep(spec.number * scenario.spacing)
        arrived = loop.time()
        async with slots:
            await run(sim, spec, outcome)
        if outcome.delay is not None:
            outcome.time_to_video = loop.time() - arrived
        return outcome

    outcomes = await asyncio.gather(*(one(spec) for spec in scenario.specs))
    return Result(list(outcomes), grants, started, loop.time())


# --- Figures ---


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


@dataclass(frozen=True)
class Figures:
    requests: float
    delay: float
    delay_p95: float
    share: float
    share_p95: float
    delivered: int
    lost: int
    per_hour: float
    to_video_p95: float
    busiest: int

    @classmethod
    def of(cls, result: Result, outcomes: Sequence[Outcome] | None = None) -> Figures:
        chosen = result.outcomes if outcomes is None else outcomes
        done = [o for o in chosen if o.delay is not None]
        delays = [o.delay for o in done if o.delay is not None]
        shares = [o.delay / o.run_time for o in done if o.delay is not None]
        hours = (result.ended - result.started) / 3600
        return cls(
            requests=sum(o.requests for o in chosen) / max(len(done), 1),
            delay=mean(delays),
            delay_p95=percentile(delays, 0.95),
            share=mean(shares),
            share_p95=percentile(shares, 0.95),
            delivered=len(done),
            lost=len(chosen) - len(done),
            per_hour=len(done) / hours if hours else math.nan,
            to_video_p95=percentile([o.time_to_video or 0.0 for o in done], 0.95),
            busiest=busiest(result.grants, 60.0),
        )


def recovery(result: Result, slow: range, window: int = 10) -> tuple[float, int | None]:
    """The slowed model's steady requests per job (its last 40 jobs in the slow phase), and
    how many of its jobs after the slow-down began until a rolling mean is back within 10 %."""
    affected = [o for o in result.outcomes if o.spec.model.slug == SLOWED and o.spec.number in slow]
    steady = mean([o.requests for o in affected[-40:]])
    for end in range(window, len(affected) + 1):
        if abs(mean([o.requests for o in affected[end - window : end]]) - steady) <= 0.1 * steady:
            return steady, end
    return steady, None


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=900, help="jobs of the unlimited scenario")
    parser.add_argument("--busy-jobs", type=int, default=1200, help="jobs of the 50/min scenario")
    args = parser.parse_args(argv)
    if args.jobs < 3 * WARM_UP:
        # Its first WARM_UP jobs are not counted, and its middle third is the slow-down.
        parser.error(f"--jobs must be at least {3 * WARM_UP}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    slow = range(args.jobs // 3, 2 * args.jobs // 3)
    warm = draw_jobs(random.Random(args.seed + 1), 200)
    scenarios = [
        Scenario("unlimited", draw_jobs(rng, args.jobs, slow=slow), None, None, 20.0),
        Scenario("50/min, 20 in flight", draw_jobs(rng, args.busy_jobs), 50, 20, 0.0, warm),
        Scenario("5/min, backlog of 60, 8 in flight", draw_jobs(rng, 60), 5, 8, 0.0, warm),
    ]
    print(__doc__.splitlines()[0])
    print(
        f"seed {args.seed}; ceiling {CEILING:g} s; {PollSchedule.__name__} finish_cost"
        f" {PollSchedule.finish_cost:g}, start_cost {PollSchedule.start_cost:g}"
    )
    print("req = requests per delivered job (submit, polls, result); delay = detection delay;")
    print("share = delay / the job's time at Segmind; to video = arrival to the result fetched.\n")
    header = (
        f"{'scenario':<34} {'strategy':<10} {'req':>6} {'delay':>6} {'p95':>6} {'share':>6}"
        f" {'p95':>6} {'done':>5} {'lost':>4} {'per h':>6} {'to video p95':>12} {'busiest':>7}"
    )
    print(header)
    print("-" * len(header))
    figures: dict[tuple[str, str], Figures] = {}
    unlimited: dict[str, Result] = {}
    for scenario in scenarios:
        for strategy in STRATEGIES:
            result = simulate(scenario, strategy)
            counted = result.outcomes
            if scenario.limit is None:
                unlimited[strategy] = result
                counted = [o for o in result.outcomes if o.spec.number >= WARM_UP]
            f = figures[scenario.name, strategy] = Figures.of(result, counted)
            print(
                f"{scenario.name:<34} {strategy:<10} {f.requests:>6.1f} {f.delay:>6.2f}"
                f" {f.delay_p95:>6.2f} {f.share:>6.1%} {f.share_p95:>6.1%} {f.delivered:>5}"
                f" {f.lost:>4} {f.per_hour:>6.1f} {f.to_video_p95:>11.0f}s {f.busiest:>7}"
            )
        print()
    print("\n".join(targets(scenarios, figures, unlimited["ours"], slow)))
    return 0


def targets(
    scenarios: Sequence[Scenario],
    figures: dict[tuple[str, str], Figures],
    unlimited: Result,
    slow: range,
) -> list[str]:
    free, fifty, five = (s.name for s in scenarios)
    ours, before = figures[free, "ours"], figures[free, "before"]
    fixed2 = figures[free, "fixed 2 s"]
    vs_fixed = fixed2.requests / ours.requests
    vs_before = before.requests / ours.requests
    lines = ["Targets:"]
    lines.append(
        f"  unlimited, after {WARM_UP} jobs: {vs_fixed:.2f}x fewer requests than fixed 2 s"
        f" (>= 7)  {verdict(vs_fixed >= 7)}; {vs_before:.2f}x fewer than before (>= 1.8)"
        f"  {verdict(vs_before >= 1.8)}"
    )
    lines.append(
        f"  unlimited: mean delay {ours.share:.1%} of the job's time (<= 3 %)"
        f"  {verdict(ours.share <= 0.03)}; p95 {ours.share_p95:.1%} (<= 8 %)"
        f"  {verdict(ours.share_p95 <= 0.08)}"
    )
    ours50, before50 = figures[fifty, "ours"], figures[fifty, "before"]
    lines.append(
        f"  50/min: busiest 60 s {ours50.busiest} (<= 50)  {verdict(ours50.busiest <= 50)};"
        f" mean delay {ours50.delay:.1f} s vs before {before50.delay:.1f} s (<= half)"
        f"  {verdict(ours50.delay <= before50.delay / 2)}; p95 {ours50.share_p95:.1%}"
        f" of the job's time (<= 12 %)  {verdict(ours50.share_p95 <= 0.12)}"
    )
    ours5, before5 = figures[five, "ours"], figures[five, "before"]
    gain = ours5.per_hour / before5.per_hour
    lines.append(
        f"  5/min: {ours5.per_hour:.1f} videos an hour vs before {before5.per_hour:.1f}"
        f" ({gain:.2f}x, >= 3)  {verdict(gain >= 3)}; busiest 60 s {ours5.busiest} (<= 5)"
        f"  {verdict(ours5.busiest <= 5)}; lost to the retention hour {ours5.lost}"
        f"  {verdict(ours5.lost == 0)}"
    )
    bound = 5 * 60 / 3  # a job takes at least a submit, a poll and a result fetch
    lines.append(
        f"    (no strategy can pass 3x here: {bound:.0f} videos an hour is the bound at 3"
        f" requests a job, and the oracle makes {figures[five, 'oracle'].per_hour:.1f})"
    )
    steady, back = recovery(unlimited, slow)
    lines.append(
        f"  after the {SLOWER:g}x slow-down of {SLOWED}: steady {steady:.1f} requests a job,"
        f" back within 10 % after {back} of its jobs (<= 20)"
        f"  {verdict(back is not None and back <= 20)}"
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
