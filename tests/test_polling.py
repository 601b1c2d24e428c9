"""The poll schedule: sparse early, dense around the typical finish, capped, and it gives up."""

from __future__ import annotations

import pytest

from bot.models import CATALOGUE
from bot.polling import RETENTION_SECONDS, PollSchedule

TYPICAL = sorted({model.typical_seconds for model in CATALOGUE.values()})


def poll_times(schedule: PollSchedule) -> list[float]:
    times, elapsed = [], 0.0
    while (delay := schedule.delay(elapsed)) is not None:
        elapsed += delay
        times.append(elapsed)
    return times


@pytest.mark.parametrize("typical", TYPICAL)
@pytest.mark.parametrize("max_interval", [10.0, 3.0, 30.0])
def test_no_gap_exceeds_the_maximum_and_polling_stops_inside_retention(
    typical: float, max_interval: float
) -> None:
    times = poll_times(PollSchedule(typical, max_interval=max_interval))
    gaps = [later - earlier for earlier, later in zip([0.0, *times], times, strict=False)]

    assert max(gaps) <= max_interval + 1e-9
    assert min(gaps) > 0
    assert times[-1] < RETENTION_SECONDS


@pytest.mark.parametrize("typical", TYPICAL)
def test_polls_crowd_around_the_typical_duration(typical: float) -> None:
    schedule = PollSchedule(typical)

    early = schedule.delay(0.2 * typical)
    around = schedule.delay(typical)
    late = schedule.delay(3 * typical)

    assert early is not None and around is not None and late is not None
    assert around < early and around < late
    assert early == 10.0  # a job this young is very unlikely to be done


def test_a_short_job_is_watched_closely_near_its_finish() -> None:
    times = poll_times(PollSchedule(30))
    near_finish = [t for t in times if 22 <= t <= 38]
    assert len(near_finish) >= 6


def test_it_gives_up_once_the_deadline_has_passed() -> None:
    schedule = PollSchedule(30)
    assert schedule.delay(schedule.give_up_after) is None
    last = schedule.delay(schedule.give_up_after - 2)
    assert last is not None and last <= 2
