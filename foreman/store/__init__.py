"""The SQLite store: every SQL statement foreman runs lives in this package.

`database.py` owns connections, transactions and migrations (the schema is
`schema.py`); `jobs_table.py` jobs, transitions and artifacts; `outbox.py` events,
webhook deliveries and the sweep. `Store` is the three together: each component is
handed the table it uses (`store.jobs` or `store.outbox`), the daemon the whole.
"""

from __future__ import annotations

from foreman.store.database import Database
from foreman.store.jobs_table import Artifact, ArtifactHead, EventBuilder, JobsTable
from foreman.store.outbox import Outbox, OutboxEvent


class Store:
    """`await Store.open(path, build_event)`; `close()` is idempotent."""

    def __init__(self, db: Database, build_event: EventBuilder) -> None:
        self.db = db
        self.jobs = JobsTable(db, build_event)
        self.outbox = Outbox(db)

    @classmethod
    async def open(cls, path: str, build_event: EventBuilder) -> Store:
        return cls(await Database.open(path), build_event)

    async def close(self) -> None:
        await self.db.close()


__all__ = ["Artifact", "ArtifactHead", "Database", "JobsTable", "Outbox", "OutboxEvent", "Store"]
