"""The promises a job's life keeps at its edges, end to end on the fake Discord: each test is one
way the bot used to break a promise (a stale status, a lost notice, a ping nobody asked for, a
job billed after the bot left, a crash on a retired model, a refund for a video the member got,
an image downloaded only to be refused)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from bot.models import CATALOGUE
from bot.simulator import Simulator
from tests.bot_world import World, bot_world, job_states, png_bytes, restarted, states_become
from tests.fakediscord import FakeMessage


@pytest.fixture
async def world(simulator: Simulator, tmp_path: Path) -> AsyncIterator[World]:
    simulator.speed = 1.0  # grok runs 70 s: a job is running for as long as a test needs
    async with bot_world(simulator, tmp_path / "bot.db") as built:
        yield built


def cancel_id(message: FakeMessage) -> str:
    [found] = [cid for cid in message.custom_ids if cid.startswith("job:cancel:")]
    return found


def public_statuses(world: World, *, include_deleted: bool = False) -> list[FakeMessage]:
    return [
        m
        for m in world.fake.channel_messages(world.guild.channel, include_deleted=include_deleted)
        if not m.ephemeral and not m.attachments and m.content.startswith("🎬")
    ]


async def test_a_cancel_during_a_status_refresh_leaves_the_message_cancelled(
    world: World,
) -> None:
    kept = await world.slash(world.alice, "grok-video", {"prompt": "kept"})
    cancelled = await world.slash(world.bob, "grok-video", {"prompt": "cancelled"})
    kept_status = await world.status_message(kept)
    status = await world.status_message(cancelled)
    await world.fake.wait_for(lambda: kept_status.edit_count and status.edit_count)
    # The next refresh of the other job's message is held up by Discord's rate limit, so the
    # refresh round is half done when the member cancels.
    kept_edits = f"/webhooks/*/{kept.token}/messages/[0-9]*"
    world.fake.fail_next("PATCH", kept_edits, status=429, retry_after=0.5)
    await world.fake.wait_for(
        lambda: any(r.status == 429 for r in world.fake.requests_to("PATCH", kept_edits))
    )

    click = await world.fake.click(world.guild, world.bob, status, cancel_id(status))

    assert "Cancelled" in await world.reply_to(click)
    held_at = len(world.fake.requests_to("PATCH", kept_edits))
    # The held edit landed and the refresh went round again: a stale edit would be in by now.
    await world.fake.wait_for(
        lambda: len(world.fake.requests_to("PATCH", kept_edits)) > held_at + 1
    )
    assert "Cancelled" in status.content and status.custom_ids == []
    versions = [*(old["content"] for old in status.history), status.content]
    since_cancel = versions[next(i for i, text in enumerate(versions) if "Cancelled" in text) :]
    assert all("Cancelled" in text for text in since_cancel), since_cancel


async def test_a_status_message_a_moderator_deleted_is_replaced_through_the_interaction(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.05  # grok takes 3.5 s
    async with bot_world(simulator, tmp_path / "bot.db") as world:
        interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
        status = await world.status_message(interaction)

        await world.fake.delete_message(status)

        await world.fake.wait_for(lambda: public_statuses(world), message="a new status")
        [replacement] = public_statuses(world)
        [video] = await world.delivered()

    assert replacement.route == "webhook" and replacement.id != status.id
    assert replacement.pings == frozenset()
    assert video.route == "webhook"  # the token was fine all along: nothing moved
    assert video.pings == frozenset({f"<@{world.alice.id}>"})
    assert [m for m in world.messages() if m.route == "channel"] == []


async def test_a_notice_discord_failed_to_take_is_sent_again(world: World) -> None:
    world.simulator.add_fault("credits", endpoint="submit")
    world.fake.fail_next("POST", "/webhooks/*", status=503, times=2)
    interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})

    notice = await world.notice(interaction)

    assert "out of credits" in notice.content
    assert [r.status for r in world.fake.requests_to("POST", "/webhooks/*")][:2] == [503, 503]
    await world.fake.wait_for(world.settled)


async def test_a_notice_owed_when_the_bot_stopped_is_sent_after_the_restart(
    world: World, tmp_path: Path
) -> None:
    world.simulator.add_fault("credits", endpoint="submit")
    world.fake.fail_next("POST", "/webhooks/*", status=503, times=10_000)  # Discord is down
    interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
    await states_become(tmp_path / "bot.db", world.fake, {"waves": "failed"})
    await world.fake.wait_for(lambda: world.fake.requests_to("POST", "/webhooks/*"))
    await world.bot.close()
    world.fake.stop_failing()

    async with restarted(world, tmp_path / "bot.db") as again:
        notice = await again.notice(interaction)
        await again.fake.wait_for(again.settled)

    assert "out of credits" in notice.content
    assert len([m for m in interaction.followups if "out of credits" in m.content]) == 1


async def test_jobs_of_a_model_taken_out_of_the_catalogue_are_retired_at_start_up(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 1.0
    database = tmp_path / "bot.db"
    async with bot_world(simulator, database, queue_guild_concurrency=1) as world:
        await world.reply_to(await world.slash(world.alice, "grok-video", {"prompt": "runs"}))
        waiting = await world.slash(world.bob, "cog-video", {"prompt": "waits"})
        await world.reply_to(waiting)
        await world.bot.close()
        await world.rewrite_jobs("SET model = model || '-legacy'")  # both models withdrawn
        for job in simulator.jobs.values():
            job.duration = 0.0  # the running one finishes at Segmind meanwhile

        async with restarted(world, database, queue_guild_concurrency=1) as again:
            notice = await again.notice(waiting)
            status = await again.status_message(waiting)
            await again.fake.wait_for(lambda: "did not finish" in status.content)
            [video] = await again.delivered()
            await states_become(database, again.fake, {"runs": "delivered"})

    assert "no longer offers that model" in notice.content
    states = await job_states(database)
    assert states["waits"][1:3] == ("failed", "release")
    # The one already at Segmind needs no catalogue entry to be watched and posted.
    assert states["runs"][1:3] == ("delivered", "capture")
    assert "grok-imagine-video-legacy" in video.content
    assert [entry.slug for entry in simulator.requests("submit")] == ["grok-imagine-video"]


@pytest.mark.parametrize("when", ["live", "while the bot was down"])
async def test_when_the_bot_leaves_a_server_its_waiting_jobs_are_never_submitted(
    simulator: Simulator, tmp_path: Path, when: str
) -> None:
    simulator.speed = 1.0
    database = tmp_path / "bot.db"
    async with contextlib.AsyncExitStack() as stack:
        world = await stack.enter_async_context(
            bot_world(simulator, database, queue_guild_concurrency=1)
        )
        await world.reply_to(await world.slash(world.alice, "grok-video", {"prompt": "runs"}))
        await world.reply_to(await world.slash(world.bob, "grok-video", {"prompt": "waits"}))
        await world.fake.wait_for(lambda: simulator.requests("submit"))
        if when == "live":
            await world.fake.remove_bot(world.guild)
        else:  # Discord does not tell a bot that was down; it finds out at start-up
            await world.bot.close()
            await world.fake.remove_bot(world.guild)
            world = await stack.enter_async_context(restarted(world, database))

        await states_become(
            database, world.fake, {"waits": "cancelled", "runs": "cancelled_running"}
        )
        states = await job_states(database)
        # Still watched, quietly, for what Segmind bills; nothing is posted to the server.
        assert states["runs"][2] == "reserve"
        assert states["waits"][2] == "release"
        assert len(simulator.requests("submit")) == 1
        messages_before = len(world.fake.messages)
        polls_before = len(simulator.requests("status"))
        await world.fake.wait_for(lambda: len(simulator.requests("status")) >= polls_before + 2)
        assert len(world.fake.messages) == messages_before


async def test_a_video_whose_link_the_member_got_is_paid_for(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.005
    simulator.add_fault("large_video", endpoint="submit", size=3 * 1024 * 1024)
    async with bot_world(
        simulator, tmp_path / "bot.db", segmind_download_max_bytes=1024 * 1024
    ) as world:
        interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
        notice = await world.notice(interaction)
        await world.fake.wait_for(world.settled)

        assert "/files/" in notice.content
        assert await world.credit_states() == ["captured"]


# --- What is judged before any download ---


async def test_declared_pixels_over_the_limit_are_refused_in_pixels_without_a_download(
    world: World,
) -> None:
    attachment = world.image("wide.png", png_bytes(), width=20_000, height=20_000)
    interaction = await world.slash(world.alice, "svd", {}, attachments={"image": attachment})

    reply = await world.reply_to(interaction)

    assert "20000x20000 pixels" in reply and "at most 16,777,216 pixels" in reply
    assert not world.fake.requests_to("GET", "/attachments/*")
    assert world.simulator.log == [] and await world.credit_states() == []


async def test_a_real_image_of_far_too_many_pixels_is_refused_in_pixels(world: World) -> None:
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, "PNG")  # compresses to a few kilobytes
    attachment = world.image("huge.png", buffer.getvalue())  # no size declared
    interaction = await world.slash(world.alice, "svd", {}, attachments={"image": attachment})

    reply = await world.reply_to(interaction)

    assert "huge.png" in reply and "pixels" in reply and "not a PNG" not in reply
    assert world.simulator.log == []


@pytest.mark.parametrize("limit", ["queue", "credits"])
async def test_a_member_at_a_limit_is_refused_before_the_image_is_downloaded(
    simulator: Simulator, tmp_path: Path, limit: str
) -> None:
    simulator.speed = 1.0
    async with bot_world(simulator, tmp_path / "bot.db", queue_member_pending_max=1) as world:
        if limit == "queue":
            await world.reply_to(await world.slash(world.alice, "grok-video", {"prompt": "x"}))
        else:
            await world.bot.store.update_guild_quota(world.guild.id, member_limit=0)
        attachment = world.image()
        interaction = await world.slash(world.alice, "svd", {}, attachments={"image": attachment})

        reply = await world.reply_to(interaction)

        says = "jobs waiting or running" if limit == "queue" else "of your 0 credits"
        assert says in reply
        assert not world.fake.requests_to("GET", "/attachments/*")
        assert [entry.slug for entry in simulator.requests("submit")] == (
            ["grok-imagine-video"] if limit == "queue" else []
        )


async def test_regenerate_after_the_image_link_stopped_working_sends_the_kept_image(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.005
    async with bot_world(simulator, tmp_path / "bot.db") as world:
        attachment = world.image("cat.png", png_bytes(80, 60))
        await world.slash(world.alice, "svd", {"seed": 3}, attachments={"image": attachment})
        [video] = await world.delivered()
        await world.fake.wait_for(world.settled)
        # A day later: Discord no longer serves the attachment's signed link.
        world.fake.expire_attachment(attachment)
        await world.rewrite_jobs("SET image_taken_at = image_taken_at - 86400")
        [regenerate_id] = [cid for cid in video.custom_ids if cid.startswith("job:regenerate:")]

        click = await world.fake.click(world.guild, world.alice, video, regenerate_id)

        assert "Queued as job" in await world.reply_to(click)
        await world.delivered(2)

    first, second = (job.payload["image"] for job in simulator.jobs.values())
    assert first == attachment["url"]
    assert "/uploads/" in second  # the kept bytes, through Segmind's storage
    [uploaded] = simulator.uploads.values()
    assert uploaded == png_bytes(80, 60)
    assert [entry.status for entry in simulator.requests("submit")] == [200, 200]


async def test_a_running_job_shows_the_time_left_learned_from_earlier_runs(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.1  # grok runs 7 s here; its earlier runs took about that long
    async with bot_world(simulator, tmp_path / "bot.db") as world:
        grok = CATALOGUE["grok-imagine-video"]
        bucket = grok.duration_bucket({"duration": 6, "resolution": "480p"})
        async with world.bot.store.transaction() as tx:
            for n in range(20):
                await tx.record_duration(grok.slug, bucket, 0.5, 6.3, at=1_000.0 + n)
        interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
        status = await world.status_message(interaction)

        await world.fake.wait_for(lambda: "left." in status.content, message="an estimate")

    assert "about 0:0" in status.content  # seconds left, not the catalogue's 1:10
    assert "▰" in status.content or "▱" in status.content
