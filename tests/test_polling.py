"""The poll schedule: where the learned durations put the polls, a ceiling, QUEUED apart."""

from __future__ import annotations

import math

import pytest

from bot.durations import DurationEstimate, LogNormal
from bot.models import CATALOGUE
from bot.polling import (
    RETENTION_SECONDS,
    SUBMIT_WORTH,
    PollSchedule,
    Sighting,
    Watch,
    submit_worth,
)

TYPICAL = sorted({model.typical_seconds for model in CATALOGUE.values()})


def learned(processing: float, sigma: float = 0.15, queued: float = 3.0) -> PollSchedule:
    estimate = DurationEstimate(
        LogNormal(math.log(queued), 1.0), LogNormal(math.log(processing), sigma), samples=50
    )
    return PollSchedule(estimate)


def polls_until(schedule: PollSchedule, finish: float, start: float = 0.0) -> list[float]:
    """The poll times for a run that starts and finishes at these seconds after its submit."""
    seen, times = Sighting(), []
    while (at := schedule.next_poll(seen)) is not None:
        times.append(at)
        if at >= finish:
            break
        seen.saw("QUEUED" if at < start else "PROCESSING", at)
    return times


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip([0.0, *times], times, strict=False)]


@pytest.mark.parametrize("typical", TYPICAL)
@pytest.mark.parametrize("ceiling", [3.0, 10.0, 30.0])
def test_no_gap_exceeds_the_ceiling_and_polling_stops_inside_retention(
    typical: float, ceiling: float
) -> None:
    schedule = PollSchedule.around(typical, max_interval=ceiling)
    times = polls_until(schedule, finish=RETENTION_SECONDS * 2)  # a run that never ends

    assert max(gaps(times)) <= ceiling + 1e-9
    assert min(gaps(times)) > 0
    assert times[-1] <= schedule.give_up_after < RETENTION_SECONDS
    assert schedule.next_poll(Sighting(last_look=schedule.give_up_after)) is None


@pytest.mark.parametrize("processing", [30.0, 70.0, 229.0])
def test_polls_crowd_where_the_learned_distribution_has_its_mass(processing: float) -> None:
    schedule = learned(processing)
    times = polls_until(schedule, finish=processing * 3, start=2.0)

    middle = [t for t in times if 0.8 * processing <= t <= 1.25 * processing]
    early = [t for t in times if 10 < t < 0.6 * processing]
    assert min(gaps(middle)) < max(gaps(early), default=schedule.max_interval)
    assert len(middle) >= 4  # the finish is watched closely where it is likely
    assert len(early) <= 0.6 * processing / schedule.max_interval + 1  # only the ceiling's polls


def test_a_learned_duration_finds_the_videos_sooner_for_no_more_polls() -> None:
    # PixVerse runs the bot has learned to take 60 s, give or take 8 %; the catalogue says 67.
    runs = LogNormal(math.log(60.0), 0.08)
    finishes = [2.0 + runs.quantile((i + 0.5) / 40) for i in range(40)]
    guessed = [polls_until(PollSchedule.around(67.0), f, start=2.0) for f in finishes]
    known = [polls_until(learned(60.0, sigma=0.08), f, start=2.0) for f in finishes]

    def delay(times: list[list[float]]) -> float:
        return sum(t[-1] - f for t, f in zip(times, finishes, strict=True)) / len(finishes)

    assert sum(map(len, known)) <= sum(map(len, guessed))
    assert delay(known) < 0.7 * delay(guessed)


def test_a_queued_job_is_polled_for_its_start_not_for_a_finish_counted_from_the_submit() -> None:
    schedule = learned(60.0)
    cold = polls_until(schedule, finish=180.0 + 60.0, start=180.0)  # a 3 min cold start
    while_queued = [t for t in cold if t < 180.0]
    after_start = [t for t in cold if t >= 180.0]

    # While queued, nothing is crowded around 60 s (where a warm run would finish) ...
    assert not [g for g in gaps(while_queued)[3:] if g < 5.0]
    # ... and once seen running, the finish is found from the start, as precisely as usual.
    assert after_start[-1] - 240.0 < 6.0
    assert min(gaps(after_start)) < 5.0


def test_a_run_far_past_what_was_learned_is_polled_less_and_less_often() -> None:
    schedule = learned(60.0)
    times = polls_until(schedule, finish=900.0, start=2.0)  # fifteen times slower than learned
    near = gaps([t for t in times if 50 < t < 75])
    late = gaps([t for t in times if t > 300])[1:]
    assert min(late) > 2 * min(near)
    assert late == sorted(late)  # backing off the longer it runs, up to the ceiling


def test_the_watch_counts_from_a_start_seen_by_an_earlier_run_of_the_bot() -> None:
    now = [1000.0]
    schedule = learned(60.0)
    resumed = Watch(schedule, submitted_at=900.0, running_since=905.0, clock=lambda: now[0])
    fresh = Watch(schedule, submitted_at=900.0, clock=lambda: now[0])

    # 100 s after the submit and 95 s into a 60 s run: surely over, and worth a poll at once.
    assert resumed.due() is not None and resumed.due() <= now[0]
    assert resumed.worth() > 0.9
    assert fresh.due() is not None and fresh.due() <= now[0]


def test_a_late_first_look_puts_the_start_where_the_queue_time_does() -> None:
    # The first poll came late (the budget was spent): at 40 s a 30 s run is still PROCESSING.
    seen = Sighting()
    seen.saw("PROCESSING", 40.0)
    warm = learned(30.0, queued=2.0)  # runs start within seconds: this one is nearly done
    cold = learned(30.0, queued=120.0)  # starts take minutes: it began late in the bracket

    assert warm.outlook(seen, 50.0).chance > 0.8
    assert cold.outlook(seen, 50.0).chance < 0.5 * warm.outlook(seen, 50.0).chance
    assert warm.next_poll(seen) < cold.next_poll(seen)  # so it is looked at again sooner


def seen_running(until: float) -> Sighting:
    seen = Sighting()
    for state, at in (("QUEUED", 1.0), ("PROCESSING", 2.0), ("PROCESSING", until)):
        seen.saw(state, at)
    return seen


def test_of_two_jobs_overdue_by_as_many_seconds_the_shorter_is_polled_first() -> None:
    # Both finished, most likely, 20 s ago: for a 30 s run that is most of its time again,
    # for a 300 s run a fifteenth. The budget serves the higher worth first.
    short = Watch(learned(30.0), submitted_at=0.0, clock=lambda: 52.0)
    short.seen = seen_running(25.0)
    long = Watch(learned(300.0), submitted_at=0.0, clock=lambda: 322.0)
    long.seen = seen_running(270.0)

    short_late = short.schedule.outlook(short.seen, 52.0).lateness
    assert short_late > 3 * long.schedule.outlook(long.seen, 322.0).lateness
    assert short.worth() > long.worth()
    assert short.schedule.outlook(short.seen, short.seen.last_look).lateness == 0.0


def test_a_waiting_submit_gains_worth_the_faster_the_shorter_its_job() -> None:
    now = [0.0]
    short, long = submit_worth(30.0, lambda: now[0]), submit_worth(300.0, lambda: now[0])
    assert short() == long() == SUBMIT_WORTH

    now[0] = 60.0
    assert short() > long() > SUBMIT_WORTH


@pytest.mark.parametrize(("per_minute", "first"), [(5, "likely"), (50, "neglected")])
def test_the_tighter_the_budget_the_more_a_polls_chance_of_a_video_decides(
    per_minute: float, first: str
) -> None:
    # A two-minute run just past its time, against a ten-minute one not looked at for six
    # minutes: the first more likely done, the second more likely found late. On Segmind's
    # Free plan every poll spent before a job is done is a video fewer an hour; on Pro there
    # are requests to spare for the job left waiting.
    likely = Watch(learned(120.0), 0.0, requests_per_minute=per_minute, clock=lambda: 144.0)
    likely.seen = seen_running(132.0)
    neglected = Watch(learned(600.0), 0.0, requests_per_minute=per_minute, clock=lambda: 540.0)
    neglected.seen = seen_running(180.0)
    assert likely.schedule.outlook(likely.seen, 144.0).chance > 1.5 * (
        neglected.schedule.outlook(neglected.seen, 540.0).chance
    )

    worths = {"likely": likely.worth(), "neglected": neglected.worth()}
    assert max(worths, key=worths.__getitem__) == first
