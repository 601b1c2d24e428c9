"""Never billed twice, never failed needlessly: the real `python -m bot` stopped (SIGTERM) or
killed (SIGKILL) while a submit waits for the budget, sits out a 429 or is on the wire."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from bot.ratelimit import reserved_slots
from bot.simulator import Simulator
from tests.bot_process import bot_process, slash_queued
from tests.bot_world import job_states, states_become
from tests.fakediscord import FakeDiscord

GRACE = 4.0  # SHUTDOWN_GRACE_SECONDS for these runs
RESET = 10.0  # seconds a 429 asks the bot to wait


def api_requests(simulator: Simulator) -> int:
    """What counts against the budget: every request but the video downloads."""
    return len([entry for entry in simulator.log if entry.endpoint != "file"])


async def started(fake: FakeDiscord) -> None:
    await fake.wait_for(lambda: fake.commands, timeout=30, message="bot started")
    await fake.wait_until_connected(timeout=30)


async def stopped(process: asyncio.subprocess.Process, within: float) -> int:
    try:
        async with asyncio.timeout(within):
            return await process.wait()
    except TimeoutError:
        process.send_signal(signal.SIGUSR1)  # its threads' stacks go to the log
        await asyncio.sleep(0.5)
        raise


async def test_sigterm_lets_a_submit_on_the_wire_be_answered_and_recorded(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.02
    database, log = tmp_path / "bot.db", tmp_path / "bot.log"
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Studio")
        alice = guild.add_member("alice")
        async with bot_process(
            fake, simulator, database, log, shutdown_grace_seconds=GRACE
        ) as process:
            await started(fake)
            simulator.add_fault("slow", endpoint="submit", delay=1.5)  # answered in 1.5 s
            await slash_queued(fake, guild, alice, "grok-video", {"prompt": "on the wire"})
            await states_become(database, fake, {"on the wire": "submitting"})

            process.send_signal(signal.SIGTERM)

            assert await stopped(process, GRACE + 10) == 0
        [(_, state, _, _)] = (await job_states(database)).values()
        assert state == "submitted"  # the answer came in during the grace, and was recorded

        async with bot_process(fake, simulator, database, log):
            await states_become(database, fake, {"on the wire": "delivered"})
    assert len(simulator.requests("submit")) == 1
    assert "SIGTERM received" in log.read_text()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
async def test_a_stop_while_a_submit_waits_for_the_budget_sends_it_after_the_restart(
    simulator: Simulator, tmp_path: Path, stop: signal.Signals
) -> None:
    simulator.speed = 0.02
    database, log = tmp_path / "bot.db", tmp_path / "bot.log"
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Studio")
        alice, bob = guild.add_member("alice"), guild.add_member("bob")
        # One request a minute: the first submit takes it, the second waits a minute for its own.
        async with bot_process(
            fake, simulator, database, log,
            segmind_requests_per_minute=1, shutdown_grace_seconds=GRACE,
        ) as process:  # fmt: skip
            await started(fake)
            await slash_queued(fake, guild, alice, "grok-video", {"prompt": "first"})
            await states_become(database, fake, {"first": "submitted"})
            await slash_queued(fake, guild, bob, "grok-video", {"prompt": "waiting"})

            process.send_signal(stop)

            assert await stopped(process, GRACE + 10) == (0 if stop is signal.SIGTERM else -9)
        states = await job_states(database)
        assert states["waiting"][1] == "queued"  # nothing was sent, so nothing is unknown

        async with bot_process(fake, simulator, database, log):
            await states_become(database, fake, {"first": "delivered", "waiting": "delivered"})
    assert sorted(e.slug for e in simulator.requests("submit")) == ["grok-imagine-video"] * 2


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
async def test_a_stop_while_sitting_out_a_429_resubmits_once_after_the_reset(
    simulator: Simulator, tmp_path: Path, stop: signal.Signals
) -> None:
    simulator.speed = 0.02
    database, log = tmp_path / "bot.db", tmp_path / "bot.log"
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Studio")
        alice = guild.add_member("alice")
        async with bot_process(
            fake, simulator, database, log, shutdown_grace_seconds=GRACE
        ) as process:
            await started(fake)
            simulator.add_fault("rate_limit", endpoint="submit", reset_after=RESET)
            await slash_queued(fake, guild, alice, "grok-video", {"prompt": "held back"})
            await fake.wait_for(lambda: simulator.requests("submit"), timeout=30)
            # Back to waiting, durably, before the pause: a restart must send it again.
            await states_become(database, fake, {"held back": "queued"})
            process.send_signal(stop)
            await stopped(process, GRACE + 10)

        limited_at = simulator.requests("submit")[0].at
        async with bot_process(fake, simulator, database, log):
            await states_become(database, fake, {"held back": "delivered"})

    submits = simulator.requests("submit")
    assert [entry.status for entry in submits] == [429, 200]
    # The new process honoured the reset the old one was told of (a restart alone takes a
    # second or two: without the stored reset it would have sent long before).
    assert submits[1].at - limited_at >= RESET - 1.0


async def test_a_restart_in_a_busy_minute_stays_within_the_budget(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.05  # grok takes 3.5 s: it is polled while the minute runs
    database, log = tmp_path / "bot.db", tmp_path / "bot.log"
    limit = 8
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Studio")
        members = [guild.add_member(f"m{n}") for n in range(3)]
        settings = {"segmind_requests_per_minute": limit, "segmind_poll_interval_max": 0.5}
        async with bot_process(fake, simulator, database, log, **settings):
            await started(fake)
            for n, member in enumerate(members):
                await slash_queued(fake, guild, member, "grok-video", {"prompt": f"job {n}"})
            # All but the slots the budget keeps for a video that turns up (the reserve).
            spendable = limit - reserved_slots(limit)
            await fake.wait_for(lambda: api_requests(simulator) >= spendable, timeout=30)
        # SIGKILL with the minute's budget spent; the next process must not spend it again.

        async with bot_process(fake, simulator, database, log, **settings):
            await fake.wait_for(lambda: api_requests(simulator) >= limit + 2, timeout=90)

    assert simulator.busiest_window(60.0) <= limit


async def test_sigterm_during_start_up_exits_0(simulator: Simulator, tmp_path: Path) -> None:
    database, log = tmp_path / "bot.db", tmp_path / "bot.log"
    async with FakeDiscord() as fake:
        fake.add_guild("Studio")
        # Discord holds the command sync back for a while: the bot is still setting up.
        fake.fail_next("PUT", "/applications/*/commands", status=429, retry_after=3.0)
        async with bot_process(fake, simulator, database, log) as process:
            await fake.wait_for(
                lambda: fake.requests_to("PUT", "/applications/*/commands"), timeout=30
            )

            process.send_signal(signal.SIGTERM)

            assert await stopped(process, 20) == 0
    assert "Traceback" not in log.read_text()
