"""Refusals: a request the bot will not take, said to the member privately, changing nothing.

Every refusal a member can meet is a `Refused`, and `describe_refusal` is the one place that
turns one into the text they read.
"""

from __future__ import annotations


class Refused(Exception):
    """The request was not taken; the message says why, in words for the member."""

    def lines(self) -> list[str]:
        return [str(self)]


class NotHere(Refused):
    """The command cannot be used where it was used (outside a server, say)."""


class QueueFull(Refused):
    """The member, or the server's queue, has as many jobs waiting as allowed."""


class UnknownJob(Refused):
    """A button of a job the bot no longer knows."""


class ModelNotOffered(Refused):
    """The job's model is no longer in this bot's catalogue (an old Regenerate button)."""


def describe_refusal(refusal: Refused) -> str:
    lines = refusal.lines()
    if len(lines) == 1:
        return lines[0]
    return "That did not work:\n" + "\n".join(f"- {line}" for line in lines)
