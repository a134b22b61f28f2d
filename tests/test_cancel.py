"""Cancellation from every side leaves no caller waiting and no job running on."""

from __future__ import annotations

import asyncio

import aiohttp

from foreman.clock import new_id, now
from foreman.job import CHAT, new_job
from foreman.requests import parse_submission
from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import read_db

HELLO = [{"role": "user", "content": "hello there"}]


async def test_deleting_a_queued_sync_job_answers_its_caller(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.token_delay = 0.05
    long = asyncio.ensure_future(
        http.post(
            foreman.url + "/api/chat",
            json={"model": "llama3.2", "messages": HELLO, "stream": False, "options": {"num_predict": 40}},
        )
    )
    await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))
    waiting = asyncio.ensure_future(
        http.post(foreman.url + "/api/chat", json={"model": "llama3.2", "messages": HELLO, "stream": False})
    )
    for _ in range(200):
        rows = read_db(foreman.settings.db_path, "SELECT id FROM jobs WHERE state = 'queued'")
        if rows:
            break
        await asyncio.sleep(0.01)
    (queued_id,) = rows[0]
    async with http.delete(f"{foreman.url}/jobs/{queued_id}") as resp:
        assert resp.status == 200
    resp = await asyncio.wait_for(waiting, 2)  # answered at once, not after the long job
    assert resp.status == 499 and "cancelled" in (await resp.json())["error"]
    assert resp.headers["X-Foreman-Job-Id"] == queued_id
    assert long.done() is False
    (await long).close()


async def test_a_cancel_right_after_a_fast_path_submit_is_not_lost(foreman: Daemon, sim: Simulator) -> None:
    """The job is the worker's before it is a row in the database."""
    sim.token_delay = 0.05
    for _ in range(200):  # until the worker waits on an empty queue (it has no event to say so)
        if foreman.worker._waiting_on_empty_queue:
            break
        await asyncio.sleep(0.01)
    jobs = foreman.jobs
    body = b'{"model":"llama3.2","messages":[{"role":"user","content":"x"}],"options":{"num_predict":100}}'
    sub = parse_submission(CHAT, body, sync=False)
    job = new_job(sub, new_id(), now())
    assert foreman.worker.offer(job, None)  # straight to the idle worker
    await asyncio.sleep(0)
    await jobs.cancel(job.id, "changed my mind")
    db = foreman.settings.db_path
    for _ in range(300):  # the row appears with the worker's first commit: look every 10 ms
        rows = read_db(db, "SELECT id, state FROM jobs")
        if rows and rows[0][1] in ("done", "cancelled", "failed"):
            break
        await asyncio.sleep(0.01)
    assert rows == [(job.id, "cancelled")]


async def test_waiting_on_a_finished_job_leaves_nothing_behind(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.post(foreman.url + "/jobs", json={"model": "llama3.2", "messages": HELLO}) as resp:
        job_id = (await resp.json())["job_id"]
    await foreman.jobs.wait_terminal(job_id, 5)
    for _ in range(5):
        await foreman.jobs.wait_terminal(job_id, 5)
        await foreman.jobs.wait_terminal("01NOSUCHJOB", 0.01)
    assert foreman.recorder.waiting == 0


async def test_clients_hanging_up_at_once_never_use_up_the_target_connections(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """An idle worker sends a new job's request as it takes the job (docs/adr/0012), whatever
    becomes of its caller after. Twice the pool's size of callers gone at once, then a chat
    that needs a connection of the pool."""
    sim.token_delay = 0.01
    body = b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}'
    head = b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body)
    port = int(foreman.url.rsplit(":", 1)[1])
    for _ in range(16):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body)
        await writer.drain()
        await asyncio.sleep(0.002)
        writer.transport.abort()
    async with asyncio.timeout(10):
        async with http.post(foreman.url + "/api/chat", json={"model": "llama3.2", "messages": HELLO}) as resp:
            assert resp.status == 200
            assert b'"done":true' in await resp.read()
    jobs = read_db(foreman.settings.db_path, "SELECT state, COUNT(*) FROM jobs GROUP BY state")
    assert dict(jobs).get("done", 0) >= 1 and not {"queued", "loading", "working"} & dict(jobs).keys()
