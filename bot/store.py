"""The store: jobs, the credit ledger, the outbox of messages owed, quota settings.

SQLite in one file by default, PostgreSQL for a fleet of processes (`bot.database` keeps what
differs between the two); versioned migrations applied at start-up. A job's state changes only
in `transaction()` blocks run by the job's life (`bot.jobs.life`), one at a time.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bot.alerts import OUT_TEXT, low_text
from bot.database import Database, Session, connect
from bot.durations import Run
from bot.jobs.job import ENDED, IN_PROGRESS, UNFINISHED, Job, JobState
from bot.jobs.life import AdmissionRefused, Credit, Limits, Owed, Refusal
from bot.server_rules import RuleKind, ServerRules

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
    # 4: the job life: a credit ledger, the outbox of messages owed, what each failure was
    """
    CREATE TABLE ledger (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id      TEXT NOT NULL,
        guild_id    INTEGER NOT NULL,
        member_id   INTEGER NOT NULL,
        entry       TEXT NOT NULL CHECK (entry IN ('reserve', 'capture', 'release')),
        credits     INTEGER NOT NULL,
        -- Credits count in the period the job was admitted in, whenever they settle.
        reserved_at REAL NOT NULL,
        at          REAL NOT NULL,
        UNIQUE (job_id, entry)
    );
    CREATE INDEX ledger_by_guild ON ledger (guild_id, reserved_at);
    CREATE INDEX ledger_by_member ON ledger (guild_id, member_id, reserved_at);
    INSERT INTO ledger (job_id, guild_id, member_id, entry, credits, reserved_at, at)
        SELECT id, guild_id, member_id, 'reserve', credits, created_at, created_at FROM jobs;
    INSERT INTO ledger (job_id, guild_id, member_id, entry, credits, reserved_at, at)
        SELECT id, guild_id, member_id,
               CASE credit_state WHEN 'spent' THEN 'capture' ELSE 'release' END,
               credits, created_at, COALESCE(finished_at, created_at)
        FROM jobs WHERE credit_state != 'reserved';
    CREATE TABLE outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id     TEXT NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('status', 'notice', 'video')),
        created_at REAL NOT NULL,
        due_at     REAL NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        -- A video post began: after a crash, the channel is looked at before posting again.
        started_at REAL,
        done_at    REAL,
        outcome    TEXT
    );
    CREATE INDEX outbox_pending ON outbox (job_id, seq) WHERE done_at IS NULL;
    CREATE INDEX outbox_due ON outbox (due_at) WHERE done_at IS NULL;
    CREATE INDEX outbox_done ON outbox (done_at) WHERE done_at IS NOT NULL;
    -- A job finished but not yet posted by the previous version still owes its video.
    INSERT INTO outbox (job_id, kind, created_at, due_at, started_at)
        SELECT id, 'video', created_at, created_at, delivering_at FROM jobs
        WHERE state = 'completed';
    ALTER TABLE jobs ADD COLUMN provider_state TEXT;
    ALTER TABLE jobs ADD COLUMN failure TEXT;
    ALTER TABLE jobs DROP COLUMN credit_state;
    ALTER TABLE jobs DROP COLUMN delivering_at;
    CREATE INDEX jobs_in_guild ON jobs (guild_id, state, member_id);
    CREATE INDEX jobs_by_finish ON jobs (finished_at) WHERE finished_at IS NOT NULL;
    """,
    # 5: the request budget's recent sends, so a restart continues the same window
    """
    CREATE TABLE budget_sends (at REAL NOT NULL);
    CREATE INDEX budget_sends_by_time ON budget_sends (at);
    CREATE INDEX ledger_by_time ON ledger (entry, at);
    """,
    # 6: input images kept beside the database, for links that stop working
    """
    ALTER TABLE jobs ADD COLUMN image_file TEXT;
    ALTER TABLE jobs ADD COLUMN image_taken_at REAL;
    """,
    # 7: how long finished runs took, per model and parameter bucket (learned durations)
    """
    ALTER TABLE jobs ADD COLUMN processing_at REAL;
    CREATE TABLE durations (
        model       TEXT NOT NULL,
        bucket      TEXT NOT NULL,
        -- Seconds QUEUED at the provider (NULL: never seen queued apart), then PROCESSING.
        queued      REAL,
        processing  REAL NOT NULL,
        finished_at REAL NOT NULL
    );
    CREATE INDEX durations_by_bucket ON durations (model, bucket, finished_at);
    """,
    # 8: each run's work relative to the model's defaults, so that buckets learn from each other
    """
    ALTER TABLE durations ADD COLUMN work REAL NOT NULL DEFAULT 1.0;
    """,
    # 9: where each video was posted, so /jobs can link a member's finished videos
    """
    ALTER TABLE jobs ADD COLUMN video_message_id INTEGER;
    CREATE INDEX jobs_delivered ON jobs (guild_id, member_id, finished_at)
        WHERE state = 'delivered';
    """,
    # 10: each server's rules for video commands (/settings): channels, roles, models
    """
    CREATE TABLE server_rules (
        guild_id INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        value    TEXT NOT NULL,
        PRIMARY KEY (guild_id, kind, value)
    );
    """,
    # 11: each server's defaults for options members leave empty, and which a job used
    """
    CREATE TABLE server_defaults (
        guild_id INTEGER NOT NULL,
        model    TEXT NOT NULL,
        option   TEXT NOT NULL,
        value    TEXT NOT NULL,  -- JSON
        PRIMARY KEY (guild_id, model, option)
    );
    ALTER TABLE jobs ADD COLUMN defaults_used TEXT;
    """,
    # 12: credit alerts: each server's channel and threshold, and the alerts owed
    """
    CREATE TABLE server_alerts (
        guild_id   INTEGER PRIMARY KEY,
        channel_id INTEGER NOT NULL,
        below      REAL NOT NULL,
        low_told   INTEGER NOT NULL DEFAULT 0,  -- told of low credits since last above
        out_told   INTEGER NOT NULL DEFAULT 0   -- told of none left since last recovered
    );
    CREATE TABLE alert_outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        guild_id   INTEGER NOT NULL,
        channel_id INTEGER NOT NULL,
        text       TEXT NOT NULL,
        due_at     REAL NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        done_at    REAL,
        outcome    TEXT
    );
    CREATE INDEX alert_outbox_due ON alert_outbox (due_at) WHERE done_at IS NULL;
    """,
    # 13: the order each server's defaults were set in (PostgreSQL has no rowid)
    """
    ALTER TABLE server_defaults ADD COLUMN set_at REAL NOT NULL DEFAULT 0;
    """,
    # 14: a fleet of processes on one store: which process holds a job or a message, and
    # until when (bot.leases); the processes themselves; members' turns in each server's line
    """
    ALTER TABLE jobs ADD COLUMN runner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_until REAL;
    CREATE INDEX jobs_by_runner ON jobs (runner) WHERE runner IS NOT NULL;
    ALTER TABLE outbox ADD COLUMN runner TEXT;
    ALTER TABLE outbox ADD COLUMN lease_until REAL;
    ALTER TABLE alert_outbox ADD COLUMN runner TEXT;
    ALTER TABLE alert_outbox ADD COLUMN lease_until REAL;
    CREATE TABLE processes (
        id           TEXT PRIMARY KEY,
        shard_count  INTEGER,            -- NULL: the process runs every shard there is
        shards       TEXT,               -- JSON list of its shard ids; NULL: all of them
        started_at   REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    CREATE TABLE member_turns (
        guild_id  INTEGER NOT NULL,
        member_id INTEGER NOT NULL,
        served    INTEGER NOT NULL,      -- the server's turn counter when the member last went
        PRIMARY KEY (guild_id, member_id)
    );
    """,
)

_JOB_COLUMNS = (
    "id", "guild_id", "channel_id", "member_id", "model", "parameters", "state",
    "provider_state", "request_id", "video_url", "credits", "created_at", "submitted_at",
    "processing_at", "finished_at", "error", "failure", "interaction_id", "interaction_token",
    "token_expires_at", "status_message_id", "filesize_limit", "image_file", "image_taken_at",
    "video_message_id", "defaults_used",
)  # fmt: skip
_UPDATABLE = frozenset(_JOB_COLUMNS) - {"id", "guild_id", "member_id", "model", "credits"}
# A job in these states is at Segmind, or on its way: it runs until it ends, wherever it runs.
STARTED = (
    JobState.SUBMITTING, JobState.SUBMITTED, JobState.CANCELLED_SENDING, JobState.CANCELLED_RUNNING,
)  # fmt: skip
EVERYONE = 0
RATE_LIMITED_UNTIL = "rate_limited_until"
# Sends older than this can no longer count in any window of the budget.
_BUDGET_MEMORY = 3600.0
# Usage this period: what was reserved and not given back.
_USED = "COALESCE(SUM(CASE entry WHEN 'reserve' THEN credits WHEN 'release' THEN -credits END), 0)"


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
    outcome_unknown: int


@dataclass(frozen=True)
class LedgerTotals:
    """reserved = captured + released + held, at any moment."""

    reserved: int
    captured: int
    released: int
    held: int


@dataclass(frozen=True)
class OwedMessage:
    """One row of the outbox: a message the bot owes a job's member."""

    seq: int
    job_id: str
    kind: Owed
    due_at: float
    attempts: int
    started_at: float | None


@dataclass(frozen=True)
class ProcessRecord:
    """One process of a fleet, as it last reported itself."""

    id: str
    shard_count: int | None  # None: it runs every shard there is
    shards: tuple[int, ...] | None  # None: all of them
    started_at: float
    heartbeat_at: float
    jobs_held: int = 0


@dataclass(frozen=True)
class Lease:
    """A process's hold on rows that any process of a fleet could take (`bot.jobs.fleet`):
    taken rows are its own until `seconds` after it last renewed them."""

    runner: str
    seconds: float

    def free(self, table: str) -> str:
        """Rows this process may take: nobody's, its own, or those whose holder went quiet."""
        return f" AND ({table}.runner IS NULL OR {table}.runner = ? OR {table}.lease_until < ?)"

    def free_arguments(self, now: float) -> list[Any]:
        return [self.runner, now]


class Store:
    def __init__(self, database: Database) -> None:
        self.database = database

    @classmethod
    async def open(
        cls, path: Path, migrations: Iterable[str] = MIGRATIONS, *, url: str | None = None
    ) -> Store:
        """The SQLite file at `path`, or the PostgreSQL database at `url` when one is given."""
        database = await connect(url, path)
        await database.migrate(tuple(migrations))
        return cls(database)

    @property
    def shared(self) -> bool:
        """Whether other processes may use this store too (PostgreSQL)."""
        return self.database.dialect != "sqlite"

    async def close(self) -> None:
        await self.database.close()

    async def schema_version(self) -> int:
        return await self.database.schema_version()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One atomic unit of writes: all of them are committed, or none."""
        async with self.database.transaction() as session:
            yield Transaction(session)

    # --- meta ---

    async def get_meta(self, key: str) -> str | None:
        return await self._value("SELECT value FROM meta WHERE key = ?", key)

    async def set_meta(self, key: str, value: str) -> None:
        await self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key, value,
        )  # fmt: skip

    async def check_writable(self) -> bool:
        """Write a heartbeat row: raises when the database cannot take a write."""
        await self.set_meta("heartbeat", str(time.time()))
        return True

    # --- jobs (read; states change only in transactions) ---

    async def job(self, job_id: str) -> Job | None:
        rows = await self._jobs("WHERE id = ?", job_id)
        return rows[0] if rows else None

    async def unfinished_jobs(self, guild_id: int | None = None) -> list[Job]:
        """Jobs that are not over, in the order they were made."""
        where = f"WHERE state IN ({_marks(UNFINISHED)})"
        arguments: list[Any] = [*UNFINISHED]
        if guild_id is not None:
            where += " AND guild_id = ?"
            arguments.append(guild_id)
        return await self._jobs(where + " ORDER BY seq", *arguments)

    async def jobs_in_progress(self, guild_id: int, member_id: int) -> list[Job]:
        return await self._jobs(
            f"WHERE guild_id = ? AND member_id = ? AND state IN ({_marks(IN_PROGRESS)})"
            " ORDER BY seq",
            guild_id, member_id, *IN_PROGRESS,
        )  # fmt: skip

    async def server_rules(self, guild_id: int) -> ServerRules:
        rows = await self._rows(
            "SELECT kind, value FROM server_rules WHERE guild_id = ?", [guild_id]
        )
        return ServerRules.from_rows((row[0], row[1]) for row in rows)

    async def add_rule(self, guild_id: int, kind: RuleKind, value: str | int) -> bool:
        """False when the server already had it."""
        return bool(await self._write(
            "INSERT INTO server_rules (guild_id, kind, value) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            guild_id, kind.value, str(value),
        ))  # fmt: skip

    async def remove_rule(self, guild_id: int, kind: RuleKind, value: str | int) -> bool:
        """False when the server did not have it."""
        return bool(await self._write(
            "DELETE FROM server_rules WHERE guild_id = ? AND kind = ? AND value = ?",
            guild_id, kind.value, str(value),
        ))  # fmt: skip

    async def clear_rules(self, guild_id: int, kind: RuleKind) -> int:
        return await self._write(
            "DELETE FROM server_rules WHERE guild_id = ? AND kind = ?", guild_id, kind.value
        )

    async def server_defaults(self, guild_id: int) -> dict[str, dict[str, Any]]:
        """Per model, the options this server gives a default, as set (oldest first)."""
        rows = await self._rows(
            "SELECT model, option, value FROM server_defaults WHERE guild_id = ?"
            " ORDER BY set_at, option",
            [guild_id],
        )
        defaults: dict[str, dict[str, Any]] = {}
        for model, option, value in rows:
            defaults.setdefault(model, {})[option] = json.loads(value)
        return defaults

    async def set_server_default(self, guild_id: int, model: str, option: str, value: Any) -> None:
        await self._write(
            "INSERT INTO server_defaults (guild_id, model, option, value, set_at)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (guild_id, model, option) DO UPDATE SET value = excluded.value",
            guild_id, model, option, json.dumps(value), time.time(),
        )  # fmt: skip

    async def clear_server_defaults(self, guild_id: int, model: str, option: str | None) -> int:
        """One option's default, or (None) all of the model's; how many there were."""
        if option is None:
            return await self._write(
                "DELETE FROM server_defaults WHERE guild_id = ? AND model = ?", guild_id, model
            )
        return await self._write(
            "DELETE FROM server_defaults WHERE guild_id = ? AND model = ? AND option = ?",
            guild_id, model, option,
        )  # fmt: skip

    async def set_alerts(self, guild_id: int, channel_id: int | None, below: float) -> None:
        """Alerts to this channel below this many credits (None: no alerts for this server)."""
        if channel_id is None:
            await self._write("DELETE FROM server_alerts WHERE guild_id = ?", guild_id)
            return
        await self._write(
            "INSERT INTO server_alerts (guild_id, channel_id, below) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id) DO UPDATE SET channel_id = excluded.channel_id,"
            " below = excluded.below, low_told = 0",
            guild_id, channel_id, below,
        )  # fmt: skip

    async def alerts_of(self, guild_id: int) -> tuple[int, float] | None:
        rows = await self._rows(
            "SELECT channel_id, below FROM server_alerts WHERE guild_id = ?", [guild_id]
        )
        return (int(rows[0][0]), float(rows[0][1])) if rows else None

    async def due_alerts(
        self, now: float, lease: Lease | None = None
    ) -> list[tuple[int, int, str, int]]:
        """(seq, channel, text, attempts) of the alerts due now; with a `lease`, those no
        other process holds, taken for this one."""
        query = (
            "SELECT seq, channel_id, text, attempts FROM alert_outbox"
            " WHERE done_at IS NULL AND due_at <= ?"
        )
        if lease is None:
            rows = await self._rows(query + " ORDER BY seq", [now])
        else:
            async with self.database.transaction() as session:
                rows = await session.rows(
                    query + lease.free("alert_outbox") + " ORDER BY seq /*SKIP LOCKED*/",
                    [now, *lease.free_arguments(now)],
                )
                await _hold(session, "alert_outbox", [row[0] for row in rows], lease, now)
        return [(int(r[0]), int(r[1]), str(r[2]), int(r[3])) for r in rows]

    async def next_alert_at(self, lease: Lease | None = None) -> float | None:
        if lease is None:
            return await self._value(
                "SELECT MIN(due_at) FROM alert_outbox WHERE done_at IS NULL"
            )
        return await self._value(
            "SELECT MIN(due_at) FROM alert_outbox WHERE done_at IS NULL"
            + lease.free("alert_outbox"),
            *lease.free_arguments(time.time()),
        )

    async def settle_alert(self, seq: int, outcome: str, at: float) -> None:
        await self._write(
            "UPDATE alert_outbox SET done_at = ?, outcome = ? WHERE seq = ?", at, outcome, seq
        )

    async def retry_alert(self, seq: int, due_at: float) -> None:
        await self._write(
            "UPDATE alert_outbox SET due_at = ?, attempts = attempts + 1 WHERE seq = ?",
            due_at, seq,
        )  # fmt: skip

    async def finished_videos(self, guild_id: int, member_id: int, limit: int) -> list[Job]:
        """The member's latest delivered videos in this server, newest first."""
        return await self._jobs(
            "WHERE guild_id = ? AND member_id = ? AND state = 'delivered'"
            " ORDER BY finished_at DESC LIMIT ?",
            guild_id, member_id, limit,
        )  # fmt: skip

    async def room(self, guild_id: int, member_id: int) -> tuple[int, int]:
        """(the member's jobs in progress here, jobs waiting in this server's queue)."""
        async with self.database.session() as session:
            return await _room(session, guild_id, member_id)

    async def set_status_message(self, job_id: str, message_id: int | None) -> None:
        """Where the job's status message is: bookkeeping of messages, not the job's state."""
        await self._write("UPDATE jobs SET status_message_id = ? WHERE id = ?", message_id, job_id)

    async def forget_token(self, job_id: str) -> None:
        """Discord refused the interaction token for good: stop keeping it."""
        await self._write(
            "UPDATE jobs SET interaction_token = NULL, token_expires_at = NULL WHERE id = ?",
            job_id,
        )

    async def forget_tokens_of_ended_jobs(self, job_id: str | None = None) -> int:
        """Interaction tokens are kept only while a job may still need to reach its member:
        an ended job that owes no more messages loses its own (of one job, or all)."""
        only = " AND id = ?" if job_id is not None else ""
        return await self._write(
            "UPDATE jobs SET interaction_token = NULL WHERE interaction_token IS NOT NULL"
            f" AND state IN ({_marks(ENDED)}) AND NOT EXISTS (SELECT 1 FROM outbox"
            f" WHERE outbox.job_id = jobs.id AND done_at IS NULL){only}",
            *ENDED, *([job_id] if job_id is not None else []),
        )  # fmt: skip

    async def prune(self, finished_before: float, ledger_before: float) -> int:
        """Forget ended jobs (and their settled messages) finished before `finished_before`.

        Ledger rows stay until `ledger_before`, which the caller keeps earlier than the start
        of any period still counted, so this period's totals never change.
        """
        async with self.database.transaction() as session:
            pruned = await session.execute(
                f"DELETE FROM jobs WHERE finished_at < ? AND state IN ({_marks(ENDED)})"
                " AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.job_id = jobs.id"
                " AND done_at IS NULL)",
                [finished_before, *ENDED],
            )
            await session.execute(
                "DELETE FROM outbox WHERE done_at < ? AND job_id NOT IN (SELECT id FROM jobs)",
                (finished_before,),
            )
            # Never the entries of a job still running: its settlement is still to come.
            await session.execute(
                "DELETE FROM ledger WHERE reserved_at < ? AND job_id NOT IN (SELECT id FROM jobs"
                f" WHERE state IN ({_marks(UNFINISHED)}))",
                (ledger_before, *UNFINISHED),
            )
        return pruned

    async def kept_images(self) -> set[str]:
        """The kept input images some job still refers to."""
        rows = await self._rows(
            "SELECT DISTINCT image_file FROM jobs WHERE image_file IS NOT NULL", []
        )
        return {row[0] for row in rows}

    async def delete_job(self, job_id: str) -> None:
        """Forget one job entirely (what pruning does to old ones)."""
        async with self.database.transaction() as session:
            for table, column in (("jobs", "id"), ("outbox", "job_id"), ("ledger", "job_id")):
                await session.execute(f"DELETE FROM {table} WHERE {column} = ?", [job_id])

    async def _jobs(self, where: str, *arguments: Any) -> list[Job]:
        async with self.database.session() as session:
            return await _select_jobs(session, where, arguments)

    # --- the outbox ---

    async def due_messages(
        self,
        now: float,
        *,
        busy: Iterable[str] = (),
        limit: int = 50,
        lease: Lease | None = None,
    ) -> list[OwedMessage]:
        """Messages due now, each the oldest one its job still owes (a job's go in order),
        leaving out the jobs in `busy` (their earlier message is still on its way). With a
        `lease`, only messages no other process holds, and they are taken for this one."""
        busy = tuple(busy)
        query = (
            "SELECT seq, job_id, kind, due_at, attempts, started_at FROM outbox AS o"
            " WHERE done_at IS NULL AND due_at <= ? AND seq = (SELECT MIN(seq) FROM outbox"
            f" WHERE job_id = o.job_id AND done_at IS NULL){_not_among('job_id', busy)}"
        )
        if lease is None:
            found = await self._rows(query + " ORDER BY due_at, seq LIMIT ?", (now, *busy, limit))
            return [_owed(row) for row in found]
        async with self.database.transaction() as session:
            found = await session.rows(
                query + lease.free("o") + " ORDER BY due_at, seq LIMIT ? /*SKIP LOCKED*/",
                (now, *busy, *lease.free_arguments(now), limit),
            )
            await _hold(session, "outbox", [row[0] for row in found], lease, now)
        return [_owed(row) for row in found]

    async def next_due_at(
        self, *, busy: Iterable[str] = (), lease: Lease | None = None
    ) -> float | None:
        """When the next message that could be sent falls due (a job's oldest pending one,
        with a `lease` one that no other process holds)."""
        busy = tuple(busy)
        held = lease.free("o") if lease is not None else ""
        value = await self._value(
            "SELECT MIN(due_at) FROM outbox AS o WHERE done_at IS NULL AND seq = (SELECT"
            " MIN(seq) FROM outbox WHERE job_id = o.job_id AND done_at IS NULL)"
            f"{_not_among('job_id', busy)}{held}",
            *busy, *(lease.free_arguments(time.time()) if lease is not None else ()),
        )  # fmt: skip
        return float(value) if value is not None else None

    async def pending_messages(self, job_id: str) -> list[OwedMessage]:
        found = await self._rows(
            "SELECT seq, job_id, kind, due_at, attempts, started_at FROM outbox"
            " WHERE job_id = ? AND done_at IS NULL ORDER BY seq",
            (job_id,),
        )
        return [_owed(row) for row in found]

    async def start_message(self, seq: int, at: float) -> None:
        """Committed before a message is rendered and sent. A video with this set may be out
        already; a status with this set takes no more changes (they get a row of their own)."""
        # The first start is kept: a later attempt looks for the video back to the first one.
        await self._write(
            "UPDATE outbox SET started_at = COALESCE(started_at, ?) WHERE seq = ?", at, seq
        )

    async def retry_message(self, seq: int, due_at: float, *, restart: bool = False) -> None:
        """Try again at `due_at`; `restart` forgets that sending began (a status, re-rendered)."""
        started = ", started_at = NULL" if restart else ""
        await self._write(
            f"UPDATE outbox SET attempts = attempts + 1, due_at = ?{started} WHERE seq = ?",
            due_at, seq,
        )  # fmt: skip

    async def settle_message(self, seq: int, outcome: str, at: float) -> None:
        await self._write(
            "UPDATE outbox SET done_at = ?, outcome = ? WHERE seq = ? AND done_at IS NULL",
            at, outcome, seq,
        )  # fmt: skip

    async def message_outcomes(self, job_id: str) -> list[tuple[str, str | None]]:
        """(kind, outcome) of every message the job was owed, oldest first."""
        found = await self._rows(
            "SELECT kind, outcome FROM outbox WHERE job_id = ? ORDER BY seq", (job_id,)
        )
        return [(row[0], row[1]) for row in found]

    # --- the fleet (bot.jobs.fleet) ---

    async def register_process(self, process: ProcessRecord, *, forget_before: float) -> None:
        async with self.database.transaction() as session:
            await session.execute("DELETE FROM processes WHERE heartbeat_at < ?", [forget_before])
            await session.execute(
                "INSERT INTO processes (id, shard_count, shards, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                " SET heartbeat_at = excluded.heartbeat_at",
                [process.id, process.shard_count,
                 json.dumps(list(process.shards)) if process.shards is not None else None,
                 process.started_at, process.heartbeat_at],
            )  # fmt: skip

    async def processes(self, now: float) -> list[ProcessRecord]:
        """Every process that has been heard from, with the jobs it holds now."""
        rows = await self._rows(
            "SELECT p.id, p.shard_count, p.shards, p.started_at, p.heartbeat_at,"
            " (SELECT COUNT(*) FROM jobs WHERE runner = p.id AND lease_until >= ?)"
            " FROM processes AS p ORDER BY p.started_at, p.id",
            [now],
        )
        return [_process(row) for row in rows]

    async def keep_leases(self, runner: str, job_ids: Sequence[str], *, now: float,
                          until: float) -> None:  # fmt: skip
        """Renew this process's hold on the jobs it runs and the messages it took, let go of
        any other job it still held, and say it is alive: one transaction."""
        ids = tuple(job_ids)
        async with self.database.transaction() as session:
            if ids:
                await session.execute(
                    f"UPDATE jobs SET lease_until = ? WHERE runner = ? AND id IN ({_marks(ids)})",
                    [until, runner, *ids],
                )
            await session.execute(
                f"UPDATE jobs SET runner = NULL, lease_until = NULL WHERE runner = ?"
                f"{_not_among('id', ids)}",
                [runner, *ids],
            )
            for table in ("outbox", "alert_outbox"):
                await session.execute(
                    f"UPDATE {table} SET lease_until = ? WHERE runner = ? AND done_at IS NULL",
                    [until, runner],
                )
            await session.execute(
                "UPDATE processes SET heartbeat_at = ? WHERE id = ?", [now, runner]
            )

    async def release_job(self, runner: str, job_id: str) -> None:
        await self._write(
            "UPDATE jobs SET runner = NULL, lease_until = NULL WHERE id = ? AND runner = ?",
            job_id, runner,
        )  # fmt: skip

    async def leave_fleet(self, runner: str) -> None:
        """A process stops: whatever it held is free for the others at once."""
        async with self.database.transaction() as session:
            for table in ("jobs", "outbox", "alert_outbox"):
                await session.execute(
                    f"UPDATE {table} SET runner = NULL, lease_until = NULL WHERE runner = ?",
                    [runner],
                )
            await session.execute("DELETE FROM processes WHERE id = ?", [runner])

    # --- the request budget (a BudgetRecord) ---

    async def record_send(self, at: float) -> None:
        async with self.database.transaction() as session:
            await _record_send(session, at)

    async def record_hold(self, until: float) -> None:
        async with self.database.transaction() as session:
            # Several processes may hear a 429: the latest reset any of them heard holds.
            if until > await _held_until(session):
                await session.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [RATE_LIMITED_UNTIL, repr(until)],
                )

    async def claim_send(self, at: float, limit: int, window: float) -> float:
        """Take a slot of the account's budget for every process on this store: 0 when it was
        taken (and recorded), else how long until one could be (a full window, a pending 429)."""
        async with self.database.transaction() as session:
            held = await _held_until(session)
            if held > at:
                return held - at
            sends = [row[0] for row in await session.rows(
                "SELECT at FROM budget_sends WHERE at > ? ORDER BY at", [at - window]
            )]  # fmt: skip
            if len(sends) >= limit:
                return max(0.01, sends[len(sends) - limit] + window - at)
            await _record_send(session, at)
            return 0.0

    async def recent_sends(self, since: float) -> list[float]:
        rows = await self._rows("SELECT at FROM budget_sends WHERE at >= ? ORDER BY at", [since])
        return [float(row[0]) for row in rows]

    async def recent_durations(
        self, model: str, bucket: str | None, limit: int
    ) -> list[Run]:
        """A model's latest runs, newest first: of one parameter bucket, or of all."""
        where, arguments = "model = ?", [model]
        if bucket is not None:
            where += " AND bucket = ?"
            arguments.append(bucket)
        rows = await self._rows(
            f"SELECT bucket, work, queued, processing FROM durations WHERE {where}"
            " ORDER BY finished_at DESC LIMIT ?",
            [*arguments, limit],
        )
        return [Run(row[0], float(row[1]), row[2], float(row[3])) for row in rows]

    async def prune_durations(self, before: float) -> int:
        return await self._write("DELETE FROM durations WHERE finished_at < ?", before)

    async def rate_limited_until(self) -> float:
        value = await self.get_meta(RATE_LIMITED_UNTIL)
        return float(value) if value else 0.0

    # --- the ledger ---

    async def usage(self, guild_id: int, since: float, member_id: int | None = None) -> int:
        async with self.database.session() as session:
            return await _usage(session, guild_id, since, member_id)

    async def top_spenders(
        self, guild_id: int, since: float, count: int = 5
    ) -> list[tuple[int, int]]:
        found = await self._rows(
            f"SELECT member_id, {_USED} AS used FROM ledger WHERE guild_id = ?"
            f" AND reserved_at >= ? GROUP BY member_id HAVING {_USED} > 0"
            " ORDER BY used DESC, member_id LIMIT ?",
            (guild_id, since, count),
        )
        return [(row[0], row[1]) for row in found]

    async def ledger_entries(self, job_id: str) -> list[tuple[str, int]]:
        """(entry, credits) of one job, oldest first."""
        found = await self._rows(
            "SELECT entry, credits FROM ledger WHERE job_id = ? ORDER BY seq", (job_id,)
        )
        return [(row[0], row[1]) for row in found]

    async def credit_states(self) -> dict[str, tuple[int, str]]:
        """Job id -> (credits, 'reserved' | 'captured' | 'released'): where each job stands."""
        found = await self._rows(
            "SELECT job_id, MAX(credits), MAX(CASE entry WHEN 'capture' THEN 2"
            " WHEN 'release' THEN 1 ELSE 0 END) FROM ledger GROUP BY job_id"
        )
        names = ("reserved", "released", "captured")
        return {row[0]: (row[1], names[row[2]]) for row in found}

    async def ledger_totals(self, guild_id: int | None = None) -> LedgerTotals:
        scope, arguments = ("WHERE guild_id = ?", (guild_id,)) if guild_id is not None else ("", ())
        found = await self._rows(
            "SELECT entry, COALESCE(SUM(credits), 0) FROM ledger " + scope + " GROUP BY entry",
            arguments,
        )
        sums = {row[0]: int(row[1]) for row in found}
        reserved, captured = sums.get("reserve", 0), sums.get("capture", 0)
        released = sums.get("release", 0)
        return LedgerTotals(reserved, captured, released, reserved - captured - released)

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
            "SELECT COALESCE(SUM(credits), 0) FROM ledger WHERE entry = 'capture' AND at >= ?"
            + (" AND guild_id = ?" if guild_id is not None else ""),
            *arguments,
        )
        durations = await self._rows(
            f"SELECT model, AVG(finished_at - created_at) FROM jobs WHERE {scope}"
            " AND state = 'delivered' GROUP BY model",
            arguments,
        )
        unknown = await self._value(
            f"SELECT COUNT(*) FROM jobs WHERE {scope} AND failure = 'SubmitOutcomeUnknown'",
            *arguments,
        )
        return JobStats(
            by_model_and_state={(m, s): n for m, s, n in by_state},
            failure_reasons=[(reason or "unknown", n) for reason, n in failures],
            credits_spent=int(spent or 0),
            average_seconds={model: seconds for model, seconds in durations},
            outcome_unknown=int(unknown or 0),
        )

    async def explain(self, query: str, *arguments: Any) -> list[str]:
        """SQLite's plan for a query (how the tests see that sums are served by an index)."""
        rows = await self._rows(f"EXPLAIN QUERY PLAN {query}", list(arguments))
        return [str(row[-1]) for row in rows]

    # --- quotas ---

    async def guild_quota(self, guild_id: int) -> GuildQuota:
        found = await self._rows(
            "SELECT period, member_limit, guild_limit FROM guild_quota WHERE guild_id = ?",
            (guild_id,),
        )
        row = found[0] if found else None
        return GuildQuota(*row) if row else GuildQuota()

    async def update_guild_quota(self, guild_id: int, **changes: Any) -> None:
        """Change some of a guild's quota settings; the others stay as they are."""
        columns = [name for name in ("period", "member_limit", "guild_limit") if name in changes]
        # Only the named columns are written, so two admins' changes never undo each other.
        await self._write(
            f"INSERT INTO guild_quota (guild_id, {', '.join(columns)})"
            f" VALUES (?, {', '.join('?' for _ in columns)})"
            f" ON CONFLICT (guild_id) DO UPDATE SET"
            f" {', '.join(f'{c} = excluded.{c}' for c in columns)}",
            guild_id, *(changes[c] for c in columns),
        )  # fmt: skip

    async def member_override(self, guild_id: int, member_id: int) -> tuple[bool, int | None]:
        """(whether the member has an override, its limit: None means no limit)."""
        found = await self._rows(
            "SELECT credit_limit FROM member_quota WHERE guild_id = ? AND member_id = ?",
            (guild_id, member_id),
        )
        row = found[0] if found else None
        return (True, row[0]) if row else (False, None)

    async def set_member_override(self, guild_id: int, member_id: int, limit: int | None) -> None:
        await self._write(
            "INSERT INTO member_quota (guild_id, member_id, credit_limit) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id, member_id) DO UPDATE SET credit_limit = excluded.credit_limit",
            guild_id, member_id, limit,
        )  # fmt: skip

    async def model_costs(self, guild_id: int) -> dict[str, int]:
        """The costs this guild has set; models not listed cost their catalogue default."""
        rows = await self._rows(
            "SELECT model, credits FROM model_cost WHERE guild_id = ?", [guild_id]
        )
        return {model: int(credits) for model, credits in rows}

    async def set_model_cost(self, guild_id: int, slug: str, credits: int) -> None:
        await self._write(
            "INSERT INTO model_cost (guild_id, model, credits) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id, model) DO UPDATE SET credits = excluded.credits",
            guild_id, slug, credits,
        )  # fmt: skip

    async def reset_point(self, guild_id: int, member_id: int) -> float:
        """The latest reset that applies to this member (their own, or the whole guild's)."""
        value = await self._value(
            "SELECT MAX(reset_at) FROM quota_reset WHERE guild_id = ? AND member_id IN (?, ?)",
            guild_id, member_id, EVERYONE,
        )  # fmt: skip
        return float(value) if value is not None else 0.0

    async def reset_usage(self, guild_id: int, member_id: int, at: float) -> None:
        await self._write(
            "INSERT INTO quota_reset (guild_id, member_id, reset_at) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id, member_id) DO UPDATE SET reset_at = excluded.reset_at",
            guild_id, member_id, at,
        )  # fmt: skip

    # --- one statement, under the lock ---

    async def _write(self, query: str, *arguments: Any) -> int:
        async with self.database.session() as session:
            return await session.execute(query, arguments)

    async def _rows(self, query: str, arguments: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.database.session() as session:
            return await session.rows(query, arguments)

    async def _value(self, query: str, *arguments: Any) -> Any:
        async with self.database.session() as session:
            return await session.value(query, arguments)


class Transaction:
    """The writes of one transition; only `Store.transaction()` makes one."""

    def __init__(self, session: Session) -> None:
        self._db = session

    async def credits_seen(self, remaining: float, *, at: float) -> int:
        """Segmind reported the account's credits: alert the servers it took below their
        threshold, and re-arm those it is back above (or, any credits at all, out of credits).
        Returns how many alerts it wrote."""
        crossed = await self._db.rows(
            "SELECT guild_id, channel_id, below FROM server_alerts"
            " WHERE low_told = 0 AND ? < below",
            [remaining],
        )
        for guild_id, channel_id, below in crossed:
            await self._alert(guild_id, channel_id, low_text(remaining, below), at)
        await self._db.execute(
            "UPDATE server_alerts SET low_told = CASE WHEN ? < below THEN 1 ELSE 0 END,"
            " out_told = CASE WHEN out_told = 1 AND ? = 1 THEN 1 ELSE 0 END",
            [remaining, int(remaining <= 0)],
        )
        return len(crossed)

    async def out_of_credits(self, *, at: float) -> int:
        """A submit was refused for want of credits: alert every server not yet told.
        Returns how many alerts it wrote."""
        untold = await self._db.rows(
            "SELECT guild_id, channel_id FROM server_alerts WHERE out_told = 0"
        )
        for guild_id, channel_id in untold:
            await self._alert(guild_id, channel_id, OUT_TEXT, at)
        await self._db.execute("UPDATE server_alerts SET out_told = 1")
        return len(untold)

    async def _alert(self, guild_id: int, channel_id: int, text: str, at: float) -> None:
        await self._db.execute(
            "INSERT INTO alert_outbox (guild_id, channel_id, text, due_at) VALUES (?, ?, ?, ?)",
            [guild_id, channel_id, text, at],
        )

    async def job(self, job_id: str) -> Job | None:
        rows = await _select_jobs(self._db, "WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def insert_job(self, job: Job) -> None:
        values = _job_values(job)
        await self._db.execute(
            f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({_marks(_JOB_COLUMNS)})",
            [values[column] for column in _JOB_COLUMNS],
        )

    async def update_job(self, job_id: str, changes: dict[str, Any]) -> None:
        if unknown := set(changes) - _UPDATABLE:
            raise ValueError(f"not a changeable job column: {sorted(unknown)}")
        assignments = ", ".join(f"{column} = ?" for column in changes)
        await self._db.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ?", [*changes.values(), job_id]
        )

    async def check_room(self, job: Job, limits: Limits) -> None:
        """Raise AdmissionRefused when the job would pass one of the limits."""
        pending, waiting = await _room(self._db, job.guild_id, job.member_id)
        if limits.member_pending_max is not None and pending >= limits.member_pending_max:
            raise AdmissionRefused(Refusal.MEMBER_PENDING, pending)
        if limits.guild_queue_max is not None and waiting >= limits.guild_queue_max:
            raise AdmissionRefused(Refusal.GUILD_QUEUE, waiting)
        if limits.member_credits is not None:
            used = await _usage(self._db, job.guild_id, limits.member_since, job.member_id)
            if used + job.credits > limits.member_credits:
                raise AdmissionRefused(Refusal.MEMBER_CREDITS, used)
        if limits.guild_credits is not None:
            used = await _usage(self._db, job.guild_id, limits.guild_since)
            if used + job.credits > limits.guild_credits:
                raise AdmissionRefused(Refusal.GUILD_CREDITS, used)

    async def enter(self, job: Job, entry: Credit, *, at: float) -> None:
        """A ledger entry; a job can hold each kind of entry once (UNIQUE), never twice."""
        await self._db.execute(
            "INSERT INTO ledger (job_id, guild_id, member_id, entry, credits, reserved_at, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [job.id, job.guild_id, job.member_id, entry.value, job.credits, job.created_at, at],
        )

    async def owe(self, job_id: str, kind: Owed, *, at: float) -> None:
        if kind is Owed.STATUS and await self._db.value(
            # A status message shows the state at the moment it is sent: one pending is enough.
            "SELECT 1 FROM outbox WHERE job_id = ? AND kind = 'status' AND done_at IS NULL"
            " AND started_at IS NULL",
            [job_id],
        ):
            return
        await self._db.execute(
            "INSERT INTO outbox (job_id, kind, created_at, due_at) VALUES (?, ?, ?, ?)",
            [job_id, kind.value, at, at],
        )

    async def record_duration(
        self,
        model: str,
        bucket: str,
        queued: float | None,
        processing: float,
        *,
        at: float,
        work: float = 1.0,
    ) -> None:
        await self._db.execute(
            "INSERT INTO durations (model, bucket, work, queued, processing, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [model, bucket, work, queued, processing, at],
        )

    async def drop_owed(self, job_id: str, *, at: float) -> None:
        await self._db.execute(
            "UPDATE outbox SET done_at = ?, outcome = 'dropped' WHERE job_id = ?"
            " AND done_at IS NULL",
            [at, job_id],
        )

    async def settle(self, seq: int, outcome: str, *, at: float) -> None:
        await self._db.execute(
            "UPDATE outbox SET done_at = ?, outcome = ? WHERE seq = ? AND done_at IS NULL",
            [at, outcome, seq],
        )

    # --- claiming jobs for a process of a fleet (bot.jobs.fleet) ---

    async def orphans(self, now: float, limit: int) -> list[Job]:
        """Jobs at (or on their way to) Segmind that no live process holds."""
        return await _select_jobs(
            self._db,
            f"WHERE state IN ({_marks(STARTED)}) AND (runner IS NULL OR lease_until < ?)"
            " ORDER BY seq LIMIT ? /*SKIP LOCKED*/",
            [*STARTED, now, limit],
        )

    async def unheld_waiting(self, now: float) -> list[Job]:
        """Queued jobs that no live process has taken, oldest first."""
        return await _select_jobs(
            self._db,
            "WHERE state = 'queued' AND (runner IS NULL OR lease_until < ?)"
            " ORDER BY seq /*SKIP LOCKED*/",
            [now],
        )

    async def live_processes(self, since: float) -> int:
        return int(await self._db.value(
            "SELECT COUNT(*) FROM processes WHERE heartbeat_at >= ?", [since]
        ) or 0)  # fmt: skip

    async def running_per_guild(self, now: float) -> dict[int, int]:
        """Per server, its jobs at Segmind and those a live process has taken to send."""
        rows = await self._db.rows(
            f"SELECT guild_id, COUNT(*) FROM jobs WHERE state IN ({_marks(STARTED)})"
            " OR (state = 'queued' AND runner IS NOT NULL AND lease_until >= ?)"
            " GROUP BY guild_id",
            [*STARTED, now],
        )
        return {int(row[0]): int(row[1]) for row in rows}

    async def turns(self, guild_ids: Iterable[int]) -> dict[int, dict[int, int]]:
        """Per server, when each member last had a turn (the server's turn counter)."""
        ids = tuple(guild_ids)
        if not ids:
            return {}
        rows = await self._db.rows(
            f"SELECT guild_id, member_id, served FROM member_turns"
            f" WHERE guild_id IN ({_marks(ids)})",
            list(ids),
        )
        turns: dict[int, dict[int, int]] = {}
        for guild_id, member_id, served in rows:
            turns.setdefault(int(guild_id), {})[int(member_id)] = int(served)
        return turns

    async def take(self, job: Job, runner: str, *, until: float, served: int | None) -> None:
        """The job is this process's to run until `until`; a queued one uses its member's turn."""
        await self._db.execute(
            "UPDATE jobs SET runner = ?, lease_until = ? WHERE id = ?", [runner, until, job.id]
        )
        if served is not None:
            await self._db.execute(
                "INSERT INTO member_turns (guild_id, member_id, served) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id, member_id) DO UPDATE SET served = excluded.served",
                [job.guild_id, job.member_id, served],
            )


async def _room(db: Session, guild_id: int, member_id: int) -> tuple[int, int]:
    [row] = await db.rows(
        "SELECT COUNT(*) FILTER (WHERE member_id = ?), COUNT(*) FILTER (WHERE state = 'queued')"
        f" FROM jobs WHERE guild_id = ? AND state IN ({_marks(IN_PROGRESS)})",
        [member_id, guild_id, *IN_PROGRESS],
    )
    return int(row[0]), int(row[1])


async def _usage(db: Session, guild_id: int, since: float, member_id: int | None = None) -> int:
    query = f"SELECT {_USED} FROM ledger WHERE guild_id = ? AND reserved_at >= ?"
    arguments: list[Any] = [guild_id, since]
    if member_id is not None:
        query += " AND member_id = ?"
        arguments.append(member_id)
    return int(await db.value(query, arguments) or 0)


async def _select_jobs(db: Session, where: str, arguments: Iterable[Any]) -> list[Job]:
    rows = await db.rows(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs {where}", list(arguments))
    return [_job_from(dict(zip(_JOB_COLUMNS, row, strict=True))) for row in rows]


async def _record_send(db: Session, at: float) -> None:
    await db.execute("INSERT INTO budget_sends (at) VALUES (?)", [at])
    await db.execute("DELETE FROM budget_sends WHERE at < ?", [at - _BUDGET_MEMORY])


async def _held_until(db: Session) -> float:
    value = await db.value("SELECT value FROM meta WHERE key = ?", [RATE_LIMITED_UNTIL])
    return float(value) if value else 0.0


async def _hold(
    db: Session, table: str, seqs: Sequence[int], lease: Lease, now: float
) -> None:
    if seqs:
        await db.execute(
            f"UPDATE {table} SET runner = ?, lease_until = ? WHERE seq IN ({_marks(seqs)})",
            [lease.runner, now + lease.seconds, *seqs],
        )


def _marks(values: Iterable[object]) -> str:
    return ", ".join("?" for _ in values)


def _not_among(column: str, values: tuple[object, ...]) -> str:
    # PostgreSQL takes no empty list after IN.
    return f" AND {column} NOT IN ({_marks(values)})" if values else ""


def _process(row: Any) -> ProcessRecord:
    shards = tuple(json.loads(row[2])) if row[2] is not None else None
    return ProcessRecord(row[0], row[1], shards, float(row[3]), float(row[4]), int(row[5]))


def _owed(row: Any) -> OwedMessage:
    return OwedMessage(row[0], row[1], Owed(row[2]), row[3], row[4], row[5])


_JOB_FIELDS = frozenset(f.name for f in fields(Job))


def _job_values(job: Job) -> dict[str, Any]:
    values = {name: getattr(job, name) for name in _JOB_FIELDS if name in _JOB_COLUMNS}
    values.update(
        model=job.slug, parameters=json.dumps(job.parameters), state=job.state.value,
        defaults_used=json.dumps(job.defaults_used) if job.defaults_used else None,
    )  # fmt: skip
    return values


def _job_from(row: dict[str, Any]) -> Job:
    row["slug"] = row.pop("model")
    row["parameters"] = json.loads(row["parameters"])
    row["state"] = JobState(row["state"])
    row["defaults_used"] = json.loads(row["defaults_used"]) if row["defaults_used"] else {}
    return Job(**row)
