"""The account-wide request budget, counted where Segmind counts it: at the server."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from bot.models import CATALOGUE
from bot.ratelimit import RequestBudget, busiest, reserved_slots
from bot.segmind import SegmindClient
from bot.simulator import Simulator
from tests.conftest import API_KEY, FAST_RETRY, FakeClock, OpenStore, quick_schedule

SVD = CATALOGUE["svd"]
PAYLOAD = SVD.payload(SVD.validate({"image": "https://cdn.example.test/cat.png"}))


async def test_a_hundred_waiters_get_no_more_than_the_limit_in_any_window() -> None:
    """The budget's promise, on a virtual clock: no loop, however slow, can bend it."""
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    grants: list[float] = []
    budget = RequestBudget(60, 60.0, margin=1.0, clock=clock, sleep=sleep, on_grant=grants.append)

    await asyncio.gather(*(budget.acquire() for _ in range(250)))

    assert len(grants) == 250
    assert busiest(grants, 61.0) == 60  # full use of the budget, never more
    assert grants[-1] - grants[0] == pytest.approx(4 * 61.0)  # 60 a window, in arrival order
    assert grants == sorted(grants)


async def test_every_request_of_a_hundred_concurrent_jobs_takes_a_slot_of_the_budget(
    session: aiohttp.ClientSession, simulator: Simulator
) -> None:
    # The production window is 60 s; the same rule on a 1 s window keeps the test short.
    limit, period, margin = 60, 1.0, 0.05
    grants: list[float] = []
    client = SegmindClient(
        session,
        API_KEY,
        base_url=simulator.url,
        budget=RequestBudget(limit, period, margin=margin, on_grant=grants.append),
        retry=FAST_RETRY,
    )
    simulator.speed = 0.02

    async def job() -> str:
        request_id = await client.submit("svd", PAYLOAD)
        return (await client.wait(request_id, quick_schedule(0.6))).video_url

    videos = await asyncio.gather(*(job() for _ in range(100)))

    assert len(set(videos)) == 100
    assert len(simulator.requests("submit")) == 100
    # What reached Segmind is what the budget granted, request for request (how closely the
    # arrivals keep the grants' spacing depends on the machine's load, not on the budget).
    assert len(grants) == len([e for e in simulator.log if e.endpoint != "file"])
    assert busiest(grants, period + margin) <= limit
    assert busiest(grants, period + margin) >= 0.9 * limit  # the budget held the rate down


async def test_a_429_pauses_every_job_until_the_reset_time(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_ids = [await client.submit("svd", PAYLOAD) for _ in range(5)]
    simulator.add_fault("rate_limit", endpoint="status", reset_after=0.5)

    first = asyncio.create_task(client.status(request_ids[0]))
    async with asyncio.timeout(10):  # the 429 has come back and paused the budget
        while client.budget.waiting_time() == 0:  # noqa: ASYNC110 (a moment, not an event)
            await asyncio.sleep(0.01)
    await asyncio.gather(first, *(client.status(request_id) for request_id in request_ids[1:]))

    statuses = simulator.requests("status")
    assert statuses[0].status == 429
    assert len(statuses) == 6
    assert all(entry.at - statuses[0].at >= 0.4 for entry in statuses[1:])


def virtual_budget(limit: int, **options: object) -> tuple[RequestBudget, FakeClock, list[float]]:
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    grants: list[float] = []
    budget = RequestBudget(
        limit, 60.0, margin=1.0, clock=clock, sleep=sleep, on_grant=grants.append, **options
    )
    return budget, clock, grants


async def test_after_a_429_the_budget_resumes_paced_not_in_a_burst() -> None:
    budget, clock, grants = virtual_budget(50)
    await budget.hold_until(clock() + 30.0)  # Segmind: rate limited for 30 s

    await asyncio.gather(*(budget.acquire() for _ in range(50)))

    assert grants[0] == pytest.approx(1030.0)  # nothing before the reset
    gaps = [later - earlier for earlier, later in itertools.pairwise(grants)]
    assert min(gaps) == pytest.approx(61.0 / 50)  # spread over the window the budget allows
    assert busiest(grants, 10.0) <= 9


async def test_a_restarted_budget_continues_the_window_and_the_pending_reset(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    first, clock, _ = virtual_budget(5, record=store)
    for _ in range(5):
        await first.acquire()
    await first.hold_until(clock() + 20.0)

    # A new process, its memory empty, on a clock that reads what the first one's did.
    again, _, grants = virtual_budget(5, record=store)
    sent = await store.recent_sends(clock() - again.window)
    again.restore(sent, await store.rate_limited_until())
    await again.acquire()

    assert grants[0] >= 1000.0 + 61.0  # the five sent before the restart still count
    await store.close()


async def test_a_restart_just_after_a_reset_still_paces_the_requests() -> None:
    budget, clock, grants = virtual_budget(50)
    budget.restore([], resume_at=clock() - 2.0)  # the reset passed 2 s before this start

    await asyncio.gather(*(budget.acquire() for _ in range(10)))

    gaps = [later - earlier for earlier, later in itertools.pairwise(grants)]
    assert min(gaps) == pytest.approx(61.0 / 50)  # still spread out, not a burst


async def test_sends_stamped_in_the_future_never_hold_the_budget_longer_than_a_window() -> None:
    budget, clock, grants = virtual_budget(5)
    # Written before the host's clock was set back ten minutes.
    budget.restore([clock() + 600.0] * 5)

    await budget.acquire()

    assert grants[0] - 1000.0 == pytest.approx(61.0)


# --- The scheduler: which request goes next when the budget binds ---


async def granted_order(budget: RequestBudget, worths: dict[str, float]) -> list[str]:
    order: list[str] = []

    async def ask(name: str) -> None:
        await budget.acquire(lambda: worths[name])
        order.append(name)

    await asyncio.gather(*(ask(name) for name in worths))
    return order


async def test_when_the_budget_binds_the_most_valuable_request_goes_first() -> None:
    budget, _, grants = virtual_budget(5)
    for _ in range(5):
        await budget.acquire()  # the window is full

    order = await granted_order(
        budget, {"long shot": 0.6, "result": 3.0, "likely video": 0.95, "submit": 0.7}
    )

    assert order == ["result", "likely video", "submit", "long shot"]
    assert busiest(grants, 61.0) == 5  # and never more than the budget


async def test_equal_requests_are_served_in_arrival_order() -> None:
    budget, _, _ = virtual_budget(3)
    for _ in range(3):
        await budget.acquire()

    order = await granted_order(budget, {name: 0.5 for name in "abcdef"})

    assert order == list("abcdef")


async def test_a_request_worth_little_is_not_starved_by_a_stream_of_better_ones() -> None:
    budget, clock, grants = virtual_budget(5)
    served: list[float] = []

    async def unlikely_poll() -> None:
        await budget.acquire(lambda: 0.5)  # as much as a submit, but asked first
        served.append(clock())

    async def better_stream() -> None:  # always one more valuable request waiting
        while not served:
            await budget.acquire(lambda: 0.9)

    await asyncio.gather(better_stream(), better_stream(), unlikely_poll())

    # Aging lifts it above the stream within a few windows (one worth of 0.4 every 4 windows).
    assert served[0] - 1000.0 < 6 * budget.window
    assert busiest(grants, 61.0) <= 5


async def test_long_shots_leave_room_for_a_video_that_turns_up() -> None:
    budget, clock, grants = virtual_budget(10)
    order: list[str] = []

    async def ask(name: str, worth: float) -> None:
        await budget.acquire(lambda: worth)
        order.append(name)

    long_shots = [asyncio.create_task(ask(f"poll {i}", 0.1)) for i in range(20)]
    spendable = 10 - reserved_slots(10)  # what long shots may take of a window
    async with asyncio.timeout(5):
        while len(order) < spendable:  # noqa: ASYNC110 (the virtual clock runs while this waits)
            await asyncio.sleep(0)
    before, asked = len(order), clock()
    await ask("result", 3.0)  # a finished job's result, asked once the long shots had gone

    assert before < 10 and order[before] == "result"  # the reserve was still there for it
    assert grants[before] - asked < 2.0  # at once, not a window later
    await asyncio.gather(*long_shots)
    assert busiest(grants, 61.0) <= 10


async def test_a_worth_that_cannot_be_read_stalls_nothing() -> None:
    budget, _, grants = virtual_budget(2)

    def broken() -> float:
        raise ZeroDivisionError

    await asyncio.gather(*(budget.acquire(broken) for _ in range(3)), budget.acquire())

    assert len(grants) == 4


async def test_processes_sharing_one_store_never_pass_the_accounts_budget_together(
    open_store: OpenStore,
) -> None:
    """Three processes of a fleet, each with its own budget object, on one clock: the slots
    are claimed in the store, so the fleet sends what one process would, and a 429 one of
    them heard holds the others too."""
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    grants: list[float] = []
    stores = [await open_store() for _ in range(3)]
    budgets = [
        RequestBudget(5, 60.0, margin=1.0, clock=clock, sleep=sleep, on_grant=grants.append,
                      shared=store)
        for store in stores
    ]  # fmt: skip
    await budgets[0].hold_until(clock() + 30.0)

    await asyncio.gather(*(budget.acquire() for budget in budgets for _ in range(4)))

    assert len(grants) == 12
    assert min(grants) >= 1030.0  # nobody sent before the reset the first one heard of
    assert busiest(grants, 61.0) <= 5
