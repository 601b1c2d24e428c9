"""The model catalogue: one declarative entry per Segmind video model.

Each entry holds everything the rest of the bot derives from: the slash command's name, the
provider's parameters (types, defaults, ranges, allowed values and cross-field rules, as on
Segmind's model pages), which parameter receives the image, how long a run typically takes and
what it costs by default. Commands, validation and the request payload all come from here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.refusals import Refused

MAX_SEED = 999_999_999_999_999
PROMPT_MAX_CHARS = 2000


class ImageInput(enum.Enum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    NONE = "none"


def _image_reference(value: str) -> str:
    # Segmind fetches the image itself, so it must be a public URL or an inline data URI.
    if value.startswith(("https://", "http://")) or value.startswith("data:image/"):
        return value
    raise ValueError("must be an http(s) URL or a data:image URI")


ImageRef = Annotated[str, AfterValidator(_image_reference)]
Prompt = Annotated[str, Field(min_length=1, max_length=PROMPT_MAX_CHARS)]
OptionalText = Annotated[str | None, Field(default=None, max_length=PROMPT_MAX_CHARS)]
Seed = Annotated[int | None, Field(default=None, ge=0, le=MAX_SEED)]


class Parameters(BaseModel):
    """Base of every model's parameters: strict about names, tidy about text."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class SvdParameters(Parameters):
    image: ImageRef
    fps: int = Field(7, ge=1, le=60, description="Frames per second")
    motion: int = Field(127, ge=1, le=180, description="How much the scene moves")
    cond_aug: float = Field(0.2, ge=0, le=1, description="Noise added to the input image")
    frames: Literal[14, 25] = Field(14, description="Number of frames in the video")
    resize_method: Literal["maintain_aspect_ratio", "crop_to_16_9"] = Field(
        "maintain_aspect_ratio", description="How the output size is chosen"
    )
    seed: int = Field(-1, ge=-1, le=MAX_SEED, description="Seed; -1 picks one at random")


class CogVideoParameters(Parameters):
    prompt: Prompt = Field(description="What the video shows")
    negative_prompt: OptionalText = Field(None, description="What the video should avoid")
    input_frames: int = Field(49, ge=16, le=60, description="Number of frames to generate")
    steps: int = Field(45, ge=25, le=50, description="Denoising steps per frame")
    guidance_scale: float = Field(6, ge=5, le=10, description="How closely to follow the prompt")
    frame_rate: int = Field(8, ge=8, le=10, description="Frames per second of the video")
    seed: Seed = Field(None, description="Seed for a reproducible result")


class CogVideoImageParameters(Parameters):
    image: ImageRef
    prompt: Prompt = Field(description="How the image should come to life")
    negative_prompt: OptionalText = Field(None, description="What the video should avoid")
    seed: Seed = Field(None, description="Seed for a reproducible result")


class PixverseParameters(Parameters):
    prompt: Prompt = Field(description="What the video shows")
    duration: Literal[5, 8] = Field(5, description="Length in seconds")
    quality: Literal["360p", "540p", "720p", "1080p"] = Field("540p", description="Resolution")
    motion_mode: Literal["normal", "fast"] = Field("normal", description="Motion speed")
    aspect_ratio: Literal["16:9", "4:3", "1:1", "3:4", "9:16"] = Field(
        "16:9", description="Frame shape (ignored when an image is given)"
    )
    image_url: ImageRef | None = None
    negative_prompt: OptionalText = Field(None, description="What the video should avoid")
    seed: Seed = Field(None, description="Seed for a reproducible result")
    sound_effect_switch: bool = Field(True, description="Add a sound track")
    sound_effect_content: OptionalText = Field(None, description="What the sound track holds")
    lip_sync_switch: bool = Field(False, description="Make a character speak")
    lip_sync_tts_content: OptionalText = Field(None, description="What the character says")
    lip_sync_tts_speaker_id: Literal["auto", "1", "2", "3", "4", "5", "6", "7", "8", "9"] | None = (
        Field(None, description="Voice of the speaker")
    )

    @model_validator(mode="after")
    def _supported_combination(self) -> PixverseParameters:
        problems = []
        if self.motion_mode == "fast" and self.duration != 5:
            problems.append("`motion_mode` fast cannot be used with `duration` 8: fast needs 5.")
        if self.quality == "1080p" and self.duration != 5:
            problems.append("`quality` 1080p cannot be used with `duration` 8: 1080p needs 5.")
        if self.quality == "1080p" and self.motion_mode == "fast":
            problems.append("`quality` 1080p cannot be used with `motion_mode` fast.")
        if problems:
            raise UnsupportedCombination(problems)
        return self


class GrokVideoParameters(Parameters):
    prompt: Prompt = Field(description="Subject, motion, camera, style and sounds")
    image: ImageRef | None = None
    duration: int = Field(6, ge=1, le=15, description="Length in seconds")
    resolution: Literal["480p", "720p", "1080p"] = Field("480p", description="Resolution")
    aspect_ratio: Literal["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3"] = Field(
        "16:9", description="Frame shape"
    )


class UnsupportedCombination(ValueError):
    """Values that are each allowed but not together; one sentence per clash."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


class InvalidParameters(Refused):
    """The parameters cannot be sent; `problems` holds one readable sentence per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return self.problems


@dataclass(frozen=True)
class VideoModel:
    slug: str
    command: str
    title: str
    parameters: type[Parameters]
    image: ImageInput
    typical_seconds: float
    image_parameter: str | None = None
    default_cost: int = 1
    fixed_payload: Mapping[str, Any] = field(default_factory=dict)
    # The parameters a run's duration depends on: jobs alike in these are timed together.
    duration_keys: tuple[str, ...] = ()
    # A run's work relative to the defaults (which take `typical_seconds`): a first guess of
    # how duration scales, that runs of each bucket then correct.
    work: Callable[[Mapping[str, Any]], float] | None = None

    def duration_work(self, parameters: Mapping[str, Any]) -> float:
        if self.work is None:
            return 1.0
        fields_ = self.parameters.model_fields
        return self.work({key: parameters.get(key, fields_[key].default) for key in fields_})

    def duration_bucket(self, parameters: Mapping[str, Any]) -> str:
        """Which durations this job's are learned with: `frames=25`, `duration=8,quality=1080p`."""
        fields_ = self.parameters.model_fields
        return ",".join(
            f"{key}={parameters.get(key, fields_[key].default)}" for key in self.duration_keys
        )

    def validate(self, values: Mapping[str, Any]) -> Parameters:
        """Check raw values against the provider's rules, or raise InvalidParameters."""
        try:
            return self.parameters.model_validate(dict(values))
        except ValidationError as error:
            raise InvalidParameters(describe_problems(error, self.parameters)) from None

    def payload(self, parameters: Parameters) -> dict[str, Any]:
        """The JSON body Segmind receives: set values and defaults, never a None."""
        return {**parameters.model_dump(exclude_none=True), **self.fixed_payload}


# A guess of how much longer a run takes at each resolution than at 540p: less than the
# pixels grow, as part of a run does not depend on them.
_RESOLUTION_WORK = {"360p": 0.7, "480p": 0.85, "540p": 1.0, "720p": 1.4, "1080p": 2.2}

CATALOGUE: dict[str, VideoModel] = {
    model.slug: model
    for model in (
        VideoModel(
            slug="svd",
            command="svd",
            title="Stable Video Diffusion",
            parameters=SvdParameters,
            image=ImageInput.REQUIRED,
            image_parameter="image",
            typical_seconds=30,
            duration_keys=("frames",),
            work=lambda p: p["frames"] / 14,
            # The output must be a URL, not base64 inlined in the JSON answer.
            fixed_payload={"base64": False},
        ),
        VideoModel(
            slug="cog-video-5b-t2v",
            command="cog-video",
            title="CogVideoX 5B",
            parameters=CogVideoParameters,
            image=ImageInput.NONE,
            typical_seconds=229,
            duration_keys=("input_frames", "steps"),
            work=lambda p: p["input_frames"] / 49 * p["steps"] / 45,
        ),
        VideoModel(
            slug="cog-video-5b-i2v",
            command="cog-video-i2v",
            title="CogVideoX 5B image-to-video",
            parameters=CogVideoImageParameters,
            image=ImageInput.REQUIRED,
            image_parameter="image",
            typical_seconds=356,
        ),
        VideoModel(
            slug="pixverse-5-video",
            command="pixverse",
            title="PixVerse 5",
            parameters=PixverseParameters,
            image=ImageInput.OPTIONAL,
            image_parameter="image_url",
            typical_seconds=67,
            duration_keys=("duration", "quality"),
            work=lambda p: p["duration"] / 5 * _RESOLUTION_WORK[p["quality"]],
        ),
        VideoModel(
            slug="grok-imagine-video",
            command="grok-video",
            title="Grok Imagine Video",
            parameters=GrokVideoParameters,
            image=ImageInput.OPTIONAL,
            image_parameter="image",
            typical_seconds=70,
            duration_keys=("duration", "resolution"),
            # A fixed start-up part, then time in proportion to the seconds of video.
            work=lambda p: (
                (0.5 + p["duration"] / 12) * _RESOLUTION_WORK[p["resolution"]] / 0.85
            ),
        ),
    )
}


def by_command(command: str) -> VideoModel:
    return next(model for model in CATALOGUE.values() if model.command == command)


def describe_problems(error: ValidationError, parameters: type[Parameters]) -> list[str]:
    """Turn pydantic's error list into sentences fit for a Discord message."""
    sentences = []
    for problem in error.errors(include_url=False):
        clash = problem.get("ctx", {}).get("error")
        if isinstance(clash, UnsupportedCombination):
            sentences.extend(clash.problems)
        else:
            sentences.append(_sentence(problem, parameters))
    return sentences


def _sentence(problem: Mapping[str, Any], parameters: type[Parameters]) -> str:
    name = str(problem["loc"][0]) if problem["loc"] else "parameters"
    kind = problem["type"]
    got = problem.get("input")
    if kind == "missing":
        return f"`{name}` is required."
    if kind == "extra_forbidden":
        return f"`{name}` is not a parameter of this model."
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        low, high = bounds(parameters, name)
        return f"`{name}` must be between {_number(low)} and {_number(high)}; {got!r} is not."
    if kind == "literal_error":
        allowed = ", ".join(str(choice) for choice in choices(parameters, name))
        return f"`{name}` must be one of {allowed}; {got!r} is not."
    if kind == "string_too_short":
        return f"`{name}` cannot be empty."
    if kind == "string_too_long":
        limit = problem["ctx"]["max_length"]
        return f"`{name}` is too long: {len(got):,} characters, at most {limit:,}."
    if kind.startswith("int_"):
        return f"`{name}` must be a whole number; {got!r} is not."
    if kind.startswith("float_"):
        return f"`{name}` must be a number; {got!r} is not."
    if kind.startswith("bool_"):
        return f"`{name}` must be true or false; {got!r} is not."
    if kind == "value_error":
        return f"`{name}` {problem['msg'].removeprefix('Value error, ')}."
    return f"`{name}`: {problem['msg']}."


def bounds(parameters: type[Parameters], name: str) -> tuple[float | None, float | None]:
    """The inclusive (min, max) of a number, or of a text's length, for messages and Discord."""
    low = high = None
    for rule in parameters.model_fields[name].metadata:
        if isinstance(rule, annotated_types.Ge):
            low = rule.ge
        elif isinstance(rule, annotated_types.Le):
            high = rule.le
        elif isinstance(rule, annotated_types.MinLen):
            low = rule.min_length
        elif isinstance(rule, annotated_types.MaxLen):
            high = rule.max_length
    return low, high


def choices(parameters: type[Parameters], name: str) -> tuple[Any, ...]:
    """The allowed values of a Literal parameter (optional or not), in the provider's order."""
    annotation = parameters.model_fields[name].annotation
    for option in (annotation, *getattr(annotation, "__args__", ())):
        if getattr(option, "__origin__", None) is Literal:
            return option.__args__
    return ()


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else str(value)
