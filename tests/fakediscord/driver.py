"""What tests hold and call: :class:`FakeDiscord` (the server and its lifecycle, world
building, the users' actions such as slash commands, clicks, modal submits, moderators
deleting messages and the bot being removed from a guild, and inspection of what the bot
did) and :func:`run_bot`, which runs a real discord.py client against it."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import discord
import yarl
from aiohttp import web
from discord.gateway import DiscordWebSocket

from .gateway import DM_MESSAGES_INTENT, GUILD_MESSAGES_INTENT, GUILDS_INTENT, Gateway
from .rest import RequestRecord, RestRoutes, _Failure
from .world import (
    ALL_PERMISSIONS,
    APPLICATION_COMMAND,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    MESSAGE_COMPONENT,
    MIB,
    MODAL_SUBMIT,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    Json,
    World,
    _now,
    snowflake,
)


class FakeDiscord(Gateway, RestRoutes):
    """Loopback Discord: REST at ``{url}/api/v10``, gateway at ``{url}/gateway`` and attachment
    downloads at ``{url}/attachments/...``.

    Add guilds before the bot connects (they go out as GUILD_CREATE after READY); guilds,
    channels and roles added later are dispatched to a connected bot as events.

    It joins the gateway (:class:`~tests.fakediscord.gateway.Gateway`) and the REST routes
    (:class:`~tests.fakediscord.rest.RestRoutes`), which share one
    :class:`~tests.fakediscord.world.World`.
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
        port: int = 0,
    ) -> None:
        """`port`: where to listen (0: any free one), for a bot told the address beforehand."""
        World.__init__(self, token=token, bot_name=bot_name, application_flags=application_flags)
        self._init_gateway(heartbeat_interval_ms=heartbeat_interval_ms)
        self._init_rest(ack_deadline=ack_deadline)
        # Lifetime of an interaction token (Discord: 15 minutes).
        self.token_lifetime = token_lifetime
        self._runner: web.AppRunner | None = None
        self._listen_port = port

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
        site = web.TCPSite(self._runner, "127.0.0.1", self._listen_port, backlog=1024)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        await self._close_gateway()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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

    def add_guild(
        self,
        name: str = "Guild",
        *,
        owner_id: int | None = None,
        premium_tier: int = 0,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        locale: str = "en-US",
        on_shard: tuple[int, int] | None = None,
    ) -> FakeGuild:
        """A guild with a text channel ``guild.channel``, the bot as a member and (unless
        ``owner_id`` is given) an owner member ``guild.owner``; ``on_shard`` (shard, shard
        count): one that shard carries."""
        guild = FakeGuild(
            self,
            name,
            owner_id=owner_id,
            premium_tier=premium_tier,
            bot_permissions=bot_permissions,
            everyone_permissions=everyone_permissions,
            locale=locale,
            on_shard=on_shard,
        )
        self.guilds.append(guild)
        for session in self._live_sessions():
            if session.carries(guild.id):
                self._spawn(session.dispatch("GUILD_CREATE", self._guild_create(guild, session)))
        return guild

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

    def expire_attachment(self, attachment: Json) -> None:
        """Its CDN link stops working (404), as Discord's signed links do after about a day."""
        self._files[int(attachment["id"])].expired = True

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

    def stop_failing(self) -> None:
        """Forget every failure :meth:`fail_next` set up that has not been used yet."""
        self._failures.clear()

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

    async def wait_until_connected(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda: self.connected, timeout, message="a bot on the gateway")

    # ---------------------------------------------------------------- other people's actions

    async def delete_message(self, message: FakeMessage) -> None:
        """Someone else (a moderator) deletes a message the bot sent.

        The message is marked deleted exactly as the bot's own delete marks it: it leaves
        :meth:`channel_messages`, and later edits, reads or deletes through the interaction
        webhook or the channel answer 404 / 10008 Unknown Message. Connected bots get
        MESSAGE_DELETE ``{"id", "channel_id", "guild_id"}`` (discord.py:
        ``on_raw_message_delete``), but, as on Discord, only if they identified with the
        GUILD_MESSAGES intent (DIRECT_MESSAGES in a DM). An ephemeral message is marked
        deleted without any event: Discord sends none for ephemeral messages.
        """
        if message not in self.messages:
            raise ValueError(f"message {message.id} was never sent through this fake")
        if message.deleted:
            raise ValueError(f"message {message.id} is already deleted")
        message.deleted = True
        channel = self._find_channel(message.channel_id)
        if message.ephemeral or (channel is not None and self.bot_removed_from(channel.guild)):
            return
        data: Json = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        intent = GUILD_MESSAGES_INTENT if message.guild_id is not None else DM_MESSAGES_INTENT
        await self._dispatch_with_intent("MESSAGE_DELETE", data, intent)

    async def remove_bot(self, guild: FakeGuild) -> None:
        """The bot is removed (kicked or banned) from ``guild``.

        Connected bots (with the GUILDS intent) get GUILD_DELETE ``{"id": ...}`` without an
        ``unavailable`` key, which discord.py turns into ``on_guild_remove``. From then on
        the guild is in :attr:`removed_guilds`, not :attr:`guilds`: the bot's REST calls to
        it and its channels (GET guild, channels and members, guild commands, GET channel,
        message send, edit, delete and history, typing) answer 403 / 50001 Missing Access, a
        later IDENTIFY leaves it out of READY and GUILD_CREATE, changes to it are no longer
        dispatched, and :meth:`slash`, :meth:`click` and :meth:`submit_modal` there raise.
        """
        if guild not in self.guilds:
            raise ValueError(f"the bot is not in {guild!r}")
        self.guilds.remove(guild)
        self.removed_guilds.append(guild)
        await self._dispatch_with_intent("GUILD_DELETE", {"id": str(guild.id)}, GUILDS_INTENT)

    def _refuse_removed(self, guild: FakeGuild | None) -> None:
        if guild is not None and self.bot_removed_from(guild):
            raise ValueError(
                f"the bot was removed from {guild!r} (remove_bot); "
                "Discord sends it no interactions from there"
            )

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
        self._refuse_removed(guild)
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
        self._refuse_removed(guild)
        self._refuse_removed(channel.guild)
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
