"""The soak's short variant: 100 jobs under provider faults, with the soak's invariants."""

from __future__ import annotations

from pathlib import Path

from bench.soak import SoakConfig, run_soak


async def test_a_hundred_jobs_under_faults_lose_nothing_and_double_nothing(tmp_path: Path) -> None:
    config = SoakConfig(
        jobs=100,
        guilds=10,
        members=50,
        speed=0.02,
        arrival_seconds=5.0,
        requests_per_minute=6000,
        global_concurrency=32,
        burst_every=3.0,
        timeout=240.0,
    )

    report = await run_soak(config, tmp_path)

    assert report.lost == [], report.lines()
    assert report.delivered_twice == []
    assert report.submitted_twice == []
    assert report.delivered + report.failed_with_message == 100
    assert report.credit_balance == 0 and report.credits_still_held == 0
    # Independently of the ledger: every job costs 1, kept when delivered, else given back.
    assert (report.credits_spent, report.credits_refunded) == (
        report.delivered,
        report.failed_with_message,
    )
    assert report.busiest_minute <= config.requests_per_minute
    assert report.delivered >= 80  # the faults are a few percent, not most jobs
    assert report.restarts == 1  # killed halfway, started again: the invariants held through it
