"""A local stand-in for Segmind's v2 API, for trying the bot for free and for the tests.

It speaks the same protocol (submit, status, result, 422 on FAILED, 404 after retention),
checks the API key, validates payloads against the catalogue, finishes jobs after the model's
typical duration times a speed factor, and serves a small sample MP4 as every result. Faults can
be injected to rehearse what the real provider does on a bad day.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.models import CATALOGUE, InvalidParameters
from bot.ratelimit import busiest

SAMPLE_VIDEO = Path(__file__).with_name("sample.mp4")
_REQUEST_ID = web.RequestKey("request_id", str)

Endpoint = Literal["submit", "status", "result", "file", "any"]
FaultKind = Literal[
    "credits",  # 406 Insufficient credits (submit)
    "rate_limit",  # 429 with x-rate-limit-reset-at-utc
    "server_error",  # `status` (5xx), nothing accepted
    "content_blocked",  # the job ends FAILED with a safety error
    "failed",  # the job ends FAILED with `error`
    "expire",  # the request is forgotten: 404 from now on
    "slow",  # the answer comes `delay` seconds late (a submit is accepted first)
    "disconnect",  # the connection drops without an answer (a submit is accepted first)
    "accepted_504",  # the submit is accepted, then answered 504 by the gateway in front
    "not_found",  # a 404 for a request that exists (a passing hiccup: use with count)
    "large_video",  # the result video is `size` bytes
    "not_json",  # an HTML error page instead of JSON
    "missing_fields",  # 200 with an empty JSON object
    "no_video_url",  # a COMPLETED result without a video URL
    "output_only",  # a COMPLETED result with `output` but no `video` object
    "video_404",  # the video URL answers 404
]


class Fault(BaseModel):
    """One injected misbehaviour: which answers it hits, how often, and its details."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    endpoint: Endpoint = "any"
    slug: str | None = None
    count: int | None = Field(default=1, ge=0, description="times left; None for every time")
    probability: float = Field(default=1.0, ge=0, le=1)
    status: int = 500
    delay: float = 5.0
    reset_after: float = 2.0
    size: int = 50 * 1024 * 1024
    error: str = "Generation failed: the worker ran out of memory"

    def hits(self, endpoint: str, slug: str | None, rng: random.Random) -> bool:
        if self.count == 0 or self.endpoint not in ("any", endpoint):
            return False
        if self.slug is not None and self.slug != slug:
            return False
        return rng.random() < self.probability


@dataclass
class SimulatedJob:
    request_id: str
    slug: str
    payload: dict[str, Any]
    created: float
    duration: float
    error: str | None = None
    video_size: int | None = None
    expired: bool = False
    no_video_url: bool = False
    output_only: bool = False
    video_missing: bool = False

    def state(self, now: float) -> str:
        elapsed = now - self.created
        if elapsed < self.duration * 0.1:
            return "QUEUED"
        if elapsed < self.duration:
            return "PROCESSING"
        return "FAILED" if self.error else "COMPLETED"


@dataclass
class LoggedRequest:
    at: float
    method: str
    endpoint: str
    status: int
    slug: str | None = None
    request_id: str | None = None
    sent_key: bool = False


@dataclass
class Simulator:
    api_key: str = "simulator"
    speed: float = 1.0
    retention: float = 3600.0
    duration_spread: float = 0.0
    # What results report as the account's credits left (metrics.remaining_credits); None: not
    # reported.
    remaining_credits: float | None = None
    seed: int | None = None
    faults: list[Fault] = field(default_factory=list)
    jobs: dict[str, SimulatedJob] = field(default_factory=dict)
    log: list[LoggedRequest] = field(default_factory=list)
    clock: Any = time.monotonic
    # How far the provider's wall clock is ahead of this host's: its `Date` and rate-limit
    # reset times are on its own clock.
    clock_skew: float = 0.0

    def __post_init__(self) -> None:
        self.uploads: dict[str, bytes] = {}
        self._rng = random.Random(self.seed)
        self._sample = SAMPLE_VIDEO.read_bytes()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- Running it ---

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.add_routes(
            [
                web.post("/v2/{slug}", self._submit),
                web.get("/v2/requests/{request_id}/status", self._status),
                web.get("/v2/requests/{request_id}", self._result),
                web.get("/files/{request_id}.mp4", self._file),
                web.post("/upload-asset", self._upload),
                web.get("/uploads/{name}", self._uploaded),
                web.post("/_simulator/faults", self._add_faults),
                web.delete("/_simulator/faults", self._clear_faults),
                web.get("/_simulator/log", self._log),
            ]
        )
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def add_fault(self, kind: FaultKind, **details: Any) -> Fault:
        fault = Fault(kind=kind, **details)
        self.faults.append(fault)
        return fault

    # --- What the tests read ---

    def requests(self, endpoint: str | None = None) -> list[LoggedRequest]:
        return [entry for entry in self.log if endpoint in (None, entry.endpoint)]

    def busiest_window(self, period: float) -> int:
        """The most API requests (not file downloads) that arrived within any `period` seconds."""
        return busiest((entry.at for entry in self.log if entry.endpoint != "file"), period)

    # --- The protocol ---

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        endpoint = _endpoint_of(request)
        if endpoint == "control":
            return await handler(request)
        # Logged on arrival, as the provider counts it; the status is filled in on the way out.
        entry = LoggedRequest(
            at=self.clock(),
            method=request.method,
            endpoint=endpoint,
            status=0,
            slug=request.match_info.get("slug"),
            request_id=request.match_info.get("request_id"),
            sent_key="x-api-key" in request.headers,
        )
        self.log.append(entry)
        try:
            response = await handler(request)
            entry.status = response.status
            return response
        finally:
            entry.request_id = request.get(_REQUEST_ID) or entry.request_id

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        if refusal := self._refuse(request):
            return refusal
        fault = self._fault("submit", slug)
        if fault is not None and fault.kind in _ANSWERED_BY_FAULT:
            return self._fault_answer(fault)
        model = CATALOGUE.get(slug)
        if model is None:
            return _json({"error": f"Model {slug} not found"}, 404)
        try:
            payload = await request.json()
            model.validate({k: v for k, v in payload.items() if k not in model.fixed_payload})
        except InvalidParameters as error:
            return _json({"error": " ".join(error.problems)}, 400)
        except (ValueError, AttributeError):
            return _json({"error": "The request body must be a JSON object"}, 400)
        if unreachable := await self._unreachable_image(model, payload):
            problem = f"Invalid parameters: the image {unreachable} could not be fetched"
            return _json({"error": problem}, 400)
        job = self._new_job(slug, payload, fault)
        request[_REQUEST_ID] = job.request_id
        base = f"{request.scheme}://{request.host}/v2/requests/{job.request_id}"
        answer = _json(
            {
                "request_id": job.request_id,
                "status": "QUEUED",
                "poll_url": f"{base}/status",
                "status_url": f"{base}/status",
                "response_url": base,
            }
        )
        return await self._deliver(request, answer, fault)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return await self._answer_about_job(request, "status")

    async def _result(self, request: web.Request) -> web.StreamResponse:
        return await self._answer_about_job(request, "result")

    async def _answer_about_job(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["request_id"])
        slug = job.slug if job else None
        if refusal := self._refuse(request):
            return refusal
        fault = self._fault(endpoint, slug)
        if fault is not None and fault.kind in _ANSWERED_BY_FAULT - {"credits"}:
            return self._fault_answer(fault)
        if fault is not None and fault.kind == "not_found":
            return _json({"error": "Request not found or expired"}, 404)
        if job is not None and fault is not None:
            self._apply_to_job(job, fault)
        if job is None or job.expired or self.clock() - job.created > self.retention:
            return _json({"error": "Request not found or expired"}, 404)
        state = job.state(self.clock())
        body: dict[str, Any] = {"request_id": job.request_id, "status": state}
        if state == "FAILED":
            body["error"] = job.error
            return await self._deliver(request, _json(body, 422), fault)
        if state == "COMPLETED":
            body["metrics"] = {"inference_time": round(job.duration, 2), "cost": 0}
            if self.remaining_credits is not None:
                body["metrics"]["remaining_credits"] = self.remaining_credits
            if endpoint == "result" and not job.no_video_url:
                url = f"{request.scheme}://{request.host}/files/{job.request_id}.mp4"
                body["output"] = url
                if not job.output_only:
                    body["video"] = {
                        "url": url,
                        "content_type": "video/mp4",
                        "file_name": f"{job.request_id}.mp4",
                        "file_size": job.video_size or len(self._sample),
                    }
        return await self._deliver(request, _json(body), fault)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["request_id"])
        fault = self._fault("file", job.slug if job else None)
        if fault is not None and fault.kind == "server_error":
            return self._fault_answer(fault)
        if job is None or job.video_missing or (fault and fault.kind == "video_404"):
            return web.Response(status=404, text="Not Found")
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        sample = self._sample
        size = max(job.video_size or len(sample), len(sample))
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = size
        await response.prepare(request)
        await response.write(sample)
        chunk = bytes(1024 * 1024)
        for offset in range(len(sample), size, len(chunk)):
            await response.write(chunk[: size - offset])
        await response.write_eof()
        return response

    async def _unreachable_image(self, model: Any, payload: dict[str, Any]) -> str | None:
        """Segmind fetches the input image itself. Only links on this machine are tried (the
        fake Discord's CDN, this simulator's uploads): a test never reaches the internet."""
        link = payload.get(model.image_parameter) if model.image_parameter else None
        if not isinstance(link, str) or urlsplit(link).hostname not in ("127.0.0.1", "localhost"):
            return None
        try:
            async with aiohttp.ClientSession() as session, session.get(link) as answer:
                return None if answer.status < 400 else link
        except aiohttp.ClientError:
            return link

    async def _upload(self, request: web.Request) -> web.Response:
        """Segmind's storage: data URLs in, public URLs out."""
        if refusal := self._refuse(request):
            return refusal
        body = await request.json()
        urls = []
        for data_url in body.get("data_urls", []):
            header, _, encoded = data_url.partition(",")
            name = f"{uuid.uuid4().hex}.{header.split('/')[-1].split(';')[0]}"
            self.uploads[name] = base64.b64decode(encoded)
            urls.append(f"{request.scheme}://{request.host}/uploads/{name}")
        return _json({"file_urls": urls})

    async def _uploaded(self, request: web.Request) -> web.StreamResponse:
        data = self.uploads.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="application/octet-stream")

    # --- Faults ---

    def _refuse(self, request: web.Request) -> web.Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return _json({"error": "Invalid API key"}, 401)
        return None

    def _fault(self, endpoint: str, slug: str | None) -> Fault | None:
        for fault in self.faults:
            if fault.hits(endpoint, slug, self._rng):
                if fault.count is not None:
                    fault.count -= 1
                return fault
        return None

    def _fault_answer(self, fault: Fault) -> web.Response:
        if fault.kind == "credits":
            # Segmind answers 406 for "Invalid content type" too; `error` rehearses that.
            text = fault.error if "error" in fault.model_fields_set else _NO_CREDITS
            return _json({"error": text}, 406)
        if fault.kind == "rate_limit":
            now = datetime.now(UTC) + timedelta(seconds=self.clock_skew)
            reset = now + timedelta(seconds=fault.reset_after)
            return _json(
                {"error": "Rate limit exceeded"},
                429,
                headers={
                    "x-rate-limit-reset-at-utc": reset.isoformat(),
                    "Date": format_datetime(now, usegmt=True),
                },
            )
        if fault.kind == "missing_fields":
            return _json({})
        if fault.kind == "not_json":
            return web.Response(
                status=502, text="<html>Bad Gateway</html>", content_type="text/html"
            )
        reason = _REASONS.get(fault.status, "Internal server error")
        return _json({"error": reason}, fault.status)

    def _new_job(self, slug: str, payload: dict[str, Any], fault: Fault | None) -> SimulatedJob:
        duration = CATALOGUE[slug].typical_seconds * self.speed
        if self.duration_spread:
            duration *= self._rng.uniform(1 - self.duration_spread, 1 + self.duration_spread)
        job = SimulatedJob(uuid.uuid4().hex, slug, payload, self.clock(), duration)
        if fault is not None:
            self._apply_to_job(job, fault)
        self.jobs[job.request_id] = job
        return job

    def _apply_to_job(self, job: SimulatedJob, fault: Fault) -> None:
        if fault.kind == "content_blocked":
            job.error = "Content flagged as NSFW by the safety checker"
        elif fault.kind == "failed":
            job.error = fault.error
        elif fault.kind == "expire":
            job.expired = True
        elif fault.kind == "large_video":
            job.video_size = fault.size
        elif fault.kind == "no_video_url":
            job.no_video_url = True
        elif fault.kind == "output_only":
            job.output_only = True
        elif fault.kind == "video_404":
            job.video_missing = True

    async def _deliver(
        self, request: web.Request, answer: web.Response, fault: Fault | None
    ) -> web.StreamResponse:
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.kind == "disconnect" and request.transport is not None:
            # The work is done (a submitted job exists) but the answer never arrives.
            request.transport.close()
        if fault is not None and fault.kind == "accepted_504":
            # The job exists (and is billed), but the gateway gave up waiting for the answer.
            return _json({"error": _REASONS[504]}, 504)
        return answer

    # --- Control, for tests driving a simulator in another process ---

    async def _add_faults(self, request: web.Request) -> web.Response:
        if refusal := self._refuse(request):
            return refusal
        added = [Fault.model_validate(item) for item in await request.json()]
        self.faults.extend(added)
        return _json({"faults": len(self.faults)})

    async def _clear_faults(self, request: web.Request) -> web.Response:
        if refusal := self._refuse(request):
            return refusal
        self.faults.clear()
        return _json({"faults": 0})

    async def _log(self, request: web.Request) -> web.Response:
        if refusal := self._refuse(request):
            return refusal
        return _json([entry.__dict__ for entry in self.log])


# Faults that replace the answer altogether (nothing is accepted or looked up).
_ANSWERED_BY_FAULT = frozenset(
    {"rate_limit", "server_error", "credits", "not_json", "missing_fields"}
)
_NO_CREDITS = "Insufficient credits. Please add credits to continue."
_REASONS = {
    400: "Invalid parameters: the image URL could not be fetched",
    403: "Forbidden: this API key may not use this model",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def _endpoint_of(request: web.Request) -> str:
    path = request.path
    if path.startswith("/_simulator/"):
        return "control"
    if path.startswith(("/files/", "/uploads/")):
        return "file"
    if path == "/upload-asset":
        return "upload"
    if path.endswith("/status"):
        return "status"
    if path.startswith("/v2/requests/"):
        return "result"
    return "submit"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)
