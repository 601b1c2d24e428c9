"""The one sender: drains the outbox of messages owed to members, with retries and backoff.

Rows are written by the job's transitions (`bot.jobs.life`), so a message owed is never lost to
a crash or a Discord outage: the sender tries again later, and after a restart. A job's messages
go one at a time, in order, under that job's lock; a status message is rendered from the job's
state read *inside* the lock, so an edit that arrives late can never show an older state.

A video is posted exactly once: the row is marked started (committed) before each attempt, and
an attempt after a started one first looks for the video in the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import discord

from adapter.recipient import MessageGone, Recipient, permanent, send_video
from adapter.status import render_status
from adapter.views import cancel_view, custom_ids, regenerate_marker, regenerate_view
from bot.durations import DurationEstimate
from bot.failures import DeliveryRefused, describe_failure
from bot.formats import clock, fit, quoted
from bot.jobs.job import Job, JobState
from bot.jobs.life import Applied, Event, Lifecycle, Owed, TransitionRefused
from bot.models import VideoModel
from bot.segmind import SegmindError, VideoDownloadFailed, VideoTooLarge
from bot.store import Lease, OwedMessage, Store

log = logging.getLogger(__name__)

FetchVideo = Callable[[Job], Awaitable[Path]]
Place = Callable[[Job], "tuple[int, int] | None"]
Estimate = Callable[[VideoModel, Mapping[str, Any]], Awaitable[DurationEstimate]]


@dataclass(frozen=True)
class RetryPolicy:
    """How long each kind of message keeps being tried: capped exponential backoff."""

    base: float = 5.0
    cap: float = 600.0
    # A status is refreshed anyway; a notice or a video is what the member waits for.
    attempts: dict[Owed, int] | None = None

    def max_attempts(self, kind: Owed) -> int:
        # A video keeps being tried for about two hours (its link lasts days); a notice about
        # one; a status is shown afresh by the next refresh anyway.
        limits = self.attempts or {Owed.STATUS: 5, Owed.NOTICE: 14, Owed.VIDEO: 18}
        return limits[kind]

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class _TryLater(Exception):
    """This attempt failed in a way that may pass (Discord down, rate limited, a timeout)."""


class Sender:
    def __init__(
        self,
        client: discord.Client,
        life: Lifecycle,
        fetch_video: FetchVideo,
        place: Place,
        *,
        estimate: Estimate | None = None,
        status_interval: float = 5.0,
        retry: RetryPolicy | None = None,
        concurrency: int = 16,
        clock: Callable[[], float] = time.time,
        lease: Lease | None = None,
        carried: Callable[[int], bool] = lambda guild_id: True,
    ) -> None:
        """`lease`: this process is one of a fleet, and takes each message it sends under it;
        `carried`: whether this process's shards carry a server (it refreshes their statuses)."""
        self.client = client
        self.life = life
        self.store: Store = life.store
        self.fetch_video = fetch_video
        self.place = place
        self.estimate = estimate
        self.status_interval = status_interval
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.lease = lease
        self.carried = carried
        # Other processes of a fleet owe messages too: the store is looked at this often.
        self._longest_wait = 60.0 if lease is None else 1.0
        self._started_at = clock()
        self._slots = asyncio.Semaphore(concurrency)
        self._locks: dict[str, asyncio.Lock] = {}
        self._handling: set[str] = set()
        self._cooling: dict[str, float] = {}  # job id -> not before
        self._shown: dict[str, str] = {}  # job id -> the status text last shown
        self._reposted: set[str] = set()
        self._recipients: dict[str, Recipient] = {}
        self._wake = asyncio.Event()
        self._alert_wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        life.subscribe(self._on_transition)

    # --- lifecycle ---

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._drain(), name="outbox-sender"),
            asyncio.create_task(self._refresh(), name="status-refresher"),
            asyncio.create_task(self._alerts(), name="alert-sender"),
        ]

    async def stop(self) -> None:
        tasks = [*self._loops, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _on_transition(self, applied: Applied) -> None:
        if applied.transition.owed:
            self._wake.set()
        if applied.alerts:
            self._alert_wake.set()

    # --- credit alerts, to servers' alerts channels (bot.alerts) ---

    async def _alerts(self) -> None:
        while True:
            self._alert_wake.clear()
            try:
                due = await self.store.due_alerts(self.clock(), self.lease)
                for seq, channel_id, text, attempts in due:
                    await self._post_alert(seq, channel_id, text, attempts)
                next_at = await self.store.next_alert_at(self.lease)
                wait = self._wait_until(next_at)
            except Exception:  # the database hiccuped: the rows are still there
                log.exception("the alert sender stumbled; trying again shortly")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._alert_wake.wait(), timeout=wait)

    async def _post_alert(self, seq: int, channel_id: int, text: str, attempts: int) -> None:
        channel = self.client.get_partial_messageable(channel_id)
        try:
            await channel.send(fit(text), allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as error:
            if permanent(error) or attempts + 1 >= self.retry.max_attempts(Owed.NOTICE):
                log.warning("credit alert to channel %s not sent: %s", channel_id, error)
                await self.store.settle_alert(seq, "undeliverable", self.clock())
            else:
                await self.store.retry_alert(seq, self.clock() + self.retry.delay(attempts))
            return
        except (OSError, TimeoutError, aiohttp.ClientError):
            await self.store.retry_alert(seq, self.clock() + self.retry.delay(attempts))
            return
        await self.store.settle_alert(seq, "sent", self.clock())

    # --- draining the outbox ---

    async def _drain(self) -> None:
        while True:
            # Cleared before looking: a wake-up that comes while we look is kept, not lost.
            self._wake.clear()
            try:
                await self._send_due()
                wait = await self._time_to_next()
            except Exception:  # the database hiccuped: the rows are still there
                log.exception("the outbox sender stumbled; trying again shortly")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _send_due(self) -> None:
        # A job whose earlier message is still on its way waits: a job's messages go in order.
        now = self.clock()
        self._cooling = {job: until for job, until in self._cooling.items() if until > now}
        for row in await self.store.due_messages(now, busy=self._busy(), lease=self.lease):
            self._handling.add(row.job_id)
            task = asyncio.create_task(self._handle(row), name=f"send-{row.job_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _time_to_next(self) -> float:
        next_due = await self.store.next_due_at(busy=self._busy(), lease=self.lease)
        if self._cooling:
            soonest = min(self._cooling.values())
            next_due = soonest if next_due is None else min(next_due, soonest)
        return self._wait_until(next_due)

    def _wait_until(self, due: float | None) -> float:
        if due is None:
            return self._longest_wait
        return min(self._longest_wait, max(0.01, due - self.clock()))

    async def _handle(self, row: OwedMessage) -> None:
        try:
            async with self._slots, self._lock(row.job_id):
                await self._attempt(row)
        except Exception:
            # Even the bookkeeping of a failure failed (the database, say): keep the job out of
            # the next rounds for a while rather than try it again at once, in a loop.
            log.exception("message %s of job %s could not be settled", row.kind, row.job_id)
            self._cooling[row.job_id] = self.clock() + self.retry.delay(row.attempts)
        finally:
            self._handling.discard(row.job_id)
            self._wake.set()  # the job's next message may be due

    async def _attempt(self, row: OwedMessage) -> None:
        try:
            if row.kind is Owed.STATUS:
                await self._status_row(row)
            elif row.kind is Owed.NOTICE:
                await self._notice_row(row)
            else:
                await self._video_row(row)
        except (_TryLater, discord.HTTPException, OSError, TimeoutError) as trouble:
            await self._try_later(row, trouble)
        except Exception:
            log.exception("message %s of job %s broke", row.kind, row.job_id)
            await self._try_later(row, None)
        else:
            await self.store.forget_tokens_of_ended_jobs(row.job_id)

    async def _try_later(self, row: OwedMessage, trouble: BaseException | None) -> None:
        attempt = row.attempts + 1
        if attempt >= self.retry.max_attempts(row.kind):
            await self._give_up(row, trouble)
            return
        delay = self.retry.delay(row.attempts)
        log.info("message %s of job %s failed (attempt %d): %s; again in %.0f s",
                 row.kind, row.job_id, attempt, trouble, delay)  # fmt: skip
        await self.store.retry_message(
            row.seq, self.clock() + delay, restart=row.kind is Owed.STATUS
        )

    async def _give_up(self, row: OwedMessage, trouble: BaseException | None) -> None:
        log.warning("message %s of job %s abandoned after %d attempts: %s",
                    row.kind, row.job_id, row.attempts + 1, trouble)  # fmt: skip
        if row.kind is Owed.VIDEO:
            job = await self.store.job(row.job_id)
            if job is not None and job.state is JobState.COMPLETED:
                await self._deliver_link(job, row, DeliveryRefused("Discord kept failing"))
                return
        await self.store.settle_message(row.seq, "abandoned", self.clock())

    def _busy(self) -> set[str]:
        return self._handling | set(self._cooling)

    def _lock(self, job_id: str) -> asyncio.Lock:
        lock = self._locks.get(job_id)
        if lock is None:
            lock = self._locks[job_id] = asyncio.Lock()
        return lock

    # --- status messages ---

    async def _status_row(self, row: OwedMessage) -> None:
        # Marked first: a transition from now on owes a row of its own, rendered after this.
        await self.store.start_message(row.seq, self.clock())
        job = await self.store.job(row.job_id)
        if job is not None:
            await self._show_status(job)
        await self.store.settle_message(row.seq, "sent", self.clock())

    async def _refresh(self) -> None:
        """Keep the clocks of running jobs' status messages moving, within the edit rate."""
        while True:
            await asyncio.sleep(self.status_interval)
            try:
                jobs = await self.store.unfinished_jobs()
            except Exception:
                log.exception("cannot read the jobs to refresh")
                continue
            for job in jobs:
                if not job.in_progress or job.id in self._handling:
                    continue
                if not self.carried(job.guild_id):
                    continue  # another process of the fleet shows it
                try:
                    async with self._lock(job.id):
                        fresh = await self.store.job(job.id)  # as it is now, not as listed
                        if fresh is not None and fresh.in_progress:
                            await self._show_status(fresh, only_if_changed=True)
                except Exception as error:  # one bad message must not freeze every status
                    log.info("status of job %s not refreshed: %s", job.id, error)

    async def _show_status(self, job: Job, *, only_if_changed: bool = False) -> None:
        estimate = None
        if self.estimate is not None and job.model is not None and job.processing_at:
            estimate = await self.estimate(job.model, job.parameters)
        shown = render_status(job, self.place(job), self.clock(), estimate)
        if only_if_changed and shown.text == self._shown.get(job.id):
            return
        recipient = self._recipient(job)
        view = cancel_view(job.id) if shown.cancellable else None
        message_id = job.status_message_id
        if shown.text is None:
            if message_id is not None:
                await recipient.delete(message_id)
            self._forget(job.id)
            return
        if message_id is None:
            if not job.ended:  # nothing was ever posted; an ended job needs no status now
                await self._post_status(job, recipient, shown.text, view)
            return
        if self._repost_wanted(job, recipient):
            self._reposted.add(job.id)
            await self._post_status(job, recipient, shown.text, view)
            await recipient.delete(message_id)
            return
        try:
            await recipient.edit(message_id, shown.text, view=view)
        except MessageGone:
            if job.ended:
                self._forget(job.id)
                return
            # Deleted by someone: a fresh one, through the interaction while it lives.
            await self._post_status(job, recipient, shown.text, view)
            return
        self._shown[job.id] = shown.text
        if job.ended:
            self._forget(job.id)

    def _repost_wanted(self, job: Job, recipient: Recipient) -> bool:
        """A job of a previous run whose interaction is over: its status message is far up
        the channel by now, so it is posted afresh (once), below, and the old one removed."""
        return (
            not job.ended
            and job.created_at < self._started_at
            and not recipient.token_alive()
            and job.id not in self._reposted
        )

    async def _post_status(
        self, job: Job, recipient: Recipient, text: str, view: discord.ui.View | None
    ) -> None:
        message = await recipient.send(text, view=view)
        await self.store.set_status_message(job.id, message.id)
        self._shown[job.id] = text

    def _forget(self, job_id: str) -> None:
        self._shown.pop(job_id, None)
        self._recipients.pop(job_id, None)
        self._locks.pop(job_id, None)

    # --- notices ---

    async def _notice_row(self, row: OwedMessage) -> None:
        job = await self.store.job(row.job_id)
        if job is not None:
            text = f"Your **/{job.command}** video (`{job.id}`) did not finish. {job.error or ''}"
            try:
                await self._recipient(job).send(fit(text.strip()), private=True)
            except discord.HTTPException as error:
                if permanent(error):  # the channel is closed to the bot: nowhere to say it
                    await self.store.settle_message(row.seq, "refused", self.clock())
                    return
                raise
        await self.store.settle_message(row.seq, "sent", self.clock())

    # --- videos ---

    async def _video_row(self, row: OwedMessage) -> None:
        job = await self.store.job(row.job_id)
        if job is None or job.state is not JobState.COMPLETED:
            await self.store.settle_message(row.seq, "dropped", self.clock())
            return
        posted = None if row.started_at is None else await self._already_posted(job, row.started_at)
        if posted is not None:  # posted just before a crash
            await self._settle(job, row, Event.DELIVERED, video_message_id=posted)
            return
        await self.store.start_message(row.seq, self.clock())
        try:
            video = await self.fetch_video(job)
        except VideoTooLarge as error:
            await self._deliver_link(job, row, error)
            return
        except VideoDownloadFailed as error:
            if error.status is not None and 400 <= error.status < 500:
                await self._settle(job, row, Event.DELIVERY_FAILED, error)  # the file is gone
                return
            raise _TryLater(str(error)) from error  # the file host is having a bad moment
        except SegmindError as error:
            raise _TryLater(str(error)) from error
        try:
            message = await send_video(
                self._recipient(job),
                video,
                content=self._video_text(job),
                video_url=job.video_url or "",
                view=regenerate_view(job.id),
            )
        except DeliveryRefused as error:
            await self._deliver_link(job, row, error)
            return
        finally:
            video.unlink(missing_ok=True)
        await self._settle(job, row, Event.DELIVERED, video_message_id=message.id)

    def _video_text(self, job: Job) -> str:
        taken = self.clock() - job.created_at
        seed = f" · seed {job.seed}" if job.seed is not None else ""
        return f"🎬 **{job.title}**{seed} · took {clock(taken)}{quoted(job.prompt)}"

    async def _deliver_link(self, job: Job, row: OwedMessage, why: Exception) -> None:
        """The file cannot be posted: the link is the next best thing, privately if possible.

        A member who got a working link has the video, so it counts (and costs) as delivered.
        """
        link = f"Your **/{job.command}** video (`{job.id}`) is made, but {_why(why)}"
        link += f" It can be fetched for a few days here: {job.video_url}"
        try:
            await self._recipient(job).send(fit(link), private=True)
        except (discord.HTTPException, OSError, TimeoutError, aiohttp.ClientError) as error:
            log.warning("not even the link of job %s could be sent: %s", job.id, error)
            await self._settle(job, row, Event.DELIVERY_FAILED, DeliveryRefused(str(error)))
            return
        await self._settle(job, row, Event.DELIVERED_AS_LINK, why)

    async def _settle(
        self,
        job: Job,
        row: OwedMessage,
        event: Event,
        why: BaseException | None = None,
        **facts: Any,
    ) -> None:
        if why is not None:
            facts |= {"error": describe_failure(why), "failure": type(why).__name__}
        settled_as = "undeliverable" if event is Event.DELIVERY_FAILED else "sent"
        try:
            await self.life.apply(job.id, event, settles=row.seq, settled_as=settled_as, **facts)
        except TransitionRefused:  # the bot left the server meanwhile, say
            await self.store.settle_message(row.seq, "dropped", self.clock())

    async def _already_posted(self, job: Job, since: float) -> int | None:
        """The video's message if it is in the channel already (posted just before a crash)."""
        channel = self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        marker = regenerate_marker(job.id)
        me = self.client.user.id if self.client.user else self.client.application_id
        # A few minutes' slack: the host's clock and Discord's may disagree; the marker is unique.
        after = discord.Object(discord.utils.time_snowflake(_utc(since - 300)))
        try:
            # Newest first, back to the first attempt: however busy the channel was meanwhile.
            async for message in channel.history(limit=None, after=after, oldest_first=False):
                if message.author.id == me and marker in custom_ids(message):
                    return message.id
        except discord.HTTPException as error:
            if not permanent(error):
                raise _TryLater(f"the channel's history could not be read: {error}") from error
            # Never readable (no Read Message History): posting again risks a duplicate, not
            # posting would lose the video for good.
            log.warning("cannot read the history of channel %s: %s", job.channel_id, error)
        return None

    # --- reaching the member ---

    def _recipient(self, job: Job) -> Recipient:
        recipient = self._recipients.get(job.id)
        if recipient is None:
            recipient = self._recipients[job.id] = self._new_recipient(job)
        return recipient

    def _new_recipient(self, job: Job) -> Recipient:
        webhook = None
        if job.interaction_token and self.client.application_id:
            webhook = interaction_webhook(self.client, job.interaction_token)
        expires = _utc(job.token_expires_at) if job.token_expires_at else None

        async def token_refused() -> None:
            await self.store.forget_token(job.id)

        return Recipient(
            channel=self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id),
            member_id=job.member_id,
            webhook=webhook,
            token_expires_at=expires,
            filesize_limit=job.filesize_limit or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES,
            on_token_refused=token_refused,
        )


def interaction_webhook(client: discord.Client, token: str) -> discord.Webhook:
    """The followup webhook of an interaction, rebuilt from its token (it outlives a restart).

    This is how discord.py builds `Interaction.followup`; an application webhook may send
    ephemeral messages, a plain partial webhook may not.
    """
    data = {"id": client.application_id, "type": 3, "token": token}
    return discord.Webhook.from_state(data, client._connection)  # type: ignore[arg-type]


def _why(error: Exception) -> str:
    if isinstance(error, VideoTooLarge):
        return "it is larger than this bot is set to download."
    return "it could not be posted here."


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
