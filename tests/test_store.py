"""The store, on SQLite and on PostgreSQL: migrations upgrade in place, the ledger's sums,
pruning, privacy; and what only SQLite has (its file, its query plans)."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import aiosqlite
import pytest

from bot.jobs.housekeeping import DAY, Housekeeper
from bot.jobs.job import Job, JobState
from bot.jobs.life import AdmissionRefused, Event, Lifecycle, Limits
from bot.store import MIGRATIONS, Store
from tests.conftest import OpenStore

# The version before the job life: credits were a column of the job.
BEFORE_THE_LEDGER = 3


def a_job(**changes: object) -> Job:
    values: dict = {
        "guild_id": 1,
        "channel_id": 2,
        "member_id": 3,
        "slug": "grok-imagine-video",
        "parameters": {"prompt": "waves", "duration": 6},
        "credits": 1,
        **changes,
    }
    return Job(**values)


async def old_job(db: aiosqlite.Connection, job_id: str, state: str, credit_state: str) -> None:
    await db.execute(
        "INSERT INTO jobs (id, guild_id, channel_id, member_id, model, parameters, state,"
        " request_id, credits, credit_state, created_at, delivering_at, video_url)"
        " VALUES (?, 1, 2, 3, 'grok-imagine-video', ?, ?, 'r-1', 2, ?, ?, ?, ?)",
        (job_id, json.dumps({"prompt": "waves"}), state, credit_state, time.time(),
         time.time() if state == "completed" else None, "https://files.example.test/v.mp4"),
    )  # fmt: skip


async def test_discord_ids_past_32_bits_and_fractions_of_seconds_come_back_as_stored(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    snowflake = 1_234_567_890_123_456_789
    made = (await Lifecycle(store).admit(
        a_job(guild_id=snowflake, channel_id=snowflake + 1, member_id=snowflake + 2),
        Limits(),
    )).job  # fmt: skip

    [found] = await store.jobs_in_progress(snowflake, snowflake + 2)
    assert (found.id, found.guild_id, found.channel_id) == (made.id, snowflake, snowflake + 1)
    assert found.created_at == made.created_at
    assert await store.usage(snowflake, 0.0) == 1


async def test_two_processes_admitting_at_once_never_pass_a_members_limit(
    open_store: OpenStore,
) -> None:
    """Each store is one process's: the check and the insert of an admission are one turn."""
    first, second = await open_store(), await open_store()
    limits = Limits(member_pending_max=3)

    async def admit(store: Store) -> bool:
        try:
            await Lifecycle(store).admit(a_job(), limits)
        except AdmissionRefused:
            return False
        return True

    admitted = await asyncio.gather(*(admit(store) for store in (first, second) * 4))

    assert sum(admitted) == 3
    assert len(await first.jobs_in_progress(1, 3)) == 3


async def settle_messages(store: Store, job_id: str) -> None:
    """What the sender does once it has sent a job's messages."""
    for message in await store.pending_messages(job_id):
        await store.settle_message(message.seq, "sent", time.time())


async def test_a_first_version_database_upgrades_in_place_with_its_data(
    open_store: OpenStore,
) -> None:
    old = await open_store(MIGRATIONS[:1])
    await old.set_meta("command_tree_hash", "abc123")
    await old.close()

    store = await open_store()

    assert await store.schema_version() == len(MIGRATIONS)
    assert await store.get_meta("command_tree_hash") == "abc123"
    job = (await Lifecycle(store).admit(a_job(), Limits())).job
    assert (await store.job(job.id)) is not None
    await store.close()


async def test_jobs_of_the_version_before_the_ledger_keep_their_credits_and_messages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v3.db"
    old = await Store.open(path, MIGRATIONS[:BEFORE_THE_LEDGER])
    await old.close()
    async with aiosqlite.connect(path) as db:
        await old_job(db, "aa01", "submitted", "reserved")
        await old_job(db, "aa02", "delivered", "spent")
        await old_job(db, "aa03", "failed", "refunded")
        await old_job(db, "aa04", "completed", "reserved")  # finished, being posted
        await db.commit()

    store = await Store.open(path)

    [running, posting] = await store.unfinished_jobs()
    assert (running.id, running.state, running.request_id) == ("aa01", JobState.SUBMITTED, "r-1")
    assert posting.state is JobState.COMPLETED
    [video] = await store.pending_messages("aa04")
    assert video.started_at is not None  # it may have been posted already: look first
    assert await store.credit_states() == {
        "aa01": (2, "reserved"), "aa02": (2, "captured"),
        "aa03": (2, "released"), "aa04": (2, "reserved"),
    }  # fmt: skip
    totals = await store.ledger_totals()
    assert (totals.reserved, totals.captured, totals.released, totals.held) == (8, 2, 2, 4)
    await store.close()


async def test_the_database_is_in_wal_mode_and_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "bot.db")
    await Lifecycle(store).admit(a_job(), Limits())  # the WAL and shared memory exist now
    for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    await store.close()
    async with (
        aiosqlite.connect(tmp_path / "bot.db") as db,
        db.execute("PRAGMA journal_mode") as cur,
    ):
        assert (await cur.fetchone())[0] == "wal"


async def test_period_sums_are_served_by_an_index(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.db")
    member = await store.explain(
        "SELECT SUM(credits) FROM ledger WHERE guild_id = ? AND reserved_at >= ?"
        " AND member_id = ?", 1, 0, 3,
    )  # fmt: skip
    guild = await store.explain(
        "SELECT SUM(credits) FROM ledger WHERE guild_id = ? AND reserved_at >= ?", 1, 0
    )
    assert any("USING INDEX ledger_by_member" in step for step in member), member
    assert any("USING INDEX ledger_by_guild" in step for step in guild), guild
    await store.close()


@pytest.mark.parametrize(("retention_days", "pruned_ids"), [(90, {"old"}), (1, {"old", "new"})])
async def test_pruning_forgets_old_jobs_but_not_this_periods_spending(
    open_store: OpenStore, tmp_path: Path, retention_days: int, pruned_ids: set[str]
) -> None:
    store = await open_store()
    now = time.time()
    jobs = {}
    for name, days_ago in (("old", 200), ("new", 2)):
        then = now - days_ago * DAY
        life = Lifecycle(store, clock=lambda then=then: then)  # type: ignore[misc]
        jobs[name] = (await life.admit(a_job(created_at=then), Limits())).job
        await life.apply(jobs[name].id, Event.CANCEL_REQUESTED)
        await settle_messages(store, jobs[name].id)
    keeper = Housekeeper(store, retention_days=retention_days, downloads=tmp_path / "dl")
    usage_this_month = await store.usage(1, now - 10 * DAY)

    assert await keeper.tidy() == len(pruned_ids)

    for name, job in jobs.items():
        assert (await store.job(job.id) is None) == (name in pruned_ids), name
    assert await store.usage(1, now - 10 * DAY) == usage_this_month
    assert await store.ledger_entries(jobs["new"].id) != []  # young enough to count in a period
    assert await store.ledger_entries(jobs["old"].id) == []
    await store.close()


async def test_an_ended_job_that_owes_nothing_more_forgets_its_interaction_token(
    open_store: OpenStore,
) -> None:
    store = await open_store()
    life = Lifecycle(store)
    job = (await life.admit(a_job(interaction_token="tok-" + "x" * 40), Limits())).job
    await life.apply(job.id, Event.CANCEL_REQUESTED)

    await store.forget_tokens_of_ended_jobs()
    assert (await store.job(job.id)).interaction_token is not None  # type: ignore[union-attr]
    await settle_messages(store, job.id)  # its status message was still owed
    await store.forget_tokens_of_ended_jobs()
    assert (await store.job(job.id)).interaction_token is None  # type: ignore[union-attr]
    await store.close()


async def test_leftover_temporary_videos_are_swept_at_start_up(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.db")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "segmind-abc.mp4").write_bytes(b"half a video")
    keeper = Housekeeper(store, retention_days=90, downloads=downloads)

    assert keeper.sweep_downloads() == 1
    assert list(downloads.iterdir()) == []
    await store.close()


async def test_kept_images_are_private_shared_and_removed_with_their_last_job(
    tmp_path: Path,
) -> None:
    from bot.images import CheckedImage, ImageKeeper

    async def never(*_: object) -> bool:
        raise AssertionError("not asked in this test")

    clock = [time.time()]
    keeper = ImageKeeper(tmp_path / "images", link_works=never, upload=never,
                         clock=lambda: clock[0])  # fmt: skip
    png = CheckedImage("PNG", 2, 2)
    name = keeper.keep(b"one image", png)
    assert keeper.keep(b"one image", png) == name  # the same bytes, the same file
    other = keeper.keep(b"another image", png)
    assert stat.S_IMODE((tmp_path / "images" / name).stat().st_mode) == 0o600

    assert keeper.forget_unused({name}) == 0  # the unused one is too new to judge yet
    clock[0] += 2 * 3600
    assert keeper.forget_unused({name}) == 1
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [name]
    assert other != name
