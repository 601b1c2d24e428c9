"""Tidying up behind finished jobs: old rows, spent tokens, leftover temporary videos."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from bot.images import ImageKeeper
from bot.store import Store

log = logging.getLogger(__name__)

DAY = 24 * 3600.0
# Quota periods are at most a month: ledger rows younger than this may still be counted.
LONGEST_PERIOD = 32 * DAY
# Durations drift; a month of runs is plenty to learn from, and recent ones weigh most.
DURATIONS_KEPT = 30 * DAY


class Housekeeper:
    def __init__(
        self,
        store: Store,
        *,
        retention_days: float,
        downloads: Path,
        images: ImageKeeper | None = None,
        interval: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.retention = retention_days * DAY
        self.downloads = downloads
        self.images = images
        self.interval = interval
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def sweep_downloads(self) -> int:
        """Delete videos a previous run was downloading or posting when it stopped.

        The folder is this bot's own (one bot per database), so nothing in it is in use yet.
        """
        self.downloads.mkdir(parents=True, exist_ok=True)
        swept = 0
        for leftover in self.downloads.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
                swept += 1
        if swept:
            log.info("removed %d leftover temporary video file(s)", swept)
        return swept

    async def tidy(self) -> int:
        """One round: prune old finished jobs and forget the tokens of ended ones."""
        now = self.clock()
        pruned = await self.store.prune(
            finished_before=now - self.retention,
            ledger_before=now - max(self.retention, LONGEST_PERIOD),
        )
        await self.store.forget_tokens_of_ended_jobs()
        await self.store.prune_durations(before=now - DURATIONS_KEPT)
        if self.images is not None:
            used = await self.store.kept_images()  # read first: a file is never removed early
            await asyncio.to_thread(self.images.forget_unused, used)
        if pruned:
            log.info("pruned %d job(s) finished over %.0f days ago", pruned, self.retention / DAY)
        return pruned

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.tidy()
            except Exception:
                log.exception("housekeeping failed; trying again later")
            await asyncio.sleep(self.interval)
