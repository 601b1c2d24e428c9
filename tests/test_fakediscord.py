"""The loopback fake Discord, proven with a small real discord.py bot."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakediscord import FakeDiscord, FakeGuild, FakeMember, run_bot

ECHO_FILE = "echo.txt"


def echo_bytes(text: str) -> bytes:
    return (text * 3).encode()


class CounterButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"count:(?P<n>\d+)"):
    """A restart-proof button: the count lives in the custom_id."""

    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(label=f"Count {n}", custom_id=f"count:{n}"))
        self.n = n

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Button[Any],
        match: re.Match[str],
    ) -> CounterButton:
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(CounterButton(self.n + 1))
        await interaction.response.edit_message(content=f"count {self.n + 1}", view=view)


class AskModal(discord.ui.Modal, title="Ask"):
    prompt: discord.ui.TextInput[AskModal] = discord.ui.TextInput(
        label="Prompt", custom_id="prompt"
    )

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message(f"asked: {self.prompt.value}", ephemeral=True)


class MiniBot(commands.Bot):
    def __init__(self, *, guild_messages: bool = False) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = guild_messages
        super().__init__(command_prefix=commands.when_mentioned, intents=intents)
        self.seen: list[discord.Interaction[Any]] = []
        self.attachment_bytes: list[bytes] = []
        self.errors: list[discord.HTTPException] = []
        self.release = asyncio.Event()
        self.shown: list[tuple[discord.Member | discord.User, int]] = []
        self.raw_deletes: list[discord.RawMessageDeleteEvent] = []
        self.removed_from: list[discord.Guild] = []

    async def setup_hook(self) -> None:
        self.add_dynamic_items(CounterButton)
        for command in (echo, inspect_file, counter, slow, late, ask, job):
            self.tree.add_command(command)
        await self.tree.sync()

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.raw_deletes.append(payload)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.removed_from.append(guild)


def mini(interaction: discord.Interaction[Any]) -> MiniBot:
    bot = interaction.client
    assert isinstance(bot, MiniBot)
    bot.seen.append(interaction)
    return bot


@app_commands.command(description="Echo text back as a file")
async def echo(interaction: discord.Interaction[Any], text: str) -> None:
    mini(interaction)
    await interaction.response.defer()
    await interaction.followup.send(
        content=text,
        file=discord.File(io.BytesIO(echo_bytes(text)), ECHO_FILE),
        allowed_mentions=discord.AllowedMentions.none(),
    )


@app_commands.command(name="inspect", description="Read an uploaded file")
async def inspect_file(interaction: discord.Interaction[Any], file: discord.Attachment) -> None:
    bot = mini(interaction)
    await interaction.response.defer(ephemeral=True)
    bot.attachment_bytes.append(await file.read())
    await interaction.followup.send(f"{file.filename}: {file.size} bytes")


@app_commands.command(description="A button that counts")
async def counter(interaction: discord.Interaction[Any]) -> None:
    mini(interaction)
    view = discord.ui.View(timeout=None)
    view.add_item(CounterButton(0))
    await interaction.response.send_message("count 0", view=view)


@app_commands.command(description="Defer, wait for the test, then answer")
async def slow(interaction: discord.Interaction[Any]) -> None:
    bot = mini(interaction)
    await interaction.response.defer()
    await bot.release.wait()
    try:
        await interaction.followup.send("done")
    except discord.HTTPException as exc:
        # The token is gone: answer in the channel with the bot token instead.
        bot.errors.append(exc)
        assert interaction.channel is not None
        await interaction.channel.send(  # type: ignore[union-attr]
            f"{interaction.user.mention} done",
            allowed_mentions=discord.AllowedMentions(users=[interaction.user]),
        )


@app_commands.command(description="Answers too late")
async def late(interaction: discord.Interaction[Any]) -> None:
    bot = mini(interaction)
    await asyncio.sleep(0.3)
    try:
        await interaction.response.send_message("sorry")
    except discord.HTTPException as exc:
        bot.errors.append(exc)


@app_commands.command(description="Opens a modal")
async def ask(interaction: discord.Interaction[Any]) -> None:
    mini(interaction)
    await interaction.response.send_modal(AskModal())


job = app_commands.Group(name="job", description="Jobs")


@job.command(name="show", description="Show a job")
async def job_show(
    interaction: discord.Interaction[Any],
    owner: discord.Member,
    seconds: app_commands.Range[int, 1, 10],
) -> None:
    mini(interaction).shown.append((owner, seconds))
    await interaction.response.send_message("shown", ephemeral=True)


@dataclass
class World:
    guild: FakeGuild
    alice: FakeMember
    mod: FakeMember


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def world(fake: FakeDiscord) -> World:
    guild = fake.add_guild("Test Guild")
    return World(guild, guild.add_member("alice"), guild.add_member("mod", manage_guild=True))


@pytest.fixture
async def bot(fake: FakeDiscord, world: World) -> AsyncIterator[MiniBot]:
    async with run_bot(MiniBot(), fake) as client:
        assert isinstance(client, MiniBot)
        yield client
    assert not fake.errors, fake.errors


async def test_bot_connects_with_guild_channels_and_permissions(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    assert bot.is_ready()
    assert bot.user is not None and bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.application_id
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.name == "Test Guild"
    channel = guild.get_channel(world.guild.channel.id)
    assert isinstance(channel, discord.TextChannel)
    assert channel.permissions_for(guild.me).attach_files
    query = fake.gateway_queries[0]
    assert query["encoding"] == "json" and query["v"] == "10"
    assert fake.identify_count == 1
    assert not fake.unknown_requests


async def test_tree_sync_is_recorded(fake: FakeDiscord, bot: MiniBot) -> None:
    assert fake.sync_count == 1
    by_name = {c["name"]: c for c in fake.commands}
    assert set(by_name) == {"echo", "inspect", "counter", "slow", "late", "ask", "job"}
    (text,) = by_name["echo"]["options"]
    assert (text["name"], text["type"], text["required"]) == ("text", 3, True)
    assert by_name["inspect"]["options"][0]["type"] == 11
    assert all(int(c["id"]) for c in fake.commands)


async def test_slash_defers_in_time_then_followup_carries_the_file(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    text = "hi @everyone"
    inter = await fake.slash(world.guild, world.mod, "echo", {"text": text})
    await fake.wait_for(lambda: inter.followups)

    assert inter.callback is not None and inter.callback.type == 5
    assert inter.ack_delay is not None and inter.ack_delay < 3.0
    (message,) = inter.followups
    # The first followup after a defer fills the "thinking" placeholder.
    assert message is inter.original and not message.loading
    assert message.content == text
    assert message.attachment(ECHO_FILE).data == echo_bytes(text)
    assert message.allowed_mentions == {"parse": []}
    assert message.pings == frozenset()

    seen = bot.seen[-1]
    assert seen.guild is not None and seen.guild.id == world.guild.id
    assert seen.permissions.manage_guild
    assert seen.app_permissions.attach_files
    assert seen.filesize_limit == 10 * 1024 * 1024


async def test_attachment_option_is_downloadable(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    data = bytes(range(256)) * 40
    upload = fake.add_attachment("clip.mp4", data, "video/mp4")
    inter = await fake.slash(world.guild, world.alice, "inspect", attachments={"file": upload})
    await fake.wait_for(lambda: inter.followups)
    assert bot.attachment_bytes == [data]
    assert inter.followups[0].ephemeral
    assert fake.requests_to("GET", "/attachments/*")[0].status == 200


async def test_button_click_edits_the_message(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    inter = await fake.slash(world.guild, world.alice, "counter")
    message = await fake.wait_for(lambda: inter.original)
    assert message.custom_ids == ["count:0"]

    click = await fake.click(world.guild, world.alice, message, "count:0")
    await fake.wait_for(lambda: click.callback)
    assert click.callback is not None and click.callback.type == 7
    assert message.content == "count 1"
    assert message.custom_ids == ["count:1"]
    assert message.edit_count == 1
    with pytest.raises(ValueError, match="no component"):
        await fake.click(world.guild, world.alice, message, "count:0")


async def test_expired_token_falls_back_to_channel_send(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    inter = await fake.slash(world.guild, world.alice, "slow")
    await fake.wait_for(lambda: inter.callback)
    inter.expire_token()
    bot.release.set()

    messages = await fake.wait_for(
        lambda: [m for m in fake.channel_messages(world.guild.channel) if m.route == "channel"]
    )
    (error,) = bot.errors
    assert (error.status, error.code) == (401, 50027)
    assert messages[0].content == f"{world.alice.mention} done"
    assert messages[0].pings == {world.alice.mention}
    assert inter.followups == []


async def test_missed_ack_is_recorded(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    fake.ack_deadline = 0.2
    inter = await fake.slash(world.guild, world.alice, "late")
    await fake.wait_for(lambda: bot.errors)
    assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062
    assert inter.missed_ack and inter.callback is None
    assert fake.missed_acks == [inter]


async def test_dm_interaction_has_no_guild(fake: FakeDiscord, bot: MiniBot) -> None:
    user = fake.add_user("dm-user")
    inter = await fake.slash_in_dm(user, "echo", {"text": "private"})
    await fake.wait_for(lambda: inter.followups)
    seen = bot.seen[-1]
    assert seen.guild is None and seen.guild_id is None
    assert isinstance(seen.channel, discord.DMChannel)
    assert inter.followups[0].guild_id is None


async def test_modal_round_trip(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    opened = await fake.slash(world.guild, world.alice, "ask")
    await fake.wait_for(lambda: opened.modal)
    assert opened.modal is not None
    submitted = await fake.submit_modal(
        world.guild, world.alice, opened.modal["custom_id"], {"prompt": "a cat"}
    )
    message = await fake.wait_for(lambda: submitted.original)
    assert message.content == "asked: a cat" and message.ephemeral


async def test_subcommand_with_member_option_and_unchecked_range(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    # Discord's client would refuse 99, but discord.py does not check Range: the fake lets a
    # test send it so the bot's own validation can be exercised.
    inter = await fake.slash(
        world.guild, world.alice, "job show", {"owner": world.mod, "seconds": 99}
    )
    await fake.wait_for(lambda: inter.original)
    ((owner, seconds),) = bot.shown
    assert isinstance(owner, discord.Member) and owner.id == world.mod.id
    assert seconds == 99
    with pytest.raises(ValueError, match="required"):
        await fake.slash(world.guild, world.alice, "job show", {"owner": world.mod})


async def test_rate_limit_unknown_route_and_channel_rules(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    channel = bot.get_channel(world.guild.channel.id)
    assert isinstance(channel, discord.TextChannel)

    fake.fail_next("POST", "/channels/*/messages", status=429, retry_after=0.05)
    sent = await channel.send("after a 429")
    statuses = [r.status for r in fake.requests_to("POST", "/channels/*/messages")]
    assert statuses == [429, 200]
    assert fake.get_message(sent.id) is not None

    with pytest.raises(discord.NotFound):
        await bot.http.request(discord.http.Route("GET", "/nowhere"))
    assert [r.path for r in fake.unknown_requests] == ["/nowhere"]

    too_big = discord.File(io.BytesIO(b"\0" * (10 * 1024 * 1024 + 1)), "big.mp4")
    with pytest.raises(discord.HTTPException) as oversize:
        await channel.send(file=too_big)
    assert (oversize.value.status, oversize.value.code) == (413, 40005)

    muted = world.guild.add_channel("muted")
    muted.set_permissions(world.guild, deny=discord.Permissions(send_messages=True).value)
    await fake.wait_for(lambda: bot.get_channel(muted.id))
    muted_channel = bot.get_channel(muted.id)
    assert isinstance(muted_channel, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as forbidden:
        await muted_channel.send("hello")
    assert forbidden.value.code == 50013


async def test_json_content_type_is_exact(fake: FakeDiscord, bot: MiniBot) -> None:
    headers = {"Authorization": f"Bot {fake.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.api_base}/users/@me", headers=headers) as response,
    ):
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["id"] == str(fake.bot_user_id)


async def test_resume_after_reconnect(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    await fake.force_reconnect()
    await fake.wait_for(lambda: fake.resume_count == 1 and fake.connected)
    inter = await fake.slash(world.guild, world.alice, "echo", {"text": "still here"})
    await fake.wait_for(lambda: inter.followups)
    assert fake.identify_count == 1


async def test_runs_back_to_back_restore_globals() -> None:
    original_base = discord.http.Route.BASE
    for _ in range(2):
        async with FakeDiscord() as fake:
            guild = fake.add_guild()
            async with run_bot(MiniBot(), fake):
                patched_base = discord.http.Route.BASE
                assert patched_base == fake.api_base
                inter = await fake.slash(guild, guild.add_member("x"), "counter")
                await fake.wait_for(lambda inter=inter: inter.original)
        restored_base = discord.http.Route.BASE
        assert restored_base == original_base


async def test_message_deleted_by_a_moderator_is_unknown_to_later_edits(
    fake: FakeDiscord, world: World
) -> None:
    async with run_bot(MiniBot(guild_messages=True), fake) as client:
        assert isinstance(client, MiniBot)
        inter = await fake.slash(world.guild, world.alice, "echo", {"text": "to delete"})
        original = await fake.wait_for(lambda: inter.followups and inter.original)
        seen = client.seen[-1]
        followup = await seen.followup.send("second", wait=True)
        private = await seen.followup.send("secret", ephemeral=True, wait=True)
        fake_followup, fake_private = fake.get_message(followup.id), fake.get_message(private.id)
        assert fake_followup is not None and fake_private is not None and fake_private.ephemeral

        for message in (original, fake_followup, fake_private):
            await fake.delete_message(message)
        await fake.wait_for(lambda: len(client.raw_deletes) == 2)
        # Discord sends no event for an ephemeral message.
        assert [(e.message_id, e.channel_id, e.guild_id) for e in client.raw_deletes] == [
            (message_id, world.guild.channel.id, world.guild.id)
            for message_id in (original.id, followup.id)
        ]
        assert fake.channel_messages(world.guild.channel) == []
        with pytest.raises(ValueError, match="already deleted"):
            await fake.delete_message(original)

        with pytest.raises(discord.NotFound) as edit_original:
            await seen.edit_original_response(content="edited")
        assert edit_original.value.code == 10008
        for webhook_message in (followup, private):
            with pytest.raises(discord.NotFound) as edit_followup:
                await webhook_message.edit(content="edited")
            assert edit_followup.value.code == 10008
        channel = client.get_channel(world.guild.channel.id)
        assert isinstance(channel, discord.TextChannel)
        for message_id in (original.id, followup.id):
            with pytest.raises(discord.NotFound) as edit_in_channel:
                await channel.get_partial_message(message_id).edit(content="edited")
            assert edit_in_channel.value.code == 10008

        webhook_edits = fake.requests_to("PATCH", "/webhooks/*/messages/*")
        channel_edits = fake.requests_to("PATCH", "/channels/*/messages/*")
        assert [r.status for r in webhook_edits] == [404] * 3
        assert [r.status for r in channel_edits] == [404] * 2
        assert all(m.edit_count == 0 for m in (original, fake_followup, fake_private))
        assert len(client.raw_deletes) == 2
    assert not fake.errors, fake.errors


async def test_message_delete_needs_the_guild_messages_intent(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    inter = await fake.slash(world.guild, world.alice, "counter")
    await fake.delete_message(await fake.wait_for(lambda: inter.original))
    # An event sent after the delete arrives after it would have: nothing came.
    await fake.slash(world.guild, world.alice, "counter")
    await fake.wait_for(lambda: len(bot.seen) == 2)
    assert bot.raw_deletes == []


async def test_removed_bot_gets_guild_remove_then_missing_access(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    channel = bot.get_channel(world.guild.channel.id)
    assert isinstance(channel, discord.TextChannel)
    before = await channel.send("before")

    await fake.remove_bot(world.guild)
    (removed,) = await fake.wait_for(lambda: bot.removed_from)
    assert removed.id == world.guild.id
    assert bot.get_guild(world.guild.id) is None
    assert fake.guilds == [] and fake.removed_guilds == [world.guild]

    with pytest.raises(discord.Forbidden) as send:
        await channel.send("after")
    assert (send.value.status, send.value.code) == (403, 50001)
    for call in (
        lambda: before.edit(content="edited"),
        before.delete,
        lambda: bot.fetch_channel(channel.id),
        lambda: bot.fetch_guild(world.guild.id),
    ):
        with pytest.raises(discord.Forbidden) as refused:
            await call()
        assert refused.value.code == 50001
    with pytest.raises(discord.Forbidden):
        [m async for m in channel.history(limit=5)]
    assert fake.channel_messages(world.guild.channel)[0].content == "before"

    with pytest.raises(ValueError, match="removed"):
        await fake.slash(world.guild, world.alice, "counter")
    assert bot.seen == []

    # A new IDENTIFY no longer sees the guild.
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(fake.gateway_url) as ws,
    ):
        assert (await ws.receive_json())["op"] == 10
        await ws.send_json({"op": 2, "d": {"token": fake.token, "intents": 1}})
        ready = await ws.receive_json()
        assert ready["t"] == "READY" and ready["d"]["guilds"] == []
        await ws.send_json({"op": 1, "d": ready["s"]})
        # The heartbeat ACK comes next: no GUILD_CREATE was sent in between.
        assert (await ws.receive_json())["op"] == 11


async def test_forgotten_webhook_is_unknown_and_expired_token_is_invalid(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    forgotten = await fake.slash(world.guild, world.alice, "counter")
    await fake.wait_for(lambda: forgotten.original)
    expired = await fake.slash(world.guild, world.alice, "counter")
    await fake.wait_for(lambda: expired.original)
    first, second = bot.seen

    forgotten.forget_webhook()
    with pytest.raises(discord.NotFound) as edit:
        await first.edit_original_response(content="edited")
    assert edit.value.code == 10015
    with pytest.raises(discord.NotFound) as followup:
        await first.followup.send("more")
    assert followup.value.code == 10015

    expired.expire_token()
    with pytest.raises(discord.HTTPException) as invalid:
        await second.edit_original_response(content="edited")
    assert (invalid.value.status, invalid.value.code) == (401, 50027)
    webhook_calls = [r for r in fake.requests if r.path.startswith("/webhooks/")]
    assert [(r.method, r.status) for r in webhook_calls] == [
        ("PATCH", 404),
        ("POST", 404),
        ("PATCH", 401),
    ]
