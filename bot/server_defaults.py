"""Server defaults: values a server's managers choose for the options members leave empty.

A default is checked when it is set, against the catalogue's ranges and rules together with
the model's other defaults, so a default that could never run is refused at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.models import InvalidParameters, VideoModel

# Stands in for the options a member always gives, so that a default is checked on its own.
_PLACEHOLDER_TEXT = "placeholder"
_PLACEHOLDER_IMAGE = "https://cdn.discordapp.com/attachments/1/2/placeholder.png"


def settable(model: VideoModel) -> list[str]:
    """The options a server may give a default (an image comes with each command)."""
    return [name for name in model.parameters.model_fields if name != model.image_parameter]


def checked_default(model: VideoModel, option: str, text: str, others: Mapping[str, Any]) -> Any:
    """The value `text` means for `option`, or InvalidParameters saying why it cannot be."""
    if option not in settable(model):
        raise InvalidParameters([f"`{option}` is not an option of /{model.command}."])
    problems: InvalidParameters | None = None
    for value in _readings(text):
        probe = {**_placeholders(model), **others, option: value}
        try:
            return model.validate(probe).model_dump()[option]
        except InvalidParameters as refused:
            problems = problems or refused
    assert problems is not None
    raise problems


def _readings(text: str) -> list[Any]:
    """The text as typed, then as a number or true/false (`8`, `true`), whichever fits."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return [text]
    return [text, parsed] if isinstance(parsed, int | float | bool) else [text]


def _placeholders(model: VideoModel) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field_ in model.parameters.model_fields.items():
        if field_.is_required():
            values[name] = _PLACEHOLDER_IMAGE if name == model.image_parameter else (
                _PLACEHOLDER_TEXT
            )  # fmt: skip
    if model.image_parameter and model.image_parameter not in values:
        values[model.image_parameter] = None
    return {name: value for name, value in values.items() if value is not None}


def describe(model: VideoModel, defaults: Mapping[str, Any]) -> str:
    """`/pixverse: quality 720p, duration 8`."""
    shown = ", ".join(f"{option} {_shown(value)}" for option, value in defaults.items())
    return f"/{model.command}: {shown}"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
