"""Where the store's SQL runs: SQLite in one file, or PostgreSQL shared by a fleet of processes.

The store writes one SQL, SQLite's (`?` placeholders, SQLite's type names in migrations), and
keeps to what both understand. What PostgreSQL needs instead is translated here and nowhere
else: placeholders, column types, where the schema version is kept, and how writers take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite

_OWNER_ONLY = 0o600
# Every PostgreSQL transaction of the store holds this lock, so a fleet's writes take turns as
# one SQLite file's do: a check and the write it allows (room in a queue, a budget slot) can
# never interleave with another process's.
_WRITERS_LOCK = 0x5E6D1
_MIGRATION_LOCK = 0x5E6D2

class Session(ABC):
    """Statements on one connection: alone, or inside a transaction."""

    @abstractmethod
    async def rows(self, query: str, arguments: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    async def execute(self, query: str, arguments: Sequence[Any] = ()) -> int:
        """Run one statement; how many rows it changed."""

    async def value(self, query: str, arguments: Sequence[Any] = ()) -> Any:
        found = await self.rows(query, arguments)
        return found[0][0] if found else None


class Database(ABC):
    dialect: str

    @abstractmethod
    def session(self) -> contextlib.AbstractAsyncContextManager[Session]: ...

    @abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Session]:
        """One atomic unit of writes: all of them are committed, or none."""

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def migrate(self, migrations: Sequence[str]) -> None:
        """Apply the steps past the current version, each in a transaction of its own."""

    @abstractmethod
    async def close(self) -> None: ...


async def connect(url: str | None, path: Path) -> Database:
    """PostgreSQL when a `postgresql://` URL is given, else the SQLite file at `path`."""
    if url:
        return await PostgresDatabase.connect(url)
    return await SqliteDatabase.connect(path)


# --- SQLite ---


class _SqliteSession(Session):
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection

    async def rows(self, query: str, arguments: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._db.execute(query, tuple(arguments)) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

    async def execute(self, query: str, arguments: Sequence[Any] = ()) -> int:
        cursor = await self._db.execute(query, tuple(arguments))
        return cursor.rowcount


class SqliteDatabase(Database):
    """One file in WAL mode; one lock serialises every use of the single connection, so no
    statement ever lands inside another coroutine's transaction."""

    dialect = "sqlite"

    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._serial = asyncio.Lock()
        self._session = _SqliteSession(connection)

    @classmethod
    async def connect(cls, path: Path) -> SqliteDatabase:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created for the owner alone: the file holds interaction tokens. SQLite gives its WAL
        # and shared-memory files the database file's permissions.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, _OWNER_ONLY))
        for existing in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
            with contextlib.suppress(FileNotFoundError):
                existing.chmod(_OWNER_ONLY)
        connection = await aiosqlite.connect(path, isolation_level=None)
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=FULL")
        await connection.execute("PRAGMA busy_timeout=5000")
        return cls(connection, path)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        async with self._serial:
            yield self._session

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self._serial:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._session
            except BaseException:
                # Cancelled or failed anywhere, BEGIN included: never leave it open. The
                # connection runs statements in order, so this comes after a BEGIN still queued.
                with contextlib.suppress(sqlite3.OperationalError):  # none was open
                    await asyncio.shield(self._db.execute("ROLLBACK"))
                raise
            await self._db.execute("COMMIT")

    async def schema_version(self) -> int:
        async with self.session() as session:
            return int(await session.value("PRAGMA user_version") or 0)

    async def migrate(self, migrations: Sequence[str]) -> None:
        current = await self.schema_version()
        for version, step in enumerate(migrations[current:], start=current + 1):
            # One transaction per step: a crash mid-upgrade leaves the previous version whole.
            async with self._serial:
                await self._db.executescript(
                    f"BEGIN; {step}; PRAGMA user_version = {version}; COMMIT;"
                )

    async def close(self) -> None:
        async with self._serial:
            await self._db.close()


# --- PostgreSQL ---


class _PostgresSession(Session):
    def __init__(self, connection: Any) -> None:
        self._db = connection

    async def rows(self, query: str, arguments: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        found = await self._db.fetch(postgres_query(query), *arguments)
        return [tuple(_plain(value) for value in row) for row in found]

    async def execute(self, query: str, arguments: Sequence[Any] = ()) -> int:
        status = await self._db.execute(postgres_query(query), *arguments)
        # "UPDATE 3", "INSERT 0 1", "DELETE 0": the count comes last.
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0


class PostgresDatabase(Database):
    """A pool of connections to one PostgreSQL database that several processes share."""

    dialect = "postgresql"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str) -> PostgresDatabase:
        import asyncpg  # only a fleet needs it

        pool = await asyncpg.create_pool(url, min_size=1, max_size=4, command_timeout=30)
        return cls(pool)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        async with self._pool.acquire() as connection:
            yield _PostgresSession(connection)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _WRITERS_LOCK)
            yield _PostgresSession(connection)

    async def schema_version(self) -> int:
        async with self.session() as session:
            await session.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            return int(await session.value("SELECT MAX(version) FROM schema_version") or 0)

    async def migrate(self, migrations: Sequence[str]) -> None:
        async with self._pool.acquire() as connection:
            # Processes starting together: one upgrades, the others find it done.
            await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                current = await self.schema_version()
                for version, step in enumerate(migrations[current:], start=current + 1):
                    async with connection.transaction():
                        await connection.execute(postgres_schema(step))
                        await connection.execute(
                            "INSERT INTO schema_version (version) VALUES ($1)", version
                        )
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

    async def close(self) -> None:
        await self._pool.close()


_QUOTED_OR_MARK = re.compile(r"'(?:[^']|'')*'|\?")


@functools.lru_cache(maxsize=512)
def postgres_query(query: str) -> str:
    """SQLite's `?` placeholders as PostgreSQL's `$1, $2, ...` (none inside a quoted string);
    SQLite's row locks are the whole file's, so its `FOR UPDATE SKIP LOCKED` is only here."""
    numbers = iter(range(1, 10_000))

    def number(match: re.Match[str]) -> str:
        return match.group() if match.group() != "?" else f"${next(numbers)}"

    return _QUOTED_OR_MARK.sub(number, query).replace("/*SKIP LOCKED*/", "FOR UPDATE SKIP LOCKED")


_SCHEMA_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    # Discord's ids pass 2^31: PostgreSQL's INTEGER is 32 bits, SQLite's is 64.
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


def postgres_schema(step: str) -> str:
    """A migration step written for SQLite, in PostgreSQL's types."""
    for pattern, replacement in _SCHEMA_TYPES:
        step = pattern.sub(replacement, step)
    return step


def _plain(value: Any) -> Any:
    # PostgreSQL sums integers as NUMERIC; SQLite gives an int, and so does this.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
