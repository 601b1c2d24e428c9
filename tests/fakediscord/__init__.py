"""A loopback fake of Discord (REST API, gateway and attachment CDN) for end-to-end tests.

The real discord.py client connects to it: :func:`run_bot` points ``Route.BASE`` and the
gateway URL at the fake, starts the bot and waits until it is ready. Tests then drive the bot
the way users would (:meth:`FakeDiscord.slash`, :meth:`FakeDiscord.click`,
:meth:`FakeDiscord.submit_modal`), make other people act (:meth:`FakeDiscord.delete_message`
for a moderator deleting the bot's message, :meth:`FakeDiscord.remove_bot` for the bot being
removed from a guild) and assert on what the bot sent (:class:`FakeInteraction`,
:class:`FakeMessage`, :attr:`FakeDiscord.requests`).

Everything listens on 127.0.0.1; nothing here talks to the internet.

Where Discord enforces a rule that discord.py does not (the 3 s acknowledgement deadline, the
15 minute interaction token, upload size limits, message and command limits, channel
permissions, gateway intents), the fake enforces it too and answers with Discord's status and
error code, so a bot that breaks the rule fails in tests the way it would fail in production.

The package:

- :mod:`.world`: the data model (users, roles, members, channels, guilds, attachments,
  messages, interactions) and the state the other parts share;
- :mod:`.gateway`: the websocket gateway and event dispatch;
- :mod:`.rest`: the REST routes, Discord's validation and its error answers;
- :mod:`.driver`: :class:`FakeDiscord`, what tests call, and :func:`run_bot`.
"""

from __future__ import annotations

from .driver import FakeDiscord, run_bot
from .rest import RequestRecord
from .world import (
    FakeAttachment,
    FakeCallback,
    FakeChannel,
    FakeGuild,
    FakeInteraction,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
)

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
