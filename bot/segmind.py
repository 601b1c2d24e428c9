"""A small, typed async client for Segmind's v2 API (submit, then poll).

Every request to the API goes through one shared RequestBudget and one retry loop. Failures come
out as the exceptions below, named after what happened; the API key is sent only to the
configured base URL and appears in no message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
from multidict import CIMultiDict

from bot.polling import (
    RESULT_WORTH,
    RETENTION_SECONDS,
    SUBMIT_WORTH,
    PollSchedule,
    Watch,
    submit_worth,
)
from bot.ratelimit import RequestBudget, Worth

log = logging.getLogger(__name__)

ProviderState = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED"})
_KNOWN_STATES = frozenset({"QUEUED", "PROCESSING", "COMPLETED", "FAILED"})


# --- What can go wrong -----------------------------------------------------------------------


class SegmindError(Exception):
    """Base of every failure the client reports."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        status: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.status = status
        self.detail = detail


class BadRequest(SegmindError):
    """Segmind refused the parameters; `detail` holds its reason."""


class Unauthorized(SegmindError):
    """The API key is missing or invalid: the operator must fix the configuration."""


class Forbidden(Unauthorized):
    """The API key may not use this model or endpoint."""


class InsufficientCredits(SegmindError):
    """The Segmind account has run out of credits."""


class RateLimited(SegmindError):
    """Segmind kept answering 429 after every retry."""


class ProviderError(SegmindError):
    """Segmind failed (5xx) or could not be reached, after every retry."""


class SubmitOutcomeUnknown(ProviderError):
    """A submit failed after it was sent: Segmind may or may not have accepted (and billed) it.

    It is never sent again, since Segmind has no idempotency key and a second POST is a second job.
    """


class ModelNotFound(SegmindError):
    """Segmind does not know the model slug."""


class RequestExpired(SegmindError):
    """Segmind no longer knows the request (results are kept one hour)."""


class JobFailed(SegmindError):
    """The job ended FAILED; `detail` holds the provider's reason."""


class ContentBlocked(JobFailed):
    """The job was refused by the provider's safety filter."""


class JobTimedOut(SegmindError):
    """The job did not finish before polling had to stop."""


class MalformedResponse(SegmindError):
    """Segmind's answer could not be understood (not JSON, fields missing, no video URL)."""


class ResultWithoutVideo(MalformedResponse):
    """The job completed, but its result names no video: asking again will not help."""


class VideoDownloadFailed(SegmindError):
    """The finished video could not be fetched from its URL."""


class VideoTooLarge(VideoDownloadFailed):
    """The video is larger than the download cap."""


class ResultNotReady(SegmindError):
    """The result was asked for before the job finished."""


# The provider does not publish its filters' wording. Some words are about safety on their own;
# others ("blocked", "violates") are only when they speak of content, not of a network or limit.
_SAFETY_WORDS = re.compile(
    r"\b(nsfw|unsafe|safety|content[ _-]?(policy|filter|moderation)|moderat\w*|flagged|rai"
    r"|responsible ai|harmful|sexual\w*|nud(e|ity)|gore|prohibited content)\b",
    re.IGNORECASE,
)
_REFUSAL_WORDS = re.compile(r"\b(blocked|violat\w*|inappropriate|not allowed)\b", re.IGNORECASE)
_CONTENT_WORDS = re.compile(
    r"\b(content|prompt|image|input|output|video|polic(y|ies)|guidelines?)\b", re.IGNORECASE
)
_NOT_CONTENT_WORDS = re.compile(
    r"\b(dimensions?|size|rate|timeout|access|upstream)\b", re.IGNORECASE
)


def is_content_block(error_text: str | None) -> bool:
    """Whether a FAILED job's error reads as a safety or moderation refusal."""
    if not error_text:
        return False
    if _SAFETY_WORDS.search(error_text):
        return True
    return bool(
        _REFUSAL_WORDS.search(error_text)
        and _CONTENT_WORDS.search(error_text)
        and not _NOT_CONTENT_WORDS.search(error_text)
    )


def failure_for(error_text: str | None, request_id: str | None) -> JobFailed:
    """The exception for a job that ended FAILED with this error text."""
    detail = (error_text or "").strip() or None
    if is_content_block(detail):
        return ContentBlocked(
            "the provider's safety filter refused the job", request_id=request_id, detail=detail
        )
    return JobFailed("the job failed at the provider", request_id=request_id, detail=detail)


# --- What comes back -------------------------------------------------------------------------


@dataclass(frozen=True)
class JobStatus:
    request_id: str
    state: ProviderState
    error: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    request_id: str
    video_url: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    file_size: int | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try again: capped exponential backoff with jitter."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class _Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


# Connect failures happen before a byte of the request is sent, so even a submit may be retried.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_NETWORK_TROUBLE = (aiohttp.ClientError, asyncio.TimeoutError)
Hook = Callable[[], Awaitable[None]]
RefusalHook = Callable[["SegmindError"], Awaitable[None]]


class SegmindClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        *,
        base_url: str = "https://api.segmind.com",
        upload_url: str = "https://workflows-api.segmind.com/upload-asset",
        budget: RequestBudget | None = None,
        retry: RetryPolicy | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        self._session = session
        self._headers = {"x-api-key": api_key}
        self._base_url = base_url.rstrip("/")
        self._upload_url = upload_url
        self.budget = budget or RequestBudget(50)
        self._retry = retry or RetryPolicy()
        self._timeout = timeout or aiohttp.ClientTimeout(total=60, sock_connect=10)

    def __repr__(self) -> str:
        return f"SegmindClient(base_url={self._base_url!r})"

    # --- The protocol ---

    async def submit(
        self,
        slug: str,
        payload: Mapping[str, Any],
        *,
        before_send: Hook | None = None,
        after_refusal: RefusalHook | None = None,
        expected_seconds: float | None = None,
    ) -> str:
        """Start a job and return its request id.

        `expected_seconds`, the job's expected time at Segmind, lets the request budget weigh
        the submit's wait against the other jobs' polls (as a share of that time).

        `before_send` is awaited once the request has its budget slot, immediately before the
        request is written (to record that a submit is under way, or to call it off by raising);
        `after_refusal` is awaited when an answer proved that nothing was accepted and the
        submit will be tried again, before the wait (to record that nothing is under way).
        """
        answer = await self._call(
            "POST", f"/v2/{slug}", payload=payload, submit=True,
            worth=_submit_worth if expected_seconds is None else submit_worth(expected_seconds),
            before_send=before_send, after_refusal=after_refusal,
        )  # fmt: skip
        if _names_terminal_state(answer.body) and answer.body["status"] == "FAILED":
            raise failure_for(_text(answer.body.get("error")), None)
        if answer.status >= 400:
            raise self._error_for(answer, request_id=None)
        request_id = answer.body.get("request_id") if isinstance(answer.body, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise SubmitOutcomeUnknown(
                "Segmind answered the submit without a request id: the job may or may not exist",
                status=answer.status,
            )
        log.info("segmind accepted job", extra={"model": slug, "request_id": request_id})
        return request_id

    async def status(self, request_id: str, *, worth: Worth | None = None) -> JobStatus:
        """`worth`: what this poll is worth to the request budget (its chance of news)."""
        answer = await self._call("GET", f"/v2/requests/{request_id}/status", worth=worth)
        return self._read_status(answer, request_id)

    async def result(self, request_id: str) -> JobResult:
        """The finished job's video URL; raises JobFailed or ContentBlocked for a failed job."""
        answer = await self._call("GET", f"/v2/requests/{request_id}", worth=_result_worth)
        status = self._read_status(answer, request_id)
        if status.state == "FAILED":
            raise failure_for(status.error, request_id)
        if status.state != "COMPLETED":
            raise ResultNotReady(f"the job is still {status.state}", request_id=request_id)
        video_url, file_size = _video_of(answer.body)
        if not video_url:
            raise ResultWithoutVideo("the result names no video URL", request_id=request_id)
        return JobResult(request_id, video_url, answer.body.get("metrics") or {}, file_size)

    async def wait(
        self,
        request_id: str,
        schedule: PollSchedule,
        *,
        submitted_at: float | None = None,
        running_since: float | None = None,
        on_status: Callable[[JobStatus], Awaitable[None]] | None = None,
    ) -> JobResult:
        """Poll on `schedule` until the job finishes. `submitted_at` and `running_since` (when
        it was first seen PROCESSING, by an earlier run of the bot say) are time.time() values."""
        started = time.time() if submitted_at is None else submitted_at
        watch = Watch(
            schedule,
            started,
            running_since=running_since,
            requests_per_minute=self.budget.per_minute,
        )
        polled = False
        not_found: RequestExpired | None = None
        misses = 0
        while True:
            due = watch.due()
            if due is None:
                if not_found is not None:
                    raise not_found
                if polled:
                    raise JobTimedOut("the job did not finish in time", request_id=request_id)
                due = time.time()  # picked up late (after a restart, say): look once first
            delay = max(due - time.time(), 0.0)
            if not_found is not None:  # re-checks of a 404 are spaced out, whatever the schedule
                delay = max(delay, self._retry.backoff(misses))
            polled = True
            await asyncio.sleep(delay)
            seen: str | None = None
            try:
                status = await self.status(request_id, worth=watch.worth)
                seen, not_found, misses = status.state, None, 0
                if on_status is not None:
                    await on_status(status)
                if status.state == "FAILED":
                    raise failure_for(status.error, request_id)
                if status.state == "COMPLETED":
                    return await self.result(request_id)
            except ResultWithoutVideo:
                raise
            except RequestExpired as gone:
                # Within the hour Segmind keeps a request, one 404 may be a hiccup of its own
                # while the job runs on (and is billed): believe it only when it repeats.
                misses += 1
                if time.time() - started >= RETENTION_SECONDS or misses > NOT_FOUND_RECHECKS:
                    raise
                log.warning("Segmind answered 404 for %s; checking again", request_id)
                not_found = gone
            except _PASSING_TROUBLE as trouble:
                # The job keeps running (and will be billed) whatever our polls meet: keep
                # watching until the schedule gives up rather than throw the video away.
                log.warning("still waiting for %s despite: %s", request_id, trouble)
            finally:
                watch.saw(seen)

    async def upload_image(self, data: bytes, content_type: str) -> str:
        """Put image bytes in Segmind's storage and return their URL (for an input image whose
        own link no longer works). Not billed, so safe to try again."""
        data_url = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
        answer = await self._call(
            "POST", self._upload_url, payload={"data_urls": [data_url]}, worth=_submit_worth
        )
        if answer.status >= 400:
            raise self._error_for(answer, request_id=None)
        urls = None
        if isinstance(answer.body, dict):
            urls = answer.body.get("file_urls") or answer.body.get("urls")
        if not isinstance(urls, list) or not urls or not isinstance(urls[0], str):
            raise MalformedResponse("Segmind's storage answered without a file URL")
        return urls[0]

    async def download(self, url: str, *, max_bytes: int, directory: Path | None = None) -> Path:
        """Stream the video to a temporary file and return its path (the caller deletes it).

        The file is public and not part of the API: no key is sent and no budget is spent.
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        for attempt in range(self._retry.attempts):
            try:
                async with self._session.get(url, timeout=timeout) as response:
                    if response.status < 500:
                        return await _save(response, max_bytes, directory)
                    trouble: SegmindError = VideoDownloadFailed(
                        f"the video file answered HTTP {response.status}", status=response.status
                    )
            except _NETWORK_TROUBLE as error:
                trouble = VideoDownloadFailed(f"the video could not be fetched ({_name(error)})")
            if attempt + 1 == self._retry.attempts:
                raise trouble
            await asyncio.sleep(self._retry.backoff(attempt))
        raise AssertionError("unreachable")

    # --- One request, with budget and retries ---

    async def _call(
        self,
        method: str,
        path: str,
        *,
        payload: Mapping[str, Any] | None = None,
        submit: bool = False,
        worth: Worth | None = None,
        before_send: Hook | None = None,
        after_refusal: RefusalHook | None = None,
    ) -> _Answer:
        """`path` is under the base URL, or a whole URL of Segmind's (its storage upload)."""
        is_submit = submit
        for attempt in range(self._retry.attempts):
            await self.budget.acquire(worth)
            if before_send is not None:
                await before_send()
            try:
                answer = await self._send(method, path, payload)
            except _NOT_SENT as error:
                trouble: SegmindError = ProviderError(f"Segmind is unreachable ({_name(error)})")
                delay = self._retry.backoff(attempt)
            except _NETWORK_TROUBLE as error:
                if is_submit:
                    raise SubmitOutcomeUnknown(
                        f"the submit was sent but its answer was lost ({_name(error)}); "
                        "it was not sent again, so Segmind may or may not be running the job"
                    ) from None
                trouble = ProviderError(f"Segmind did not answer ({_name(error)})")
                delay = self._retry.backoff(attempt)
            else:
                if is_submit and answer.status in _SUBMIT_MAY_HAVE_RUN:
                    raise SubmitOutcomeUnknown(
                        f"the submit was answered HTTP {answer.status}, which does not say"
                        " whether Segmind took it; it was not sent again",
                        status=answer.status,
                    )
                if _names_terminal_state(answer.body) or answer.status not in _RETRYABLE:
                    return answer
                trouble = self._error_for(answer, request_id=None)
                delay = await self._retry_delay(answer, attempt)
            log.warning(
                "segmind %s %s failed (attempt %d of %d): %s",
                method, path, attempt + 1, self._retry.attempts, trouble,
            )  # fmt: skip
            if attempt + 1 == self._retry.attempts:
                raise trouble
            if after_refusal is not None:
                await after_refusal(trouble)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _send(self, method: str, path: str, payload: Mapping[str, Any] | None) -> _Answer:
        async with self._session.request(
            method,
            path if path.startswith(("https://", "http://")) else self._base_url + path,
            json=payload,
            headers=self._headers,
            timeout=self._timeout,
            # aiohttp would forward x-api-key to wherever a redirect points.
            allow_redirects=False,
        ) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            log.debug("segmind %s %s -> %d", method, path, response.status)
            return _Answer(response.status, body, CIMultiDict(response.headers))

    async def _retry_delay(self, answer: _Answer, attempt: int) -> float:
        if answer.status != 429:
            return self._retry.backoff(attempt)
        wait = _seconds_until(
            answer.headers.get("x-rate-limit-reset-at-utc"), answer.headers.get("Date")
        )
        if wait is None:
            wait = self._retry.backoff(attempt)
        # The limit is the account's: every other job would be refused too, so all of them pause
        # (however long Segmind says), and the pause outlives a restart.
        await self.budget.hold_until(time.time() + wait)
        return wait

    def _read_status(self, answer: _Answer, request_id: str) -> JobStatus:
        body = answer.body
        if not _names_terminal_state(body) and answer.status >= 400:
            raise self._error_for(answer, request_id=request_id)
        if not isinstance(body, dict) or body.get("status") not in _KNOWN_STATES:
            raise MalformedResponse(
                f"Segmind's status answer names no known state (HTTP {answer.status})",
                request_id=request_id,
                status=answer.status,
            )
        error = body.get("error") if body["status"] == "FAILED" else None
        return JobStatus(request_id, body["status"], _text(error), body.get("metrics") or {})

    @staticmethod
    def _error_for(answer: _Answer, *, request_id: str | None) -> SegmindError:
        code = answer.status
        detail = _error_text(answer.body)
        facts: dict[str, Any] = {"request_id": request_id, "status": code, "detail": detail}
        if code == 400:
            return BadRequest("Segmind refused the parameters", **facts)
        if code == 401:
            return Unauthorized("Segmind rejected the API key", **facts)
        if code == 403:
            return Forbidden("the API key may not use this model", **facts)
        if code == 404:
            if request_id:
                return RequestExpired("Segmind no longer has this request", **facts)
            return ModelNotFound("Segmind does not know this model", **facts)
        if code == 406:
            if detail and "credit" not in detail.lower():
                return BadRequest("Segmind refused the request", **facts)
            return InsufficientCredits("the Segmind account is out of credits", **facts)
        if code == 429:
            return RateLimited("Segmind's rate limit held after every retry", **facts)
        if code >= 500:
            return ProviderError(f"Segmind failed with HTTP {code}", **facts)
        if code >= 400:
            return BadRequest(f"Segmind refused the request (HTTP {code})", **facts)
        return MalformedResponse(f"Segmind answered an unexpected HTTP {code}", **facts)


_RETRYABLE = frozenset({429, 500, 502, 503, 504})
# How many times a 404 about a request younger than Segmind's retention is checked again.
NOT_FOUND_RECHECKS = 3
# A gateway timeout answers for a proxy, not for Segmind: the job may have been accepted behind
# it. 429, 500, 502 and 503 are Segmind's own refusals: nothing was accepted.
_SUBMIT_MAY_HAVE_RUN = frozenset({504})
def _submit_worth() -> float:
    return SUBMIT_WORTH


def _result_worth() -> float:
    return RESULT_WORTH


# Failures of one poll that say nothing about the job itself.
_PASSING_TROUBLE = (ProviderError, RateLimited, MalformedResponse, ResultNotReady)


def _names_terminal_state(body: Any) -> bool:
    return isinstance(body, dict) and body.get("status") in TERMINAL_STATES


def _video_of(body: Mapping[str, Any]) -> tuple[str | None, int | None]:
    video = body.get("video")
    if isinstance(video, dict) and isinstance(video.get("url"), str) and video["url"]:
        size = video.get("file_size")
        return video["url"], size if isinstance(size, int) else None
    output = body.get("output")
    if isinstance(output, list) and output:
        output = output[0]
    if isinstance(output, dict):
        output = output.get("url")
    if isinstance(output, str) and output.startswith(("https://", "http://")):
        return output, None
    return None, None


def _error_text(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if text := _text(body.get(key)):
                return text
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text.strip()[:500] or None


def _seconds_until(reset_at: str | None, server_date: str | None = None) -> float | None:
    """Seconds until the time in x-rate-limit-reset-at-utc (ISO 8601 or a Unix time).

    Counted from the answer's `Date` when it has one: the reset is on Segmind's clock, and this
    host's may be off. `Date` is truncated to the second, which errs on the side of waiting.
    """
    if not reset_at:
        return None
    try:
        moment = float(reset_at)
        if moment > 1e11:  # milliseconds
            moment /= 1000
    except ValueError:
        try:
            parsed = datetime.fromisoformat(reset_at.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        moment = parsed.timestamp()
    now = time.time()
    if server_date:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            now = parsedate_to_datetime(server_date).timestamp()
    return max(0.0, moment - now)


def _name(error: BaseException) -> str:
    return type(error).__name__


async def _save(response: aiohttp.ClientResponse, max_bytes: int, directory: Path | None) -> Path:
    if response.status >= 400:
        raise VideoDownloadFailed(
            f"the video file answered HTTP {response.status}", status=response.status
        )
    size = response.content_length
    if size is not None and size > max_bytes:
        raise VideoTooLarge(f"the video is {size:,} bytes, over the {max_bytes:,} byte cap")
    handle, name = tempfile.mkstemp(prefix="segmind-", suffix=".mp4", dir=directory)
    path = Path(name)
    written = 0
    try:
        with os.fdopen(handle, "wb") as file:
            async for chunk in response.content.iter_chunked(256 * 1024):
                written += len(chunk)
                if written > max_bytes:
                    raise VideoTooLarge(f"the video is over the {max_bytes:,} byte cap")
                file.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
