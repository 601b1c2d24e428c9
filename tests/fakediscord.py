"""A loopback fake of Discord (REST API, gateway and attachment CDN) for end-to-end tests.

The real discord.py client connects to it: :func:`run_bot` points ``Route.BASE`` and the
gateway URL at the fake, starts the bot and waits until it is ready. Tests then drive the bot
the way users would (:meth:`FakeDiscord.slash`, :meth:`FakeDiscord.click`,
:meth:`FakeDiscord.submit_modal`) and assert on what the bot sent (:class:`FakeInteraction`,
:class:`FakeMessage`, :attr:`FakeDiscord.requests`).

Everything listens on 127.0.0.1; nothing here talks to the internet.

Where Discord enforces a rule that discord.py does not (the 3 s acknowledgement deadline, the
15 minute interaction token, upload size limits, message and command limits, channel
permissions), the fake enforces it too and answers with Discord's status and error code, so a
bot that breaks the rule fails in tests the way it would fail in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import json
import mimetypes
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import discord
import yarl
from aiohttp import WSMsgType, web
from discord.gateway import DiscordWebSocket

__all__ = [
    "FakeAttachment",
    "FakeCallback",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMember",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "RequestRecord",
    "run_bot",
]

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

# Discord's per-command-type limits for one application (or one guild).
COMMAND_LIMITS = {1: 100, 2: 15, 3: 15}
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
_FILE_FIELD = re.compile(r"^files\[(\d+)\]$")
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


class _Snowflakes:
    """Snowflakes stamped with the current time, so ``Interaction.expires_at`` is realistic."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        # The low bits act as the increment when many ids are minted in one millisecond.
        self._last = max(candidate, self._last + 1)
        return self._last


# One generator per process: discord.py caches users and messages by id, and tests may run
# several fakes one after the other in the same process.
_snowflakes = _Snowflakes()


def snowflake() -> int:
    """A fresh Discord snowflake for the current time."""
    return _snowflakes.next()


def _iso_now() -> str:
    return datetime.now(UTC).isoformat()


def _now() -> float:
    return time.monotonic()


def _json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # Exactly "application/json": discord.py's json_or_text compares the header verbatim and
    # treats anything else (aiohttp's json_response adds "; charset=utf-8") as plain text.
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)


def _error(status: int, code: int, message: str, **extra: Any) -> web.Response:
    return _json_response({"message": message, "code": code, **extra}, status=status)


def _form_error(errors: list[tuple[str, str, str]]) -> web.Response:
    """400 Invalid Form Body with Discord's nested ``errors`` object."""
    nested: Json = {}
    for path, code, message in errors:
        node = nested
        for part in path.split("."):
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return _error(400, 50035, "Invalid Form Body", errors=nested)


def _no_content() -> web.Response:
    return web.Response(status=204)


def _walk_components(components: Iterable[Json]) -> Iterator[Json]:
    for component in components:
        yield component
        yield from _walk_components(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            yield from _walk_components([component["component"]])
        if isinstance(component.get("accessory"), dict):
            yield from _walk_components([component["accessory"]])


# --------------------------------------------------------------------------------------------
# Model objects
# --------------------------------------------------------------------------------------------


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
            "parent_id": None,
            "topic": None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
        }


class FakeGuild:
    """A guild with roles, channels and members; its GUILD_CREATE goes out at IDENTIFY."""

    def __init__(
        self,
        fake: FakeDiscord,
        name: str,
        *,
        owner_id: int | None,
        premium_tier: int,
        bot_permissions: int,
        everyone_permissions: int,
        locale: str,
    ) -> None:
        self._fake = fake
        self.id = snowflake()
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
        """Whether the fake knows the guild yet (changes after that are sent as events)."""
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


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int
    at: float
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None

    def __repr__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@dataclass
class _Failure:
    method: str
    pattern: str
    status: int
    times: int
    retry_after: float
    is_global: bool
    code: int
    message: str | None


@dataclass
class _Upload:
    index: int
    filename: str
    data: bytes
    content_type: str | None


@dataclass
class _Body:
    json: Any = None
    files: dict[int, _Upload] = field(default_factory=dict)

    @property
    def size_summary(self) -> Any:
        if not self.files:
            return self.json
        files = {i: (f.filename, len(f.data)) for i, f in self.files.items()}
        return {"payload_json": self.json, "files": files}


class _Rejected(Exception):
    """Raised inside a handler to answer with a Discord error response."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class _GatewaySession:
    def __init__(self, session_id: str, intents: int) -> None:
        self.session_id = session_id
        self.intents = intents
        self.seq = 0
        self.ws: web.WebSocketResponse | None = None

    @property
    def live(self) -> bool:
        return self.ws is not None and not self.ws.closed

    async def send(self, payload: Json) -> None:
        if self.ws is None or self.ws.closed:
            return
        await self.ws.send_str(json.dumps(payload))

    async def dispatch(self, event: str, data: Json) -> None:
        self.seq += 1
        await self.send({"op": 0, "t": event, "s": self.seq, "d": data})


# --------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------


Handler = Callable[..., Awaitable[web.Response]]


class FakeDiscord:
    """Loopback Discord: REST at ``{url}/api/v10``, gateway at ``{url}/gateway`` and attachment
    downloads at ``{url}/attachments/...``.

    Add guilds before the bot connects (they go out as GUILD_CREATE after READY); guilds,
    channels and roles added later are dispatched to a connected bot as events.
    """

    def __init__(
        self,
        *,
        token: str = "fake-token",
        bot_name: str = "FakeBot",
        application_flags: int = 0,
        heartbeat_interval_ms: int = 41250,
        ack_deadline: float = 3.0,
        token_lifetime: float = 15 * 60.0,
    ) -> None:
        self.token = token
        self.application_id = snowflake()
        self.application_flags = application_flags
        self.heartbeat_interval_ms = heartbeat_interval_ms
        # Seconds after dispatch in which the callback must arrive (Discord: 3).
        self.ack_deadline = ack_deadline
        # Lifetime of an interaction token (Discord: 15 minutes).
        self.token_lifetime = token_lifetime

        self._users: dict[int, FakeUser] = {}
        self.bot_user = self.add_user(bot_name, bot=True)
        self.guilds: list[FakeGuild] = []
        self._dm_channels: dict[int, FakeChannel] = {}

        self._global_commands: list[Json] = []
        self._guild_commands: dict[int, list[Json]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self.sync_count = 0
        self.guild_sync_count = 0

        self.interactions: list[FakeInteraction] = []
        self._interactions_by_id: dict[int, FakeInteraction] = {}
        self._interactions_by_token: dict[str, FakeInteraction] = {}
        self.messages: list[FakeMessage] = []
        self._files: dict[int, FakeAttachment] = {}

        self.requests: list[RequestRecord] = []
        self.unknown_requests: list[RequestRecord] = []
        self.errors: list[BaseException] = []
        self._failures: list[_Failure] = []

        self._sessions: dict[str, _GatewaySession] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self.gateway_queries: list[dict[str, str]] = []
        self.identify_count = 0
        self.resume_count = 0
        self._tasks: set[asyncio.Task[Any]] = set()

        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._routes: list[tuple[str, re.Pattern[str], Handler, bool]] = []
        self._build_routes()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        # aiohttp's default 1 MiB body limit would reject realistic video uploads with a
        # text/plain 413 before the fake could apply Discord's own limit.
        app = web.Application(client_max_size=512 * MIB)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._download)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # A burst of commands opens hundreds of connections at once; the default listen backlog
        # (128) would drop some, and the client would retry them only after a 1 s SYN timeout.
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"fake discord closing")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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

    @property
    def bot_user_id(self) -> int:
        return self.bot_user.id

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """Point discord.py at the fake for the duration of the block.

        ``Route.BASE`` is read each time a Route is built, so it has to stay patched while the
        bot runs; ``DEFAULT_GATEWAY`` is where a plain Client connects (it never asks
        GET /gateway). Both are restored on exit so the next test starts clean.
        """
        old_base = discord.http.Route.BASE
        old_gateway = DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    # ---------------------------------------------------------------- world building

    def add_user(self, name: str, *, bot: bool = False) -> FakeUser:
        """A user that is in no guild (e.g. for DM interactions)."""
        user = FakeUser(snowflake(), name, bot=bot)
        self._users[user.id] = user
        return user

    def add_guild(
        self,
        name: str = "Guild",
        *,
        owner_id: int | None = None,
        premium_tier: int = 0,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        locale: str = "en-US",
    ) -> FakeGuild:
        """A guild with a text channel ``guild.channel``, the bot as a member and (unless
        ``owner_id`` is given) an owner member ``guild.owner``."""
        guild = FakeGuild(
            self,
            name,
            owner_id=owner_id,
            premium_tier=premium_tier,
            bot_permissions=bot_permissions,
            everyone_permissions=everyone_permissions,
            locale=locale,
        )
        self.guilds.append(guild)
        for session in self._live_sessions():
            self._spawn(session.dispatch("GUILD_CREATE", self._guild_create(guild, session)))
        return guild

    def dm_channel(self, user: FakeUser | FakeMember) -> FakeChannel:
        fake_user = user.user if isinstance(user, FakeMember) else user
        channel = self._dm_channels.get(fake_user.id)
        if channel is None:
            channel = FakeChannel(snowflake(), "", DM, recipient=fake_user)
            self._dm_channels[fake_user.id] = channel
        return channel

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> Json:
        """Register a file a user "uploaded" and return its attachment payload, for an
        ATTACHMENT option. Its url points at the fake, so ``Attachment.read()`` works."""
        attachment = self._store_file(filename, data, content_type, ephemeral=True)
        attachment.width, attachment.height = width, height
        return attachment.to_payload()

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

    # ---------------------------------------------------------------- inspection

    @property
    def commands(self) -> list[Json]:
        """The global command list as last synced (with ids)."""
        return self._global_commands

    def guild_commands(self, guild: FakeGuild | int) -> list[Json]:
        guild_id = guild if isinstance(guild, int) else guild.id
        return self._guild_commands.get(guild_id, [])

    def set_commands(self, commands: list[Json], *, guild: FakeGuild | None = None) -> list[Json]:
        """Seed the registered commands without a sync (as if synced by an earlier run)."""
        stored = self._store_commands(commands, guild.id if guild else None)
        if guild is None:
            self._global_commands = stored
        else:
            self._guild_commands[guild.id] = stored
        return stored

    def command(self, name: str, guild: FakeGuild | None = None) -> Json:
        candidates = list(self.guild_commands(guild)) if guild else []
        candidates += self._global_commands
        for cmd in candidates:
            if cmd["name"] == name and cmd.get("type", 1) == 1:
                return cmd
        synced = sorted({c["name"] for c in candidates})
        raise KeyError(f"command {name!r} was never synced; synced commands: {synced}")

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

    @property
    def missed_acks(self) -> list[FakeInteraction]:
        return [i for i in self.interactions if i.missed_ack]

    def requests_to(self, method: str, pattern: str) -> list[RequestRecord]:
        """Recorded requests whose path matches a glob such as ``/webhooks/*``."""
        return [
            r for r in self.requests if r.method == method and fnmatch.fnmatchcase(r.path, pattern)
        ]

    def fail_next(
        self,
        method: str,
        path: str,
        *,
        status: int = 429,
        times: int = 1,
        retry_after: float = 0.05,
        is_global: bool = False,
        code: int = 0,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and the glob ``path`` (e.g.
        ``/channels/*/messages``) with ``status``. A 429 carries ``retry_after`` and the ``Via``
        header discord.py needs to treat it as Discord's rate limit and retry. Beware that
        discord.py sleeps 1 s, 3 s, ... before retrying a 500/502/504."""
        self._failures.append(
            _Failure(method.upper(), path, status, times, retry_after, is_global, code, message)
        )

    def describe(self) -> str:
        lines = [f"last requests: {self.requests[-15:]}"]
        if self.unknown_requests:
            lines.append(f"unknown requests: {self.unknown_requests}")
        if self.errors:
            lines.append(f"fake errors: {self.errors!r}")
        if self.interactions:
            lines.append(f"interactions: {self.interactions[-5:]}")
        return "\n".join(lines)

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        # A plain number reads better in tests than wrapping every call in asyncio.timeout.
        timeout: float = 10.0,  # noqa: ASYNC109
        *,
        message: str | None = None,
    ) -> Any:
        """Poll ``predicate`` (sync or async) until it returns something truthy, and return it."""
        deadline = _now() + timeout
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            if _now() >= deadline:
                what = message or getattr(predicate, "__name__", repr(predicate))
                raise AssertionError(
                    f"condition not met within {timeout} s: {what}\n{self.describe()}"
                )
            await asyncio.sleep(0.01)

    # ---------------------------------------------------------------- gateway

    def _live_sessions(self) -> list[_GatewaySession]:
        return [s for s in self._sessions.values() if s.live]

    @property
    def connected(self) -> bool:
        return bool(self._live_sessions())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _broadcast_soon(self, event: str, data: Json) -> None:
        for session in self._live_sessions():
            self._spawn(session.dispatch(event, data))

    async def dispatch(self, event: str, data: Json) -> int:
        """Send a raw gateway event to every connected bot; returns how many got it."""
        sessions = self._live_sessions()
        for session in sessions:
            await session.dispatch(event, data)
        return len(sessions)

    async def force_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py reconnects and RESUMEs on resume_gateway_url."""
        for session in self._live_sessions():
            await session.send({"op": 7, "d": None, "s": None, "t": None})

    async def wait_until_connected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda: self.connected, timeout, message="a bot on the gateway")

    def _guild_create(self, guild: FakeGuild, session: _GatewaySession) -> Json:
        members_intent = bool(session.intents & discord.Intents(members=True).value)
        return guild.to_payload(include_all_members=members_intent)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        # discord.py asks for ?encoding=json&v=10&compress=zlib-stream (or zstd-stream). Text
        # frames bypass its decompressor entirely, so the fake never compresses.
        self.gateway_queries.append(dict(request.query))
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: _GatewaySession | None = None
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gateway"]}
            await ws.send_str(json.dumps({"op": 10, "d": hello, "s": None, "t": None}))
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                    session = await self._on_gateway_message(ws, payload, session)
                except Exception as exc:
                    self.errors.append(exc)
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
        return ws

    async def _on_gateway_message(
        self, ws: web.WebSocketResponse, payload: Json, session: _GatewaySession | None
    ) -> _GatewaySession | None:
        op = payload.get("op")
        data = payload.get("d")
        if op == 1:
            await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
        elif op == 2:
            if data.get("token") != self.token:
                await ws.close(code=4004, message=b"Authentication failed.")
                return session
            self.identify_count += 1
            session = _GatewaySession(secrets.token_hex(16), int(data.get("intents") or 0))
            session.ws = ws
            self._sessions[session.session_id] = session
            await session.dispatch("READY", self._ready_payload(session))
            for guild in self.guilds:
                await session.dispatch("GUILD_CREATE", self._guild_create(guild, session))
        elif op == 6:
            known = self._sessions.get(data.get("session_id"))
            if known is None or data.get("token") != self.token:
                await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
                return session
            self.resume_count += 1
            known.ws = ws
            session = known
            await session.dispatch("RESUMED", {"_trace": ["fake-gateway"]})
        elif op == 8:
            await self._member_chunk(ws, session, data)
        # op 3 (presence) and op 4 (voice state) need no answer.
        return session

    def _ready_payload(self, session: _GatewaySession) -> Json:
        user = self.bot_user.to_payload()
        user.update(verified=True, mfa_enabled=False, flags=0)
        return {
            "v": 10,
            "user": user,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in self.guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": self.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["fake-gateway"],
        }

    async def _member_chunk(
        self, ws: web.WebSocketResponse, session: _GatewaySession | None, data: Json
    ) -> None:
        if session is None:
            return
        guild = next((g for g in self.guilds if g.id == int(data["guild_id"])), None)
        if guild is None:
            return
        members = guild.members
        if data.get("user_ids"):
            wanted = {int(i) for i in data["user_ids"]}
            members = [m for m in members if m.id in wanted]
        elif data.get("query"):
            members = [m for m in members if m.name.lower().startswith(data["query"].lower())]
        if data.get("limit"):
            members = members[: data["limit"]]
        chunk: Json = {
            "guild_id": str(guild.id),
            "members": [m.to_payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    # ---------------------------------------------------------------- interactions (test side)

    async def slash(
        self,
        guild: FakeGuild,
        member: FakeMember,
        command_name: str,
        options: dict[str, Any] | None = None,
        *,
        channel: FakeChannel | None = None,
        attachments: dict[str, Json] | None = None,
        subcommand: str | None = None,
        attachment_size_limit: int | None = None,
        locale: str = "en-US",
        strict: bool = True,
    ) -> FakeInteraction:
        """A user runs ``/command_name`` in ``channel`` (default: ``guild.channel``).

        Options are looked up by name in what the bot synced and encoded by their type: members,
        users, channels and roles (Fake* objects) and attachments (payloads from
        ``add_attachment``, also accepted through ``attachments``) go into ``data.resolved``.
        ``subcommand`` is "sub" or "group sub" (or put it in ``command_name``: "video status").
        With ``strict`` the fake refuses what Discord's client would not send (unknown or missing
        required options, values outside the choices); ranges are never enforced, as a bot must
        validate them itself. ``attachment_size_limit`` defaults to the guild's upload limit.
        """
        channel = channel or guild.channel
        data = self._command_data(
            command_name, options, attachments, subcommand, guild=guild, strict=strict
        )
        limit = attachment_size_limit if attachment_size_limit is not None else guild.filesize_limit
        return await self._interact(
            APPLICATION_COMMAND,
            data,
            guild=guild,
            user=member.user,
            member=member,
            channel=channel,
            attachment_size_limit=limit,
            locale=locale,
        )

    async def slash_in_dm(
        self,
        user: FakeUser | FakeMember,
        command_name: str,
        options: dict[str, Any] | None = None,
        *,
        attachments: dict[str, Json] | None = None,
        subcommand: str | None = None,
        attachment_size_limit: int = 10 * MIB,
        locale: str = "en-US",
        strict: bool = True,
    ) -> FakeInteraction:
        """The same as :meth:`slash`, in the user's DM with the bot (no guild, no member)."""
        fake_user = user.user if isinstance(user, FakeMember) else user
        data = self._command_data(
            command_name, options, attachments, subcommand, guild=None, strict=strict
        )
        return await self._interact(
            APPLICATION_COMMAND,
            data,
            guild=None,
            user=fake_user,
            member=None,
            channel=self.dm_channel(fake_user),
            attachment_size_limit=attachment_size_limit,
            locale=locale,
        )

    async def click(
        self,
        guild: FakeGuild | None,
        member: FakeMember | FakeUser,
        message: FakeMessage,
        custom_id: str,
        *,
        channel: FakeChannel | None = None,
        component_type: int | None = None,
        values: list[str] | None = None,
        strict: bool = True,
    ) -> FakeInteraction:
        """A user clicks the button (or picks ``values`` in the select) ``custom_id`` on a
        message the bot posted. ``guild=None`` for a message in a DM."""
        component = message.find_component(custom_id)
        if strict:
            if message.deleted:
                raise ValueError(f"message {message.id} was deleted")
            if component is None:
                raise ValueError(
                    f"message {message.id} has no component {custom_id!r}; "
                    f"it has {message.custom_ids}"
                )
            if component.get("disabled"):
                raise ValueError(f"component {custom_id!r} is disabled; Discord would not send it")
        ctype = component_type or (component or {}).get("type", 2)
        data: Json = {"custom_id": custom_id, "component_type": ctype}
        if ctype != 2:
            data["values"] = list(values or [])
        user, fake_member = self._split_member(member)
        channel = channel or self._channel_of(message)
        return await self._interact(
            MESSAGE_COMPONENT,
            data,
            guild=guild,
            user=user,
            member=fake_member if guild else None,
            channel=channel,
            attachment_size_limit=guild.filesize_limit if guild else 10 * MIB,
            message=message,
        )

    async def submit_modal(
        self,
        guild: FakeGuild | None,
        member: FakeMember | FakeUser,
        custom_id: str,
        values: dict[str, str | list[str]],
        *,
        channel: FakeChannel | None = None,
        strict: bool = True,
    ) -> FakeInteraction:
        """A user submits the modal the bot last showed with this ``custom_id``; ``values``
        maps each input's custom_id to its text (or a list for a select)."""
        source = next(
            (
                i
                for i in reversed(self.interactions)
                if i.modal is not None and i.modal.get("custom_id") == custom_id
            ),
            None,
        )
        if source is None and strict:
            raise ValueError(f"the bot never showed a modal with custom_id {custom_id!r}")
        layout = source.modal.get("components", []) if source and source.modal else []
        components = self._modal_components(layout, values)
        if not layout:
            components = [
                {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
                for key, value in values.items()
            ]
        user, fake_member = self._split_member(member)
        if channel is None:
            if source is not None:
                channel = source.channel
            elif guild is not None:
                channel = guild.channel
            else:
                channel = self.dm_channel(user)
        return await self._interact(
            MODAL_SUBMIT,
            {"custom_id": custom_id, "components": components},
            guild=guild,
            user=user,
            member=fake_member if guild else None,
            channel=channel,
            attachment_size_limit=guild.filesize_limit if guild else 10 * MIB,
            message=source.message if source else None,
        )

    @staticmethod
    def _modal_components(layout: list[Json], values: dict[str, str | list[str]]) -> list[Json]:
        def answer(component: Json) -> Json | None:
            custom_id = component.get("custom_id")
            if custom_id not in values:
                return None
            value = values[custom_id]
            result: Json = {"type": component["type"], "custom_id": custom_id}
            if component["type"] == 4:
                result["value"] = value
            else:
                result["values"] = value if isinstance(value, list) else [value]
            return result

        result: list[Json] = []
        for top in layout:
            if top.get("type") == 1:
                inner = [a for c in top.get("components", []) if (a := answer(c))]
                if inner:
                    result.append({"type": 1, "components": inner})
            elif top.get("type") == 18 and isinstance(top.get("component"), dict):
                inner_answer = answer(top["component"])
                if inner_answer:
                    result.append({"type": 18, "component": inner_answer})
        return result

    @staticmethod
    def _split_member(member: FakeMember | FakeUser) -> tuple[FakeUser, FakeMember | None]:
        if isinstance(member, FakeMember):
            return member.user, member
        return member, None

    def _channel_of(self, message: FakeMessage) -> FakeChannel:
        channel = self._find_channel(message.channel_id)
        if channel is None:
            raise ValueError(f"message {message.id} is in an unknown channel")
        return channel

    def _find_channel(self, channel_id: int) -> FakeChannel | None:
        for guild in self.guilds:
            channel = guild.get_channel(channel_id)
            if channel is not None:
                return channel
        return next((c for c in self._dm_channels.values() if c.id == channel_id), None)

    def _command_data(
        self,
        command_name: str,
        options: dict[str, Any] | None,
        attachments: dict[str, Json] | None,
        subcommand: str | None,
        *,
        guild: FakeGuild | None,
        strict: bool,
    ) -> Json:
        name, *path = command_name.split()
        if subcommand:
            path += subcommand.split()
        cmd = self.command(name, guild)
        if guild is None and strict:
            contexts = cmd.get("contexts")
            if cmd.get("dm_permission") is False or (contexts is not None and 1 not in contexts):
                raise ValueError(f"/{name} is not available in DMs (dm_permission/contexts)")
        definitions: list[Json] = cmd.get("options") or []
        chain: list[Json] = []
        for part in path:
            sub = next(
                (o for o in definitions if o["name"] == part and o["type"] in (1, 2)),
                None,
            )
            if sub is None:
                names = [o["name"] for o in definitions if o["type"] in (1, 2)]
                raise ValueError(f"/{name} has no subcommand {part!r}; it has {names}")
            chain.append(sub)
            definitions = sub.get("options") or []
        if strict and any(o["type"] in (1, 2) for o in definitions):
            names = [o["name"] for o in definitions]
            raise ValueError(f"/{command_name} needs a subcommand, one of {names}")
        values = dict(options or {})
        values.update(attachments or {})
        resolved: Json = {}
        built = self._build_options(definitions, values, resolved, guild, strict, command_name)
        for sub in reversed(chain):
            built = [{"type": sub["type"], "name": sub["name"], "options": built}]
        data: Json = {"id": cmd["id"], "name": cmd["name"], "type": 1, "options": built}
        if resolved:
            data["resolved"] = resolved
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return data

    def _build_options(
        self,
        definitions: list[Json],
        values: dict[str, Any],
        resolved: Json,
        guild: FakeGuild | None,
        strict: bool,
        command_name: str,
    ) -> list[Json]:
        by_name = {o["name"]: o for o in definitions}
        unknown = set(values) - set(by_name)
        if unknown:
            raise ValueError(
                f"/{command_name} has no option(s) {sorted(unknown)}; it has {sorted(by_name)}"
            )
        built: list[Json] = []
        for definition in definitions:
            option_name = definition["name"]
            if option_name not in values:
                if strict and definition.get("required"):
                    raise ValueError(f"/{command_name}: option {option_name!r} is required")
                continue
            value = self._encode_option(definition, values[option_name], resolved, guild)
            choices = definition.get("choices")
            if strict and choices and value not in [c["value"] for c in choices]:
                allowed = [c["value"] for c in choices]
                raise ValueError(f"/{command_name}: {option_name}={value!r} is not in {allowed}")
            built.append({"name": option_name, "type": definition["type"], "value": value})
        return built

    def _encode_option(
        self, definition: Json, value: Any, resolved: Json, guild: FakeGuild | None
    ) -> Any:
        kind = definition["type"]
        name = definition["name"]
        if kind == 3:
            if not isinstance(value, str):
                raise TypeError(f"option {name!r} is a string option, got {value!r}")
            return value
        if kind == 4:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"option {name!r} is an integer option, got {value!r}")
            return value
        if kind == 5:
            if not isinstance(value, bool):
                raise TypeError(f"option {name!r} is a boolean option, got {value!r}")
            return value
        if kind == 10:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"option {name!r} is a number option, got {value!r}")
            return value
        if kind == 11:
            if not isinstance(value, dict) or "url" not in value:
                raise TypeError(f"option {name!r} needs a payload from add_attachment()")
            resolved.setdefault("attachments", {})[value["id"]] = value
            return value["id"]
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if kind in (6, 9) and isinstance(value, FakeMember | FakeUser):
            user, member = self._split_member(value)
            if member is None and guild is not None:
                member = guild.get_member(user.id)
            resolved.setdefault("users", {})[str(user.id)] = user.to_payload()
            if member is not None and guild is not None:
                resolved.setdefault("members", {})[str(user.id)] = member.to_payload(
                    include_user=False, permissions=member.permissions
                )
            return str(user.id)
        if kind in (8, 9) and isinstance(value, FakeRole):
            resolved.setdefault("roles", {})[str(value.id)] = value.to_payload()
            return str(value.id)
        if kind == 7 and isinstance(value, FakeChannel):
            payload = value.to_payload()
            payload["permissions"] = str(ALL_PERMISSIONS)
            resolved.setdefault("channels", {})[str(value.id)] = payload
            return str(value.id)
        raise TypeError(f"cannot encode {value!r} for option {name!r} of type {kind}")

    async def _interact(
        self,
        itype: int,
        data: Json,
        *,
        guild: FakeGuild | None,
        user: FakeUser,
        member: FakeMember | None,
        channel: FakeChannel,
        attachment_size_limit: int,
        message: FakeMessage | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        if not self.connected:
            # A reconnecting bot gets a moment to come back before the test is told off.
            await self.wait_until_connected()
        interaction_id = snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        channel_payload = channel.to_payload()
        payload: Json = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": attachment_size_limit,
            "channel_id": str(channel.id),
        }
        if guild is not None:
            if member is None:
                member = guild.get_member(user.id)
            if member is None:
                raise ValueError(f"{user.name} is not a member of {guild.name}")
            user_permissions = member.permissions_in(channel)
            channel_payload["permissions"] = str(user_permissions)
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.locale, "features": []},
                guild_locale=guild.locale,
                member=member.to_payload(permissions=user_permissions),
                app_permissions=str(guild.me.permissions_in(channel)),
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(
                user=user.to_payload(),
                app_permissions=str(DEFAULT_BOT_PERMISSIONS),
                authorizing_integration_owners={"0": "0"},
                context=1,
            )
        payload["channel"] = channel_payload
        if message is not None:
            payload["message"] = message.to_payload(self._users)
        interaction = FakeInteraction(
            id=interaction_id,
            token=token,
            type=itype,
            payload=payload,
            guild=guild,
            channel=channel,
            user=user,
            member=member,
            attachment_size_limit=attachment_size_limit,
            expires_at=_now() + self.token_lifetime,
            message=message,
        )
        self.interactions.append(interaction)
        self._interactions_by_id[interaction_id] = interaction
        self._interactions_by_token[token] = interaction
        interaction.dispatched_at = _now()
        interaction.expires_at = interaction.dispatched_at + self.token_lifetime
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    # ---------------------------------------------------------------- REST plumbing

    def _build_routes(self) -> None:
        app = r"(?P<app_id>\d+)"
        webhook = rf"/webhooks/{app}/(?P<token>[^/]+)"
        channel = r"/channels/(?P<channel_id>\d+)"
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", r"/users/@me", self._get_me, True),
            ("GET", r"/oauth2/applications/@me", self._get_application, True),
            ("GET", r"/applications/@me", self._get_application, True),
            ("GET", r"/gateway", self._get_gateway, False),
            ("GET", r"/gateway/bot", self._get_gateway_bot, True),
            ("GET", rf"/applications/{app}/commands", self._get_commands, True),
            ("PUT", rf"/applications/{app}/commands", self._put_commands, True),
            ("POST", rf"/applications/{app}/commands", self._post_command, True),
            (
                "DELETE",
                rf"/applications/{app}/commands/(?P<command_id>\d+)",
                self._delete_command,
                True,
            ),
            (
                "GET",
                rf"/applications/{app}/guilds/(?P<guild_id>\d+)/commands",
                self._get_commands,
                True,
            ),
            (
                "PUT",
                rf"/applications/{app}/guilds/(?P<guild_id>\d+)/commands",
                self._put_commands,
                True,
            ),
            (
                "POST",
                r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback",
                self._interaction_callback,
                False,
            ),
            ("POST", webhook, self._webhook_execute, False),
            ("GET", rf"{webhook}/messages/(?P<message_id>@original|\d+)", self._webhook_get, False),
            (
                "PATCH",
                rf"{webhook}/messages/(?P<message_id>@original|\d+)",
                self._webhook_edit,
                False,
            ),
            (
                "DELETE",
                rf"{webhook}/messages/(?P<message_id>@original|\d+)",
                self._webhook_delete,
                False,
            ),
            ("GET", channel, self._get_channel, True),
            ("GET", rf"{channel}/messages", self._channel_history, True),
            ("POST", rf"{channel}/messages", self._channel_send, True),
            ("POST", rf"{channel}/typing", self._typing, True),
            ("GET", rf"{channel}/messages/(?P<message_id>\d+)", self._channel_get_message, True),
            ("PATCH", rf"{channel}/messages/(?P<message_id>\d+)", self._channel_edit, True),
            ("DELETE", rf"{channel}/messages/(?P<message_id>\d+)", self._channel_delete, True),
            ("POST", r"/users/@me/channels", self._create_dm, True),
            ("GET", r"/users/(?P<user_id>\d+)", self._get_user, True),
            ("GET", r"/guilds/(?P<guild_id>\d+)", self._get_guild, True),
            ("GET", r"/guilds/(?P<guild_id>\d+)/channels", self._get_guild_channels, True),
            (
                "GET",
                r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)",
                self._get_member,
                True,
            ),
        ]
        self._routes = [(m, re.compile(p), h, auth) for m, p, h, auth in table]

    async def _api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method
        try:
            body = await self._read_body(request)
        except Exception as exc:
            self.errors.append(exc)
            body = _Body()
        record = RequestRecord(method, path, 0, _now(), dict(request.query), body.size_summary)
        self.requests.append(record)

        response = self._injected_failure(method, path)
        if response is None:
            for route_method, pattern, handler, needs_auth in self._routes:
                if route_method != method:
                    continue
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                    response = _error(401, 0, "401: Unauthorized")
                    break
                try:
                    response = await handler(request, body, **match.groupdict())
                except _Rejected as rejected:
                    response = rejected.response
                except Exception as exc:
                    # Not a 5xx: discord.py would sleep and retry it five times.
                    self.errors.append(exc)
                    response = _error(400, 0, f"fake discord error: {exc!r}")
                break
            else:
                response = _error(404, 0, "404: Not Found")
                self.unknown_requests.append(record)
        record.status = response.status
        return response

    def _injected_failure(self, method: str, path: str) -> web.Response | None:
        for failure in self._failures:
            if failure.method != method or not fnmatch.fnmatchcase(path, failure.pattern):
                continue
            failure.times -= 1
            if failure.times <= 0:
                self._failures.remove(failure)
            if failure.status == 429:
                # Without "Via" discord.py takes a 429 for a Cloudflare ban and raises at once.
                headers = {
                    "Via": "1.1 google",
                    "Retry-After": str(max(1, round(failure.retry_after))),
                    "X-RateLimit-Scope": "global" if failure.is_global else "user",
                }
                body = {
                    "message": failure.message or "You are being rate limited.",
                    "retry_after": failure.retry_after,
                    "global": failure.is_global,
                    "code": failure.code,
                }
                return _json_response(body, 429, headers)
            default = f"{failure.status}: Injected failure"
            return _error(failure.status, failure.code, failure.message or default)
        return None

    async def _read_body(self, request: web.Request) -> _Body:
        if not request.body_exists:
            return _Body()
        content_type = request.content_type
        if content_type == "application/json":
            return _Body(json=await request.json())
        if content_type != "multipart/form-data":
            await request.read()
            return _Body()
        body = _Body()
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, aiohttp.BodyPartReader):
                continue
            data = await part.read(decode=False)
            if part.name == "payload_json":
                body.json = json.loads(data)
                continue
            match = _FILE_FIELD.match(part.name or "")
            index = int(match.group(1)) if match else len(body.files)
            content = part.headers.get("Content-Type")
            body.files[index] = _Upload(
                index, part.filename or f"file{index}", bytes(data), content
            )
        return body

    def _check_uploads(self, body: _Body, limit: int) -> None:
        if len(body.files) > 10:
            raise _Rejected(
                _form_error([("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")])
            )
        for upload in body.files.values():
            if len(upload.data) > limit:
                raise _Rejected(_error(413, 40005, "Request entity too large"))

    def _validate_message(self, payload: Json, body: _Body, *, creating: bool) -> None:
        errors: list[tuple[str, str, str]] = []
        content = payload.get("content") or ""
        if len(content) > 2000:
            errors.append(("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."))
        embeds = payload.get("embeds") or []
        if len(embeds) > 10:
            errors.append(("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."))
        total = 0
        for index, embed in enumerate(embeds):
            limits = {"title": 256, "description": 4096}
            for key, limit in limits.items():
                text = embed.get(key) or ""
                total += len(text)
                if len(text) > limit:
                    msg = f"Must be {limit} or fewer in length."
                    errors.append((f"embeds.{index}.{key}", "BASE_TYPE_MAX_LENGTH", msg))
            for f in embed.get("fields") or []:
                total += len(f.get("name") or "") + len(f.get("value") or "")
            total += len((embed.get("footer") or {}).get("text") or "")
            total += len((embed.get("author") or {}).get("name") or "")
        if total > 6000:
            errors.append(("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size"))
        components = payload.get("components") or []
        if not (payload.get("flags") or 0) & FLAG_COMPONENTS_V2:
            if len(components) > 5:
                errors.append(
                    ("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
                )
            for index, row in enumerate(components):
                if len(row.get("components") or []) > 5:
                    path = f"components.{index}.components"
                    errors.append((path, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length."))
        seen: set[str] = set()
        for component in _walk_components(components):
            custom_id = component.get("custom_id")
            if custom_id is None:
                continue
            if len(custom_id) > 100:
                msg = "Must be 100 or fewer in length."
                errors.append(("components", "BASE_TYPE_MAX_LENGTH", msg))
            if custom_id in seen:
                msg = "Component custom id cannot be duplicated"
                errors.append(("components", "COMPONENT_CUSTOM_ID_DUPLICATED", msg))
            seen.add(custom_id)
        if errors:
            raise _Rejected(_form_error(errors))
        if creating and not (
            content or embeds or components or body.files or payload.get("sticker_ids")
        ):
            raise _Rejected(_error(400, 50006, "Cannot send an empty message"))

    def _attachments_for(
        self,
        payload: Json,
        body: _Body,
        existing: list[FakeAttachment],
        *,
        ephemeral: bool = False,
    ) -> list[FakeAttachment]:
        """Discord's rule: ``attachments`` lists what to keep (existing ids) and describes new
        uploads (``id`` = index of ``files[n]``); without it, uploads are appended."""
        if "attachments" not in payload:
            new = [self._from_upload(upload, None, ephemeral) for upload in body.files.values()]
            return [*existing, *new]
        by_id = {a.id: a for a in existing}
        result: list[FakeAttachment] = []
        for entry in payload.get("attachments") or []:
            entry_id = int(entry["id"])
            if entry_id in by_id:
                result.append(by_id[entry_id])
            elif entry_id in body.files:
                result.append(self._from_upload(body.files[entry_id], entry, ephemeral))
            else:
                msg = f"Unknown attachment {entry_id}"
                raise _Rejected(_form_error([("attachments", "ATTACHMENT_NOT_FOUND", msg)]))
        return result

    def _from_upload(self, upload: _Upload, entry: Json | None, ephemeral: bool) -> FakeAttachment:
        filename = (entry or {}).get("filename") or upload.filename
        content_type = upload.content_type
        if content_type in (None, "application/octet-stream"):
            # discord.py labels every upload octet-stream; Discord sniffs the real type.
            content_type = _guess_type(filename) or content_type
        description = (entry or {}).get("description")
        return self._store_file(
            filename, upload.data, content_type, description=description, ephemeral=ephemeral
        )

    def _pings(self, content: str, allowed: Json | None, reply_user: int | None) -> frozenset[str]:
        """Who Discord would notify: everything mentioned, narrowed by allowed_mentions."""
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse", []))
        users = {str(u) for u in (allowed or {}).get("users", [])}
        roles = {str(r) for r in (allowed or {}).get("roles", [])}
        result: set[str] = set()
        for user_id in _USER_MENTION.findall(content):
            if "users" in parse or user_id in users:
                result.add(f"<@{user_id}>")
        for role_id in _ROLE_MENTION.findall(content):
            if "roles" in parse or role_id in roles:
                result.add(f"<@&{role_id}>")
        if ("@everyone" in content or "@here" in content) and "everyone" in parse:
            result.add("everyone")
        if reply_user is not None and (allowed is None or allowed.get("replied_user", True)):
            result.add(f"<@{reply_user}>")
        return frozenset(result)

    def _create_message(
        self,
        *,
        channel: FakeChannel,
        route: str,
        payload: Json,
        body: _Body,
        interaction: FakeInteraction | None = None,
        extra_flags: int = 0,
        message_type: int = 0,
    ) -> FakeMessage:
        flags = (payload.get("flags") or 0) | extra_flags
        content = payload.get("content") or ""
        reference = payload.get("message_reference")
        reply_user = None
        if reference and reference.get("message_id"):
            referenced = self.get_message(int(reference["message_id"]))
            reply_user = referenced.author.id if referenced else None
        message = FakeMessage(
            id=snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild.id if channel.guild else None,
            author=self.bot_user,
            route=route,
            content=content,
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            allowed_mentions=payload.get("allowed_mentions"),
            flags=flags,
            tts=bool(payload.get("tts")),
            message_reference=reference,
            webhook_id=self.application_id if interaction else None,
            application_id=self.application_id if interaction else None,
            interaction=interaction,
            message_type=message_type,
            bodies=[payload],
            mention_ids=[int(i) for i in _USER_MENTION.findall(content)],
        )
        message.attachments = self._attachments_for(
            payload, body, [], ephemeral=bool(flags & FLAG_EPHEMERAL)
        )
        if not flags & FLAG_SUPPRESS_NOTIFICATIONS and not flags & FLAG_LOADING:
            message.pings = self._pings(content, message.allowed_mentions, reply_user)
        self.messages.append(message)
        return message

    def _edit_message(self, message: FakeMessage, payload: Json, body: _Body) -> None:
        before = message.to_payload(self._users)
        self._fill_message(message, payload, body)
        message.history.append(before)
        message.edited_at = _now()
        message.edited_timestamp = _iso_now()

    def _fill_message(self, message: FakeMessage, payload: Json, body: _Body) -> None:
        if "content" in payload:
            message.content = payload["content"] or ""
            message.mention_ids = [int(i) for i in _USER_MENTION.findall(message.content)]
        if "embeds" in payload:
            message.embeds = list(payload["embeds"] or [])
        if "components" in payload:
            message.components = list(payload["components"] or [])
        if "allowed_mentions" in payload:
            message.allowed_mentions = payload["allowed_mentions"]
        if "flags" in payload and payload["flags"] is not None:
            changeable = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2
            message.flags = (message.flags & ~changeable) | (payload["flags"] & changeable)
        message.flags &= ~FLAG_LOADING
        message.attachments = self._attachments_for(
            payload, body, message.attachments, ephemeral=message.ephemeral
        )
        message.bodies.append(payload)
        if not (message.content or message.embeds or message.attachments or message.components):
            raise _Rejected(_error(400, 50006, "Cannot send an empty message"))

    # ---------------------------------------------------------------- REST: session and app

    async def _get_me(self, request: web.Request, body: _Body) -> web.Response:
        user = self.bot_user.to_payload()
        user.update(verified=True, mfa_enabled=False, locale="en-US", email=None)
        return _json_response(user)

    async def _get_application(self, request: web.Request, body: _Body) -> web.Response:
        owner = FakeUser(self.application_id - 1, "owner")
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user.name,
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": owner.to_payload(),
                "verify_key": "0" * 64,
                "summary": "",
                "team": None,
                "flags": self.application_flags,
                "rpc_origins": [],
                "redirect_uris": [],
                # A non-null value makes discord.py warn that interactions go to a URL.
                "interactions_endpoint_url": None,
                "bot": self.bot_user.to_payload(),
                "approximate_guild_count": len(self.guilds),
                "tags": [],
            }
        )

    async def _get_gateway(self, request: web.Request, body: _Body) -> web.Response:
        return _json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request, body: _Body) -> web.Response:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return _json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    # ---------------------------------------------------------------- REST: commands

    def _check_app(self, app_id: str) -> None:
        if int(app_id) != self.application_id:
            raise _Rejected(
                _error(
                    403, 20012, "You are not authorized to perform this action on this application"
                )
            )

    def _store_commands(self, payloads: list[Json], guild_id: int | None) -> list[Json]:
        stored = []
        for payload in payloads:
            command = json.loads(json.dumps(payload))
            ctype = command.get("type") or 1
            key = (guild_id, command["name"], ctype)
            command_id = self._command_ids.setdefault(key, snowflake())
            command.update(
                id=str(command_id),
                application_id=str(self.application_id),
                version=str(snowflake()),
                type=ctype,
            )
            command.setdefault("description", "")
            command.setdefault("default_member_permissions", None)
            command.setdefault("nsfw", False)
            command.setdefault("options", [])
            if guild_id is not None:
                command["guild_id"] = str(guild_id)
            stored.append(command)
        return stored

    def _validate_commands(self, payloads: list[Json]) -> list[tuple[str, str, str]]:
        errors: list[tuple[str, str, str]] = []
        counts: dict[int, int] = {}
        seen: set[tuple[str, int]] = set()
        for index, command in enumerate(payloads):
            ctype = command.get("type") or 1
            counts[ctype] = counts.get(ctype, 0) + 1
            key = (command.get("name", ""), ctype)
            if key in seen:
                msg = "Application command names must be unique"
                errors.append((str(index), "APPLICATION_COMMANDS_DUPLICATE_NAME", msg))
            seen.add(key)
            errors += self._validate_command(command, str(index))
        for ctype, count in counts.items():
            if count > COMMAND_LIMITS.get(ctype, 100):
                msg = f"Maximum number of application commands reached ({COMMAND_LIMITS[ctype]})"
                errors.append(("_", "APPLICATION_COMMANDS_TOO_MANY", msg))
        return errors

    def _validate_command(self, command: Json, path: str) -> list[tuple[str, str, str]]:
        errors: list[tuple[str, str, str]] = []
        ctype = command.get("type") or 1
        name = command.get("name") or ""
        if ctype == 1:
            if not _COMMAND_NAME.match(name) or name != name.lower():
                msg = "Command name is invalid"
                errors.append((f"{path}.name", "APPLICATION_COMMAND_INVALID_NAME", msg))
            description = command.get("description") or ""
            if not 1 <= len(description) <= 100:
                msg = "Must be between 1 and 100 in length."
                errors.append((f"{path}.description", "BASE_TYPE_BAD_LENGTH", msg))
        elif not 1 <= len(name) <= 32:
            msg = "Must be between 1 and 32 in length."
            errors.append((f"{path}.name", "BASE_TYPE_BAD_LENGTH", msg))
        errors += self._validate_options(command.get("options") or [], f"{path}.options")
        if ctype == 1 and _command_size(command) > 4000:
            msg = "Command exceeds maximum size (4000)"
            errors.append((path, "APPLICATION_COMMAND_TOO_LARGE", msg))
        return errors

    def _validate_options(self, options: list[Json], path: str) -> list[tuple[str, str, str]]:
        errors: list[tuple[str, str, str]] = []
        if len(options) > 25:
            errors.append((path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."))
        names: set[str] = set()
        optional_seen = False
        kinds = {o.get("type") for o in options}
        if kinds & {1, 2} and kinds - {1, 2}:
            msg = (
                "Sub-command and sub-command group option types are mutually exclusive "
                "to all other types"
            )
            errors.append((path, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", msg))
        for index, option in enumerate(options):
            here = f"{path}.{index}"
            name = option.get("name") or ""
            if not _COMMAND_NAME.match(name) or name != name.lower():
                msg = "Command name is invalid"
                errors.append((f"{here}.name", "APPLICATION_COMMAND_INVALID_NAME", msg))
            if name in names:
                msg = "Option names must be unique"
                errors.append((f"{here}.name", "APPLICATION_COMMAND_OPTION_NAME_NOT_UNIQUE", msg))
            names.add(name)
            if not 1 <= len(option.get("description") or "") <= 100:
                msg = "Must be between 1 and 100 in length."
                errors.append((f"{here}.description", "BASE_TYPE_BAD_LENGTH", msg))
            if option.get("required"):
                if optional_seen:
                    msg = "Required options must be placed before non-required options"
                    errors.append((here, "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", msg))
            elif option.get("type") not in (1, 2):
                optional_seen = True
            choices = option.get("choices") or []
            if len(choices) > 25:
                msg = "Must be 25 or fewer in length."
                errors.append((f"{here}.choices", "BASE_TYPE_MAX_LENGTH", msg))
            for choice_index, choice in enumerate(choices):
                if not 1 <= len(choice.get("name") or "") <= 100:
                    msg = "Must be between 1 and 100 in length."
                    path_ = f"{here}.choices.{choice_index}.name"
                    errors.append((path_, "BASE_TYPE_BAD_LENGTH", msg))
            if option.get("type") in (1, 2):
                errors += self._validate_options(option.get("options") or [], f"{here}.options")
        return errors

    async def _get_commands(
        self, request: web.Request, body: _Body, app_id: str, guild_id: str | None = None
    ) -> web.Response:
        self._check_app(app_id)
        if guild_id is None:
            return _json_response(self._global_commands)
        return _json_response(self._guild_commands.get(int(guild_id), []))

    async def _put_commands(
        self, request: web.Request, body: _Body, app_id: str, guild_id: str | None = None
    ) -> web.Response:
        self._check_app(app_id)
        payloads = body.json or []
        errors = self._validate_commands(payloads)
        if errors:
            return _form_error(errors)
        gid = int(guild_id) if guild_id else None
        stored = self._store_commands(payloads, gid)
        if gid is None:
            self._global_commands = stored
            self.sync_count += 1
        else:
            if not any(g.id == gid for g in self.guilds):
                return _error(404, 10004, "Unknown Guild")
            self._guild_commands[gid] = stored
            self.guild_sync_count += 1
        return _json_response(stored)

    async def _post_command(self, request: web.Request, body: _Body, app_id: str) -> web.Response:
        self._check_app(app_id)
        errors = self._validate_commands([body.json])
        if errors:
            return _form_error(errors)
        (command,) = self._store_commands([body.json], None)
        rest = [
            c
            for c in self._global_commands
            if (c["name"], c["type"]) != (command["name"], command["type"])
        ]
        self._global_commands = [*rest, command]
        return _json_response(command, status=201)

    async def _delete_command(
        self, request: web.Request, body: _Body, app_id: str, command_id: str
    ) -> web.Response:
        self._check_app(app_id)
        before = len(self._global_commands)
        self._global_commands = [c for c in self._global_commands if c["id"] != command_id]
        if len(self._global_commands) == before:
            return _error(404, 10063, "Unknown application command")
        return _no_content()

    # ---------------------------------------------------------------- REST: interactions

    async def _interaction_callback(
        self, request: web.Request, body: _Body, interaction_id: str, token: str
    ) -> web.Response:
        interaction = self._interactions_by_id.get(int(interaction_id))
        if interaction is None or interaction.token != token:
            return _error(404, 10062, "Unknown interaction")
        payload = body.json or {}
        callback = FakeCallback(
            type=int(payload.get("type", 0)), data=payload.get("data") or {}, at=_now()
        )
        if interaction.callback is not None:
            interaction.rejected_callbacks.append(callback)
            return _error(400, 40060, "Interaction has already been acknowledged.")
        if callback.at - interaction.dispatched_at > self.ack_deadline:
            # The user already saw "The application did not respond".
            interaction.missed_ack = True
            interaction.rejected_callbacks.append(callback)
            return _error(404, 10062, "Unknown interaction")

        data = callback.data
        resource: FakeMessage | None = None
        response_message: FakeMessage | None = None
        ctype = callback.type
        if ctype == CHANNEL_MESSAGE:
            self._check_uploads(body, interaction.attachment_size_limit)
            self._validate_message(data, body, creating=True)
            resource = self._create_message(
                channel=interaction.channel,
                route="callback",
                payload=data,
                body=body,
                interaction=interaction,
                message_type=20 if interaction.type == APPLICATION_COMMAND else 0,
            )
            interaction.original = response_message = resource
        elif ctype == DEFERRED_CHANNEL_MESSAGE:
            flags = (data.get("flags") or 0) & FLAG_EPHEMERAL
            resource = self._create_message(
                channel=interaction.channel,
                route="callback",
                payload={"flags": flags},
                body=_Body(),
                interaction=interaction,
                extra_flags=FLAG_LOADING,
                message_type=20 if interaction.type == APPLICATION_COMMAND else 0,
            )
            interaction.original = response_message = resource
        elif ctype in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            if interaction.message is None:
                msg = "Interaction response type is invalid for this interaction"
                return _form_error([("type", "INTERACTION_RESPONSE_TYPE_INVALID", msg)])
            response_message = interaction.message
            interaction.original = response_message
            if ctype == UPDATE_MESSAGE:
                self._check_uploads(body, interaction.attachment_size_limit)
                self._validate_message(data, body, creating=False)
                self._edit_message(response_message, data, body)
                resource = response_message
        elif ctype == MODAL:
            if interaction.type == MODAL_SUBMIT:
                msg = "A modal cannot answer a modal submit"
                return _form_error([("type", "INTERACTION_RESPONSE_TYPE_INVALID", msg)])
        elif ctype != AUTOCOMPLETE_RESULT:
            msg = f"Unsupported callback type {ctype}"
            return _form_error([("type", "INTERACTION_RESPONSE_TYPE_INVALID", msg)])

        if resource is not None:
            callback.attachments = list(resource.attachments)
        interaction.callback = callback
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return _no_content()
        answer: Json = {"id": str(interaction.id), "type": interaction.type}
        if response_message is not None:
            answer.update(
                response_message_id=str(response_message.id),
                response_message_loading=response_message.loading,
                response_message_ephemeral=response_message.ephemeral,
            )
        # discord.py 2.5+ builds InteractionCallbackResponse from this and needs "interaction".
        result: Json = {"interaction": answer}
        if resource is not None:
            result["resource"] = {"type": ctype, "message": resource.to_payload(self._users)}
        return _json_response(result)

    def _webhook_interaction(self, app_id: str, token: str) -> FakeInteraction:
        interaction = self._interactions_by_token.get(token)
        if int(app_id) != self.application_id or interaction is None:
            raise _Rejected(_error(404, 10015, "Unknown Webhook"))
        if interaction.token_expired:
            raise _Rejected(_error(401, 50027, "Invalid Webhook Token"))
        if interaction.callback is None:
            # Discord only creates the interaction webhook once the interaction is acknowledged.
            raise _Rejected(_error(404, 10015, "Unknown Webhook"))
        return interaction

    def _webhook_message(self, interaction: FakeInteraction, message_id: str) -> FakeMessage:
        if message_id == "@original":
            message = interaction.original
        else:
            message = next(
                (m for m in interaction.messages if m.id == int(message_id)),
                None,
            )
        if message is None or message.deleted:
            raise _Rejected(_error(404, 10008, "Unknown Message"))
        return message

    async def _webhook_execute(
        self, request: web.Request, body: _Body, app_id: str, token: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        payload = body.json or {}
        self._check_uploads(body, interaction.attachment_size_limit)
        self._validate_message(payload, body, creating=True)
        original = interaction.original
        deferred = interaction.callback is not None and (
            interaction.callback.type == DEFERRED_CHANNEL_MESSAGE
        )
        if deferred and original is not None and original.loading and not interaction.followups:
            # Discord fills the "thinking" placeholder with the first followup after a type 5
            # defer: same message id, the defer's ephemerality, and no notifications.
            self._fill_message(original, payload, body)
            message = original
        else:
            flags = (payload.get("flags") or 0) & (
                FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS
            )
            message = self._create_message(
                channel=interaction.channel,
                route="webhook",
                payload={**payload, "flags": flags},
                body=body,
                interaction=interaction,
            )
        interaction.followups.append(message)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return _json_response(message.to_payload(self._users))
        return _no_content()

    async def _webhook_get(
        self, request: web.Request, body: _Body, app_id: str, token: str, message_id: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        message = self._webhook_message(interaction, message_id)
        return _json_response(message.to_payload(self._users))

    async def _webhook_edit(
        self, request: web.Request, body: _Body, app_id: str, token: str, message_id: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        message = self._webhook_message(interaction, message_id)
        payload = body.json or {}
        self._check_uploads(body, interaction.attachment_size_limit)
        self._validate_message(payload, body, creating=False)
        self._edit_message(message, payload, body)
        return _json_response(message.to_payload(self._users))

    async def _webhook_delete(
        self, request: web.Request, body: _Body, app_id: str, token: str, message_id: str
    ) -> web.Response:
        interaction = self._webhook_interaction(app_id, token)
        message = self._webhook_message(interaction, message_id)
        message.deleted = True
        return _no_content()

    # ---------------------------------------------------------------- REST: channels

    def _channel_for_bot(self, channel_id: str, needed: int = VIEW_CHANNEL) -> FakeChannel:
        channel = self._find_channel(int(channel_id))
        if channel is None:
            raise _Rejected(_error(404, 10003, "Unknown Channel"))
        if channel.guild is not None:
            have = channel.guild.me.permissions_in(channel)
            if not have & VIEW_CHANNEL:
                raise _Rejected(_error(403, 50001, "Missing Access"))
            if have & needed != needed:
                raise _Rejected(_error(403, 50013, "Missing Permissions"))
        return channel

    def _channel_message(self, channel: FakeChannel, message_id: str) -> FakeMessage:
        message = self.get_message(int(message_id))
        if (
            message is None
            or message.channel_id != channel.id
            or message.deleted
            or message.ephemeral
        ):
            raise _Rejected(_error(404, 10008, "Unknown Message"))
        return message

    async def _get_channel(
        self, request: web.Request, body: _Body, channel_id: str
    ) -> web.Response:
        return _json_response(self._channel_for_bot(channel_id).to_payload())

    async def _channel_history(
        self, request: web.Request, body: _Body, channel_id: str
    ) -> web.Response:
        channel = self._channel_for_bot(channel_id, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        limit = int(request.query.get("limit", "50"))
        visible = [m for m in self.channel_messages(channel) if not m.ephemeral and not m.loading]
        newest_first = sorted(visible, key=lambda m: m.id, reverse=True)[:limit]
        return _json_response([m.to_payload(self._users) for m in newest_first])

    async def _channel_send(
        self, request: web.Request, body: _Body, channel_id: str
    ) -> web.Response:
        needed = VIEW_CHANNEL | SEND_MESSAGES | (ATTACH_FILES if body.files else 0)
        channel = self._channel_for_bot(channel_id, needed)
        if channel.recipient is not None and not channel.recipient.dms_open:
            return _error(403, 50007, "Cannot send messages to this user")
        limit = channel.guild.filesize_limit if channel.guild else 10 * MIB
        payload = body.json or {}
        self._check_uploads(body, limit)
        self._validate_message(payload, body, creating=True)
        message = self._create_message(
            channel=channel,
            route="channel",
            payload={**payload, "flags": (payload.get("flags") or 0) & ~FLAG_EPHEMERAL},
            body=body,
            message_type=19 if payload.get("message_reference") else 0,
        )
        return _json_response(message.to_payload(self._users))

    async def _typing(self, request: web.Request, body: _Body, channel_id: str) -> web.Response:
        self._channel_for_bot(channel_id, VIEW_CHANNEL | SEND_MESSAGES)
        return _no_content()

    async def _channel_get_message(
        self, request: web.Request, body: _Body, channel_id: str, message_id: str
    ) -> web.Response:
        channel = self._channel_for_bot(channel_id, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        message = self._channel_message(channel, message_id)
        return _json_response(message.to_payload(self._users))

    async def _channel_edit(
        self, request: web.Request, body: _Body, channel_id: str, message_id: str
    ) -> web.Response:
        channel = self._channel_for_bot(channel_id)
        message = self._channel_message(channel, message_id)
        if message.author is not self.bot_user:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        payload = body.json or {}
        limit = channel.guild.filesize_limit if channel.guild else 10 * MIB
        self._check_uploads(body, limit)
        self._validate_message(payload, body, creating=False)
        self._edit_message(message, payload, body)
        return _json_response(message.to_payload(self._users))

    async def _channel_delete(
        self, request: web.Request, body: _Body, channel_id: str, message_id: str
    ) -> web.Response:
        channel = self._channel_for_bot(channel_id)
        message = self._channel_message(channel, message_id)
        if message.author is not self.bot_user and channel.guild is not None:
            self._channel_for_bot(channel_id, VIEW_CHANNEL | MANAGE_MESSAGES)
        message.deleted = True
        return _no_content()

    async def _create_dm(self, request: web.Request, body: _Body) -> web.Response:
        recipient = self._users.get(int((body.json or {}).get("recipient_id", 0)))
        if recipient is None:
            return _error(400, 50033, "Invalid Recipient(s)")
        return _json_response(self.dm_channel(recipient).to_payload())

    async def _get_user(self, request: web.Request, body: _Body, user_id: str) -> web.Response:
        user = self._users.get(int(user_id))
        if user is None:
            return _error(404, 10013, "Unknown User")
        return _json_response(user.to_payload())

    def _guild(self, guild_id: str) -> FakeGuild:
        guild = next((g for g in self.guilds if g.id == int(guild_id)), None)
        if guild is None:
            raise _Rejected(_error(404, 10004, "Unknown Guild"))
        return guild

    async def _get_guild(self, request: web.Request, body: _Body, guild_id: str) -> web.Response:
        payload = self._guild(guild_id).to_payload()
        for key in ("channels", "members", "threads", "voice_states", "presences"):
            payload.pop(key, None)
        return _json_response(payload)

    async def _get_guild_channels(
        self, request: web.Request, body: _Body, guild_id: str
    ) -> web.Response:
        guild = self._guild(guild_id)
        return _json_response([c.to_payload() for c in guild.channels])

    async def _get_member(
        self, request: web.Request, body: _Body, guild_id: str, user_id: str
    ) -> web.Response:
        member = self._guild(guild_id).get_member(int(user_id))
        if member is None:
            return _error(404, 10007, "Unknown Member")
        return _json_response(member.to_payload())

    # ---------------------------------------------------------------- CDN

    async def _download(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        attachment = self._files.get(int(request.match_info["attachment_id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            self.requests.append(RequestRecord("GET", path, 404, _now()))
            return web.Response(status=404, text="Not Found")
        self.requests.append(RequestRecord("GET", path, 200, _now()))
        content_type = attachment.content_type or "application/octet-stream"
        return web.Response(body=attachment.data, headers={"Content-Type": content_type})


def _command_size(command: Json) -> int:
    total = len(command.get("name") or "") + len(command.get("description") or "")
    for option in command.get("options") or []:
        total += _command_size(option)
        for choice in option.get("choices") or []:
            total += len(choice.get("name") or "") + len(str(choice.get("value", "")))
    return total


def _guess_type(filename: str) -> str | None:
    return mimetypes.guess_type(filename)[0]


@contextlib.asynccontextmanager
async def run_bot(
    bot: discord.Client,
    fake: FakeDiscord,
    token: str | None = None,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109
    guild_ready_timeout: float = 0.05,
) -> AsyncIterator[discord.Client]:
    """Run a real discord.py client against ``fake`` until the block exits.

    ``bot.start()`` runs as a task (login, ``setup_hook`` and the gateway); the block is entered
    once ``bot.is_ready()``. discord.py waits ``guild_ready_timeout`` (default 2 s) after the
    last GUILD_CREATE before READY fires, so it is shortened here. On exit the bot is closed,
    its task awaited and the patched discord.py globals restored. Use a fresh client per run:
    a closed discord.py client cannot be started again.
    """
    with fake.patched():
        state = bot._connection
        state.guild_ready_timeout = min(state.guild_ready_timeout, guild_ready_timeout)
        task = asyncio.create_task(bot.start(token or fake.token), name="fakediscord-bot")
        try:
            await fake.wait_for(
                lambda: task.done() or bot.is_ready(), timeout, message="bot.is_ready()"
            )
            if task.done():
                task.result()
                raise RuntimeError("bot.start() returned before the bot was ready")
            yield bot
        finally:
            await bot.close()
            if not task.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 5.0)
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, discord.ConnectionClosed):
                await task
