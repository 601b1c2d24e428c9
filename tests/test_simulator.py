"""The simulator as a server owner runs it: `python -m bot.simulator` on a local port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.segmind import SegmindClient
from bot.simulator import Simulator
from tests.conftest import FakeClock

ROOT = Path(__file__).resolve().parent.parent
KEY = "try-it-key"


@pytest.fixture
def simulator_process() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.simulator", "--port", "0", "--speed", "0.01"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "SEGMIND_API_KEY": KEY},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("Segmind simulator listening on http://127.0.0.1:")
        yield banner.split()[4]
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_command_line_simulator_runs_a_job_and_takes_faults(
    simulator_process: str,
) -> None:
    url = simulator_process
    headers = {"x-api-key": KEY}
    payload = {"prompt": "waves on cliffs", "duration": 1}
    async with aiohttp.ClientSession() as http:
        refused = await http.post(f"{url}/v2/grok-imagine-video", json=payload)
        assert refused.status == 401

        invalid = await http.post(
            f"{url}/v2/grok-imagine-video", json={"prompt": "x", "duration": 16}, headers=headers
        )
        assert invalid.status == 400
        assert "`duration` must be between 1 and 15" in (await invalid.json())["error"]

        added = await http.post(
            f"{url}/_simulator/faults",
            json=[{"kind": "credits", "endpoint": "submit"}],
            headers=headers,
        )
        assert added.status == 200
        broke = await http.post(f"{url}/v2/grok-imagine-video", json=payload, headers=headers)
        assert broke.status == 406

        accepted = await http.post(f"{url}/v2/grok-imagine-video", json=payload, headers=headers)
        job = await accepted.json()
        assert job["status"] == "QUEUED"
        assert job["status_url"] == f"{url}/v2/requests/{job['request_id']}/status"

        log = await (await http.get(f"{url}/_simulator/log", headers=headers)).json()
        assert [entry["status"] for entry in log] == [401, 400, 406, 200]


def test_fault_specs_from_the_command_line() -> None:
    from bot.simulator.__main__ import parse_fault

    fault = parse_fault("server_error:endpoint=status,status=502,probability=0.1,count=")
    assert (fault.kind, fault.endpoint, fault.status, fault.probability, fault.count) == (
        "server_error",
        "status",
        502,
        0.1,
        None,
    )


async def test_jobs_last_the_typical_duration_times_the_speed(
    client: SegmindClient, simulator: Simulator, clock: FakeClock
) -> None:
    simulator.clock = clock
    simulator.speed = 0.5
    request_id = await client.submit("svd", {"image": "https://cdn.example.test/cat.png"})

    clock.advance(14.9)
    assert (await client.status(request_id)).state == "PROCESSING"
    clock.advance(0.1)
    assert (await client.status(request_id)).state == "COMPLETED"
