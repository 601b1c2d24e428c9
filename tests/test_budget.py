"""The account-wide request budget, counted where Segmind counts it: at the server."""

from __future__ import annotations

import asyncio

import aiohttp

from bot.models import CATALOGUE
from bot.ratelimit import RequestBudget
from bot.segmind import SegmindClient
from bot.simulator import Simulator
from tests.conftest import API_KEY, FAST_RETRY, quick_schedule

SVD = CATALOGUE["svd"]
PAYLOAD = SVD.payload(SVD.validate({"image": "https://cdn.example.test/cat.png"}))


async def test_a_hundred_concurrent_jobs_never_exceed_the_budget(
    session: aiohttp.ClientSession, simulator: Simulator
) -> None:
    # The production window is 60 s; the same rule on a 1 s window keeps the test short.
    limit, period = 60, 1.0
    client = SegmindClient(
        session,
        API_KEY,
        base_url=simulator.url,
        budget=RequestBudget(limit, period, margin=0.05),
        retry=FAST_RETRY,
    )
    simulator.speed = 0.02

    async def job() -> str:
        request_id = await client.submit("svd", PAYLOAD)
        return (await client.wait(request_id, quick_schedule(0.6))).video_url

    videos = await asyncio.gather(*(job() for _ in range(100)))

    assert len(set(videos)) == 100
    assert len(simulator.requests("submit")) == 100
    busiest = simulator.busiest_window(period)
    assert busiest <= limit
    assert busiest >= 0.9 * limit  # the budget, not the load, was what held the rate down


async def test_a_429_pauses_every_job_until_the_reset_time(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_ids = [await client.submit("svd", PAYLOAD) for _ in range(5)]
    simulator.add_fault("rate_limit", endpoint="status", reset_after=0.5)

    first = asyncio.create_task(client.status(request_ids[0]))
    await asyncio.sleep(0.1)  # the 429 has come back; the other jobs poll now
    await asyncio.gather(first, *(client.status(request_id) for request_id in request_ids[1:]))

    statuses = simulator.requests("status")
    assert statuses[0].status == 429
    assert len(statuses) == 6
    assert all(entry.at - statuses[0].at >= 0.4 for entry in statuses[1:])
