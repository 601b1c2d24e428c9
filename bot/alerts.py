"""Alerts before the money runs out: what a server's alerts channel is told, and when.

The Segmind account is the bot's, shared by every server; each server that set an alerts
channel (`/settings alerts`) picks its own threshold. A server is told once when the credits
Segmind reports on a result fall below its threshold (again only after they were seen back
above it), and once when a submit is refused for want of credits (again only after credits
were seen to recover). The alerts leave through their own outbox, written in the transaction
that saw the credits, so a crash between seeing and telling loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def remaining_credits(metrics: Mapping[str, Any]) -> float | None:
    value = metrics.get("remaining_credits")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def low_text(remaining: float, below: float) -> str:
    return (
        f"⚠️ The bot's Segmind account has {_amount(remaining)} credits left, below this"
        f" server's alert threshold of {_amount(below)}. Videos stop when it runs out: top it"
        " up at segmind.com."
    )


OUT_TEXT = (
    "⛔ The bot's Segmind account is out of credits: video commands fail until it is topped up"
    " at segmind.com."
)


def _amount(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or value.is_integer() else f"{value:,.2f}"
