"""Text helpers for what members read: one place for plurals, clocks, sizes and echoed text."""

from __future__ import annotations

import re

# Discord's markdown characters, and the markers that only count at the start of a line.
_MARKDOWN = re.compile(r"([\\*_~|`])|^(>{1,3}\s|#{1,3}|\s*-)|(\[.+\]\(.+\))")
MESSAGE_LIMIT = 1900  # under Discord's 2,000 characters, with room for a mention


def shorten(text: str, limit: int) -> str:
    """Echo user text safely: one line, markdown shown as typed, at most `limit` characters."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return escape_markdown(flat)


def escape_markdown(text: str) -> str:
    def escaped(match: re.Match[str]) -> str:
        return "\\" + match.group(0)

    return _MARKDOWN.sub(escaped, text)


def quoted(prompt: str | None, limit: int = 300) -> str:
    """A prompt as a quote line under a message, or nothing."""
    return f"\n> {shorten(prompt, limit)}" if prompt else ""


def fit(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Keep a message under Discord's 2,000 characters, saying that something was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 20].rsplit("\n", 1)[0] + "\n…(more not shown)"


def clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


def progress_bar(fraction: float, cells: int = 12) -> str:
    """`▰▰▰▰▱▱▱▱` for how far along something is (0 to 1)."""
    filled = round(min(max(fraction, 0.0), 1.0) * cells)
    return "▰" * filled + "▱" * (cells - filled)


def plural(count: int, noun: str) -> str:
    """`1 video`, `3 videos`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def credits_text(amount: int | None) -> str:
    if amount is None:
        return "no limit"
    return plural(amount, "credit")


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def names(items: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"
