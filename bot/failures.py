"""Failure wording: the one place that turns what went wrong into words for the member."""

from __future__ import annotations

from bot.segmind import (
    BadRequest,
    ContentBlocked,
    InsufficientCredits,
    JobFailed,
    JobTimedOut,
    MalformedResponse,
    ModelNotFound,
    ProviderError,
    RateLimited,
    RequestExpired,
    SubmitOutcomeUnknown,
    Unauthorized,
    VideoDownloadFailed,
    VideoTooLarge,
)


class DeliveryRefused(Exception):
    """The video cannot be posted, and trying again will not change that (say, no permission)."""


class RestartedMidSubmit(Exception):
    """The bot stopped while a submit was on the wire: nobody knows whether Segmind took it."""


class ModelRetired(Exception):
    """The job's model was taken out of the catalogue before the job could finish."""


MISCONFIGURED = (
    "The bot is misconfigured and could not reach the video service. "
    "An admin has the details in the bot's log."
)


def describe_failure(error: BaseException, *, video_url: str | None = None) -> str:
    """A plain sentence or two for the requester; never a secret, never a traceback."""
    # Most specific first: several of these are subclasses of others.
    if isinstance(error, InsufficientCredits):
        return "The bot's Segmind account is out of credits. Ask a server admin to top it up."
    if isinstance(error, ContentBlocked):
        return "The provider's safety filter refused this prompt or image. Try something else."
    if isinstance(error, BadRequest):
        reason = f" It said: {error.detail}" if error.detail else ""
        return f"The provider refused these settings.{reason}"
    if isinstance(error, (Unauthorized, ModelNotFound)):
        return MISCONFIGURED
    if isinstance(error, RateLimited):
        return "The provider is rate limiting the bot and kept refusing after several retries."
    if isinstance(error, RestartedMidSubmit):
        return (
            "The bot restarted while this job was being sent to the provider, so it may or may"
            " not have run. It was not sent again, to avoid paying twice, and your credits were"
            " given back."
        )
    if isinstance(error, ModelRetired):
        return "This bot no longer offers that model, so the job was stopped. Nothing was spent."
    if isinstance(error, SubmitOutcomeUnknown):
        return (
            "The provider's answer to this job was lost or timed out, so it may or may not have"
            " started. It was not sent again, to avoid paying twice, and your credits were given"
            " back."
        )
    if isinstance(error, ProviderError):
        return "The video service is having trouble and did not recover after several retries."
    if isinstance(error, RequestExpired):
        return "The result is no longer available at the provider (results are kept one hour)."
    if isinstance(error, JobTimedOut):
        return "The provider did not finish the video in time, so the bot stopped waiting."
    if isinstance(error, VideoTooLarge):
        link = f" It can be fetched here for a few days: {error.detail}" if error.detail else ""
        return f"The finished video is larger than this bot is set to download.{link}"
    if isinstance(error, VideoDownloadFailed):
        return "The video was made but could not be fetched from the provider."
    if isinstance(error, JobFailed):
        reason = f" It said: {error.detail}" if error.detail else ""
        return f"The provider could not make this video.{reason}"
    if isinstance(error, MalformedResponse):
        return "The provider gave an answer the bot could not understand."
    if isinstance(error, DeliveryRefused):
        return f"The video was made but could not be posted here: {error}.{_link(video_url)}"
    return (
        "Something went wrong on the bot's side. An admin has the details in the bot's log."
        + _link(video_url)
    )


def _link(video_url: str | None) -> str:
    return f" The video can be fetched for a few days at {video_url}" if video_url else ""
