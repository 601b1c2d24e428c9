"""End to end: the real bot and cogs on discord.py, a fake Discord, the simulator as Segmind."""

from __future__ import annotations

import datetime
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.job import JobState
from bot.simulator import SAMPLE_VIDEO, Simulator
from tests.bot_world import World, bot_world, png_bytes, restarted

IMAGE_URL_PREFIX = "http://127.0.0.1:"


@pytest.fixture
async def world(simulator: Simulator, tmp_path: Path) -> AsyncIterator[World]:
    simulator.speed = 0.005
    async with bot_world(simulator, tmp_path / "bot.db") as built:
        yield built


def submitted_payloads(simulator: Simulator) -> list[dict[str, Any]]:
    return [job.payload for job in simulator.jobs.values()]


# --- The five commands, from interaction to posted video ---

FIVE_COMMANDS = [
    (
        "svd",
        {"fps": 12, "motion": 180, "frames": 25, "seed": 7},
        {
            "fps": 12,
            "motion": 180,
            "cond_aug": 0.2,
            "frames": 25,
            "resize_method": "maintain_aspect_ratio",
            "seed": 7,
            "base64": False,
        },
    ),
    (
        "cog-video",
        {"prompt": "a dog on a roof", "steps": 30, "guidance_scale": 7.5, "seed": 11},
        {
            "prompt": "a dog on a roof",
            "input_frames": 49,
            "steps": 30,
            "guidance_scale": 7.5,
            "frame_rate": 8,
            "seed": 11,
        },
    ),
    (
        "cog-video-i2v",
        {"prompt": "make it move", "negative_prompt": "blur", "seed": 3},
        {"prompt": "make it move", "negative_prompt": "blur", "seed": 3},
    ),
    (
        "pixverse",
        {"prompt": "a girl with a guitar", "quality": "720p", "duration": 8, "seed": 5},
        {
            "prompt": "a girl with a guitar",
            "duration": 8,
            "quality": "720p",
            "motion_mode": "normal",
            "aspect_ratio": "16:9",
            "seed": 5,
            "sound_effect_switch": True,
            "lip_sync_switch": False,
        },
    ),
    (
        "grok-video",
        {"prompt": "waves on cliffs", "duration": 3, "resolution": "720p"},
        {"prompt": "waves on cliffs", "duration": 3, "resolution": "720p", "aspect_ratio": "16:9"},
    ),
]


@pytest.mark.parametrize(("command", "options", "expected"), FIVE_COMMANDS)
async def test_each_command_posts_the_video_and_sends_segmind_the_exact_payload(
    world: World, command: str, options: dict[str, Any], expected: dict[str, Any]
) -> None:
    takes_image = command in {"svd", "cog-video-i2v", "pixverse"}
    attachment = world.image() if takes_image else None
    interaction = await world.slash(
        world.alice, command, options, attachments={"image": attachment} if attachment else None
    )

    reply = await world.reply_to(interaction)
    [video] = await world.delivered()

    assert reply.startswith("Queued as job")
    assert interaction.original is not None and interaction.original.ephemeral
    [payload] = submitted_payloads(world.simulator)
    if attachment is not None:
        image_key = "image_url" if command == "pixverse" else "image"
        assert payload.pop(image_key) == attachment["url"]
    assert payload == expected
    assert video.attachment("video.mp4").data == SAMPLE_VIDEO.read_bytes()
    assert not video.ephemeral
    assert f"<@{world.alice.id}>" in video.content
    if "seed" in expected:
        assert f"seed {expected['seed']}" in video.content
    assert any(cid.startswith("job:regenerate:") for cid in video.custom_ids)
    assert world.fake.missed_acks == []


async def test_a_seed_is_chosen_and_shown_when_the_member_sets_none(world: World) -> None:
    await world.slash(world.alice, "cog-video", {"prompt": "a lighthouse"})
    [video] = await world.delivered()

    [payload] = submitted_payloads(world.simulator)
    assert isinstance(payload["seed"], int) and payload["seed"] >= 0
    assert f"seed {payload['seed']}" in video.content


async def test_the_status_message_is_public_and_is_removed_once_the_video_is_posted(
    world: World,
) -> None:
    interaction = await world.slash(world.alice, "grok-video", {"prompt": "a lighthouse"})
    status = await world.status_message(interaction)

    assert not status.ephemeral
    assert "Grok Imagine Video" in status.content and "a lighthouse" in status.content
    assert any(cid.startswith("job:cancel:") for cid in status.custom_ids)
    await world.delivered()
    await world.fake.wait_for(lambda: status.deleted, message="status message kept")


# --- The command schema Discord receives ---


async def test_the_synced_commands_carry_the_catalogue_ranges_and_choices(world: World) -> None:
    commands = {command["name"]: command for command in world.fake.commands}
    assert set(commands) == {
        "svd", "cog-video", "cog-video-i2v", "pixverse", "grok-video", "jobs", "quota", "usage",
        "settings", "botstats", "help",
    }  # fmt: skip
    for managers_only in ("quota", "settings", "botstats"):  # hidden from the others
        assert str(commands[managers_only]["default_member_permissions"]) == "32"

    def options(name: str) -> dict[str, dict[str, Any]]:
        return {option["name"]: option for option in commands[name].get("options", [])}

    svd = options("svd")
    assert list(svd) == ["image", "fps", "motion", "cond_aug", "frames", "resize_method", "seed"]
    assert (svd["image"]["type"], svd["image"]["required"]) == (11, True)
    assert (svd["fps"]["min_value"], svd["fps"]["max_value"]) == (1, 60)
    assert (svd["cond_aug"]["type"], svd["cond_aug"]["max_value"]) == (10, 1)
    assert [choice["value"] for choice in svd["frames"]["choices"]] == [14, 25]
    assert svd["seed"]["min_value"] == -1 and svd["seed"]["max_value"] == 999_999_999_999_999
    cog = options("cog-video")
    assert (cog["input_frames"]["min_value"], cog["input_frames"]["max_value"]) == (16, 60)
    assert (cog["steps"]["min_value"], cog["steps"]["max_value"]) == (25, 50)
    assert (cog["frame_rate"]["min_value"], cog["frame_rate"]["max_value"]) == (8, 10)
    assert cog["prompt"]["max_length"] == 2000
    assert list(options("cog-video-i2v")) == ["image", "prompt", "negative_prompt", "seed"]
    pixverse = options("pixverse")
    assert list(pixverse) == [
        "prompt", "image", "duration", "quality", "motion_mode", "aspect_ratio",
        "negative_prompt", "seed", "sound_effect_switch", "sound_effect_content",
        "lip_sync_switch", "lip_sync_tts_content", "lip_sync_tts_speaker_id",
    ]  # fmt: skip
    assert [c["value"] for c in pixverse["quality"]["choices"]] == ["360p", "540p", "720p", "1080p"]
    assert pixverse["sound_effect_switch"]["type"] == 5
    grok = options("grok-video")
    assert (grok["duration"]["min_value"], grok["duration"]["max_value"]) == (1, 15)
    assert [c["value"] for c in grok["aspect_ratio"]["choices"]] == [
        "16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3"
    ]  # fmt: skip
    for command in commands.values():
        assert command["description"]
        assert all(option["description"] for option in command.get("options", []))


async def test_commands_are_synced_on_first_start_and_again_only_when_changed(
    simulator: Simulator, tmp_path: Path
) -> None:
    database = tmp_path / "bot.db"
    async with bot_world(simulator, database) as first:
        assert first.fake.sync_count == 1
    async with bot_world(simulator, database) as second:
        assert second.fake.sync_count == 0  # same commands, same database: no sync
    async with bot_world(simulator, database) as third:
        third.bot.tree.remove_command("jobs")
        assert await third.bot.sync_commands_if_changed()
        assert third.fake.sync_count == 1


# --- Bad input: a clear ephemeral answer, nothing queued, nothing sent to Segmind ---


@pytest.mark.parametrize(
    ("filename", "data", "content_type", "says"),
    [
        ("anim.gif", png_bytes(kind="GIF"), "image/gif", "not a PNG, JPEG or WebP"),
        ("notes.txt", b"hello", "text/plain", "text/plain, not a PNG"),
        ("archive.png", b"PK\x03\x04" + bytes(200), "image/png", "not a PNG, JPEG or WebP"),
        ("cut.png", png_bytes(150, 100, noisy=True)[:5000], "image/png", "damaged or incomplete"),
        ("empty.png", b"", "image/png", "is empty"),
        ("huge.png", png_bytes(300, 300), "image/png", "at most 40,000 pixels"),
    ],
    ids=["gif", "text", "renamed-zip", "truncated", "empty", "too-many-pixels"],
)
async def test_a_bad_image_is_refused_before_anything_is_queued(
    world: World, filename: str, data: bytes, content_type: str, says: str
) -> None:
    world.bot.cogs["VideoCog"].image_limits = type(world.bot.cogs["VideoCog"].image_limits)(
        max_bytes=10 * 1024 * 1024, max_pixels=200 * 200
    )
    attachment = world.image(filename, data, content_type=content_type)
    interaction = await world.slash(world.alice, "svd", {}, attachments={"image": attachment})

    reply = await world.reply_to(interaction)

    assert says in reply and filename in reply
    assert interaction.original is not None and interaction.original.ephemeral
    assert world.simulator.log == []
    assert await world.unfinished() == []


async def test_an_image_over_the_size_limit_is_refused_without_downloading_it(world: World) -> None:
    world.bot.cogs["VideoCog"].image_limits = type(world.bot.cogs["VideoCog"].image_limits)(
        max_bytes=1000, max_pixels=4096 * 4096
    )
    attachment = world.image("big.png", png_bytes(200, 200) + bytes(5000))
    interaction = await world.slash(world.alice, "svd", {}, attachments={"image": attachment})

    assert "images may be at most" in await world.reply_to(interaction)
    assert not world.fake.requests_to("GET", "/attachments/*")
    assert world.simulator.log == []


@pytest.mark.parametrize(
    ("command", "options", "says"),
    [
        ("pixverse", {"prompt": "x", "duration": 8, "motion_mode": "fast"}, "fast needs 5"),
        ("pixverse", {"prompt": "x", "quality": "1080p", "motion_mode": "fast"}, "1080p"),
        ("grok-video", {"prompt": "x", "duration": 99}, "`duration` must be between 1 and 15"),
        ("cog-video", {"prompt": "   "}, "`prompt` cannot be empty"),
        ("cog-video", {"prompt": "x", "steps": 24}, "`steps` must be between 25 and 50"),
    ],
)
async def test_invalid_options_are_explained_and_nothing_is_sent(
    world: World, command: str, options: dict[str, Any], says: str
) -> None:
    interaction = await world.slash(world.alice, command, options)

    reply = await world.reply_to(interaction)

    assert says in reply
    assert interaction.original is not None and interaction.original.ephemeral
    assert world.simulator.log == []


async def test_a_command_in_a_dm_is_refused_politely(world: World) -> None:
    stranger = world.fake.add_user("stranger")
    # Discord hides guild-only commands in DMs; the bot still answers one that arrives anyway.
    interaction = await world.fake.slash_in_dm(
        stranger, "grok-video", {"prompt": "waves"}, strict=False
    )

    assert "servers only" in await world.reply_to(interaction)
    assert world.simulator.log == []


# --- What the member sees when the provider fails ---


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"kind": "credits", "endpoint": "submit"}, "out of credits"),
        ({"kind": "content_blocked", "endpoint": "submit"}, "safety filter"),
        (
            {"kind": "failed", "endpoint": "submit", "error": "CUDA out of memory"},
            "CUDA out of memory",
        ),
        (
            {"kind": "rate_limit", "endpoint": "submit", "count": None, "reset_after": 0},
            "rate limiting",
        ),
        ({"kind": "server_error", "endpoint": "submit", "count": None}, "having trouble"),
        ({"kind": "expire", "endpoint": "status"}, "no longer available"),
        ({"kind": "server_error", "endpoint": "submit", "status": 403}, "misconfigured"),
        (
            {"kind": "server_error", "endpoint": "submit", "status": 400},
            "It said: Invalid parameters",
        ),
        ({"kind": "disconnect", "endpoint": "submit"}, "may or may not have started"),
        ({"kind": "accepted_504", "endpoint": "submit"}, "may or may not have started"),
    ],
)
async def test_each_provider_failure_reaches_the_requester_in_plain_words(
    world: World, fault: dict[str, Any], says: str
) -> None:
    world.simulator.add_fault(**fault)
    interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})

    notice = await world.notice(interaction)

    assert says in notice.content
    assert notice.ephemeral
    assert world.videos() == []
    assert await world.unfinished() == []
    assert await world.credit_states() == ["released"]


async def test_a_bad_api_key_is_reported_as_misconfiguration_without_details(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.005
    async with bot_world(simulator, tmp_path / "bot.db", segmind_api_key="wrong-key") as world:
        interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
        notice = (await world.notice(interaction)).content

    assert "misconfigured" in notice
    assert "wrong-key" not in notice and "401" not in notice


# --- Cancel ---


async def test_cancel_of_a_queued_job_removes_it_before_segmind_hears_of_it(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.05  # the first job holds the only slot for a while
    async with bot_world(simulator, tmp_path / "bot.db", queue_guild_concurrency=1) as world:
        first = await world.slash(world.alice, "svd", {}, attachments={"image": world.image()})
        await world.reply_to(first)  # queued, and so running, before the second arrives
        second = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
        status = await world.status_message(second)
        [cancel_id] = [cid for cid in status.custom_ids if cid.startswith("job:cancel:")]

        click = await world.fake.click(world.guild, world.alice, status, cancel_id)

        assert "left the queue" in await world.reply_to(click)
        await world.fake.wait_for(lambda: "Cancelled" in status.content)
        await world.delivered()
        assert [job.slug for job in simulator.jobs.values()] == ["svd"]


@pytest.mark.parametrize(
    ("provider_ends", "credits"), [("COMPLETED", "captured"), ("FAILED", "released")]
)
async def test_a_running_job_cancelled_is_watched_quietly_and_costs_what_the_provider_bills(
    simulator: Simulator, tmp_path: Path, provider_ends: str, credits: str
) -> None:
    simulator.speed = 0.05  # grok takes 3.5 s
    if provider_ends == "FAILED":
        simulator.add_fault("failed", endpoint="submit")
    async with bot_world(simulator, tmp_path / "bot.db") as world:
        interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
        status = await world.status_message(interaction)
        await world.fake.wait_for(lambda: simulator.requests("status"))
        [cancel_id] = [cid for cid in status.custom_ids if cid.startswith("job:cancel:")]

        click = await world.fake.click(world.guild, world.manager, status, cancel_id)

        reply = await world.reply_to(click)
        assert "cannot be told to stop" in reply and "come back if the provider reports" in reply
        await world.fake.wait_for(lambda: "Cancelled" in status.content)
        assert status.custom_ids == []  # no Cancel button left to press
        polls_at_cancel = len(simulator.requests("status"))
        await world.fake.wait_for(world.settled, timeout=20)
        job = await world.bot.store.job(cancel_id.rsplit(":", 1)[1])
        assert job is not None and job.state is JobState.CANCELLED
        assert len(simulator.requests("status")) > polls_at_cancel  # polled to its end
        assert await world.credit_states() == [credits]
        assert world.videos() == []
        assert [m for m in interaction.followups if m.ephemeral] == []  # told once, at Cancel


async def test_only_the_owner_or_a_manager_may_cancel(world: World) -> None:
    world.simulator.speed = 1.0
    interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
    status = await world.status_message(interaction)
    [cancel_id] = [cid for cid in status.custom_ids if cid.startswith("job:cancel:")]

    click = await world.fake.click(world.guild, world.bob, status, cancel_id)

    assert "Only the member who asked" in await world.reply_to(click)
    assert await world.unfinished()


async def test_the_jobs_command_lists_own_jobs_with_cancel_buttons(world: World) -> None:
    world.simulator.speed = 1.0
    for member, command, prompt in (
        (world.alice, "grok-video", "first"),
        (world.alice, "cog-video", "second"),
        (world.bob, "grok-video", "not alice's"),
    ):
        queued = await world.slash(member, command, {"prompt": prompt})
        assert "Queued as job" in await world.reply_to(queued)

    listing = await world.slash(world.alice, "jobs")
    text = await world.reply_to(listing)

    assert "first" in text and "second" in text and "not alice" not in text
    assert interaction_buttons(listing) == 2


async def test_the_jobs_command_links_the_members_last_ten_videos_here(world: World) -> None:
    for n in range(11):
        await world.slash(world.alice, "grok-video", {"prompt": f"video {n}"})
        await world.delivered(n + 1)
    await world.slash(world.bob, "grok-video", {"prompt": "bob's own"})
    await world.delivered(12)
    await world.fake.wait_for(world.settled, message="all told")

    text = await world.reply_to(await world.slash(world.alice, "jobs"))

    links = re.findall(r"https://discord\.com/channels/(\d+)/(\d+)/(\d+)", text)
    posted = {str(m.id): m for m in world.videos()}
    assert len(links) == 10  # the last ten, newest first
    assert posted[links[0][2]].content.endswith("video 10")
    assert all(guild == str(world.guild.id) for guild, _, _ in links)
    assert all("bob" not in posted[message].content for _, _, message in links)
    assert "video 0" not in text and "You have no queued or running videos here." in text


def interaction_buttons(interaction: Any) -> int:
    return sum(1 for cid in interaction.original.custom_ids if cid.startswith("job:cancel:"))


# --- Fair turns and limits ---


async def test_members_take_turns_in_a_guild(simulator: Simulator, tmp_path: Path) -> None:
    simulator.speed = 0.01
    async with bot_world(
        simulator, tmp_path / "bot.db", queue_guild_concurrency=1, queue_member_pending_max=5
    ) as world:
        for n in range(3):
            await world.slash(world.alice, "grok-video", {"prompt": f"alice {n}"})
        await world.slash(world.bob, "grok-video", {"prompt": "bob 0"})
        await world.delivered(4)

    order = [job.payload["prompt"] for job in simulator.jobs.values()]
    assert order == ["alice 0", "bob 0", "alice 1", "alice 2"]


async def test_queue_limits_refuse_with_a_reason(simulator: Simulator, tmp_path: Path) -> None:
    simulator.speed = 1.0
    async with bot_world(
        simulator, tmp_path / "bot.db", queue_member_pending_max=2, queue_guild_length_max=3,
        queue_guild_concurrency=1,
    ) as world:  # fmt: skip
        for n in range(2):
            await world.reply_to(await world.slash(world.alice, "grok-video", {"prompt": f"{n}"}))
        third = await world.slash(world.alice, "grok-video", {"prompt": "too many"})
        assert "2 jobs waiting or running" in await world.reply_to(third)
        for n in range(2):
            await world.reply_to(await world.slash(world.bob, "grok-video", {"prompt": f"b{n}"}))
        full = await world.slash(world.manager, "grok-video", {"prompt": "no room"})
        assert "queue is full" in await world.reply_to(full)
        assert len(simulator.requests("submit")) == 1


# --- Delivery edge cases ---


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg is not installed")
async def test_a_video_over_the_upload_limit_posts_its_link_and_a_smaller_copy(
    world: World,
) -> None:
    world.simulator.add_fault("large_video", endpoint="submit", size=3 * 1024 * 1024)
    interaction = await world.slash(
        world.alice, "grok-video", {"prompt": "waves"}, attachment_size_limit=1024 * 1024
    )

    # ffmpeg shrinks the video first: seconds on a loaded machine.
    [video] = await world.delivered(timeout=60)

    assert "over this server's 1.0 MB upload limit" in video.content
    assert "/files/" in video.content
    assert video.attachment("video.mp4").size <= 1024 * 1024
    assert interaction.followups  # went through the interaction


async def test_a_too_large_video_without_ffmpeg_still_posts_its_link(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    world.simulator.add_fault("large_video", endpoint="submit", size=3 * 1024 * 1024)
    await world.slash(
        world.alice, "grok-video", {"prompt": "waves"}, attachment_size_limit=1024 * 1024
    )

    await world.fake.wait_for(lambda: any("/files/" in m.content for m in world.messages()))
    [notice] = [m for m in world.messages() if "/files/" in m.content]
    assert notice.attachments == []
    assert f"<@{world.alice.id}>" in notice.content


async def test_when_the_token_has_expired_the_video_goes_to_the_channel(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.05
    # No status edit may notice the dead token first: the upload itself must meet the 401.
    async with bot_world(simulator, tmp_path / "bot.db", status_update_seconds=1000) as world:
        interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
        await world.status_message(interaction)
        interaction.expire_token()

        [video] = await world.delivered()

    assert video.route == "channel"
    assert video.attachment("video.mp4").data == SAMPLE_VIDEO.read_bytes()
    assert video.pings == frozenset({f"<@{world.alice.id}>"})


async def test_near_the_end_of_the_tokens_life_everything_goes_through_the_channel(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapter.recipient

    # The bot stops using a token some margin before it dies; make every token "near its end".
    monkeypatch.setattr(adapter.recipient, "TOKEN_MARGIN", datetime.timedelta(minutes=15))
    interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})

    [video] = await world.delivered()

    assert video.route == "channel"
    assert interaction.followups == []  # no webhook call was risked
    assert video.pings == frozenset({f"<@{world.alice.id}>"})


async def test_a_video_over_the_download_cap_is_reported_with_its_link(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.speed = 0.005
    simulator.add_fault("large_video", endpoint="submit", size=3 * 1024 * 1024)
    async with bot_world(
        simulator, tmp_path / "bot.db", segmind_download_max_bytes=1024 * 1024
    ) as world:
        interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})
        notice = await world.notice(interaction)

    assert "larger than this bot is set to download" in notice.content
    assert "/files/" in notice.content


async def test_a_status_message_that_could_not_be_posted_is_posted_later(world: World) -> None:
    world.simulator.speed = 0.05
    world.fake.fail_next("POST", "/webhooks/*", status=400, times=1)
    interaction = await world.slash(world.alice, "grok-video", {"prompt": "waves"})

    status = await world.status_message(interaction)

    assert "Grok Imagine Video" in status.content and not status.ephemeral
    assert "Queued as job" in await world.reply_to(interaction)
    [video] = await world.delivered()
    assert not video.ephemeral


async def test_mentions_in_a_prompt_ping_nobody_but_the_requester(world: World) -> None:
    prompt = f"@everyone look <@{world.bob.id}> <@&{world.guild.everyone.id}> @here"
    interaction = await world.slash(world.alice, "grok-video", {"prompt": prompt})
    status = await world.status_message(interaction)

    [video] = await world.delivered()

    assert "@everyone" in status.content
    assert status.pings == frozenset()
    assert video.pings == frozenset({f"<@{world.alice.id}>"})


async def test_regenerate_runs_the_same_parameters_with_a_new_seed(world: World) -> None:
    await world.slash(world.alice, "cog-video", {"prompt": "a lighthouse", "seed": 42, "steps": 30})
    [video] = await world.delivered()
    [regenerate_id] = [cid for cid in video.custom_ids if cid.startswith("job:regenerate:")]

    refused = await world.fake.click(world.guild, world.bob, video, regenerate_id)
    assert "Only the member who asked" in await world.reply_to(refused)
    await world.fake.click(world.guild, world.alice, video, regenerate_id)
    await world.delivered(2)

    first, second = submitted_payloads(world.simulator)
    assert first["seed"] == 42 and second["seed"] != 42
    assert {**second, "seed": 42} == first


async def test_buttons_work_after_a_restart_and_say_when_a_job_is_finished_or_gone(
    world: World, tmp_path: Path
) -> None:
    world.simulator.speed = 0.02  # slow enough to list the job while it runs
    queued = await world.slash(world.alice, "grok-video", {"prompt": "waves", "duration": 2})
    await world.reply_to(queued)
    listing = await world.slash(world.alice, "jobs")  # a private list that nobody updates
    await world.reply_to(listing)
    assert listing.original is not None
    [cancel_id] = [cid for cid in listing.original.custom_ids if cid.startswith("job:cancel:")]
    [video] = await world.delivered()
    [regenerate_id] = [cid for cid in video.custom_ids if cid.startswith("job:regenerate:")]

    click = await world.fake.click(world.guild, world.alice, listing.original, cancel_id)
    assert "already finished" in await world.reply_to(click)

    await world.bot.close()
    async with restarted(world, tmp_path / "bot.db") as again:
        click = await again.fake.click(again.guild, again.alice, video, regenerate_id)
        assert "Queued as job" in await again.reply_to(click)
        await again.delivered(2)
        first, second = submitted_payloads(again.simulator)
        assert {**second, "seed": None} == {**first, "seed": None}

        await again.bot.store.delete_job(regenerate_id.rsplit(":", 1)[1])
        click = await again.fake.click(again.guild, again.alice, video, regenerate_id)
        assert "no longer known" in await again.reply_to(click)
