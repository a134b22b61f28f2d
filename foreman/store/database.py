"""The database gateway: connections, transactions, migrations. The tables' SQL lives beside it
(`jobs_table.py`, `outbox.py`), the schema in `schema.py`.

Writes: one sqlite3 connection, used under one lock. Each write is a whole
transaction (`BEGIN IMMEDIATE … COMMIT`, or ROLLBACK on error) run as one function,
so two coroutines can never share a transaction and a cancelled caller can never
leave one half done (docs/adr/0004). Writes that must be fsynced, and big ones, run
on the writer thread; a small one without an fsync of its own runs right on the event
loop when the connection is free, which costs a fraction of the thread hop
(docs/adr/0020). WAL checkpoints (the only other fsyncs) run on the writer thread.
Reads: an aiosqlite connection (WAL lets it read while the writer writes).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiosqlite

from foreman.errors import StorageUnavailable
from foreman.store.health import StorageHealth, storage_problem
from foreman.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)

T = TypeVar("T")
_BUSY_MS = 5000  # how long a write off the loop waits for another process's lock
_LOOP_BUSY_MS = 20  # ... and one on the loop, before it goes to the writer thread instead
_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", f"busy_timeout={_BUSY_MS}", "foreign_keys=ON")
# The writer's resting settings suit a write on the loop: no fsync at COMMIT, no checkpoint
# inside a commit, and only a short wait if another process holds the database.
_WRITER_PRAGMAS = ("synchronous=NORMAL", "wal_autocheckpoint=0", f"busy_timeout={_LOOP_BUSY_MS}")
_CHECKPOINT_EVERY = 200  # writes between WAL checkpoints (PASSIVE, on the writer thread)


def _connect(path: str) -> sqlite3.Connection:
    """The writer connection, opened on the writer thread; used by one thread at a time (the lock)."""
    # isolation_level=None: the sqlite3 module issues no BEGIN of its own; we do.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (*_PRAGMAS, *_WRITER_PRAGMAS):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class Database:
    """One SQLite file: `await Database.open(path)`, then `read` and `write`; `close()` is idempotent."""

    def __init__(self, path: str, reader: aiosqlite.Connection) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foreman-db-writer")
        self._writer: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # held for the whole of each write transaction
        self._since_checkpoint = 0
        self._checkpoint_queued = False
        self._path = path
        self._reader = reader
        self._closed = False
        self.health = StorageHealth(path)

    @classmethod
    async def open(cls, path: str) -> Database:
        """Connect, and bring the schema up to date (`schema.py`)."""
        reader = await aiosqlite.connect(path, isolation_level=None)
        db = cls(path, reader)
        try:
            for pragma in _PRAGMAS:
                await reader.execute(f"PRAGMA {pragma}")
            await db._run(lambda: setattr(db, "_writer", _connect(path)))
            await db.write(db._migrate)
        except BaseException:
            await db.close()
            raise
        return db

    async def read(self, sql: str, params: Any = ()) -> Iterable[sqlite3.Row]:
        """Run one query on the reader connection (WAL: it never waits for the writer)."""
        return await self._reader.execute_fetchall(sql, params)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._reader.close()
        finally:
            if self._writer is not None:
                await self._run(self._close_writer)
            self._executor.shutdown(wait=True)

    def _close_writer(self) -> None:
        with self._lock:
            assert self._writer is not None
            self._writer.close()
            self._writer = None

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True, small: bool = False) -> T:
        """Run `fn` as one transaction: the only way to write. A failure of the storage itself
        (full, locked past the busy timeout, I/O, a lost file) is `StorageUnavailable`."""
        health = self.health
        if health.lost is not None:
            raise StorageUnavailable(health.lost)
        try:
            result = await self._write(fn, durable, small)
        except sqlite3.Error as exc:
            problem = storage_problem(exc)
            if problem is None:
                raise
            health.failed(problem)
            raise StorageUnavailable(problem) from exc
        health.recovered()
        return result

    async def probe(self) -> None:
        """A write that changes nothing: it commits once the storage takes writes again."""

        def rewrite_version(db: sqlite3.Connection) -> None:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            db.execute(f"PRAGMA user_version = {int(version)}")

        await self.write(rewrite_version)

    async def _write(self, fn: Callable[[sqlite3.Connection], T], durable: bool, small: bool) -> T:
        """`write` without the storage check.

        `durable=False` commits without an fsync of its own (synchronous=NORMAL): the commit
        survives a crash of foreman, and becomes power-loss durable with the next durable
        commit. Only for commits that report no outcome (docs/adr/0011). Such a write that is
        also `small` (one job's rows) runs on the event loop when the connection is free
        (docs/adr/0020); everything else runs on the writer thread.
        """
        if small and not durable and self._lock.acquire(blocking=False):
            try:
                result = self._transaction(fn, durable=False, patient=False)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                # Another process holds the database: wait for it off the loop, below.
            else:
                if self._since_checkpoint >= _CHECKPOINT_EVERY and not (self._checkpoint_queued or self._closed):
                    self._checkpoint_queued = True
                    self._executor.submit(self._checkpoint)
                return result
            finally:
                self._lock.release()
        return await self._run(lambda: self._on_writer_thread(fn, durable))

    def _on_writer_thread(self, fn: Callable[[sqlite3.Connection], T], durable: bool) -> T:
        with self._lock:
            result = self._transaction(fn, durable, patient=True)
        if self._since_checkpoint >= _CHECKPOINT_EVERY:
            self._checkpoint()
        return result

    def _transaction(self, fn: Callable[[sqlite3.Connection], T], durable: bool, patient: bool) -> T:
        """`fn` between BEGIN IMMEDIATE and COMMIT (ROLLBACK if anything fails); the lock is held.

        `patient`: wait up to busy_timeout for another process's lock (never on the loop).
        """
        db = self._writer
        assert db is not None, "store is closed"
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        if patient:
            db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
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
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")
            if patient:
                db.execute(f"PRAGMA busy_timeout={_LOOP_BUSY_MS}")
        self._since_checkpoint += 1
        return result

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database file (PASSIVE: never waits for readers)."""
        try:
            with self._lock:
                if self._writer is None:
                    return
                self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._since_checkpoint = 0
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed (will retry): %s", exc)
        finally:
            self._checkpoint_queued = False

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
