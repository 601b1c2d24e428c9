"""Benchmark the status-poll schedule against fixed-interval polling.

Pure arithmetic, no sleeping and no network: a job finishes C seconds after submission, a
strategy polls at t1 < t2 < ..., and the finish is detected by the first poll at or after C.
For each model we sample completion times between half and twice its typical duration and
compare our schedule with fixed 1 s polling (the official SDK's default) and fixed 2 s (the
seed examples) on the very same samples: status polls per job and detection delay (mean, p95).

Run from the repository root: python bench/polling.py [--samples N] [--seed S]
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.models import CATALOGUE, VideoModel
from bot.polling import PollSchedule

LOW, HIGH = 0.5, 2.0  # completion times are clipped to [LOW * T, HIGH * T]
SIGMA = 0.35  # log-normal spread of the "typical" distribution
TARGET_RATIO = 4.0
TARGET_MEAN_DELAY = 2.5
MAX_INTERVAL = PollSchedule(1.0).max_interval  # SEGMIND_POLL_INTERVAL_MAX; --max-interval sets it

DelayFn = Callable[[float], float | None]
Sampler = Callable[[random.Random, float], float]


@dataclass(frozen=True)
class Strategy:
    name: str
    delay_for: Callable[[float], DelayFn]  # typical seconds -> delay(elapsed)


@dataclass(frozen=True)
class Outcome:
    polls: list[int]
    delays: list[float]
    give_ups: int
    max_gap: float


STRATEGIES = (
    Strategy("fixed 1 s", lambda typical: lambda elapsed: 1.0),
    Strategy("fixed 2 s", lambda typical: lambda elapsed: 2.0),
    Strategy("ours", lambda typical: PollSchedule(typical, max_interval=MAX_INTERVAL).delay),
)
# Not a contender: every gap at the cap, the fewest polls any capped schedule can make.
CEILING = Strategy("every gap at the cap", lambda typical: lambda elapsed: MAX_INTERVAL)
OURS = STRATEGIES[-1].name
BASELINE = STRATEGIES[1].name


def clip(value: float, typical: float) -> float:
    return min(max(value, LOW * typical), HIGH * typical)


def sample_typical(rng: random.Random, typical: float) -> float:
    return clip(typical * math.exp(rng.gauss(0.0, SIGMA)), typical)


def sample_uniform(rng: random.Random, typical: float) -> float:
    return rng.uniform(LOW * typical, HIGH * typical)


DISTRIBUTIONS: dict[str, tuple[str, Sampler]] = {
    "typical": (f"T*exp(N(0, {SIGMA})) clipped to [{LOW}T, {HIGH}T]", sample_typical),
    "uniform": (f"uniform on [{LOW}T, {HIGH}T]", sample_uniform),
}


def poll_times(delay: DelayFn, horizon: float) -> list[float]:
    """Poll times until one reaches `horizon` or the schedule gives up."""
    times: list[float] = []
    elapsed = 0.0
    while elapsed < horizon:
        gap = delay(elapsed)
        if gap is None:
            break
        elapsed += gap
        times.append(elapsed)
    return times


def simulate(times: Sequence[float], completions: Sequence[float]) -> Outcome:
    polls: list[int] = []
    delays: list[float] = []
    give_ups = 0
    last = -1
    for completion in completions:
        index = bisect.bisect_left(times, completion)
        if index == len(times):
            give_ups += 1
            continue
        polls.append(index + 1)
        delays.append(times[index] - completion)
        last = max(last, index)
    return Outcome(polls, delays, give_ups, max_gap(times[: last + 1]))


def max_gap(times: Sequence[float]) -> float:
    gaps = [later - earlier for earlier, later in zip([0.0, *times], times, strict=False)]
    return max(gaps, default=0.0)


def merge(outcomes: Sequence[Outcome]) -> Outcome:
    return Outcome(
        [p for o in outcomes for p in o.polls],
        [d for o in outcomes for d in o.delays],
        sum(o.give_ups for o in outcomes),
        max(o.max_gap for o in outcomes),
    )


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile, `fraction` in [0, 1]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def run_model(model: VideoModel, completions: Sequence[float]) -> dict[str, Outcome]:
    horizon = max(completions)
    return {
        strategy.name: simulate(
            poll_times(strategy.delay_for(model.typical_seconds), horizon), completions
        )
        for strategy in (*STRATEGIES, CEILING)
    }


def run_distribution(sampler: Sampler, samples: int, seed: int) -> dict[str, dict[str, Outcome]]:
    """Outcomes per row (model command, then "mix") and per strategy."""
    rng = random.Random(seed)
    rows: dict[str, dict[str, Outcome]] = {}
    for model in CATALOGUE.values():
        completions = [sampler(rng, model.typical_seconds) for _ in range(samples)]
        rows[model.command] = run_model(model, completions)
    rows["mix"] = {
        strategy.name: merge([rows[m.command][strategy.name] for m in CATALOGUE.values()])
        for strategy in (*STRATEGIES, CEILING)
    }
    return rows


def ratio(row: dict[str, Outcome]) -> float:
    return mean(row[BASELINE].polls) / mean(row[OURS].polls)


def format_table(rows: dict[str, dict[str, Outcome]]) -> list[str]:
    typical = {m.command: f"{m.typical_seconds:g}" for m in CATALOGUE.values()}
    name_width = max(len(name) for name in rows)
    group = "{:>7} {:>6} {:>6}"
    lead = f"{'':<{name_width}} {'':>4}"
    header = "".join(f"   {s.name:^21}" for s in STRATEGIES)
    sub = "".join("   " + group.format("polls", "mean", "p95") for _ in STRATEGIES)
    lines = [
        (lead + header).rstrip(),
        f"{'model':<{name_width}} {'T':>4}" + sub + f"   {'ratio':>6}",
    ]
    for name, row in rows.items():
        cells = "".join(
            "   "
            + group.format(
                f"{mean(row[s.name].polls):.1f}",
                f"{mean(row[s.name].delays):.2f}",
                f"{percentile(row[s.name].delays, 0.95):.2f}",
            )
            for s in STRATEGIES
        )
        lines.append(
            f"{name:<{name_width}} {typical.get(name, '-'):>4}{cells}   {ratio(row):>6.2f}"
        )
    return lines


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report_targets(rows: dict[str, dict[str, Outcome]]) -> list[str]:
    mix = rows["mix"]
    mix_ratio = ratio(mix)
    mix_delay = mean(mix[OURS].delays)
    ceiling = mean(mix[BASELINE].polls) / mean(mix[CEILING.name].polls)
    ceiling_delay = mean(mix[CEILING.name].delays)
    return [
        f"Bound: with gaps capped at {MAX_INTERVAL:g} s, even a schedule that always waits the"
        f" full cap polls only {ceiling:.2f}x less than fixed 2 s"
        f" (mean delay {ceiling_delay:.2f} s).",
        "Targets (typical distribution, mix):",
        f"  polls vs fixed 2 s: {mix_ratio:.2f}x fewer (>= {TARGET_RATIO:.1f}x)"
        f"  {verdict(mix_ratio >= TARGET_RATIO)}",
        f"  our mean detection delay: {mix_delay:.2f} s (< {TARGET_MEAN_DELAY} s)"
        f"  {verdict(mix_delay < TARGET_MEAN_DELAY)}",
    ]


def report_checks(results: dict[str, dict[str, dict[str, Outcome]]]) -> list[str]:
    ours = [rows["mix"][OURS] for rows in results.values()]
    cap = PollSchedule(1.0).max_interval
    gap = max(o.max_gap for o in ours)
    within = gap <= cap + 1e-9  # float sums of capped gaps
    give_ups = sum(o.give_ups for o in ours)
    return [
        "Checks (our schedule, both distributions):",
        f"  max gap between polls: {gap:.2f} s (max_interval {cap:g} s)  {verdict(within)}",
        f"  give-ups before detection: {give_ups}  {verdict(give_ups == 0)}",
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000, help="completion times per model")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument(
        "--max-interval",
        type=float,
        default=MAX_INTERVAL,
        help="the longest gap between polls (SEGMIND_POLL_INTERVAL_MAX)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    global MAX_INTERVAL
    args = parse_args(argv)
    MAX_INTERVAL = args.max_interval
    defaults = PollSchedule(1.0, max_interval=MAX_INTERVAL)
    print(
        f"Poll schedule benchmark: {args.samples} samples per model, seed {args.seed}; "
        f"ours = PollSchedule(spread={defaults.spread:g}, scale={defaults.scale:g}, "
        f"min_interval={defaults.min_interval:g}, max_interval={defaults.max_interval:g})"
    )
    print("polls = status polls per job (mean); mean/p95 = detection delay in seconds;")
    print(f"ratio = {BASELINE} polls / {OURS} polls.")
    results: dict[str, dict[str, dict[str, Outcome]]] = {}
    for name, (description, sampler) in DISTRIBUTIONS.items():
        results[name] = run_distribution(sampler, args.samples, args.seed)
        print(f"\n{name} completion times: {description}")
        print("\n".join(format_table(results[name])))
    print()
    print("\n".join(report_targets(results["typical"])))
    print("\n".join(report_checks(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
