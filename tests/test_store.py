"""The SQLite store: migrations upgrade in place, jobs survive a reopen."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from bot.jobs import Job, JobState
from bot.models import CATALOGUE
from bot.store import MIGRATIONS, Admission, Store

NO_LIMITS = Admission(member_limit=None, member_since=0, guild_limit=None, guild_since=0)


def a_job(**changes: object) -> Job:
    values: dict = {
        "guild_id": 1,
        "channel_id": 2,
        "member_id": 3,
        "model": CATALOGUE["grok-imagine-video"],
        "parameters": {"prompt": "waves", "duration": 6},
        "credits": 1,
        **changes,
    }
    return Job(**values)


async def test_a_first_version_database_upgrades_in_place_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = await Store.open(path, MIGRATIONS[:1])
    await old.set_meta("command_tree_hash", "abc123")
    await old.close()

    store = await Store.open(path)

    assert await store.schema_version() == len(MIGRATIONS)
    assert await store.get_meta("command_tree_hash") == "abc123"
    job = a_job()
    assert await store.admit_job(job, NO_LIMITS)
    assert (await store.job(job.id)) is not None
    await store.close()


async def test_every_intermediate_version_upgrades_with_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    old = await Store.open(path, MIGRATIONS[:2])
    job = a_job(state=JobState.SUBMITTED, request_id="r-1", credits=2)
    assert await old.admit_job(job, NO_LIMITS)
    await old.close()

    store = await Store.open(path)
    [kept] = await store.unfinished_jobs()

    assert (kept.id, kept.state, kept.request_id, kept.credits) == (
        job.id,
        JobState.SUBMITTED,
        "r-1",
        2,
    )
    assert kept.parameters == {"prompt": "waves", "duration": 6}
    assert await store.guild_quota(1) is not None  # the newest tables exist
    await store.close()


async def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.db")
    await store.close()
    async with (
        aiosqlite.connect(tmp_path / "bot.db") as db,
        db.execute("PRAGMA journal_mode") as cur,
    ):
        assert (await cur.fetchone())[0] == "wal"


async def test_progress_and_the_end_are_kept_and_credits_settle_once(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.db")
    job = a_job()
    await store.admit_job(job, NO_LIMITS)
    job.state, job.request_id, job.status_message_id = JobState.SUBMITTED, "r-9", 55
    await store.save_job(job)
    job.state = JobState.FAILED
    await store.finish_job(job)
    job.state = JobState.DELIVERED  # a second, contradictory ending must not re-settle
    await store.finish_job(job)
    await store.close()

    reopened = await Store.open(tmp_path / "bot.db")
    stored = await reopened.job(job.id)
    assert stored is not None and (stored.request_id, stored.status_message_id) == ("r-9", 55)
    assert (await reopened.credit_states())[job.id] == (1, "refunded")
    assert await reopened.unfinished_jobs() == []
    await reopened.close()
