"""Sick storage (docs/adr/0026): a full disk, a lock held by another process, a database file
deleted or replaced. Submits get 503 `storage unavailable: ...`, never 500; the worker pauses
without re-sending anything to the target; work resumes once writes commit; nothing accepted
is lost. Real files: a small tmpfs for the full disk, a second sqlite3 connection for the lock."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import StartForeman, read_db, settings_for

HELLO = [{"role": "user", "content": "hello there"}]


def integrity(db_path: str) -> str:
    with sqlite3.connect(db_path) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


async def submit(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post(url + "/jobs", json=body) as resp:
        return resp.status, await resp.json()


async def wait_done(http: aiohttp.ClientSession, url: str, job_id: str) -> dict[str, Any]:
    async with http.get(f"{url}/jobs/{job_id}?wait=15") as resp:
        job: dict[str, Any] = await resp.json()
    assert job["state"] == "done", job
    return job


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs: a disk that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left."""
    filler = disk / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:
            while True:
                fh.write(b"\0" * 512)
        except OSError:
            pass
    return filler


async def test_a_full_disk_refuses_submits_pauses_the_worker_and_recovers(
    sim: Simulator, http: aiohttp.ClientSession, small_disk: Path
) -> None:
    db_path = str(small_disk / "foreman.db")
    foreman = await Daemon.start(settings_for(sim.url, db_path))
    try:
        await _full_disk(foreman, sim, http, small_disk, db_path)
    finally:
        await foreman.stop()


async def _full_disk(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, small_disk: Path, db_path: str
) -> None:
    status, first = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
    assert status == 202
    await wait_done(http, foreman.url, first["job_id"])

    sim.token_delay = 0.02  # a job that works for about a second
    status, running = await submit(
        http, foreman.url, {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 50}}
    )
    assert status == 202
    await sim.wait_for(lambda: len([r for r in sim.requests if r.kind == "chat"]) == 2)
    filler = fill(small_disk)

    big = {"model": "llama3.2", "messages": [{"role": "user", "content": "x" * 300_000}]}
    status, refused = await submit(http, foreman.url, big)
    assert status == 503 and refused == {"error": "storage unavailable: database or disk is full"}
    async with http.post(foreman.url + "/api/chat", json={**big, "stream": False}) as resp:
        assert resp.status == 503
        assert (await resp.json())["error"] == "storage unavailable: database or disk is full"
    async with http.get(foreman.url + "/healthz") as resp:
        assert resp.status == 503
        health = await resp.json()
    assert health["status"] == "unhealthy"
    assert health["storage"]["ok"] is False and health["storage"]["problem"] == "database or disk is full"

    # The running job's end could not be recorded: the worker pauses and sends nothing more.
    await asyncio.sleep(2.0)
    chats = [r for r in sim.requests if r.kind == "chat"]
    assert len(chats) <= 3, f"{len(chats)} generations sent while the disk was full"

    filler.unlink()
    job = await wait_done(http, foreman.url, running["job_id"])
    assert job["attempt"] == 1  # the storage's fault used no attempt
    status, after = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
    assert status == 202
    await wait_done(http, foreman.url, after["job_id"])
    async with http.get(foreman.url + "/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["storage"]["ok"] is True
    assert integrity(db_path) == "ok"
    ids = {row[0] for row in read_db(db_path, "SELECT id FROM jobs")}
    assert {first["job_id"], running["job_id"], after["job_id"]} <= ids


async def test_a_lock_held_by_another_process_gives_503_then_work_resumes(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    db_path = foreman.settings.db_path
    status, before = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
    await wait_done(http, foreman.url, before["job_id"])
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        status, refused = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
        assert status == 503
        assert refused == {"error": "storage unavailable: database is locked by another process"}
        assert time.monotonic() - started >= 4.0  # it waited the busy timeout first
        async with http.get(foreman.url + "/healthz") as resp:
            assert resp.status == 503
    finally:
        other.execute("ROLLBACK")
        other.close()
    status, after = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
    assert status == 202
    await wait_done(http, foreman.url, after["job_id"])
    assert integrity(db_path) == "ok"
    assert len(read_db(db_path, "SELECT id FROM jobs")) == 2


def lose(db_path: str, how: str) -> None:
    """What an operator's cleanup script or a restore from backup does under a running foreman."""
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(db_path + suffix).unlink(missing_ok=True)
    else:
        shutil.copy(db_path, db_path + ".copy")
        os.replace(db_path + ".copy", db_path)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_database_file_deleted_or_replaced_is_noticed_and_work_refused(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession, db_path: str, how: str
) -> None:
    foreman = await start_foreman(poll_interval="200ms")
    status, before = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
    await wait_done(http, foreman.url, before["job_id"])
    lose(db_path, how)
    deadline = time.monotonic() + 2.0
    while True:
        async with http.get(foreman.url + "/healthz") as resp:
            if resp.status == 503:
                health = await resp.json()
                break
        assert time.monotonic() < deadline, "a lost database file was not noticed within a poll interval"
        await asyncio.sleep(0.05)
    assert "deleted or replaced" in health["storage"]["problem"]
    sent = len(sim.requests)
    status, refused = await submit(http, foreman.url, {"model": "llama3.2", "messages": HELLO})
    assert status == 503 and "deleted or replaced" in refused["error"]
    async with http.post(
        foreman.url + "/api/chat", json={"model": "llama3.2", "messages": HELLO, "stream": False}
    ) as resp:
        assert resp.status == 503
    assert len(sim.requests) == sent  # nothing went to the target
