"""The gateway side of the fake: the websocket handler (HELLO, heartbeats, IDENTIFY, RESUME,
member requests), the gateway sessions, the READY, GUILD_CREATE and GUILD_MEMBERS_CHUNK
payloads, and the dispatch of events to connected bots."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable
from typing import Any

import discord
from aiohttp import WSMsgType, web

from .world import FakeGuild, Json, World

# Gateway intents that decide which sessions get an event.
GUILDS_INTENT = discord.Intents(guilds=True).value
GUILD_MEMBERS_INTENT = discord.Intents(members=True).value
GUILD_MESSAGES_INTENT = discord.Intents(guild_messages=True).value
DM_MESSAGES_INTENT = discord.Intents(dm_messages=True).value


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's rule for which shard carries a guild."""
    return (guild_id >> 22) % shard_count


class _GatewaySession:
    """One IDENTIFY: its id, intents and sequence, and the websocket it is on (if any)."""

    def __init__(self, session_id: str, intents: int, shard: tuple[int, int] | None) -> None:
        self.session_id = session_id
        self.intents = intents
        self.shard = shard  # (shard id, shard count) from IDENTIFY; None: unsharded
        self.seq = 0
        self.ws: web.WebSocketResponse | None = None

    def carries(self, guild_id: int | None) -> bool:
        """Whether this session's shard gets the guild's events (a DM's go to shard 0)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return shard_of(guild_id, count) == shard_id if guild_id is not None else shard_id == 0

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


class Gateway(World):
    """The fake's gateway at ``{url}/gateway``; a mixin of FakeDiscord."""

    def _init_gateway(self, *, heartbeat_interval_ms: int) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._sessions: dict[str, _GatewaySession] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self.gateway_queries: list[dict[str, str]] = []
        self.identify_count = 0
        self.identified_shards: list[tuple[int, int] | None] = []
        self.recommended_shards = 1  # GET /gateway/bot's "shards"
        self.resume_count = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _close_gateway(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"fake discord closing")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _live_sessions(self) -> list[_GatewaySession]:
        return [s for s in self._sessions.values() if s.live]

    def _sessions_for(self, event: str, data: Json) -> list[_GatewaySession]:
        """The live sessions whose shard carries the event, as Discord routes it."""
        guild_id = data.get("guild_id") if isinstance(data, dict) else None
        if guild_id is None and event.startswith("GUILD_") and isinstance(data, dict):
            guild_id = data.get("id")
        target = int(guild_id) if guild_id is not None else None
        return [s for s in self._live_sessions() if s.carries(target)]

    @property
    def connected(self) -> bool:
        return bool(self._live_sessions())

    @property
    def live_shards(self) -> list[tuple[int, int] | None]:
        """The shard of each connected session (None: unsharded)."""
        return [session.shard for session in self._live_sessions()]

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _broadcast_soon(self, event: str, data: Json) -> None:
        for session in self._sessions_for(event, data):
            self._spawn(session.dispatch(event, data))

    async def dispatch(self, event: str, data: Json) -> int:
        """Send a raw gateway event to every connected bot whose shard carries it; returns how
        many got it."""
        sessions = self._sessions_for(event, data)
        for session in sessions:
            await session.dispatch(event, data)
        return len(sessions)

    async def _dispatch_with_intent(self, event: str, data: Json, intent: int) -> int:
        """Send an event only to connected bots that asked for ``intent``, as Discord does;
        returns how many got it."""
        sessions = [s for s in self._sessions_for(event, data) if s.intents & intent]
        for session in sessions:
            await session.dispatch(event, data)
        return len(sessions)

    async def force_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py reconnects and RESUMEs on resume_gateway_url."""
        for session in self._live_sessions():
            await session.send({"op": 7, "d": None, "s": None, "t": None})

    def _guild_create(self, guild: FakeGuild, session: _GatewaySession) -> Json:
        members_intent = bool(session.intents & GUILD_MEMBERS_INTENT)
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
            shard = tuple(data["shard"]) if data.get("shard") else None
            self.identified_shards.append(shard)  # type: ignore[arg-type]
            session = _GatewaySession(
                secrets.token_hex(16), int(data.get("intents") or 0), shard  # type: ignore[arg-type]
            )
            session.ws = ws
            self._sessions[session.session_id] = session
            await session.dispatch("READY", self._ready_payload(session))
            for guild in self.guilds:
                if session.carries(guild.id):
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
            "guilds": [
                {"id": str(g.id), "unavailable": True} for g in self.guilds if session.carries(g.id)
            ],
            "session_id": session.session_id,
            "session_type": "normal",
            **({"shard": list(session.shard)} if session.shard else {}),
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
