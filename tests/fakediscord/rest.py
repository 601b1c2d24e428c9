"""The REST side of the fake (``/api/v10``) and the attachment CDN: routing and the recorded
requests, injected failures, the message, webhook, interaction callback, command, channel,
user and guild routes, Discord's validation of what the bot sends, and Discord's error
answers (status, JSON code and message)."""

from __future__ import annotations

import fnmatch
import json
import mimetypes
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .world import (
    APPLICATION_COMMAND,
    ATTACH_FILES,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    MANAGE_MESSAGES,
    MIB,
    MODAL,
    MODAL_SUBMIT,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    UPDATE_MESSAGE,
    VIEW_CHANNEL,
    FakeAttachment,
    FakeCallback,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMessage,
    FakeUser,
    Json,
    World,
    _iso_now,
    _now,
    _walk_components,
    snowflake,
)

Handler = Callable[..., Awaitable[web.Response]]

# Discord's per-command-type limits for one application (or one guild).
COMMAND_LIMITS = {1: 100, 2: 15, 3: 15}
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
_FILE_FIELD = re.compile(r"^files\[(\d+)\]$")
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


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


def _missing_access() -> _Rejected:
    """What Discord answers about a guild (or its channels) the bot is not in."""
    return _Rejected(_error(403, 50001, "Missing Access"))


class RestRoutes(World):
    """The fake's REST routes; a mixin of FakeDiscord. Each handler gets the request, its
    parsed body and the route's named groups, and answers like Discord (or raises _Rejected)."""

    def _init_rest(self, *, ack_deadline: float) -> None:
        # Seconds after dispatch in which the callback must arrive (Discord: 3).
        self.ack_deadline = ack_deadline

        self._global_commands: list[Json] = []
        self._guild_commands: dict[int, list[Json]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self.sync_count = 0
        self.guild_sync_count = 0

        self.requests: list[RequestRecord] = []
        self.unknown_requests: list[RequestRecord] = []
        self._failures: list[_Failure] = []

        self._routes: list[tuple[str, re.Pattern[str], Handler, bool]] = []
        self._build_routes()

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
        return _json_response(
            {"url": self.gateway_url, "shards": self.recommended_shards,
             "session_start_limit": limit}
        )  # fmt: skip

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
        if any(g.id == int(guild_id) for g in self.removed_guilds):
            return _missing_access().response
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
            if any(g.id == gid for g in self.removed_guilds):
                return _missing_access().response
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
        if interaction.webhook_forgotten:
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
        if self.bot_removed_from(channel.guild):
            raise _missing_access()
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
        if any(g.id == int(guild_id) for g in self.removed_guilds):
            raise _missing_access()
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
        if (
            attachment is None
            or attachment.filename != request.match_info["filename"]
            or attachment.expired
        ):
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
