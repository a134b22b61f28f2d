"""The database gateway: connections, transactions, migrations. SQL of queries lives beside it.

Writes: one sqlite3 connection owned by one thread. Each write is a whole
transaction (`BEGIN IMMEDIATE … COMMIT`, or ROLLBACK on error) run as one function
on that thread, so two coroutines can never share a transaction, a cancelled
caller can never leave one half done, and a transition costs one thread hop
instead of six (docs/adr/0004). Reads: an aiosqlite connection (WAL lets it read
while the writer writes).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiosqlite

from foreman.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

T = TypeVar("T")
_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000", "foreign_keys=ON")


def _connect(path: str) -> sqlite3.Connection:
    """The writer connection, opened on (and only ever used from) the writer thread."""
    # isolation_level=None: the sqlite3 module issues no BEGIN of its own; we do.
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in _PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    return conn


class Database:
    """Open with `await Store.open(path, ...)` (a subclass); `close()` is idempotent."""

    def __init__(self, path: str, reader: aiosqlite.Connection) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foreman-db-writer")
        self._writer: sqlite3.Connection | None = None
        self._path = path
        self._reader = reader
        self._closed = False

    async def _connect_all(self) -> None:
        try:
            await self._run(lambda: setattr(self, "_writer", _connect(self._path)))
            await self._write(self._migrate)
        except BaseException:
            await self.close()
            raise

    @staticmethod
    async def _open_reader(path: str) -> aiosqlite.Connection:
        reader = await aiosqlite.connect(path, isolation_level=None)
        for pragma in _PRAGMAS:
            await reader.execute(f"PRAGMA {pragma}")
        return reader

    async def _read(self, sql: str, params: Any = ()) -> Iterable[sqlite3.Row]:
        return await self._reader.execute_fetchall(sql, params)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._reader.close()
        finally:
            if self._writer is not None:
                await self._run(self._writer.close)
            self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """Run `fn` as one transaction on the writer thread: the only way to write.

        `durable=False` commits without an fsync of its own (synchronous=NORMAL): the commit
        survives a crash of foreman, and becomes power-loss durable with the next durable
        commit. Only for commits that report no outcome (docs/adr/0011).
        """

        def transaction() -> T:
            db = self._writer
            assert db is not None, "store is closed"
            if not durable:
                db.execute("PRAGMA synchronous=NORMAL")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:  # fn failed, or COMMIT itself did (disk full, I/O error)
                        db.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    db.execute("PRAGMA synchronous=FULL")
            return result

        return await self._run(transaction)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"database schema version {version} is newer than this foreman ({SCHEMA_VERSION})")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _split_script(MIGRATIONS[number - 1]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
            log.info("database migrated to schema version %d", number)


def _split_script(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows where they end)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
