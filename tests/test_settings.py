"""`/settings` end to end on the fake Discord: where, by whom and which models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.simulator import Simulator
from tests.bot_world import World, bot_world
from tests.fakediscord import FakeInteraction, FakeMember

PROMPT = {"prompt": "a lighthouse at dusk"}


@pytest.fixture
async def world(simulator: Simulator, tmp_path: Path) -> AsyncIterator[World]:
    simulator.speed = 0.005
    async with bot_world(simulator, tmp_path / "bot.db") as started:
        yield started


async def settings(world: World, command: str, options: dict | None = None) -> str:
    """/settings <command> as the server's manager; the private answer."""
    return await world.reply_to(await world.slash(world.manager, f"settings {command}", options))


async def refused_without_a_trace(world: World, interaction: FakeInteraction, *words: str) -> str:
    """A video command's refusal: private, naming what it should, nothing sent, nothing spent."""
    reply = await world.reply_to(interaction)
    assert interaction.original is not None and interaction.original.ephemeral
    for word in words:
        assert word in reply
    assert not world.simulator.requests("submit")
    assert await world.credit_states() == []  # no job, so no credits reserved
    return reply


async def test_every_settings_command_is_for_managers_only(world: World) -> None:
    videos = world.guild.add_channel("videos")
    makers = world.guild.add_role("makers")
    for command, options in (
        ("channels add", {"channel": videos}),
        ("channels remove", {"channel": videos}),
        ("channels clear", None),
        ("channels show", None),
        ("roles add", {"role": makers}),
        ("roles remove", {"role": makers}),
        ("roles clear", None),
        ("roles show", None),
        ("model", {"model": "svd", "enabled": False}),
        ("default", {"model": "svd", "option": "fps", "value": "12"}),
        ("default-clear", {"model": "svd"}),
        ("alerts", {"channel": videos, "below": 10}),
        ("alerts-off", None),
        ("show", None),
    ):
        attempt = await world.slash(world.alice, f"settings {command}", options)
        assert "Manage Server" in await world.reply_to(attempt), command

    shown = await settings(world, "show")  # nothing was changed
    assert "every channel" in shown and "every member" in shown and "Models off" not in shown
    assert "**Defaults:** none" in shown and "**Credit alerts:** none" in shown


async def test_video_commands_kept_to_listed_channels_and_their_threads(world: World) -> None:
    videos = world.guild.add_channel("videos")
    answer = await settings(world, "channels add", {"channel": videos})
    assert f"<#{videos.id}>" in answer and "(and their threads)" in answer

    elsewhere = await world.slash(world.alice, "grok-video", PROMPT)
    await refused_without_a_trace(world, elsewhere, "only in", f"<#{videos.id}>")
    off_topic = world.guild.add_thread("chatter", parent=world.guild.channel)
    in_other_thread = await world.slash(world.alice, "grok-video", PROMPT, channel=off_topic)
    await refused_without_a_trace(world, in_other_thread, "only in", f"<#{videos.id}>")

    thread = world.guild.add_thread("ideas", parent=videos)
    in_thread = await world.slash(world.alice, "grok-video", PROMPT, channel=thread)
    assert "Queued as job" in await world.reply_to(in_thread)
    here = await world.slash(world.alice, "grok-video", PROMPT, channel=videos)
    assert "Queued as job" in await world.reply_to(here)

    assert "every channel" in await settings(world, "channels clear")
    anywhere = await world.slash(world.bob, "grok-video", PROMPT)
    assert "Queued as job" in await world.reply_to(anywhere)


async def test_video_commands_kept_to_members_with_a_listed_role(world: World) -> None:
    makers = world.guild.add_role("makers")
    maker = world.guild.add_member("maker", roles=[makers])
    assert f"<@&{makers.id}> is listed" in await settings(world, "roles add", {"role": makers})

    refused = await world.slash(world.alice, "grok-video", PROMPT)
    await refused_without_a_trace(world, refused, "role", f"<@&{makers.id}>")

    for member in (maker, world.manager):  # a manager always may
        allowed = await world.slash(member, "grok-video", PROMPT)
        assert "Queued as job" in await world.reply_to(allowed)

    assert "is no longer listed" in await settings(world, "roles remove", {"role": makers})
    again = await world.slash(world.alice, "grok-video", PROMPT)
    assert "Queued as job" in await world.reply_to(again)


async def test_a_model_switched_off_is_refused_in_words_and_can_be_switched_on(
    world: World,
) -> None:
    answer = await settings(world, "model", {"model": "grok-imagine-video", "enabled": False})
    assert "switched off" in answer and "Models off:** /grok-video" in answer

    refused = await world.slash(world.alice, "grok-video", PROMPT)
    await refused_without_a_trace(world, refused, "`/grok-video` is switched off")
    other = await world.slash(world.alice, "cog-video", PROMPT)
    assert "Queued as job" in await world.reply_to(other)

    await settings(world, "model", {"model": "grok-imagine-video", "enabled": True})
    again = await world.slash(world.alice, "grok-video", PROMPT)
    assert "Queued as job" in await world.reply_to(again)


async def test_a_servers_settings_never_touch_another_server(world: World) -> None:
    other = world.fake.add_guild("Elsewhere")
    stranger: FakeMember = other.add_member("stranger")
    await world.fake.wait_for(lambda: world.bot.get_guild(other.id) is not None)
    videos = world.guild.add_channel("videos")
    await settings(world, "channels add", {"channel": videos})
    await settings(world, "model", {"model": "grok-imagine-video", "enabled": False})

    there = await world.fake.slash(other, stranger, "grok-video", PROMPT)

    assert "Queued as job" in await world.reply_to(there)


async def test_help_lists_the_commands_this_servers_rules_costs_and_my_credits(
    world: World,
) -> None:
    await settings(world, "model", {"model": "svd", "enabled": False})
    await settings(world, "default", {
        "model": "grok-imagine-video", "option": "aspect_ratio", "value": "9:16",
    })  # fmt: skip
    await world.reply_to(await world.slash(world.manager, "quota cost", {
        "model": "pixverse-5-video", "credits": 3,
    }))  # fmt: skip
    await world.reply_to(await world.slash(world.manager, "quota set-default", {"limit": 10}))

    text = await world.reply_to(await world.slash(world.alice, "help"))

    assert "`/svd`: Stable Video Diffusion, from an image · 1 credit · *switched off here*" in text
    assert "`/pixverse`: PixVerse 5, from a prompt, or an image · 3 credits" in text
    assert "**Your credits:** 10 credits left this day" in text
    assert "**Models off:** /svd" in text and "**Channels:** every channel" in text
    assert "**Defaults:** /grok-video: aspect_ratio 9:16" in text
    assert "Credit alerts" not in text  # the managers' business


async def test_server_defaults_fill_what_members_leave_empty_and_are_shown(world: World) -> None:
    answer = await settings(world, "default", {
        "model": "pixverse-5-video", "option": "quality", "value": "720p",
    })  # fmt: skip
    assert "now defaults to quality 720p" in answer
    await settings(world, "default", {
        "model": "pixverse-5-video", "option": "duration", "value": "8",
    })  # fmt: skip
    assert "**Defaults:** /pixverse: quality 720p, duration 8" in await settings(world, "show")

    plain = await world.slash(world.alice, "pixverse", PROMPT)
    await world.reply_to(plain)
    status = await world.status_message(plain)
    own = await world.slash(world.bob, "pixverse", {**PROMPT, "quality": "360p"})
    await world.reply_to(own)
    await world.delivered(2)

    first, second = (job.payload for job in world.simulator.jobs.values())
    assert (first["quality"], first["duration"]) == ("720p", 8)
    assert (second["quality"], second["duration"]) == ("360p", 8)  # the member's own wins
    assert "Server defaults: quality 720p, duration 8" in status.content


async def test_a_default_that_could_never_run_is_refused_at_once(world: World) -> None:
    await settings(world, "default", {
        "model": "pixverse-5-video", "option": "duration", "value": "8",
    })  # fmt: skip

    for option, value, why in (
        ("quality", "1080p", "1080p"),  # not with an 8 s duration
        ("quality", "9000p", "must be one of"),
        ("steps", "30", "not an option of /pixverse"),
    ):
        answer = await settings(world, "default", {
            "model": "pixverse-5-video", "option": option, "value": value,
        })  # fmt: skip
        assert "That default was not set." in answer and why in answer, (option, value)

    assert "**Defaults:** /pixverse: duration 8" in await settings(world, "show")
    cleared = await settings(world, "default-clear", {"model": "pixverse-5-video"})
    assert "Dropped every default of `/pixverse`" in cleared and "**Defaults:** none" in cleared


async def test_one_servers_defaults_never_reach_another(world: World) -> None:
    other = world.fake.add_guild("Elsewhere")
    stranger = other.add_member("stranger")
    await world.fake.wait_for(lambda: world.bot.get_guild(other.id) is not None)
    await settings(world, "default", {
        "model": "grok-imagine-video", "option": "resolution", "value": "1080p",
    })  # fmt: skip

    there = await world.fake.slash(other, stranger, "grok-video", PROMPT)
    await world.reply_to(there)
    await world.fake.wait_for(lambda: world.simulator.requests("submit"))

    [job] = world.simulator.jobs.values()
    assert job.payload["resolution"] == "480p"  # the catalogue's default, not the other server's


# --- Alerts before the money runs out ---


def posted_in(world: World, channel: object) -> list[str]:
    return [m.content for m in world.fake.channel_messages(channel)]


async def one_video(world: World, member: FakeMember, remaining: float | None) -> None:
    world.simulator.remaining_credits = remaining
    count = len(world.videos())
    await world.slash(member, "grok-video", PROMPT)
    await world.delivered(count + 1)
    await world.fake.wait_for(world.settled, message="all told")


async def test_an_alert_posts_once_when_the_credits_fall_below_and_again_after_recovery(
    world: World,
) -> None:
    alerts = world.guild.add_channel("alerts")
    answer = await settings(world, "alerts", {"channel": alerts, "below": 50})
    assert f"<#{alerts.id}> below 50 credits" in answer

    await one_video(world, world.alice, 120.0)
    assert posted_in(world, alerts) == []
    await one_video(world, world.alice, 42.5)
    await world.fake.wait_for(lambda: posted_in(world, alerts), message="the alert")
    await one_video(world, world.alice, 30.0)  # still low: not said twice

    [low] = posted_in(world, alerts)
    assert "42.50 credits left" in low and "threshold of 50" in low

    await one_video(world, world.alice, 80.0)  # topped up
    await one_video(world, world.alice, 10.0)
    await world.fake.wait_for(lambda: len(posted_in(world, alerts)) == 2, message="again")


async def test_out_of_credits_alerts_at_once_and_again_only_after_credits_came_back(
    world: World,
) -> None:
    alerts = world.guild.add_channel("alerts")
    await settings(world, "alerts", {"channel": alerts, "below": 5})
    elsewhere = world.fake.add_guild("Elsewhere")  # no alerts channel: told nothing
    stranger = elsewhere.add_member("stranger")
    await world.fake.wait_for(lambda: world.bot.get_guild(elsewhere.id) is not None)

    async def refused_for_credits(member: FakeMember, guild: object) -> None:
        world.simulator.add_fault("credits", endpoint="submit")
        interaction = await world.fake.slash(guild, member, "grok-video", PROMPT)
        await world.notice(interaction)

    await refused_for_credits(world.alice, world.guild)
    await world.fake.wait_for(lambda: posted_in(world, alerts), message="the alert")
    await refused_for_credits(stranger, elsewhere)
    await world.fake.wait_for(world.settled, message="all told")
    assert len(posted_in(world, alerts)) == 1 and "out of credits" in posted_in(world, alerts)[0]
    assert not [m for m in posted_in(world, elsewhere.channel) if m.startswith(("⛔", "⚠️"))]

    await one_video(world, world.alice, 100.0)  # credits seen again
    await refused_for_credits(world.alice, world.guild)
    await world.fake.wait_for(lambda: len(posted_in(world, alerts)) == 2, message="again")

    assert "**Credit alerts:** none" in await settings(world, "alerts-off")
