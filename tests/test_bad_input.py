"""A corpus of hostile and broken input. Each one gets a clear answer, and nothing else happens:
no request to Segmind, no credits reserved, no crash, no traceback shown to anyone."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.simulator import Simulator
from tests.bot_world import World, bot_world, png_bytes

IMAGE_MAX_BYTES = 300_000
IMAGE_MAX_PIXELS = 512 * 512
LEAKS = re.compile(r"Traceback|Exception|Error\b|File \"|line \d+")

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(300)


def image(filename: str, data: bytes, content_type: str) -> dict[str, Any]:
    return {"filename": filename, "data": data, "content_type": content_type}


CASES: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, str]] = [
    # (id, command, options, attachment, what the answer says)
    ("text-file", "svd", {}, image("notes.txt", b"hello", "text/plain"), "not a PNG, JPEG or WebP"),
    ("pdf", "svd", {}, image("doc.pdf", PDF, "application/pdf"), "not a PNG, JPEG or WebP"),
    ("svg", "cog-video-i2v", {"prompt": "x"}, image("a.svg", SVG, "image/svg+xml"), "not a PNG"),
    (
        "gif",
        "pixverse",
        {"prompt": "x"},
        image("a.gif", png_bytes(kind="GIF"), "image/gif"),
        "not a PNG",
    ),
    (
        "gif-named-png",
        "pixverse",
        {"prompt": "x"},
        image("a.png", png_bytes(kind="GIF"), "image/png"),
        "is a GIF image",
    ),
    ("zip-as-png", "grok-video", {"prompt": "x"}, image("a.png", ZIP, "image/png"), "not a PNG"),
    ("zero-bytes", "svd", {}, image("empty.png", b"", "image/png"), "is empty"),
    (
        "truncated-png",
        "svd",
        {},
        image("cut.png", png_bytes(200, 200, noisy=True)[:20_000], "image/png"),
        "damaged or incomplete",
    ),
    (
        "truncated-jpeg",
        "svd",
        {},
        image("cut.jpg", png_bytes(200, 200, kind="JPEG", noisy=True)[:3_000], "image/jpeg"),
        "damaged or incomplete",
    ),
    (
        "over-size",
        "svd",
        {},
        image("big.png", png_bytes(400, 400, noisy=True), "image/png"),
        "images may be at most 0.3 MB",
    ),
    (
        "over-pixels",
        "svd",
        {},
        image("wide.png", png_bytes(1024, 300), "image/png"),
        "at most 262,144 pixels",
    ),
    ("no-image-svd", "svd", {}, None, "`image` is required"),
    ("no-image-i2v", "cog-video-i2v", {"prompt": "x"}, None, "`image` is required"),
    ("empty-prompt", "grok-video", {"prompt": ""}, None, "`prompt` cannot be empty"),
    ("blank-prompt", "cog-video", {"prompt": " \n\t "}, None, "`prompt` cannot be empty"),
    ("long-prompt", "grok-video", {"prompt": "w" * 2001}, None, "`prompt` is too long"),
    (
        "long-negative",
        "cog-video",
        {"prompt": "x", "negative_prompt": "n" * 2001},
        None,
        "`negative_prompt` is too long",
    ),
    ("fps-0", "svd", {"fps": 0}, "ok-image", "`fps` must be between 1 and 60"),
    ("fps-61", "svd", {"fps": 61}, "ok-image", "`fps` must be between 1 and 60"),
    ("motion-181", "svd", {"motion": 181}, "ok-image", "`motion` must be between 1 and 180"),
    ("cond-aug-1.5", "svd", {"cond_aug": 1.5}, "ok-image", "`cond_aug` must be between 0 and 1"),
    ("cond-aug-neg", "svd", {"cond_aug": -0.1}, "ok-image", "`cond_aug` must be between 0 and 1"),
    ("frames-20", "svd", {"frames": 20}, "ok-image", "`frames` must be one of 14, 25"),
    ("seed-minus-2", "svd", {"seed": -2}, "ok-image", "`seed` must be between -1"),
    ("steps-51", "cog-video", {"prompt": "x", "steps": 51}, None, "`steps` must be between 25"),
    (
        "guidance-4.9",
        "cog-video",
        {"prompt": "x", "guidance_scale": 4.9},
        None,
        "`guidance_scale` must be between 5 and 10",
    ),
    ("frames-15", "cog-video", {"prompt": "x", "input_frames": 15}, None, "between 16 and 60"),
    ("rate-11", "cog-video", {"prompt": "x", "frame_rate": 11}, None, "between 8 and 10"),
    ("seed-huge", "cog-video", {"prompt": "x", "seed": 10**15}, None, "`seed` must be between 0"),
    ("duration-0", "grok-video", {"prompt": "x", "duration": 0}, None, "between 1 and 15"),
    ("duration-16", "grok-video", {"prompt": "x", "duration": 16}, None, "between 1 and 15"),
    (
        "fast-8s",
        "pixverse",
        {"prompt": "x", "motion_mode": "fast", "duration": 8},
        None,
        "`motion_mode` fast cannot be used with `duration` 8",
    ),
    (
        "1080p-8s",
        "pixverse",
        {"prompt": "x", "quality": "1080p", "duration": 8},
        None,
        "`quality` 1080p cannot be used with `duration` 8",
    ),
    (
        "1080p-fast",
        "pixverse",
        {"prompt": "x", "quality": "1080p", "motion_mode": "fast"},
        None,
        "`quality` 1080p cannot be used with `motion_mode` fast",
    ),
    (
        "1080p-fast-8s",
        "pixverse",
        {"prompt": "x", "quality": "1080p", "motion_mode": "fast", "duration": 8},
        None,
        "fast needs 5",
    ),
    ("bad-speaker", "pixverse", {"prompt": "x", "lip_sync_tts_speaker_id": "10"}, None, "one of"),
]


@pytest.fixture
async def world(simulator: Simulator, tmp_path: Path) -> AsyncIterator[World]:
    simulator.speed = 0.005
    async with bot_world(
        simulator,
        tmp_path / "bot.db",
        image_max_bytes=IMAGE_MAX_BYTES,
        image_max_pixels=IMAGE_MAX_PIXELS,
    ) as built:
        yield built


async def assert_nothing_happened(world: World) -> None:
    assert world.simulator.log == []
    assert await world.bot.store.credit_states() == {}
    assert await world.unfinished() == []


@pytest.mark.parametrize(
    ("command", "options", "attachment", "says"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_bad_command_input_is_explained_and_changes_nothing(
    world: World, command: str, options: dict, attachment: Any, says: str
) -> None:
    attachments = None
    if attachment == "ok-image":
        attachments = {"image": world.image()}
    elif attachment is not None:
        attachments = {"image": world.image(attachment["filename"], attachment["data"],
                                            content_type=attachment["content_type"])}  # fmt: skip
    # Discord would stop some of these in the client; the bot must not rely on that.
    interaction = await world.slash(
        world.alice, command, options, attachments=attachments, strict=False
    )

    reply = await world.reply_to(interaction)

    assert says in reply
    assert not LEAKS.search(reply)
    assert interaction.original is not None and interaction.original.ephemeral
    await assert_nothing_happened(world)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


async def test_a_command_from_a_dm_is_refused(world: World) -> None:
    stranger = world.fake.add_user("stranger")
    interaction = await world.fake.slash_in_dm(
        stranger, "cog-video", {"prompt": "from a DM"}, strict=False
    )

    assert "servers only" in await world.reply_to(interaction)
    await assert_nothing_happened(world)


async def test_a_prompt_of_mentions_and_markdown_is_echoed_harmlessly(world: World) -> None:
    prompt = f"@everyone @here <@{world.bob.id}> **bold** ||spoiler|| `code` # heading"
    interaction = await world.slash(world.alice, "grok-video", {"prompt": prompt})
    status = await world.status_message(interaction)
    [video] = await world.delivered()

    assert status.pings == frozenset()
    assert video.pings == frozenset({f"<@{world.alice.id}>"})
    assert "\\*\\*bold\\*\\*" in status.content  # markdown shown as typed, not rendered


# --- Buttons ---


async def test_buttons_pressed_by_someone_else_are_refused(world: World) -> None:
    world.simulator.speed = 1.0
    interaction = await world.slash(world.alice, "grok-video", {"prompt": "mine"})
    status = await world.status_message(interaction)
    [cancel_id] = [cid for cid in status.custom_ids if cid.startswith("job:cancel:")]

    reply = await world.reply_to(await world.fake.click(world.guild, world.bob, status, cancel_id))

    assert "Only the member who asked" in reply
    assert await world.unfinished()  # still running


async def test_buttons_of_a_deleted_job_say_so(world: World) -> None:
    world.simulator.speed = 0.02  # slow enough to list the job while it runs
    await world.reply_to(await world.slash(world.alice, "grok-video", {"prompt": "gone"}))
    listing = await world.slash(world.alice, "jobs")
    await world.reply_to(listing)
    [video] = await world.delivered()
    await world.fake.wait_for(world.settled)
    job_id = next(iter(await world.bot.store.credit_states()))
    await world.bot.store.delete_job(job_id)  # pruned, say
    assert listing.original is not None

    for message, custom_id in (
        (video, f"job:regenerate:{job_id}"),
        (listing.original, f"job:cancel:{job_id}"),
    ):
        click = await world.fake.click(world.guild, world.alice, message, custom_id)
        assert "no longer known" in await world.reply_to(click)


async def test_buttons_of_a_model_the_bot_no_longer_offers_say_so(world: World) -> None:
    await world.slash(world.alice, "grok-video", {"prompt": "retired"})
    [video] = await world.delivered()
    await world.fake.wait_for(world.settled)
    [regenerate_id] = [cid for cid in video.custom_ids if cid.startswith("job:regenerate:")]
    await world.rewrite_jobs("SET model = 'grok-legacy'")  # a model since taken out

    click = await world.fake.click(world.guild, world.alice, video, regenerate_id)

    assert "no longer offers `grok-legacy`" in await world.reply_to(click)
    assert len(world.simulator.requests("submit")) == 1


# --- Malformed answers from the provider ---


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"kind": "not_json", "endpoint": "submit", "count": None}, "having trouble"),
        ({"kind": "missing_fields", "endpoint": "submit"}, "may or may not have started"),
        ({"kind": "no_video_url", "endpoint": "result"}, "could not understand"),
        ({"kind": "video_404", "endpoint": "submit"}, "could not be fetched"),
    ],
    ids=["not-json", "missing-fields", "no-video-url", "video-url-404"],
)
async def test_a_malformed_provider_answer_is_explained_and_refunded(
    world: World, fault: dict[str, Any], says: str
) -> None:
    world.simulator.add_fault(**fault)
    interaction = await world.slash(world.alice, "grok-video", {"prompt": "x"})

    notice = await world.notice(interaction)

    assert says in notice.content
    assert not LEAKS.search(notice.content)
    await world.fake.wait_for(world.settled)
    assert await world.credit_states() == ["released"]
    assert world.videos() == []
