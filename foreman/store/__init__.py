"""The SQLite store: every SQL statement foreman runs lives in this package.

`database.py` owns connections, transactions and migrations; `jobs.py` jobs,
transitions and artifacts; `outbox.py` events, webhook deliveries and the sweep.
"""

from __future__ import annotations

import aiosqlite

from foreman.store.database import Database
from foreman.store.jobs import Artifact, EventBuilder, JobQueries
from foreman.store.outbox import OutboxEvent, OutboxQueries


class Store(JobQueries, OutboxQueries):
    """The gateway to the database. `await Store.open(path, build_event)`; `close()` is idempotent."""

    def __init__(self, path: str, reader: aiosqlite.Connection, build_event: EventBuilder) -> None:
        super().__init__(path, reader)
        self._build_event = build_event

    @classmethod
    async def open(cls, path: str, build_event: EventBuilder) -> Store:
        store = cls(path, await Database._open_reader(path), build_event)
        await store._connect_all()
        return store


__all__ = ["Artifact", "OutboxEvent", "Store"]
