"""Where and by whom videos are made in a server: its channels, its roles, its models.

Set by the server's managers with `/settings`, kept in the store, and judged before anything
else a video command does: a refusal spends nothing and sends nothing to Segmind.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from bot.formats import names
from bot.models import CATALOGUE
from bot.refusals import Refused


class RuleKind(enum.StrEnum):
    CHANNEL = "channel"  # video commands only in these channels (and their threads)
    ROLE = "role"  # only members with one of these roles (managers always may)
    DISABLED_MODEL = "disabled_model"  # these models' commands are switched off


class WrongChannel(Refused):
    """Video commands are kept to other channels of this server."""


class RoleRequired(Refused):
    """Video commands are kept to members with certain roles."""


class ModelDisabled(Refused):
    """The server switched this model off."""


@dataclass(frozen=True)
class Place:
    """Where a command was used, and by whom."""

    channel_id: int
    parent_id: int | None  # the channel a thread is in
    role_ids: frozenset[int]
    manages_server: bool


@dataclass(frozen=True)
class ServerRules:
    channels: frozenset[int] = frozenset()
    roles: frozenset[int] = frozenset()
    disabled_models: frozenset[str] = frozenset()

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]]) -> ServerRules:
        kinds: dict[RuleKind, set[str]] = {kind: set() for kind in RuleKind}
        for kind, value in rows:
            kinds[RuleKind(kind)].add(value)
        return cls(
            channels=frozenset(int(v) for v in kinds[RuleKind.CHANNEL]),
            roles=frozenset(int(v) for v in kinds[RuleKind.ROLE]),
            disabled_models=frozenset(kinds[RuleKind.DISABLED_MODEL]),
        )

    def check(self, place: Place, slug: str) -> None:
        """Raise the refusal this server's rules give a command of `slug` here, if any."""
        if self.channels and not {place.channel_id, place.parent_id} & self.channels:
            raise WrongChannel(
                f"Video commands work only in {names(channel_mentions(self.channels))} here."
            )
        if self.roles and not place.manages_server and not place.role_ids & self.roles:
            roles = names(role_mentions(self.roles))
            raise RoleRequired(f"Video commands here are for members with the role {roles}.")
        if slug in self.disabled_models:
            command = CATALOGUE[slug].command if slug in CATALOGUE else slug
            raise ModelDisabled(f"`/{command}` is switched off in this server.")


    def describe(self) -> list[str]:
        """The rules in a few lines, for /settings and /help."""
        channels = names(channel_mentions(self.channels)) or "every channel"
        roles = names(role_mentions(self.roles)) or "every member"
        on = [f"/{m.command}" for m in CATALOGUE.values() if m.slug not in self.disabled_models]
        off = [f"/{m.command}" for m in CATALOGUE.values() if m.slug in self.disabled_models]
        lines = [
            f"**Channels:** {channels}" + (" (and their threads)" if self.channels else ""),
            f"**Who may:** {roles}" + (" (and server managers)" if self.roles else ""),
            f"**Models on:** {names(on) or 'none'}",
        ]
        if off:
            lines.append(f"**Models off:** {names(off)}")
        return lines


def channel_mentions(ids: Iterable[int]) -> list[str]:
    return [f"<#{channel}>" for channel in sorted(ids)]


def role_mentions(ids: Iterable[int]) -> list[str]:
    return [f"<@&{role}>" for role in sorted(ids)]
