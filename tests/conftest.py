from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.polling import PollSchedule
from bot.ratelimit import RequestBudget
from bot.segmind import RetryPolicy, SegmindClient
from bot.simulator import Simulator
from bot.store import MIGRATIONS, Store
from tests.postgres import PostgresServer, postgres_server

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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    """One PostgreSQL server for the whole run (None where the machine has none)."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer | None) -> str:
    """A fresh PostgreSQL database of this test's own; the test is skipped without a server."""
    if postgres is None:
        pytest.skip("no PostgreSQL on this machine (.ci/run installs it)")
    return postgres.new_database()


OpenStore = Callable[..., Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenStore]:
    """Opens the store of this test, on each backend in turn: every call opens the same
    database again (as a restarted bot would), and each test has a database of its own."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    opened: list[Store] = []

    async def open_(migrations: Iterable[str] = MIGRATIONS) -> Store:
        store = await Store.open(tmp_path / "bot.db", migrations, url=url)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        with contextlib.suppress(Exception):  # closed by the test already
            await store.close()
