from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.polling import PollSchedule
from bot.ratelimit import RequestBudget
from bot.segmind import RetryPolicy, SegmindClient
from bot.simulator import Simulator

API_KEY = "sim-test-key-5f1c"

# Retries as in production, with the waits shrunk so a test takes milliseconds.
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def quick_schedule(typical_seconds: float) -> PollSchedule:
    return PollSchedule.around(typical_seconds, max_interval=0.2, min_interval=0.02)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(api_key=API_KEY, speed=0.01, seed=7)
    await sim.start()
    yield sim
    await sim.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        yield http


@pytest.fixture
def client(session: aiohttp.ClientSession, simulator: Simulator) -> SegmindClient:
    return SegmindClient(
        session,
        API_KEY,
        base_url=simulator.url,
        budget=RequestBudget(10_000),
        retry=FAST_RETRY,
    )
