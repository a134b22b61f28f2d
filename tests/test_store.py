"""The store alone: schema, atomic transitions with their outbox events, the next-job index."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from foreman.clock import new_id, now
from foreman.events import EventSource, build_event
from foreman.job import CHAT, Job, new_job
from foreman.requests import parse_submission
from foreman.store import Store
from foreman.store.schema import MIGRATIONS, SCHEMA_VERSION
from statemachine import Change, Lifecycle, State, Trigger

ROOT = Path(__file__).resolve().parent.parent


def queued(model: str = "llama3.2", sync: bool = False) -> Job:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    return new_job(parse_submission(CHAT, body, sync=sync), new_id(), now())


async def add(store: Store, model: str = "llama3.2") -> Job:
    job = queued(model)
    await store.jobs.create_job(job)
    return job


class StoreSink:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def persist(self, change: Change) -> bool:
        return await self.store.jobs.apply(change)

    def notify(self, change: Change) -> None:
        pass


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = await Store.open(str(tmp_path / "t.db"), build_event)
    yield s
    await s.close()


async def test_pragmas_and_schema_version(store: Store, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_reopen_does_not_migrate_again(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    first = await Store.open(path, build_event)
    job = await add(first)
    await first.close()
    await first.close()  # idempotent
    second = await Store.open(path, build_event)
    again = await second.jobs.get_job(job.id)
    assert again is not None and again.id == job.id and again.body == job.body and again.seq == 1
    await second.close()


async def test_each_transition_writes_its_event_in_the_same_transaction(store: Store) -> None:
    job = await add(store)
    with Lifecycle(StoreSink(store)).flow(job.id, State.QUEUED) as flow:
        for trigger in (Trigger.LOAD, Trigger.WORK, Trigger.FINISH):
            assert await flow.move(trigger)
    events = await store.outbox.events(job.id)
    assert [(e["previous_state"], e["state"]) for e in events] == [
        (None, "queued"),
        ("queued", "loading"),
        ("loading", "working"),
        ("working", "done"),
    ]
    assert all(e["payload"]["job_id"] == job.id and e["payload"]["event_id"] == e["event_id"] for e in events)


async def test_a_failed_event_write_rolls_the_state_change_back(store: Store) -> None:
    job = await add(store)
    with Lifecycle(StoreSink(store)).flow(job.id, State.QUEUED) as flow:
        assert await flow.move(Trigger.LOAD)

        def broken(*args: Any) -> dict[str, Any]:
            raise RuntimeError("event could not be built")

        store.jobs._build_event = broken
        with pytest.raises(RuntimeError):
            await flow.move(Trigger.WORK)
        assert flow.current is State.LOADING
    assert (await store.jobs.get_job(job.id)).state == "loading"  # type: ignore[union-attr]
    assert len(await store.outbox.events(job.id)) == 2


async def test_compare_and_swap_refuses_a_stale_source(store: Store) -> None:
    job = await add(store)
    lifecycle = Lifecycle(StoreSink(store))
    with lifecycle.flow(job.id, State.QUEUED) as handler:
        assert await handler.move(Trigger.CANCEL)
    with lifecycle.flow(job.id, State.QUEUED) as late:  # an actor that still believes it is queued
        assert not await late.move(Trigger.LOAD)
    assert (await store.jobs.get_job(job.id)).state == "cancelled"  # type: ignore[union-attr]


async def test_concurrent_transitions_do_not_share_a_transaction(store: Store) -> None:
    """Half the transitions fail while building their event; only those roll back."""
    jobs = [await add(store) for _ in range(20)]
    doomed = {job.id for job in jobs[1::2]}

    def build(job: EventSource, *args: Any) -> dict[str, Any]:
        if job.id in doomed:
            raise ValueError("rolled back")
        return build_event(job, *args)

    store.jobs._build_event = build
    lifecycle = Lifecycle(StoreSink(store))

    async def load(job: Job) -> bool:
        with lifecycle.flow(job.id, State.QUEUED) as flow:
            return await flow.move(Trigger.LOAD)

    results = await asyncio.gather(*(load(j) for j in jobs), return_exceptions=True)
    assert [isinstance(r, ValueError) for r in results] == [j.id in doomed for j in jobs]
    states = [(await store.jobs.get_job(j.id)) for j in jobs]
    assert [s.state for s in states if s] == ["queued" if j.id in doomed else "loading" for j in jobs]
    for job in jobs:
        assert len(await store.outbox.events(job.id)) == (1 if job.id in doomed else 2)


async def test_next_job_drains_the_resident_model_first(store: Store) -> None:
    a1 = await add(store, "a")
    b1 = await add(store, "b")
    await add(store, "a")
    assert (await store.jobs.next_queued([], 1e12)).id == a1.id  # type: ignore[union-attr]
    assert (await store.jobs.next_queued(["b:latest"], 1e12)).id == b1.id  # type: ignore[union-attr]
    assert (await store.jobs.next_queued(["c:latest"], 1e12)).id == a1.id  # type: ignore[union-attr]


async def test_backed_off_jobs_wait(store: Store) -> None:
    job = await add(store)
    with Lifecycle(StoreSink(store)).flow(job.id, State.QUEUED) as flow:
        await flow.move(Trigger.LOAD)
        await flow.move(Trigger.REQUEUE, fields={"attempt": 2, "not_before": 5000.0})
    assert await store.jobs.next_queued([], 4999.0) is None
    assert (await store.jobs.next_queued([], 5000.0)).attempt == 2  # type: ignore[union-attr]
    assert await store.jobs.next_wakeup() == 5000.0


async def test_next_job_uses_the_queue_indexes_with_100k_rows(store: Store, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db")
    states = ["done"] * 9 + ["queued"]
    conn.executemany(
        "INSERT INTO jobs (id, state, model, runner, model_name, endpoint, kind, sync, stream, body, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, 'm', '/api/chat', 'generate', 0, 0, x'7b7d', 0, 0)",
        ((f"j{i:07d}", states[i % 10], f"m{i % 7}:latest", f"m{i % 7}:latest") for i in range(100_000)),
    )
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    plan = " | ".join(await store.jobs.next_queued_plan())
    assert "USING INDEX jobs_queued_runner" in plan and "USING INDEX jobs_queued " in plan + " "
    assert "TEMP B-TREE" not in plan  # no sort of the queue
    job = await store.jobs.next_queued(["m3:latest"], 1e12)
    assert job is not None and job.model == "m3:latest" and job.state == "queued"


def _statements_on(table: str) -> re.Pattern[str]:
    return re.compile(rf"\b(?:FROM|INTO|UPDATE|JOIN|TABLE|INDEX \w+ ON)\s+{table}\b", re.IGNORECASE)


_DB_CALLS = re.compile(r"\.execute(?:many|script)?\(|\bimport (?:sqlite3|aiosqlite)\b|execute_fetchall")


def test_no_sql_outside_the_store() -> None:
    """Every statement on every table of the schema, and every database call, is in foreman/store/."""
    tables = re.findall(r"CREATE TABLE (\w+)", " ".join(MIGRATIONS))
    assert sorted(tables) == ["artifacts", "events", "jobs"]
    patterns = {table: _statements_on(table) for table in tables}
    store_text = " ".join(p.read_text() for p in (ROOT / "foreman" / "store").rglob("*.py"))
    for table, pattern in patterns.items():  # the guard sees the store's own SQL, so it can see any
        assert pattern.search(store_text), table
    assert _DB_CALLS.search(store_text)
    offenders = []
    for package in ("foreman", "statemachine"):
        for path in (ROOT / package).rglob("*.py"):
            if (ROOT / "foreman" / "store") in path.parents:
                continue
            text = path.read_text()
            found = [t for t, pattern in patterns.items() if pattern.search(text)] + _DB_CALLS.findall(text)
            if found:
                offenders.append(f"{path.relative_to(ROOT)}: {found}")
    assert not offenders


async def test_writes_on_the_loop_and_on_the_writer_thread_never_share_a_transaction(store: Store) -> None:
    """Small unfsynced writes run on the loop, the others on the writer thread: mixed, all land."""
    jobs = [queued() for _ in range(40)]
    await asyncio.gather(*(store.jobs.create_job(job, durable=bool(i % 2)) for i, job in enumerate(jobs)))
    lifecycle = Lifecycle(StoreSink(store))

    async def load(job: Job, durable: bool) -> bool:
        change = Change(job.id, Trigger.LOAD, State.QUEUED, State.LOADING, {"started_at": now()})
        with lifecycle.flow(job.id, State.QUEUED):
            return await store.jobs.apply(change, durable=durable)

    assert all(await asyncio.gather(*(load(job, bool(i % 3)) for i, job in enumerate(jobs))))
    for job in jobs:
        assert [e["state"] for e in await store.outbox.events(job.id)] == ["queued", "loading"]


async def test_a_write_waits_for_another_process_holding_the_database(store: Store, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. someone's sqlite3 shell, mid-transaction
    job = queued(sync=True)
    writing = asyncio.ensure_future(store.jobs.create_job(job, durable=False))
    await asyncio.sleep(0.3)
    assert not writing.done()  # not failed with "database is locked": waiting, off the loop
    other.execute("COMMIT")
    other.close()
    assert (await writing)[0] == job.id
    assert (await store.jobs.get_job(job.id)) is not None


async def test_the_wal_is_checkpointed_into_the_database_file(store: Store, tmp_path: Path) -> None:
    """Automatic checkpoints are off (they would fsync inside a commit on the loop): ours run."""
    path = tmp_path / "t.db"
    before = path.stat().st_size
    for _ in range(250):
        await store.jobs.create_job(queued(), durable=False)
    await store.jobs.create_job(queued())  # queued behind the checkpoint on the writer thread
    assert path.stat().st_size > before  # the jobs reached the database file, not only the WAL
