"""The world of the fake Discord: users, roles, members, channels, guilds, attachments,
messages and interactions, the snowflakes and permission constants they use, and
:class:`World`, the state every part of the fake shares (the gateway and the REST routes
extend it, :class:`~tests.fakediscord.driver.FakeDiscord` joins them)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord

Json = dict[str, Any]

DISCORD_EPOCH_MS = 1420070400000
MIB = 1024 * 1024

# Interaction types (payload "type").
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
MODAL_SUBMIT = 5

# Interaction callback types.
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15

# Channel types.
GUILD_TEXT = 0
PUBLIC_THREAD = 11
DM = 1

ALL_PERMISSIONS = discord.Permissions.all().value
ADMINISTRATOR = discord.Permissions(administrator=True).value
VIEW_CHANNEL = discord.Permissions(view_channel=True).value
SEND_MESSAGES = discord.Permissions(send_messages=True).value
ATTACH_FILES = discord.Permissions(attach_files=True).value
READ_MESSAGE_HISTORY = discord.Permissions(read_message_history=True).value
MANAGE_MESSAGES = discord.Permissions(manage_messages=True).value

DEFAULT_EVERYONE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    mention_everyone=True,
    read_message_history=True,
    use_application_commands=True,
    connect=True,
    speak=True,
).value

DEFAULT_BOT_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    read_message_history=True,
).value


class _Snowflakes:
    """Snowflakes stamped with the current time, so ``Interaction.expires_at`` is realistic."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        # The low bits act as the increment when many ids are minted in one millisecond.
        self._last = max(candidate, self._last + 1)
        return self._last

    def next_on_shard(self, shard: int, shard_count: int) -> int:
        """A fresh snowflake that Discord's rule puts on `shard`: as if made a few
        milliseconds later (real guilds are made at all sorts of times, so spread over shards;
        ids minted in one millisecond would all land on one)."""
        stamp = self.next() >> 22
        stamp += (shard - stamp) % shard_count
        self._last = max(stamp << 22, self._last)
        return self._last


# One generator per process: discord.py caches users and messages by id, and tests may run
# several fakes one after the other in the same process.
_snowflakes = _Snowflakes()


def snowflake(on_shard: tuple[int, int] | None = None) -> int:
    """A fresh Discord snowflake for the current time; `on_shard` (shard, shard count): one
    whose guild that shard carries."""
    return _snowflakes.next() if on_shard is None else _snowflakes.next_on_shard(*on_shard)


def _iso_now() -> str:
    return datetime.now(UTC).isoformat()


def _now() -> float:
    return time.monotonic()


def _walk_components(components: Iterable[Json]) -> Iterator[Json]:
    for component in components:
        yield component
        yield from _walk_components(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            yield from _walk_components([component["component"]])
        if isinstance(component.get("accessory"), dict):
            yield from _walk_components([component["accessory"]])


@dataclass(eq=False)
class FakeUser:
    id: int
    name: str
    bot: bool = False
    global_name: str | None = None
    # False makes POST /channels/{dm}/messages answer 403 / 50007 like a user with closed DMs.
    dms_open: bool = True

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def to_payload(self) -> Json:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
            "flags": 0,
        }


@dataclass(eq=False)
class FakeRole:
    id: int
    name: str
    permissions: int = 0
    position: int = 0
    managed: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def to_payload(self) -> Json:
        payload: Json = {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if self.bot_id is not None:
            payload["tags"] = {"bot_id": str(self.bot_id)}
        return payload


@dataclass(eq=False)
class FakeMember:
    user: FakeUser
    guild: FakeGuild
    roles: list[FakeRole] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=_iso_now)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def mention(self) -> str:
        return self.user.mention

    @property
    def permissions(self) -> int:
        """Guild-level permissions (roles, owner, administrator), before channel overwrites."""
        guild = self.guild
        if guild.owner_id == self.id:
            return ALL_PERMISSIONS
        value = guild.everyone.permissions
        for role in self.roles:
            value |= role.permissions
        if value & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return value

    def permissions_in(self, channel: FakeChannel) -> int:
        """Discord's permission algorithm: base permissions, then @everyone, role and member
        overwrites of the channel."""
        base = self.permissions
        if base & ADMINISTRATOR:
            return ALL_PERMISSIONS
        value = base
        overwrites = channel.overwrites
        if self.guild.id in overwrites:
            _, allow, deny = overwrites[self.guild.id]
            value = (value & ~deny) | allow
        role_allow = role_deny = 0
        for role in self.roles:
            if role.id in overwrites:
                _, allow, deny = overwrites[role.id]
                role_allow |= allow
                role_deny |= deny
        value = (value & ~role_deny) | role_allow
        if self.id in overwrites:
            _, allow, deny = overwrites[self.id]
            value = (value & ~deny) | allow
        if not value & VIEW_CHANNEL:
            return 0
        return value

    def to_payload(self, *, include_user: bool = True, permissions: int | None = None) -> Json:
        payload: Json = {
            "roles": [str(role.id) for role in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if include_user:
            payload["user"] = self.user.to_payload()
        if permissions is not None:
            payload["permissions"] = str(permissions)
        return payload


@dataclass(eq=False)
class FakeChannel:
    id: int
    name: str
    type: int = GUILD_TEXT
    guild: FakeGuild | None = None
    recipient: FakeUser | None = None
    position: int = 0
    # target id -> (type 0 role / 1 member, allow, deny)
    overwrites: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    parent: FakeChannel | None = None  # a thread's channel

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def set_permissions(
        self, target: FakeRole | FakeMember | FakeGuild, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Add a permission overwrite (a FakeGuild means its @everyone role). Sent to a connected
        bot as CHANNEL_UPDATE so discord.py's ``permissions_for`` agrees with the fake."""
        kind = 1 if isinstance(target, FakeMember) else 0
        self.overwrites[target.id] = (kind, allow, deny)
        if self.guild is not None and self.guild.announced:
            self.guild._fake._broadcast_soon("CHANNEL_UPDATE", self.to_payload())

    def to_payload(self) -> Json:
        if self.guild is None:
            recipients = [self.recipient.to_payload()] if self.recipient else []
            return {
                "id": str(self.id),
                "type": self.type,
                "recipients": recipients,
                "last_message_id": None,
                "flags": 0,
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild.id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [
                {"id": str(target), "type": kind, "allow": str(allow), "deny": str(deny)}
                for target, (kind, allow, deny) in self.overwrites.items()
            ],
            "nsfw": False,
            "parent_id": str(self.parent.id) if self.parent else None,
            "topic": None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
            **(self._thread_fields() if self.type == PUBLIC_THREAD else {}),
        }

    def _thread_fields(self) -> Json:
        return {
            "owner_id": str(self.guild.owner_id) if self.guild else None,
            "message_count": 0,
            "member_count": 1,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": "2026-01-01T00:00:00+00:00",
                "locked": False,
            },
        }


class FakeGuild:
    """A guild with roles, channels and members; its GUILD_CREATE goes out at IDENTIFY."""

    def __init__(
        self,
        fake: World,
        name: str,
        *,
        owner_id: int | None,
        premium_tier: int,
        bot_permissions: int,
        everyone_permissions: int,
        locale: str,
        on_shard: tuple[int, int] | None = None,
    ) -> None:
        self._fake = fake
        self.id = snowflake(on_shard)
        self.name = name
        self.premium_tier = premium_tier
        self.locale = locale
        self.everyone = FakeRole(self.id, "@everyone", everyone_permissions)
        self.bot_role = FakeRole(
            snowflake(),
            fake.bot_user.name,
            bot_permissions,
            position=1,
            managed=True,
            bot_id=fake.bot_user.id,
        )
        self.roles: list[FakeRole] = [self.everyone, self.bot_role]
        self.channels: list[FakeChannel] = []
        self.members: list[FakeMember] = []
        self.me = FakeMember(fake.bot_user, self, [self.bot_role])
        self.members.append(self.me)
        self.owner: FakeMember | None = None
        if owner_id is None:
            self.owner = self.add_member("Owner")
            self.owner_id = self.owner.id
        else:
            self.owner_id = owner_id
        self.channel = self.add_channel("general")

    def __repr__(self) -> str:
        return f"<FakeGuild id={self.id} name={self.name!r}>"

    @property
    def announced(self) -> bool:
        """Whether the bot is in the guild, so changes to it are sent as events (False before
        ``add_guild`` and after ``remove_bot``)."""
        return self in self._fake.guilds

    @property
    def filesize_limit(self) -> int:
        """Upload limit by boost tier, as Discord and ``discord.Guild.filesize_limit`` have it."""
        return {2: 50 * MIB, 3: 100 * MIB}.get(self.premium_tier, 10 * MIB)

    def add_channel(self, name: str, *, type: int = GUILD_TEXT) -> FakeChannel:
        channel = FakeChannel(snowflake(), name, type, guild=self, position=len(self.channels))
        self.channels.append(channel)
        if self.announced:
            self._fake._broadcast_soon("CHANNEL_CREATE", channel.to_payload())
        return channel

    def add_thread(self, name: str, parent: FakeChannel) -> FakeChannel:
        """A public thread under `parent`, for interactions in it (discord.py skips it in the
        channels of GUILD_CREATE, as Discord lists threads apart)."""
        thread = FakeChannel(snowflake(), name, PUBLIC_THREAD, guild=self, parent=parent)
        self.channels.append(thread)
        return thread

    def add_role(self, name: str, permissions: int = 0) -> FakeRole:
        role = FakeRole(snowflake(), name, permissions, position=len(self.roles))
        self.roles.append(role)
        if self.announced:
            self._fake._broadcast_soon(
                "GUILD_ROLE_CREATE", {"guild_id": str(self.id), "role": role.to_payload()}
            )
        return role

    def add_member(
        self,
        name: str,
        *,
        manage_guild: bool = False,
        administrator: bool = False,
        permissions: int = 0,
        roles: Iterable[FakeRole] = (),
    ) -> FakeMember:
        """A new member with a fresh user id. The flags (or ``permissions``) become a role of
        their own, so both ``member.permissions`` and ``interaction.permissions`` come out right."""
        user = self._fake.add_user(name)
        member_roles = list(roles)
        extra = permissions
        if manage_guild:
            extra |= discord.Permissions(manage_guild=True).value
        if administrator:
            extra |= ADMINISTRATOR
        if extra:
            member_roles.append(self.add_role(f"{name}-role", extra))
        member = FakeMember(user, self, member_roles)
        self.members.append(member)
        return member

    def get_member(self, user_id: int) -> FakeMember | None:
        return next((m for m in self.members if m.id == user_id), None)

    def get_channel(self, channel_id: int) -> FakeChannel | None:
        return next((c for c in self.channels if c.id == channel_id), None)

    def to_payload(self, *, include_all_members: bool = False) -> Json:
        # Without the members intent Discord only sends the bot's own member in GUILD_CREATE.
        members = self.members if include_all_members else [self.me]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": self.locale,
            "system_channel_id": str(self.channel.id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "features": [],
            "roles": [role.to_payload() for role in self.roles],
            "emojis": [],
            "stickers": [],
            "channels": [channel.to_payload() for channel in self.channels],
            "threads": [],
            "members": [member.to_payload() for member in members],
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "joined_at": self.me.joined_at,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_progress_bar_enabled": False,
        }


@dataclass(eq=False)
class FakeAttachment:
    """A file the bot uploaded (or a test registered with ``add_attachment``)."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    description: str | None = None
    width: int | None = None
    height: int | None = None
    ephemeral: bool = False
    # Discord's signed CDN links stop working after about a day.
    expired: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    def to_payload(self) -> Json:
        payload: Json = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
        }
        if self.content_type is not None:
            payload["content_type"] = self.content_type
        if self.description is not None:
            payload["description"] = self.description
        if self.width is not None and self.height is not None:
            payload["width"] = self.width
            payload["height"] = self.height
        if self.ephemeral:
            payload["ephemeral"] = True
        return payload


@dataclass(eq=False)
class FakeMessage:
    """A message the bot created, through an interaction callback, the interaction webhook or
    the channel endpoint (``route`` is 'callback', 'webhook' or 'channel')."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    route: str
    content: str = ""
    embeds: list[Json] = field(default_factory=list)
    components: list[Json] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    allowed_mentions: Json | None = None
    flags: int = 0
    tts: bool = False
    message_reference: Json | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction: FakeInteraction | None = None
    message_type: int = 0
    created_at: float = field(default_factory=_now)
    timestamp: str = field(default_factory=_iso_now)
    edited_at: float | None = None
    edited_timestamp: str | None = None
    deleted: bool = False
    # Snapshots of to_payload() taken before each edit.
    history: list[Json] = field(default_factory=list)
    # The JSON bodies that created and edited this message, in order.
    bodies: list[Json] = field(default_factory=list)
    mention_ids: list[int] = field(default_factory=list)
    # Who got notified when the message was created ("everyone", "<@id>", "<@&id>").
    pings: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return (
            f"<FakeMessage id={self.id} route={self.route} channel={self.channel_id} "
            f"content={self.content!r} files={[a.filename for a in self.attachments]} "
            f"flags={self.flags} edits={self.edit_count}>"
        )

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """Still the "Bot is thinking..." placeholder of a deferred response."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def edit_count(self) -> int:
        return len(self.history)

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in _walk_components(self.components) if "custom_id" in c]

    def find_component(self, custom_id: str) -> Json | None:
        return next(
            (c for c in _walk_components(self.components) if c.get("custom_id") == custom_id),
            None,
        )

    def attachment(self, filename: str) -> FakeAttachment:
        for attachment in self.attachments:
            if attachment.filename == filename:
                return attachment
        names = [a.filename for a in self.attachments]
        raise KeyError(f"no attachment {filename!r} on message {self.id}; it has {names}")

    def to_payload(self, users: dict[int, FakeUser] | None = None) -> Json:
        payload: Json = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "type": self.message_type,
            "content": self.content,
            "author": self.author.to_payload(),
            "attachments": [a.to_payload() for a in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "mentions": [users[i].to_payload() for i in self.mention_ids if users and i in users],
            "mention_roles": [],
            "mention_everyone": "everyone" in self.pings,
            "pinned": False,
            "tts": self.tts,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            payload["application_id"] = str(self.application_id)
        if self.message_reference is not None:
            payload["message_reference"] = self.message_reference
        if self.interaction is not None:
            inter = self.interaction
            payload["interaction_metadata"] = {
                "id": str(inter.id),
                "type": inter.type,
                "user": inter.user.to_payload(),
                "authorizing_integration_owners": inter.payload["authorizing_integration_owners"],
            }
        return payload


@dataclass(eq=False)
class FakeCallback:
    """One POST /interactions/{id}/{token}/callback."""

    type: int
    data: Json
    at: float
    attachments: list[FakeAttachment] = field(default_factory=list)


@dataclass(eq=False)
class FakeInteraction:
    """An interaction the fake dispatched, and everything the bot did with it."""

    id: int
    token: str
    type: int
    payload: Json
    guild: FakeGuild | None
    channel: FakeChannel
    user: FakeUser
    member: FakeMember | None
    attachment_size_limit: int
    expires_at: float
    dispatched_at: float = 0.0
    # For component and modal interactions: the message the component was on.
    message: FakeMessage | None = None
    callback: FakeCallback | None = None
    original: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    # Callbacks Discord refused: too late (missed_ack) or a second acknowledgement.
    rejected_callbacks: list[FakeCallback] = field(default_factory=list)
    missed_ack: bool = False
    # Set by forget_webhook(): webhook calls answer 404 / 10015 Unknown Webhook.
    webhook_forgotten: bool = False

    def __repr__(self) -> str:
        callback = self.callback.type if self.callback else None
        return (
            f"<FakeInteraction id={self.id} type={self.type} name={self.name!r} "
            f"callback={callback} followups={len(self.followups)} missed_ack={self.missed_ack}>"
        )

    @property
    def data(self) -> Json:
        return self.payload.get("data") or {}

    @property
    def name(self) -> str | None:
        return self.data.get("name") or self.data.get("custom_id")

    @property
    def acked_at(self) -> float | None:
        return self.callback.at if self.callback else None

    @property
    def ack_delay(self) -> float | None:
        return None if self.callback is None else self.callback.at - self.dispatched_at

    @property
    def modal(self) -> Json | None:
        """The modal the bot answered with (callback type 9), if any."""
        if self.callback is not None and self.callback.type == MODAL:
            return self.callback.data
        return None

    @property
    def messages(self) -> list[FakeMessage]:
        """The original response and the followups, without duplicates."""
        result = [self.original] if self.original is not None else []
        result += [m for m in self.followups if m is not self.original]
        return result

    def expire_token(self, after: float = 0.0) -> None:
        """Make the interaction token invalid now (or ``after`` seconds from now): webhook calls
        then answer 401 / 50027 Invalid Webhook Token."""
        self.expires_at = min(self.expires_at, _now() + after)

    @property
    def token_expired(self) -> bool:
        return _now() >= self.expires_at

    def forget_webhook(self) -> None:
        """Make Discord forget the interaction's webhook: webhook calls (followups, edits,
        deletes) then answer 404 / 10015 Unknown Webhook, where an expired token
        (:meth:`expire_token`) answers 401 / 50027."""
        self.webhook_forgotten = True


# --------------------------------------------------------------------------------------------
# The shared state
# --------------------------------------------------------------------------------------------


class World:
    """Everything the gateway, the REST routes and the driver share: the application and its
    bot user, the users, guilds, DM channels, messages, files and interactions, and lookups
    over them."""

    def __init__(self, *, token: str, bot_name: str, application_flags: int) -> None:
        self.token = token
        self.application_id = snowflake()
        self.application_flags = application_flags

        self._users: dict[int, FakeUser] = {}
        self.bot_user = self.add_user(bot_name, bot=True)
        # The guilds the bot is in, in the order they go out at IDENTIFY.
        self.guilds: list[FakeGuild] = []
        # Guilds the bot was removed from (FakeDiscord.remove_bot): still there, but the bot
        # gets 403 / 50001 Missing Access from them.
        self.removed_guilds: list[FakeGuild] = []
        self._dm_channels: dict[int, FakeChannel] = {}

        self.interactions: list[FakeInteraction] = []
        self._interactions_by_id: dict[int, FakeInteraction] = {}
        self._interactions_by_token: dict[str, FakeInteraction] = {}
        self.messages: list[FakeMessage] = []
        self._files: dict[int, FakeAttachment] = {}
        self.errors: list[BaseException] = []

        # Set once the server listens (FakeDiscord.start).
        self._port: int | None = None

    # ---------------------------------------------------------------- addresses

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeDiscord is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    # ---------------------------------------------------------------- users, channels, files

    def add_user(self, name: str, *, bot: bool = False) -> FakeUser:
        """A user that is in no guild (e.g. for DM interactions)."""
        user = FakeUser(snowflake(), name, bot=bot)
        self._users[user.id] = user
        return user

    def dm_channel(self, user: FakeUser | FakeMember) -> FakeChannel:
        fake_user = user.user if isinstance(user, FakeMember) else user
        channel = self._dm_channels.get(fake_user.id)
        if channel is None:
            channel = FakeChannel(snowflake(), "", DM, recipient=fake_user)
            self._dm_channels[fake_user.id] = channel
        return channel

    def _find_channel(self, channel_id: int) -> FakeChannel | None:
        """A channel of any guild, the bot's removed ones included, or a DM channel."""
        for guild in [*self.guilds, *self.removed_guilds]:
            channel = guild.get_channel(channel_id)
            if channel is not None:
                return channel
        return next((c for c in self._dm_channels.values() if c.id == channel_id), None)

    def bot_removed_from(self, guild: FakeGuild | None) -> bool:
        """Whether the bot was removed from ``guild`` (False for None, a DM)."""
        return guild is not None and guild in self.removed_guilds

    def _store_file(
        self,
        filename: str,
        data: bytes,
        content_type: str | None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> FakeAttachment:
        attachment_id = snowflake()
        url = f"{self.url}/attachments/{attachment_id}/{filename}"
        attachment = FakeAttachment(
            attachment_id, filename, data, content_type, url, description, ephemeral=ephemeral
        )
        self._files[attachment_id] = attachment
        return attachment

    # ---------------------------------------------------------------- messages

    def channel_messages(
        self, channel: FakeChannel | int, *, include_deleted: bool = False
    ) -> list[FakeMessage]:
        """Every message in the channel, whatever route created it (ephemeral ones included)."""
        channel_id = channel if isinstance(channel, int) else channel.id
        return [
            m
            for m in self.messages
            if m.channel_id == channel_id and (include_deleted or not m.deleted)
        ]

    def get_message(self, message_id: int) -> FakeMessage | None:
        return next((m for m in self.messages if m.id == message_id), None)

    # ---------------------------------------------------------------- events

    def _broadcast_soon(self, event: str, data: Json) -> None:
        """Send a gateway event to every connected bot without waiting (see Gateway)."""
        raise NotImplementedError
