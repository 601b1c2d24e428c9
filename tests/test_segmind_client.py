"""The Segmind client against the simulator on loopback: every status path and error code."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from bot.models import CATALOGUE
from bot.polling import RETENTION_SECONDS, PollSchedule
from bot.ratelimit import RequestBudget
from bot.segmind import (
    NOT_FOUND_RECHECKS,
    BadRequest,
    ContentBlocked,
    Forbidden,
    InsufficientCredits,
    JobFailed,
    JobStatus,
    JobTimedOut,
    MalformedResponse,
    ModelNotFound,
    ProviderError,
    RateLimited,
    RequestExpired,
    SegmindClient,
    SegmindError,
    SubmitOutcomeUnknown,
    Unauthorized,
    VideoDownloadFailed,
    VideoTooLarge,
)
from bot.simulator import SAMPLE_VIDEO, Simulator
from tests.conftest import API_KEY, FAST_RETRY, FakeClock, quick_schedule

SVD = CATALOGUE["svd"]
IMAGE = "https://cdn.example.test/cat.png"


def svd_payload(**values: object) -> dict:
    return SVD.payload(SVD.validate({"image": IMAGE, **values}))


async def test_a_job_goes_queued_processing_completed_and_yields_its_video(
    client: SegmindClient, simulator: Simulator, clock: FakeClock
) -> None:
    simulator.clock = clock
    simulator.speed = 1.0
    request_id = await client.submit("svd", svd_payload(fps=12))

    assert (await client.status(request_id)).state == "QUEUED"
    clock.advance(10)
    assert (await client.status(request_id)).state == "PROCESSING"
    clock.advance(25)
    assert (await client.status(request_id)).state == "COMPLETED"

    result = await client.result(request_id)
    assert result.video_url.endswith(f"/files/{request_id}.mp4")
    assert result.file_size == SAMPLE_VIDEO.stat().st_size


async def test_segmind_receives_exactly_the_catalogue_payload(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload(motion=180, frames=25, seed=42))

    assert simulator.jobs[request_id].payload == {
        "image": IMAGE,
        "fps": 7,
        "motion": 180,
        "cond_aug": 0.2,
        "frames": 25,
        "resize_method": "maintain_aspect_ratio",
        "seed": 42,
        "base64": False,
    }


async def test_wait_polls_until_done_and_reports_each_status(
    client: SegmindClient, simulator: Simulator
) -> None:
    seen: list[str] = []

    async def on_status(status: JobStatus) -> None:
        seen.append(status.state)

    request_id = await client.submit("svd", svd_payload())
    result = await client.wait(request_id, quick_schedule(0.3), on_status=on_status)

    assert seen[-1] == "COMPLETED" and "COMPLETED" not in seen[:-1]
    assert result.request_id == request_id
    assert [entry.endpoint for entry in simulator.log][-1] == "result"


async def test_the_finished_video_downloads_to_a_file(
    client: SegmindClient, tmp_path: Path
) -> None:
    request_id = await client.submit("svd", svd_payload())
    result = await client.wait(request_id, quick_schedule(0.3))

    path = await client.download(result.video_url, max_bytes=10**6, directory=tmp_path)

    assert path.read_bytes() == SAMPLE_VIDEO.read_bytes()


async def test_a_result_with_only_output_still_names_the_video(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("output_only", endpoint="result")
    request_id = await client.submit("svd", svd_payload())

    result = await client.wait(request_id, quick_schedule(0.3))

    assert result.video_url.endswith(f"/files/{request_id}.mp4")


async def test_a_result_without_any_video_url_is_malformed(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("no_video_url", endpoint="result")
    request_id = await client.submit("svd", svd_payload())

    with pytest.raises(MalformedResponse, match="no video URL"):
        await client.wait(request_id, quick_schedule(0.3))


# --- Failed jobs: a 422 that carries FAILED is an answer, not an error ---


async def test_a_failed_job_is_a_status_answer_then_job_failed(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("failed", endpoint="submit", error="CUDA out of memory")
    request_id = await client.submit("svd", svd_payload())

    with pytest.raises(JobFailed) as failure:
        await client.wait(request_id, quick_schedule(0.3))

    assert not isinstance(failure.value, ContentBlocked)
    assert failure.value.detail == "CUDA out of memory"
    status = await client.status(request_id)
    assert (status.state, status.error) == ("FAILED", "CUDA out of memory")
    assert any(entry.status == 422 for entry in simulator.requests("status"))


async def test_a_safety_refusal_is_content_blocked(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("content_blocked", endpoint="submit")
    request_id = await client.submit("svd", svd_payload())

    with pytest.raises(ContentBlocked):
        await client.wait(request_id, quick_schedule(0.3))
    with pytest.raises(ContentBlocked):
        await client.result(request_id)


# --- HTTP errors, each with its own exception ---


async def test_bad_parameters_carry_the_providers_reason(client: SegmindClient) -> None:
    with pytest.raises(BadRequest) as refusal:
        await client.submit("svd", {"image": IMAGE, "fps": 99})

    assert refusal.value.status == 400
    assert "fps" in (refusal.value.detail or "")


async def test_a_wrong_api_key_is_unauthorized_and_never_echoed(
    session: aiohttp.ClientSession, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_key = "wrong-key-c0ffee"
    client = SegmindClient(session, wrong_key, base_url=simulator.url, retry=FAST_RETRY)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(Unauthorized) as refusal:
        await client.submit("svd", svd_payload())

    assert not isinstance(refusal.value, Forbidden)
    shown = f"{refusal.value} {refusal.value!r} {refusal.value.detail} {client!r} {caplog.text}"
    assert wrong_key not in shown


async def test_forbidden_is_its_own_kind_of_unauthorized(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("server_error", endpoint="submit", status=403)

    with pytest.raises(Forbidden):
        await client.submit("svd", svd_payload())
    assert len(simulator.requests("submit")) == 1


async def test_an_unknown_model_is_model_not_found(client: SegmindClient) -> None:
    with pytest.raises(ModelNotFound):
        await client.submit("no-such-model", {"prompt": "x"})


async def test_out_of_credits_is_reported_and_never_retried(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("credits", endpoint="submit", count=None)

    with pytest.raises(InsufficientCredits):
        await client.submit("svd", svd_payload())
    assert len(simulator.requests("submit")) == 1
    assert simulator.jobs == {}


async def test_a_406_that_is_not_about_credits_is_a_bad_request(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("credits", endpoint="submit", error="Invalid content type")

    with pytest.raises(BadRequest) as refusal:
        await client.submit("svd", svd_payload())
    assert refusal.value.detail == "Invalid content type"


async def test_an_expired_request_is_request_expired(
    client: SegmindClient, simulator: Simulator, clock: FakeClock
) -> None:
    simulator.clock = clock
    request_id = await client.submit("svd", svd_payload())
    clock.advance(3601)

    with pytest.raises(RequestExpired) as expiry:
        await client.status(request_id)
    assert expiry.value.request_id == request_id
    with pytest.raises(RequestExpired):
        await client.result(request_id)


async def test_a_forgotten_request_expires_while_being_waited_on(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("expire", endpoint="status")

    with pytest.raises(RequestExpired):
        await client.wait(request_id, quick_schedule(0.3))


# --- Retries ---


async def test_status_polls_are_retried_through_5xx_and_garbage(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("server_error", endpoint="status", status=502)
    simulator.add_fault("not_json", endpoint="status")
    simulator.add_fault("disconnect", endpoint="status")

    status = await client.status(request_id)

    assert status.state in {"QUEUED", "PROCESSING", "COMPLETED"}
    assert [entry.status for entry in simulator.requests("status")][:2] == [502, 502]
    assert len(simulator.requests("status")) == 4


async def test_persistent_5xx_gives_up_as_provider_error(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("server_error", endpoint="status", status=500, count=None)

    with pytest.raises(ProviderError) as trouble:
        await client.status(request_id)

    assert trouble.value.status == 500
    assert len(simulator.requests("status")) == FAST_RETRY.attempts


async def test_a_429_waits_for_the_reset_time_it_names(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("rate_limit", endpoint="status", reset_after=0.6)

    started = time.monotonic()
    await client.status(request_id)
    waited = time.monotonic() - started

    # The backoff alone would be about 10 ms; the header said 0.6 s.
    assert waited >= 0.5
    assert [entry.status for entry in simulator.requests("status")] == [429, 200]


async def test_a_reset_time_is_read_on_the_providers_clock(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.clock_skew = 3600.0  # Segmind's clock an hour ahead of ours
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("rate_limit", endpoint="status", reset_after=0.6)

    started = time.monotonic()
    await client.status(request_id)
    waited = time.monotonic() - started

    # The reset is 0.6 s after Segmind's `Date` (itself cut to the second), not an hour away.
    assert 0.5 <= waited <= 3.0


async def test_a_long_reset_is_honoured_in_full(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("rate_limit", endpoint="status", reset_after=600)

    polled = asyncio.create_task(client.status(request_id))
    async with asyncio.timeout(10):
        while client.budget.waiting_time() == 0:  # noqa: ASYNC110 (a moment, not an event)
            await asyncio.sleep(0.01)
    assert client.budget.waiting_time() > 590  # no cap on what Segmind asks for
    polled.cancel()


async def test_a_rate_limit_that_never_lifts_is_rate_limited(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("rate_limit", endpoint="status", reset_after=0.0, count=None)

    with pytest.raises(RateLimited):
        await client.status(request_id)


async def test_a_submit_answered_429_or_5xx_is_retried_and_makes_one_job(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("rate_limit", endpoint="submit", reset_after=0.0)
    simulator.add_fault("server_error", endpoint="submit", status=503)

    request_id = await client.submit("svd", svd_payload())

    assert [entry.status for entry in simulator.requests("submit")] == [429, 503, 200]
    assert list(simulator.jobs) == [request_id]


async def test_a_submit_whose_answer_is_lost_is_never_sent_again(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("disconnect", endpoint="submit")

    with pytest.raises(SubmitOutcomeUnknown, match="not sent again"):
        await client.submit("svd", svd_payload())

    assert len(simulator.requests("submit")) == 1
    assert len(simulator.jobs) == 1  # Segmind did take it: a second POST would bill twice.


async def test_a_submit_answered_504_is_never_sent_again(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("accepted_504", endpoint="submit")

    with pytest.raises(SubmitOutcomeUnknown, match="HTTP 504"):
        await client.submit("svd", svd_payload())

    assert [entry.status for entry in simulator.requests("submit")] == [504]
    assert len(simulator.jobs) == 1  # the gateway timed out, but the job runs behind it


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_submit_refused_by_segmind_itself_is_sent_again(
    client: SegmindClient, simulator: Simulator, status: int
) -> None:
    simulator.add_fault("server_error", endpoint="submit", status=status)

    await client.submit("svd", svd_payload())

    assert [entry.status for entry in simulator.requests("submit")] == [status, 200]
    assert len(simulator.jobs) == 1


async def test_a_passing_404_on_a_running_job_is_checked_again_not_believed(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("not_found", endpoint="status", count=2)

    result = await client.wait(request_id, quick_schedule(0.3))

    assert result.video_url.endswith(".mp4")
    assert [e.status for e in simulator.requests("status")][:2] == [404, 404]


async def test_a_404_that_persists_is_the_end_of_the_request(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("not_found", endpoint="status", count=None)

    with pytest.raises(RequestExpired):
        await client.wait(request_id, quick_schedule(0.3))

    assert [e.status for e in simulator.requests("status")] == [404] * (NOT_FOUND_RECHECKS + 1)


async def test_a_404_for_a_request_older_than_the_retention_hour_is_final_at_once(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    simulator.add_fault("not_found", endpoint="status", count=None)
    long_ago = time.time() - RETENTION_SECONDS - 60  # picked up again after a long downtime

    with pytest.raises(RequestExpired):
        await client.wait(request_id, quick_schedule(0.3), submitted_at=long_ago)

    assert len(simulator.requests("status")) == 1


async def test_a_submit_that_times_out_is_never_sent_again(
    session: aiohttp.ClientSession, simulator: Simulator
) -> None:
    impatient = SegmindClient(
        session,
        API_KEY,
        base_url=simulator.url,
        retry=FAST_RETRY,
        timeout=aiohttp.ClientTimeout(total=0.3),
    )
    simulator.add_fault("slow", endpoint="submit", delay=1.0)

    with pytest.raises(SubmitOutcomeUnknown):
        await impatient.submit("svd", svd_payload())

    await asyncio.sleep(1.0)  # past the slow answer: a re-sent submit would have landed by now
    assert len(simulator.jobs) == 1


async def test_an_unreachable_segmind_is_retried_then_provider_error(
    session: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    budget = RequestBudget(FAST_RETRY.attempts)
    nowhere = SegmindClient(
        session,
        API_KEY,
        base_url=f"http://127.0.0.1:{unused_tcp_port}",
        budget=budget,
        retry=FAST_RETRY,
    )

    with pytest.raises(ProviderError) as trouble:
        await nowhere.submit("svd", svd_payload())
    assert not isinstance(trouble.value, SubmitOutcomeUnknown)  # nothing was ever sent
    assert budget.waiting_time() > 0  # every attempt was made: the budget is spent


# --- Waiting and downloading ---


async def test_a_status_outage_does_not_end_the_wait_for_a_running_job(
    client: SegmindClient, simulator: Simulator
) -> None:
    request_id = await client.submit("svd", svd_payload())
    # More failures in a row than one poll's retries: the poll gives up, the wait does not.
    simulator.add_fault("server_error", endpoint="status", count=FAST_RETRY.attempts + 2)
    simulator.add_fault("not_json", endpoint="result", count=FAST_RETRY.attempts)

    result = await client.wait(request_id, quick_schedule(0.3))

    assert result.request_id == request_id
    assert (
        sum(1 for e in simulator.requests("status") if e.status == 500) == FAST_RETRY.attempts + 2
    )


async def test_a_submit_answered_failed_is_a_job_failure_not_a_mystery(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.add_fault("server_error", endpoint="submit", status=413)

    with pytest.raises(BadRequest) as refusal:
        await client.submit("svd", svd_payload())
    assert refusal.value.status == 413


async def test_polling_gives_up_before_retention_runs_out(
    client: SegmindClient, simulator: Simulator
) -> None:
    simulator.speed = 100.0  # the job would take far longer than the schedule allows
    request_id = await client.submit("svd", svd_payload())
    schedule = PollSchedule.around(0.3, max_interval=0.1, min_interval=0.02, give_up_after=0.5)

    with pytest.raises(JobTimedOut):
        await client.wait(request_id, schedule)


async def test_a_video_over_the_cap_is_refused_and_leaves_no_file(
    client: SegmindClient, simulator: Simulator, tmp_path: Path
) -> None:
    simulator.add_fault("large_video", endpoint="submit", size=5 * 1024 * 1024)
    request_id = await client.submit("svd", svd_payload())
    result = await client.wait(request_id, quick_schedule(0.3))

    with pytest.raises(VideoTooLarge):
        await client.download(result.video_url, max_bytes=1024 * 1024, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_a_large_video_under_the_cap_streams_to_disk(
    client: SegmindClient, simulator: Simulator, tmp_path: Path
) -> None:
    simulator.add_fault("large_video", endpoint="submit", size=20 * 1024 * 1024)
    request_id = await client.submit("svd", svd_payload())
    result = await client.wait(request_id, quick_schedule(0.3))

    path = await client.download(result.video_url, max_bytes=64 * 1024 * 1024, directory=tmp_path)

    assert path.stat().st_size == 20 * 1024 * 1024
    assert path.read_bytes()[:64] == SAMPLE_VIDEO.read_bytes()[:64]


async def test_a_video_url_that_404s_is_download_failed(
    client: SegmindClient, simulator: Simulator, tmp_path: Path
) -> None:
    simulator.add_fault("video_404", endpoint="submit")
    request_id = await client.submit("svd", svd_payload())
    result = await client.wait(request_id, quick_schedule(0.3))

    with pytest.raises(VideoDownloadFailed, match="404"):
        await client.download(result.video_url, max_bytes=10**6, directory=tmp_path)


async def test_the_api_key_goes_to_the_api_only_and_never_into_logs(
    client: SegmindClient, simulator: Simulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    simulator.add_fault("server_error", endpoint="status", status=500)
    request_id = await client.submit("svd", svd_payload())
    result = await client.wait(request_id, quick_schedule(0.3))
    await client.download(result.video_url, max_bytes=10**6, directory=tmp_path)
    errors: list[SegmindError] = []
    simulator.add_fault("credits", endpoint="submit")
    try:
        await client.submit("svd", svd_payload())
    except SegmindError as error:
        errors.append(error)

    assert all(entry.sent_key for entry in simulator.log if entry.endpoint != "file")
    assert not any(entry.sent_key for entry in simulator.requests("file"))
    assert API_KEY not in caplog.text + "".join(f"{e}{e!r}{e.detail}" for e in errors)
