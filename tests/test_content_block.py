"""The one heuristic that tells a safety refusal from any other failed job."""

from __future__ import annotations

import pytest

from bot.segmind import ContentBlocked, JobFailed, failure_for, is_content_block

BLOCKS = [
    "Content flagged as NSFW by the safety checker",
    "Your prompt violates our content policy",
    "Input image was blocked by moderation",
    "Request rejected: unsafe content detected",
    "The generated video was flagged by RAI filters",
    "Blocked by Responsible AI policy",
    "Prompt contains prohibited content",
    "sexual content is not allowed",
    "Output failed content moderation",
    "The input image violates our usage policies",
    "Your prompt was blocked",
    "Generated video contains inappropriate content",
]

OTHER_FAILURES = [
    "CUDA out of memory",
    "Worker timed out after 600 seconds",
    "Internal error while decoding the input image",
    "Invalid image dimensions: width must be a multiple of 64",
    "Failed to download image from URL",
    "Model raised an exception during training-free guidance",
    "access violation at address 0x0000",
    "Request blocked: upstream timeout",
    "Rate limit violated, try again later",
    "inappropriate dimensions for this model",
    "Input image size is not allowed: at most 4096 pixels wide",
    "",
    None,
]


@pytest.mark.parametrize("text", BLOCKS)
def test_safety_wording_is_a_content_block(text: str) -> None:
    assert is_content_block(text)
    assert isinstance(failure_for(text, "r1"), ContentBlocked)


@pytest.mark.parametrize("text", OTHER_FAILURES)
def test_other_failures_are_not(text: str | None) -> None:
    assert not is_content_block(text)
    failure = failure_for(text, "r1")
    assert type(failure) is JobFailed
    assert failure.request_id == "r1"
