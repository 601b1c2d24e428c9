"""The catalogue against the provider's pages: every range, choice, default and rule."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from bot.models import CATALOGUE, ImageInput, InvalidParameters, by_command

IMAGE = "https://cdn.example.test/cat.png"
BASE: dict[str, dict[str, Any]] = {
    "svd": {"image": IMAGE},
    "cog-video-5b-t2v": {"prompt": "a dog on a roof"},
    "cog-video-5b-i2v": {"image": IMAGE, "prompt": "animate it"},
    "pixverse-5-video": {"prompt": "a girl with a guitar"},
    "grok-imagine-video": {"prompt": "waves on cliffs"},
}

# (slug, parameter, minimum, maximum, the step to one past the edge), from ../shared/seeds/.
RANGES = [
    ("svd", "fps", 1, 60, 1),
    ("svd", "motion", 1, 180, 1),
    ("svd", "cond_aug", 0, 1, 0.01),
    ("svd", "seed", -1, 999_999_999_999_999, 1),
    ("cog-video-5b-t2v", "input_frames", 16, 60, 1),
    ("cog-video-5b-t2v", "steps", 25, 50, 1),
    ("cog-video-5b-t2v", "guidance_scale", 5, 10, 0.01),
    ("cog-video-5b-t2v", "frame_rate", 8, 10, 1),
    ("cog-video-5b-t2v", "seed", 0, 999_999_999_999_999, 1),
    ("cog-video-5b-i2v", "seed", 0, 999_999_999_999_999, 1),
    ("pixverse-5-video", "seed", 0, 999_999_999_999_999, 1),
    ("grok-imagine-video", "duration", 1, 15, 1),
]

CHOICES = [
    ("svd", "frames", [14, 25], 20),
    ("svd", "resize_method", ["maintain_aspect_ratio", "crop_to_16_9"], "stretch"),
    ("pixverse-5-video", "duration", [5, 8], 6),
    ("pixverse-5-video", "quality", ["360p", "540p", "720p", "1080p"], "4k"),
    ("pixverse-5-video", "motion_mode", ["normal", "fast"], "slow"),
    ("pixverse-5-video", "aspect_ratio", ["16:9", "4:3", "1:1", "3:4", "9:16"], "21:9"),
    ("pixverse-5-video", "lip_sync_tts_speaker_id", ["auto", *"123456789"], "10"),
    ("grok-imagine-video", "resolution", ["480p", "720p", "1080p"], "4k"),
    (
        "grok-imagine-video",
        "aspect_ratio",
        ["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3"],
        "5:4",
    ),
]


def problems(slug: str, **values: Any) -> list[str]:
    try:
        CATALOGUE[slug].validate({**BASE[slug], **values})
    except InvalidParameters as error:
        return error.problems
    return []


@pytest.mark.parametrize(("slug", "name", "low", "high", "step"), RANGES)
def test_each_range_accepts_its_edges_and_refuses_one_past_them(
    slug: str, name: str, low: float, high: float, step: float
) -> None:
    assert problems(slug, **{name: low}) == []
    assert problems(slug, **{name: high}) == []
    for outside in (low - step, high + step):
        found = problems(slug, **{name: outside})
        assert len(found) == 1
        assert found[0].startswith(f"`{name}` must be between")
        assert repr(outside) in found[0]


@pytest.mark.parametrize(("slug", "name", "allowed", "refused"), CHOICES)
def test_each_choice_accepts_the_listed_values_only(
    slug: str, name: str, allowed: list[Any], refused: Any
) -> None:
    for value in allowed:
        assert problems(slug, **{name: value}) == [], value
    found = problems(slug, **{name: refused})
    assert found == [
        f"`{name}` must be one of {', '.join(str(choice) for choice in _allowed(slug, name))};"
        f" {refused!r} is not."
    ]


def _allowed(slug: str, name: str) -> list[Any]:
    from bot.models import choices

    return list(choices(CATALOGUE[slug].parameters, name))


def test_pixverse_duration_8_is_allowed_with_normal_motion_and_no_1080p() -> None:
    assert problems("pixverse-5-video", duration=8, quality="720p", motion_mode="normal") == []


@pytest.mark.parametrize(
    ("duration", "quality", "motion_mode"),
    list(itertools.product([5, 8], ["360p", "540p", "720p", "1080p"], ["normal", "fast"])),
)
def test_every_pixverse_combination_is_allowed_exactly_when_the_provider_allows_it(
    duration: int, quality: str, motion_mode: str
) -> None:
    found = problems(
        "pixverse-5-video", duration=duration, quality=quality, motion_mode=motion_mode
    )
    expected = []
    if motion_mode == "fast" and duration == 8:
        expected.append("`motion_mode` fast cannot be used with `duration` 8: fast needs 5.")
    if quality == "1080p" and duration == 8:
        expected.append("`quality` 1080p cannot be used with `duration` 8: 1080p needs 5.")
    if quality == "1080p" and motion_mode == "fast":
        expected.append("`quality` 1080p cannot be used with `motion_mode` fast.")
    assert found == expected


def test_defaults_are_the_providers() -> None:
    def payload(slug: str) -> dict[str, Any]:
        model = CATALOGUE[slug]
        return model.payload(model.validate(BASE[slug]))

    assert payload("svd") == {
        "image": IMAGE,
        "fps": 7,
        "motion": 127,
        "cond_aug": 0.2,
        "frames": 14,
        "resize_method": "maintain_aspect_ratio",
        "seed": -1,
        "base64": False,
    }
    assert payload("cog-video-5b-t2v") == {
        "prompt": "a dog on a roof",
        "input_frames": 49,
        "steps": 45,
        "guidance_scale": 6,
        "frame_rate": 8,
    }
    assert payload("cog-video-5b-i2v") == {"image": IMAGE, "prompt": "animate it"}
    assert payload("pixverse-5-video") == {
        "prompt": "a girl with a guitar",
        "duration": 5,
        "quality": "540p",
        "motion_mode": "normal",
        "aspect_ratio": "16:9",
        "sound_effect_switch": True,
        "lip_sync_switch": False,
    }
    assert payload("grok-imagine-video") == {
        "prompt": "waves on cliffs",
        "duration": 6,
        "resolution": "480p",
        "aspect_ratio": "16:9",
    }


def test_every_optional_pixverse_parameter_reaches_the_payload() -> None:
    model = CATALOGUE["pixverse-5-video"]
    extras = {
        "image_url": IMAGE,
        "negative_prompt": "no zooms",
        "seed": 56698,
        "sound_effect_switch": False,
        "sound_effect_content": "rain",
        "lip_sync_switch": True,
        "lip_sync_tts_content": "hello",
        "lip_sync_tts_speaker_id": "auto",
    }
    payload = model.payload(model.validate({**BASE["pixverse-5-video"], **extras}))
    assert extras.items() <= payload.items()


@pytest.mark.parametrize(
    ("slug", "missing"),
    [
        ("svd", "image"),
        ("cog-video-5b-t2v", "prompt"),
        ("cog-video-5b-i2v", "image"),
        ("cog-video-5b-i2v", "prompt"),
        ("pixverse-5-video", "prompt"),
        ("grok-imagine-video", "prompt"),
    ],
)
def test_required_parameters_are_required(slug: str, missing: str) -> None:
    values = {k: v for k, v in BASE[slug].items() if k != missing}
    with pytest.raises(InvalidParameters) as error:
        CATALOGUE[slug].validate(values)
    assert error.value.problems == [f"`{missing}` is required."]


def test_where_each_model_takes_its_image() -> None:
    takes = {slug: (m.image, m.image_parameter) for slug, m in CATALOGUE.items()}
    assert takes == {
        "svd": (ImageInput.REQUIRED, "image"),
        "cog-video-5b-t2v": (ImageInput.NONE, None),
        "cog-video-5b-i2v": (ImageInput.REQUIRED, "image"),
        "pixverse-5-video": (ImageInput.OPTIONAL, "image_url"),
        "grok-imagine-video": (ImageInput.OPTIONAL, "image"),
    }
    assert problems("grok-imagine-video", image=IMAGE) == []


def test_commands_durations_and_costs() -> None:
    facts = {m.command: (m.slug, m.typical_seconds, m.default_cost) for m in CATALOGUE.values()}
    assert facts == {
        "svd": ("svd", 30, 1),
        "cog-video": ("cog-video-5b-t2v", 229, 1),
        "cog-video-i2v": ("cog-video-5b-i2v", 356, 1),
        "pixverse": ("pixverse-5-video", 67, 1),
        "grok-video": ("grok-imagine-video", 70, 1),
    }
    assert by_command("grok-video") is CATALOGUE["grok-imagine-video"]


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t "])
def test_an_empty_or_blank_prompt_is_refused(prompt: str) -> None:
    assert problems("grok-imagine-video", prompt=prompt) == ["`prompt` cannot be empty."]


def test_a_prompt_is_trimmed_and_capped() -> None:
    model = CATALOGUE["grok-imagine-video"]
    assert model.validate({"prompt": "  waves  "}).model_dump()["prompt"] == "waves"
    assert problems("grok-imagine-video", prompt="w" * 2001) == [
        "`prompt` is too long: 2,001 characters, at most 2,000."
    ]


def test_each_problem_is_its_own_sentence() -> None:
    found = problems("svd", image="file:///etc/passwd", fps="fast", frames=16, colour="red")
    assert found == [
        "`image` must be an http(s) URL or a data:image URI.",
        "`fps` must be a whole number; 'fast' is not.",
        "`frames` must be one of 14, 25; 16 is not.",
        "`colour` is not a parameter of this model.",
    ]
