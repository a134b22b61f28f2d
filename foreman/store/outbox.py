"""The event outbox: a job's history, and the webhook deliveries still owed (docs/contract.md section 5).

Events are written with their transition (jobs_table.py); here they are read in order,
handed to the delivery loop one job at a time (a job's next event waits for the one
before it), and marked delivered or given up. The TTL sweep lives here too.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from foreman.store.database import Database

# Each job's earliest undelivered event: the only one of the job that may be sent now.
_HEADS = (
    "SELECT MIN(seq) FROM events INDEXED BY events_due"
    " WHERE webhook_url IS NOT NULL AND delivered_at IS NULL AND given_up_at IS NULL GROUP BY job_id"
)
_DUE = (
    "SELECT e.seq, e.id, e.job_id, e.payload, e.webhook_url, e.attempts FROM events AS e"
    f" WHERE e.seq IN ({_HEADS}) AND e.next_attempt_at <= ? ORDER BY e.seq LIMIT ?"
)


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    id: str
    job_id: str
    payload: bytes
    webhook_url: str
    attempts: int


class Outbox:
    """The events table: a job's history, and the deliveries still owed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's outbox rows in order, with their payloads decoded."""
        rows = await self._db.read(
            "SELECT id, state, previous_state, payload, webhook_url, delivered_at, given_up_at, attempts"
            " FROM events WHERE job_id = ? ORDER BY seq",
            (job_id,),
        )
        keys = (
            "event_id",
            "state",
            "previous_state",
            "payload",
            "webhook_url",
            "delivered_at",
            "given_up_at",
            "attempts",
        )
        return [{**dict(zip(keys, r, strict=True)), "payload": json.loads(r[3])} for r in rows]

    async def history(self, job_id: str) -> list[tuple[bytes, str | None]]:
        """The job's events in order: each stored payload and the webhook URL it was stored for."""
        rows = await self._db.read(
            "SELECT payload, webhook_url FROM events INDEXED BY events_job WHERE job_id = ? ORDER BY seq", (job_id,)
        )
        return [(bytes(r[0]), r[1]) for r in rows]

    async def due_events(self, at: float, limit: int = 50) -> list[OutboxEvent]:
        rows = await self._db.read(_DUE, (at, limit))
        return [OutboxEvent(*row) for row in rows]

    async def next_delivery_at(self) -> float | None:
        """When the next delivery that may be sent is due (None: nothing pending)."""
        rows = list(await self._db.read(f"SELECT MIN(next_attempt_at) FROM events WHERE seq IN ({_HEADS})"))
        return rows[0][0] if rows else None

    async def attempt_started(self, seq: int, retry_at: float) -> None:
        """Count the attempt (and when to retry if it fails) before sending.

        Durable: its fsync also makes every event before it durable, so nothing is sent that
        a power loss could take back (docs/adr/0011).
        """
        await self._db.write(
            lambda db: db.execute(
                "UPDATE events SET attempts = attempts + 1, next_attempt_at = ? WHERE seq = ?", (retry_at, seq)
            )
        )

    async def attempt_ended(self, seq: int, at: float, *, delivered: bool, error: str | None, give_up: bool) -> None:
        def end(db: sqlite3.Connection) -> None:
            if delivered:
                db.execute("UPDATE events SET delivered_at = ?, last_error = NULL WHERE seq = ?", (at, seq))
            elif give_up:
                db.execute("UPDATE events SET given_up_at = ?, last_error = ? WHERE seq = ?", (at, error, seq))
            else:
                db.execute("UPDATE events SET last_error = ? WHERE seq = ?", (error, seq))

        await self._db.write(end, durable=False)

    async def give_up_url(self, url: str, at: float, reason: str) -> int:
        """The receiver said 410 Gone: nothing more is sent to that URL."""

        def gone(db: sqlite3.Connection) -> int:
            return db.execute(
                "UPDATE events SET given_up_at = ?, last_error = ?"
                " WHERE webhook_url = ? AND delivered_at IS NULL AND given_up_at IS NULL",
                (at, reason, url),
            ).rowcount

        return await self._db.write(gone)

    async def sweep(self, cutoff: float, batch: int = 500) -> int:
        """Delete up to `batch` jobs finished before `cutoff`, with their artifacts and their events
        (but events still owed to a receiver). Returns how many jobs went; call until 0."""

        def delete(db: sqlite3.Connection) -> int:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM jobs INDEXED BY jobs_finished WHERE finished_at < ? ORDER BY finished_at LIMIT ?",
                    (cutoff, batch),
                )
            ]
            if not ids:
                # Events a receiver was still owed when their job went: gone once settled.
                db.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at < ?"
                    " AND (delivered_at IS NOT NULL OR given_up_at IS NOT NULL)"
                    " AND job_id NOT IN (SELECT id FROM jobs) LIMIT ?)",
                    (cutoff, batch),
                )
                return 0
            marks = ",".join("?" * len(ids))
            db.execute(
                f"DELETE FROM events WHERE job_id IN ({marks})"
                " AND (webhook_url IS NULL OR delivered_at IS NOT NULL OR given_up_at IS NOT NULL)",
                ids,
            )
            db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)  # artifacts cascade
            return len(ids)

        return await self._db.write(delete, durable=False)
