"""The jobs and artifacts tables: creating jobs, transitions as compare-and-swap with their
outbox events, and the queue (docs/adr/0004, 0012)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

from foreman.clock import new_id, now
from foreman.compact_json import dump
from foreman.errors import QueueFull, Unprocessable
from foreman.events import Event, EventSource, stored_body
from foreman.job import Job
from foreman.store.database import Database
from foreman.store.health import StorageHealth
from statemachine import Change, State

_JOB_FIELDS = tuple(f.name for f in fields(Job))
_JOB_COLUMNS = ", ".join(_JOB_FIELDS)
# Picking the next job walks a partial index of queued rows in arrival order (schema.py).
_NEXT_FOR_RUNNER = (
    f"SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_queued_runner"
    " WHERE state = 'queued' AND runner = :runner AND not_before <= :at ORDER BY seq LIMIT 1"
)
_OLDEST_WAITING = (
    f"SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_queued"
    " WHERE state = 'queued' AND not_before <= :at AND created_at <= :cutoff ORDER BY seq LIMIT 1"
)
_NEXT_ANY = (
    f"SELECT {_JOB_COLUMNS} FROM jobs INDEXED BY jobs_queued"
    " WHERE state = 'queued' AND not_before <= :at ORDER BY seq LIMIT 1"
)
_UPDATABLE = frozenset(
    {
        *("attempt", "not_before", "started_at", "finished_at", "status", "error"),
        *("swapped", "load_duration", "eval_count", "working_at", "swap_reason", "swap_from", "jumped"),
        "eval_duration",
    }
)
# A job the worker starts overtakes the older queued jobs of other runners (docs/adr/0029).
_OVERTAKEN = (
    "UPDATE jobs SET ran_after = ran_after + 1 WHERE state = 'queued' AND runner != :runner"
    " AND seq < (SELECT seq FROM jobs WHERE id = :id)"
)

# Builds the webhook/outbox payload of a transition from the job as updated.
EventBuilder = Callable[[EventSource, str, "State | None", Change | None, float], dict[str, Any]]
_EVENT_SOURCE = ", ".join(EventSource._fields)
_RUNNER_AT = EventSource._fields.index("runner")
_job_values = attrgetter(*_JOB_FIELDS[1:])  # every column but seq, in order (astuple deep-copies)
_INSERT_JOB = f"INSERT INTO jobs ({', '.join(_JOB_FIELDS[1:])}) VALUES ({', '.join('?' * (len(_JOB_FIELDS) - 1))})"
_INSERT_EVENT = (
    "INSERT INTO events (id, job_id, state, previous_state, payload, created_at, webhook_url)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class _StaleBatch(Exception):
    """A compare-and-swap in a batch missed: roll the whole batch back."""


@dataclass(frozen=True)
class Artifact:
    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ArtifactHead:
    """An artifact's name, type and size; its data only when it is small enough to inline."""

    name: str
    content_type: str
    size: int
    data: bytes | None


def _job(row: Iterable[Any]) -> Job:
    values = dict(zip(_JOB_FIELDS, row, strict=True))
    for flag in ("sync", "stream", "swapped", "jumped"):  # stored as integers
        if values[flag] is not None:
            values[flag] = bool(values[flag])
    return Job(**values)


class JobsTable:
    """Jobs and their artifacts: creation, transitions as compare-and-swap, the queue."""

    def __init__(self, db: Database, build_event: EventBuilder) -> None:
        self._db = db
        self._build_event = build_event

    # --- jobs -------------------------------------------------------------------------------

    @property
    def health(self) -> StorageHealth:
        """Whether writes commit (docs/adr/0026)."""
        return self._db.health

    async def probe(self) -> None:
        """A write that changes nothing; StorageUnavailable while the storage refuses writes."""
        await self._db.probe()

    async def create_job(
        self, job: Job, durable: bool = True, max_queued: int | None = None
    ) -> tuple[str, list[Event]]:
        """Insert a queued job (see job.new_job) and its first outbox event, atomically.

        Returns its id and the event written; for a repeated idempotency key, the id of the
        job that key made first and no event. With `max_queued` jobs or more queued already,
        raises QueueFull (counted inside the same transaction, so concurrent submits cannot
        overshoot; the count stops at the bound). Raises Unprocessable when that key came with
        another body (nothing is written).
        """

        def insert(db: sqlite3.Connection) -> tuple[str, list[Event]]:
            if job.idempotency_key is not None:
                row = db.execute(
                    "SELECT id, body_sha256 FROM jobs WHERE idempotency_key = ?", (job.idempotency_key,)
                ).fetchone()
                if row is not None:
                    first, digest = str(row[0]), row[1]
                    if digest is not None and job.body_sha256 is not None and digest != job.body_sha256:
                        raise Unprocessable(
                            f"Idempotency-Key {job.idempotency_key!r} was already used, for job {first},"
                            " with a different body"
                        )
                    return first, []
            if max_queued is not None:
                (queued,) = db.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued' LIMIT ?)", (max_queued,)
                ).fetchone()
                if queued >= max_queued:
                    raise QueueFull
            return job.id, self._insert_folded(db, job, ())

        return await self._db.write(insert, durable, small=True)

    async def apply(self, change: Change, durable: bool = True) -> list[Event]:
        """Persist one transition as a compare-and-swap plus its outbox event; returns the event.

        Empty when the job was no longer in `change.source` (nothing written).
        """
        return await self._db.write(lambda db: self._apply_change(db, change), durable, small=True)

    async def apply_batch(self, new: Job | None, changes: Sequence[Change], durable: bool = True) -> list[Event]:
        """Create `new` (if given) and apply `changes` in order, in one transaction: all or nothing.

        Returns the events written, in order; empty (and nothing written) when any
        compare-and-swap missed.
        """

        def batch(db: sqlite3.Connection) -> list[Event]:
            if new is not None:
                return self._insert_folded(db, new, changes)
            events: list[Event] = []
            for change in changes:
                written = self._apply_change(db, change)
                if not written:
                    raise _StaleBatch
                events += written
            return events

        try:
            return await self._db.write(batch, durable, small=True)
        except _StaleBatch:
            return []

    def _insert_folded(self, db: sqlite3.Connection, new: Job, changes: Sequence[Change]) -> list[Event]:
        """Insert a new job as `changes` leave it, with one event per state it passed through.

        Nobody else can have moved a job that is not in the database yet, so its transitions
        fold into one insert instead of an insert and an update each.
        """
        row = {name: getattr(new, name) for name in _JOB_FIELDS[1:]}
        source = EventSource(**{name: row[name] for name in EventSource._fields})
        events = [self._event(source, None, None, new.created_at)]
        for change in changes:
            unknown = set(change.fields) - _UPDATABLE
            if unknown:
                raise ValueError(f"not updatable by a transition: {sorted(unknown)}")
            if change.job_id != new.id or change.source.value != row["state"]:
                raise _StaleBatch
            ts = now()
            row.update(change.fields, state=change.dest.value, updated_at=ts)
            source = EventSource(**{name: row[name] for name in EventSource._fields})
            events.append(self._event(source, change.source, change, ts))
        db.execute(_INSERT_JOB, tuple(row.values()))
        for change in changes:
            self._insert_artifacts(db, change)
        db.executemany(_INSERT_EVENT, [row for row, _ in events])
        return [event for _, event in events]

    def _apply_change(self, db: sqlite3.Connection, change: Change) -> list[Event]:
        unknown = set(change.fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable by a transition: {sorted(unknown)}")
        assignments = "".join(f", {name} = ?" for name in change.fields)
        ts = now()
        row = db.execute(
            f"UPDATE jobs SET state = ?, updated_at = ?{assignments}"
            f" WHERE id = ? AND state = ? RETURNING {_EVENT_SOURCE}",
            (change.dest.value, ts, *change.fields.values(), change.job_id, change.source.value),
        ).fetchone()
        if row is None:
            return []
        if change.dest is State.LOADING:
            db.execute(_OVERTAKEN, {"runner": row[_RUNNER_AT], "id": change.job_id})
        self._insert_artifacts(db, change)
        event_row, event = self._event(EventSource(*row), change.source, change, ts)
        db.execute(_INSERT_EVENT, event_row)
        return [event]

    @staticmethod
    def _insert_artifacts(db: sqlite3.Connection, change: Change) -> None:
        artifacts: Iterable[Artifact] = change.extra.get("artifacts", ())
        if not artifacts:
            return
        db.executemany(
            "INSERT OR REPLACE INTO artifacts (job_id, name, content_type, data) VALUES (?, ?, ?, ?)",
            [(change.job_id, a.name, a.content_type, a.data) for a in artifacts],
        )

    def _event(
        self, job: EventSource, previous: State | None, change: Change | None, ts: float
    ) -> tuple[tuple[str, str, str, str | None, bytes, float, str | None], Event]:
        """The outbox row of a transition, and the event as the feeds send it (docs/adr/0030)."""
        event_id = new_id()
        body = self._build_event(job, event_id, previous, change, ts)
        stored = stored_body(body, job.webhook_url)
        data = dump(stored)
        row = (event_id, job.id, job.state, previous.value if previous else None, data, ts, job.webhook_url)
        return row, Event(body, data if len(stored) == len(body) else None)

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._db.read(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job(next(iter(rows))) if rows else None

    async def next_queued(self, runners: Sequence[str], at: float) -> Job | None:
        """The oldest runnable queued job of the resident runner (any key in `runners`) if any,
        else the oldest overall.

        Drain-by-runner: the resident runner's queue empties before a swap is paid
        (docs/adr/0029). Each lookup walks a partial index of queued rows in arrival order.
        """
        best: Job | None = None
        for runner in runners:
            rows = await self._db.read(_NEXT_FOR_RUNNER, {"runner": runner, "at": at})
            if rows:
                job = _job(next(iter(rows)))
                if best is None or job.seq < best.seq:
                    best = job
        if best is not None:
            return best
        rows = await self._db.read(_NEXT_ANY, {"at": at})
        return _job(next(iter(rows))) if rows else None

    async def oldest_waiting(self, cutoff: float, at: float) -> Job | None:
        """The oldest runnable queued job created at or before `cutoff` (max_wait), if any."""
        rows = await self._db.read(_OLDEST_WAITING, {"cutoff": cutoff, "at": at})
        return _job(next(iter(rows))) if rows else None

    async def next_wakeup(self) -> float | None:
        """When the earliest backed-off queued job becomes runnable (None: nothing waits)."""
        rows = list(await self._db.read("SELECT MIN(not_before) FROM jobs WHERE state = 'queued'"))
        return rows[0][0] if rows else None

    async def jobs_in(self, states: Iterable[State]) -> list[Job]:
        marks = ",".join("?" for _ in states)
        rows = await self._db.read(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY seq",
            tuple(s.value for s in states),
        )
        return [_job(r) for r in rows]

    async def count_by_state(self) -> dict[str, int]:
        rows = await self._db.read(
            "SELECT state, COUNT(*) FROM jobs WHERE state IN ('queued', 'loading', 'working') GROUP BY state"
        )
        counts = {s.value: 0 for s in (State.QUEUED, State.LOADING, State.WORKING)}
        counts.update({state: n for state, n in rows})
        return counts

    # --- artifacts and events ---------------------------------------------------------------

    async def artifacts(self, job_id: str) -> list[Artifact]:
        rows = await self._db.read(
            "SELECT name, content_type, data FROM artifacts WHERE job_id = ? ORDER BY name", (job_id,)
        )
        return [Artifact(*r) for r in rows]

    async def artifact_heads(self, job_id: str, inline_max: int) -> list[ArtifactHead]:
        """The job's artifacts, reading the data of only those of at most `inline_max` bytes."""
        rows = await self._db.read(
            "SELECT name, content_type, length(data), CASE WHEN length(data) <= ? THEN data END"
            " FROM artifacts WHERE job_id = ? ORDER BY name",
            (inline_max, job_id),
        )
        return [ArtifactHead(*r) for r in rows]

    async def queued_by_model(self) -> list[tuple[str, int]]:
        rows = await self._db.read(
            "SELECT model, COUNT(*) FROM jobs INDEXED BY jobs_queued_model WHERE state = 'queued' GROUP BY model"
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    async def queued_runners(self) -> list[tuple[str, str]]:
        """(id, runner) of every queued job, in arrival order (for queue positions)."""
        rows = await self._db.read(
            "SELECT id, runner FROM jobs INDEXED BY jobs_queued WHERE state = 'queued' ORDER BY seq"
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def list_jobs(self, *, state: str | None, model: str | None, before: str | None, limit: int) -> list[Job]:
        """Newest first; `before` is a job id (the `next` of the previous page)."""
        where, params = [], []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if model is not None:
            where.append("model = ?")
            params.append(model)
        if before is not None:
            where.append("seq < (SELECT seq FROM jobs WHERE id = ?)")
            params.append(before)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._db.read(
            f"SELECT {_JOB_COLUMNS} FROM jobs{clause} ORDER BY seq DESC LIMIT ?", (*params, limit)
        )
        return [_job(r) for r in rows]

    async def artifact(self, job_id: str, name: str) -> Artifact | None:
        rows = list(
            await self._db.read(
                "SELECT name, content_type, data FROM artifacts WHERE job_id = ? AND name = ?", (job_id, name)
            )
        )
        return Artifact(*rows[0]) if rows else None

    async def next_queued_plan(self) -> list[str]:
        """EXPLAIN QUERY PLAN of both next-job lookups, for the test that guards the indexes."""
        plan: list[str] = []
        for sql in (_NEXT_FOR_RUNNER, _NEXT_ANY, _OLDEST_WAITING):
            rows = await self._db.read("EXPLAIN QUERY PLAN " + sql, {"runner": "", "at": 0.0, "cutoff": 0.0})
            plan.extend(str(r[-1]) for r in rows)
        return plan
