"""Restart recovery: kill -9 the bot mid-work, start it again on the same database.

The bot runs as a real subprocess (`python -m bot`, pointed at the fake Discord); the fake and
the simulator live in the test, so they remember everything across the kill.
"""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from bot.simulator import Simulator
from tests.bot_process import bot_process, slash_queued
from tests.bot_world import bot_world, job_states, png_bytes, restarted, states_become
from tests.fakediscord import FakeDiscord, FakeGuild, FakeInteraction, FakeMessage


async def nothing_owed(database: Path) -> bool:
    """True once the outbox holds nothing still to send."""
    async with (
        aiosqlite.connect(database) as db,
        db.execute("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL") as cursor,
    ):
        row = await cursor.fetchone()
    return row is not None and row[0] == 0


def result_messages(fake: FakeDiscord, guild: FakeGuild, job_id: str) -> list[FakeMessage]:
    marker = f"job:regenerate:{job_id}"
    return [
        m
        for m in fake.channel_messages(guild.channel)
        if marker in m.custom_ids and not m.ephemeral
    ]


async def test_kill_9_loses_no_job_submits_once_and_delivers_each_video_once(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.02  # svd 0.6 s, grok 1.4 s, cog-video-i2v 7 s
    database, log = tmp_path / "bot.db", tmp_path / "bot.log"
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Studio")
        alice, bob = guild.add_member("alice"), guild.add_member("bob")
        image = fake.add_attachment("cat.png", png_bytes(), "image/png")

        async def slash(member, command: str, options: dict, **kw) -> FakeInteraction:
            return await slash_queued(fake, guild, member, command, options, **kw)

        async with bot_process(fake, simulator, database, log):
            await fake.wait_for(lambda: fake.sync_count == 1, timeout=30, message="bot started")
            await fake.wait_for(lambda: fake.commands, timeout=30)
            await fake.wait_until_connected(timeout=30)

            await slash(alice, "grok-video", {"prompt": "before"})
            await states_become(database, fake, {"before": "delivered"})

            # Three slots: svd, "running" and "cancelled" start; svd finishes (its video stuck
            # on the way), which frees its slot for the pixverse submit (stuck on the wire).
            # The queued ones wait behind them.
            simulator.add_fault("slow", endpoint="file", slug="svd", delay=60)
            await slash(alice, "svd", {}, attachments={"image": image})
            await slash(bob, "cog-video-i2v", {"prompt": "running"}, attachments={"image": image})
            simulator.add_fault("slow", endpoint="submit", slug="pixverse-5-video", delay=60)
            await slash(bob, "pixverse", {"prompt": "mid-submit"})
            to_cancel = await slash(
                alice, "cog-video-i2v", {"prompt": "cancelled"}, attachments={"image": image}
            )
            await states_become(
                database, fake,
                {
                    "svd": "completed", "running": "submitted", "mid-submit": "submitting",
                    "cancelled": "submitted",
                },
            )  # fmt: skip
            status = to_cancel.followups[0]
            [cancel_id] = [cid for cid in status.custom_ids if cid.startswith("job:cancel:")]
            await fake.click(guild, alice, status, cancel_id)
            await states_become(database, fake, {"cancelled": "cancelled_running"})
            queued_one = await slash(alice, "grok-video", {"prompt": "queued 1"})
            await slash(bob, "grok-video", {"prompt": "queued 2"})
            await states_become(database, fake, {"queued 1": "queued", "queued 2": "queued"})
            await fake.wait_for(lambda: queued_one.followups, message="status of queued 1")
        # The block has ended: the process got SIGKILL, with no chance to tidy up.

        simulator.faults.clear()
        queued_one.expire_token()  # its status message must be posted afresh, in the channel
        async with bot_process(fake, simulator, database, log):
            await states_become(
                database, fake,
                {
                    "before": "delivered", "svd": "delivered", "running": "delivered",
                    "mid-submit": "failed", "queued 1": "delivered", "queued 2": "delivered",
                    "cancelled": "cancelled",
                },
            )  # fmt: skip
            # Nothing more is owed to anyone, so no duplicate can still be on its way.
            await fake.wait_for(lambda: nothing_owed(database), timeout=30)
            states = await job_states(database)

    for prompt, (job_id, _, _, _) in states.items():
        expected = 0 if prompt in ("mid-submit", "cancelled") else 1
        assert len(result_messages(fake, guild, job_id)) == expected, prompt
    submits = [entry.slug for entry in simulator.requests("submit")]
    assert sorted(submits) == sorted(
        ["grok-imagine-video"] * 3 + ["svd", "cog-video-5b-i2v", "pixverse-5-video"]
        + ["cog-video-5b-i2v"]
    )
    credits = {
        prompt: (credit_state, amount) for prompt, (_, _, credit_state, amount) in states.items()
    }
    assert credits.pop("mid-submit") == ("release", 1)
    # Segmind ran the cancelled job to the end, so it is paid for, like every delivered one.
    assert set(credits.values()) == {("capture", 1)}
    told = [
        m for m in fake.channel_messages(guild.channel) if "may or may not have run" in m.content
    ]
    assert len(told) == 1
    reposted = [
        m for m in fake.channel_messages(guild.channel, include_deleted=True)
        if m.route == "channel" and "queued 1" in m.content and not m.attachments
    ]  # fmt: skip
    assert reposted, "the status of a job whose token expired is posted again in the channel"


async def test_a_video_posted_just_before_a_crash_is_not_posted_again(
    simulator: Simulator, tmp_path: Path
) -> None:
    """The crash came after the video was posted but before `delivered` was written."""
    simulator.speed = 0.005
    database = tmp_path / "bot.db"
    async with bot_world(simulator, database) as world:
        await world.slash(world.alice, "grok-video", {"prompt": "once"})
        await world.delivered()
        await world.fake.wait_for(world.settled)
        # As if the bot died after posting, before recording it: the video still owed, marked
        # as begun (the sender commits that before each post), the credits still held.
        async with aiosqlite.connect(database) as db:
            await db.execute("UPDATE jobs SET state = 'completed'")
            await db.execute("DELETE FROM ledger WHERE entry = 'capture'")
            await db.execute(
                "UPDATE outbox SET done_at = NULL, outcome = NULL WHERE kind = 'video'"
            )
            await db.commit()
        await world.bot.close()

        async with restarted(world, database) as again:
            await again.fake.wait_for(again.settled)
            assert len(again.videos()) == 1
            [(_, state, credit_state, _)] = (await job_states(database)).values()
            assert (state, credit_state) == ("delivered", "capture")
            assert not again.simulator.requests("file")[1:]  # not even downloaded again


async def test_a_job_the_provider_forgot_during_downtime_is_refunded_and_explained(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 1.0  # still running when the bot goes down
    database = tmp_path / "bot.db"
    async with bot_world(simulator, database) as world:
        interaction = await world.slash(world.alice, "grok-video", {"prompt": "forgotten"})
        await states_become(database, world.fake, {"forgotten": "submitted"})
        await world.bot.close()
        simulator.add_fault("expire", endpoint="status")  # an hour passed: 404 from now on

        async with restarted(world, database) as again:
            notice = await again.notice(interaction)
            assert "no longer available" in notice.content
            await again.fake.wait_for(again.settled)
    [(_, state, credit_state, _)] = (await job_states(database)).values()
    assert (state, credit_state) == ("failed", "release")
    assert len(simulator.requests("submit")) == 1
