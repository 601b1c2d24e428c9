"""The SQLite store: jobs, quota settings and the credits each job holds.

One file, WAL mode, versioned migrations applied at start-up. Every write that a later step
depends on is committed before that step runs: a job is on disk before it is queued, its
`submitting` state before the POST, its request id right after, its video URL before delivery.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from bot.jobs import Job, JobState
from bot.models import CATALOGUE

# Each step moves the schema one version up; append, never edit a released step.
MIGRATIONS: tuple[str, ...] = (
    # 1: start-up facts (the command tree's hash)
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: jobs, with the credits each one holds
    """
    CREATE TABLE jobs (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        id                TEXT NOT NULL UNIQUE,
        guild_id          INTEGER NOT NULL,
        channel_id        INTEGER NOT NULL,
        member_id         INTEGER NOT NULL,
        model             TEXT NOT NULL,
        parameters        TEXT NOT NULL,
        state             TEXT NOT NULL,
        request_id        TEXT,
        video_url         TEXT,
        delivering_at     REAL,
        interaction_id    INTEGER,
        interaction_token TEXT,
        token_expires_at  REAL,
        status_message_id INTEGER,
        filesize_limit    INTEGER,
        credits           INTEGER NOT NULL DEFAULT 0,
        credit_state      TEXT NOT NULL DEFAULT 'reserved',
        created_at        REAL NOT NULL,
        submitted_at      REAL,
        finished_at       REAL,
        error             TEXT
    );
    CREATE INDEX jobs_by_state ON jobs (state);
    CREATE INDEX jobs_by_usage ON jobs (guild_id, member_id, created_at);
    """,
    # 3: quota settings per guild
    """
    CREATE TABLE guild_quota (
        guild_id     INTEGER PRIMARY KEY,
        period       TEXT NOT NULL DEFAULT 'day',
        member_limit INTEGER,
        guild_limit  INTEGER
    );
    CREATE TABLE member_quota (
        guild_id     INTEGER NOT NULL,
        member_id    INTEGER NOT NULL,
        credit_limit INTEGER,
        PRIMARY KEY (guild_id, member_id)
    );
    CREATE TABLE model_cost (
        guild_id INTEGER NOT NULL,
        model    TEXT NOT NULL,
        credits  INTEGER NOT NULL,
        PRIMARY KEY (guild_id, model)
    );
    -- Usage counts from the latest reset; member_id 0 is a reset of the whole guild.
    CREATE TABLE quota_reset (
        guild_id  INTEGER NOT NULL,
        member_id INTEGER NOT NULL,
        reset_at  REAL NOT NULL,
        PRIMARY KEY (guild_id, member_id)
    );
    """,
)

UNFINISHED = (JobState.QUEUED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.COMPLETED)
_JOB_COLUMNS = (
    "id", "guild_id", "channel_id", "member_id", "model", "parameters", "state", "request_id",
    "video_url", "delivering_at", "interaction_id", "interaction_token", "token_expires_at",
    "status_message_id",
    "filesize_limit", "credits", "created_at", "submitted_at", "finished_at", "error",
)  # fmt: skip
EVERYONE = 0


@dataclass(frozen=True)
class GuildQuota:
    period: str = "day"
    member_limit: int | None = None
    guild_limit: int | None = None


@dataclass(frozen=True)
class JobStats:
    by_model_and_state: dict[tuple[str, str], int]
    failure_reasons: list[tuple[str, int]]
    credits_spent: int
    average_seconds: dict[str, float]


@dataclass(frozen=True)
class Admission:
    """The limits a job's credits are checked against, and since when usage counts."""

    member_limit: int | None
    member_since: float
    guild_limit: int | None
    guild_since: float


class Store:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection

    @classmethod
    async def open(cls, path: Path, migrations: Iterable[str] = MIGRATIONS) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=FULL")
        await connection.execute("PRAGMA busy_timeout=5000")
        store = cls(connection)
        await store._migrate(tuple(migrations))
        return store

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        return int(await self._value("PRAGMA user_version") or 0)

    async def _migrate(self, migrations: tuple[str, ...]) -> None:
        current = await self.schema_version()
        for version, step in enumerate(migrations[current:], start=current + 1):
            # One transaction per step: a crash mid-upgrade leaves the previous version whole.
            await self._db.executescript(f"BEGIN; {step}; PRAGMA user_version = {version}; COMMIT;")

    # --- meta ---

    async def get_meta(self, key: str) -> str | None:
        return await self._value("SELECT value FROM meta WHERE key = ?", key)

    async def set_meta(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def check_writable(self) -> bool:
        """Write a heartbeat row: raises when the database cannot take a write."""
        await self.set_meta("heartbeat", str(time.time()))
        return True

    # --- jobs ---

    async def admit_job(self, job: Job, admission: Admission) -> bool:
        """Insert the job, holding `job.credits`, if both limits allow it, atomically.

        One INSERT ... SELECT ... WHERE statement checks the usage and reserves in the same
        step, so concurrent admissions can never overshoot a limit.
        """
        values = _job_values(job)
        placeholders = ", ".join(f":{column}" for column in _JOB_COLUMNS)
        cursor = await self._db.execute(
            f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) SELECT {placeholders}"
            " WHERE (:member_limit IS NULL OR :credits + (SELECT COALESCE(SUM(credits), 0)"
            "        FROM jobs WHERE guild_id = :guild_id AND member_id = :member_id"
            "        AND credit_state != 'refunded' AND created_at >= :member_since)"
            "        <= :member_limit)"
            " AND (:guild_limit IS NULL OR :credits + (SELECT COALESCE(SUM(credits), 0)"
            "        FROM jobs WHERE guild_id = :guild_id"
            "        AND credit_state != 'refunded' AND created_at >= :guild_since)"
            "        <= :guild_limit)",
            {**values, **admission.__dict__},
        )
        return cursor.rowcount == 1

    async def save_job(self, job: Job) -> None:
        """Write the job's progress (everything but who, what and the credits it holds)."""
        await self._db.execute(f"UPDATE jobs SET {_PROGRESS} WHERE id = :id", _progress(job))

    async def finish_job(self, job: Job) -> None:
        """Record the job's end and settle its credits: kept when delivered, else given back.

        One statement, so the end and the credits can never disagree after a crash.
        """
        settled = "spent" if job.state is JobState.DELIVERED else "refunded"
        await self._db.execute(
            f"UPDATE jobs SET {_PROGRESS}, credit_state = CASE credit_state"
            " WHEN 'reserved' THEN :settled ELSE credit_state END WHERE id = :id",
            {**_progress(job), "settled": settled},
        )

    async def discard_job(self, job_id: str) -> None:
        """Forget a job that was never queued; its reservation goes with it."""
        await self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    async def job(self, job_id: str) -> Job | None:
        rows = await self._jobs("WHERE id = ?", job_id)
        return rows[0] if rows else None

    async def unfinished_jobs(self) -> list[Job]:
        """Jobs a restart must pick up again, in the order they were made."""
        marks = ", ".join("?" for _ in UNFINISHED)
        return await self._jobs(f"WHERE state IN ({marks}) ORDER BY seq", *UNFINISHED)

    async def credit_states(self) -> dict[str, tuple[int, str]]:
        async with self._db.execute("SELECT id, credits, credit_state FROM jobs") as cursor:
            return {row[0]: (row[1], row[2]) for row in await cursor.fetchall()}

    async def _jobs(self, where: str, *arguments: Any) -> list[Job]:
        query = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs {where}"
        async with self._db.execute(query, arguments) as cursor:
            return [
                _job_from(dict(zip(_JOB_COLUMNS, row, strict=True)))
                for row in await cursor.fetchall()
            ]

    # --- what operators look at ---

    async def stats(self, since: float, guild_id: int | None = None) -> JobStats:
        """Jobs made since `since` (in one guild, or all): counts, failures, credits, times."""
        scope, arguments = "created_at >= ?", [since]
        if guild_id is not None:
            scope += " AND guild_id = ?"
            arguments.append(guild_id)
        by_state = await self._rows(
            f"SELECT model, state, COUNT(*) FROM jobs WHERE {scope} GROUP BY model, state",
            arguments,
        )
        failures = await self._rows(
            f"SELECT error, COUNT(*) AS n FROM jobs WHERE {scope} AND state = 'failed'"
            " GROUP BY error ORDER BY n DESC LIMIT 5",
            arguments,
        )
        spent = await self._value(
            f"SELECT COALESCE(SUM(credits), 0) FROM jobs WHERE {scope} AND credit_state = 'spent'",
            *arguments,
        )
        durations = await self._rows(
            f"SELECT model, AVG(finished_at - created_at) FROM jobs WHERE {scope}"
            " AND state = 'delivered' GROUP BY model",
            arguments,
        )
        return JobStats(
            by_model_and_state={(m, s): n for m, s, n in by_state},
            failure_reasons=[(reason or "unknown", n) for reason, n in failures],
            credits_spent=int(spent or 0),
            average_seconds={model: seconds for model, seconds in durations},
        )

    async def _rows(self, query: str, arguments: list[Any]) -> list[tuple[Any, ...]]:
        async with self._db.execute(query, arguments) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

    # --- quotas ---

    async def guild_quota(self, guild_id: int) -> GuildQuota:
        async with self._db.execute(
            "SELECT period, member_limit, guild_limit FROM guild_quota WHERE guild_id = ?",
            (guild_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return GuildQuota(*row) if row else GuildQuota()

    async def update_guild_quota(self, guild_id: int, **changes: Any) -> None:
        """Change some of a guild's quota settings; the others stay as they are."""
        columns = [name for name in ("period", "member_limit", "guild_limit") if name in changes]
        # Only the named columns are written, so two admins' changes never undo each other.
        await self._db.execute(
            f"INSERT INTO guild_quota (guild_id, {', '.join(columns)})"
            f" VALUES (:guild_id, {', '.join(':' + c for c in columns)})"
            f" ON CONFLICT (guild_id) DO UPDATE SET"
            f" {', '.join(f'{c} = excluded.{c}' for c in columns)}",
            {"guild_id": guild_id, **{c: changes[c] for c in columns}},
        )

    async def member_override(self, guild_id: int, member_id: int) -> tuple[bool, int | None]:
        """(whether the member has an override, its limit: None means no limit)."""
        async with self._db.execute(
            "SELECT credit_limit FROM member_quota WHERE guild_id = ? AND member_id = ?",
            (guild_id, member_id),
        ) as cursor:
            row = await cursor.fetchone()
        return (True, row[0]) if row else (False, None)

    async def set_member_override(self, guild_id: int, member_id: int, limit: int | None) -> None:
        await self._db.execute(
            "INSERT INTO member_quota (guild_id, member_id, credit_limit) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id, member_id) DO UPDATE SET credit_limit = excluded.credit_limit",
            (guild_id, member_id, limit),
        )

    async def model_cost(self, guild_id: int, slug: str) -> int:
        value = await self._value(
            "SELECT credits FROM model_cost WHERE guild_id = ? AND model = ?", guild_id, slug
        )
        return int(value) if value is not None else CATALOGUE[slug].default_cost

    async def set_model_cost(self, guild_id: int, slug: str, credits: int) -> None:
        await self._db.execute(
            "INSERT INTO model_cost (guild_id, model, credits) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id, model) DO UPDATE SET credits = excluded.credits",
            (guild_id, slug, credits),
        )

    async def reset_point(self, guild_id: int, member_id: int) -> float:
        """The latest reset that applies to this member (their own, or the whole guild's)."""
        value = await self._value(
            "SELECT MAX(reset_at) FROM quota_reset WHERE guild_id = ? AND member_id IN (?, ?)",
            guild_id, member_id, EVERYONE,
        )  # fmt: skip
        return float(value) if value is not None else 0.0

    async def reset_usage(self, guild_id: int, member_id: int, at: float) -> None:
        await self._db.execute(
            "INSERT INTO quota_reset (guild_id, member_id, reset_at) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id, member_id) DO UPDATE SET reset_at = excluded.reset_at",
            (guild_id, member_id, at),
        )

    async def usage(self, guild_id: int, since: float, member_id: int | None = None) -> int:
        query = (
            "SELECT COALESCE(SUM(credits), 0) FROM jobs WHERE guild_id = ?"
            " AND credit_state != 'refunded' AND created_at >= ?"
        )
        arguments: list[Any] = [guild_id, since]
        if member_id is not None:
            query += " AND member_id = ?"
            arguments.append(member_id)
        return int(await self._value(query, *arguments) or 0)

    async def top_spenders(
        self, guild_id: int, since: float, count: int = 5
    ) -> list[tuple[int, int]]:
        async with self._db.execute(
            "SELECT member_id, SUM(credits) AS used FROM jobs WHERE guild_id = ?"
            " AND credit_state != 'refunded' AND created_at >= ? GROUP BY member_id"
            " HAVING used > 0 ORDER BY used DESC, member_id LIMIT ?",
            (guild_id, since, count),
        ) as cursor:
            return [(row[0], row[1]) for row in await cursor.fetchall()]

    async def _value(self, query: str, *arguments: Any) -> Any:
        async with self._db.execute(query, arguments) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None


_PROGRESS = (
    "state = :state, request_id = :request_id, video_url = :video_url,"
    " delivering_at = :delivering_at,"
    " status_message_id = :status_message_id, interaction_token = :interaction_token,"
    " token_expires_at = :token_expires_at, submitted_at = :submitted_at,"
    " finished_at = :finished_at, error = :error"
)


def _progress(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state.value,
        "request_id": job.request_id,
        "video_url": job.video_url,
        "delivering_at": job.delivering_at,
        "status_message_id": job.status_message_id,
        "interaction_token": job.interaction_token,
        "token_expires_at": job.token_expires_at,
        "submitted_at": job.submitted_at,
        "finished_at": job.finished_at,
        "error": job.error,
    }


def _job_values(job: Job) -> dict[str, Any]:
    return {
        **_progress(job),
        "guild_id": job.guild_id,
        "channel_id": job.channel_id,
        "member_id": job.member_id,
        "model": job.model.slug,
        "parameters": json.dumps(job.parameters),
        "filesize_limit": job.filesize_limit,
        "interaction_id": job.interaction_id,
        "credits": job.credits,
        "created_at": job.created_at,
    }


def _job_from(row: dict[str, Any]) -> Job:
    row["model"] = CATALOGUE[row["model"]]
    row["parameters"] = json.loads(row["parameters"])
    row["state"] = JobState(row["state"])
    return Job(**row)
