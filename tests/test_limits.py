"""Nothing holds the worker for ever: a client that stops reading, a generation that never
ends, a queue without end (docs/adr/0025). Real sockets, the simulated target, real SQLite."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import aiohttp

from foreman.simulator import Simulator
from tests.conftest import StartForeman, read_db

HELLO = [{"role": "user", "content": "hello there"}]


def _stalled_reader(port: int, body: bytes) -> socket.socket:
    """A client with a small receive buffer that sends its request, reads the answer's first
    line, then stops reading while keeping its socket open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    head = f"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    seen = b""
    while b"}\n" not in seen:
        seen += sock.recv(1024)
    return sock


async def _job_row(db_path: str, job_id: str) -> tuple[str, str | None]:
    (row,) = read_db(db_path, "SELECT state, error FROM jobs WHERE id = ?", (job_id,))
    return str(row[0]), row[1]


async def _wait_state(db_path: str, job_id: str, states: set[str], timeout: float = 10.0) -> tuple[str, str | None]:
    deadline = time.monotonic() + timeout
    while True:
        rows = read_db(db_path, "SELECT state, error FROM jobs WHERE id = ?", (job_id,))
        if rows and rows[0][0] in states:
            return str(rows[0][0]), rows[0][1]
        assert time.monotonic() < deadline, f"job {job_id} is {rows[0][0] if rows else 'missing'}"
        await asyncio.sleep(0.02)


async def test_a_client_that_stops_reading_is_dropped_and_the_next_job_runs(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(client_stall_timeout="2s")
    # An answer far bigger than every socket buffer between the two (~20 MB of NDJSON).
    body = json.dumps({"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 200_000}}).encode()
    stalled = await asyncio.to_thread(_stalled_reader, foreman.port, body)
    try:
        await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))
        (stalled_id,) = read_db(foreman.settings.db_path, "SELECT id FROM jobs")[0]
        started = time.monotonic()
        other = {"model": "llama3.2", "messages": HELLO, "stream": False}
        async with http.post(foreman.url + "/api/chat", json=other, timeout=aiohttp.ClientTimeout(20)) as resp:
            assert resp.status == 200
            assert (await resp.json())["done"] is True
        waited = time.monotonic() - started
        assert waited < 2 + 4, f"the second caller waited {waited:.1f}s behind a stalled reader"
        state, error = await _job_row(foreman.settings.db_path, stalled_id)
        assert state == "cancelled"
        assert error is not None and "stopped reading" in error and "client_stall_timeout" in error
        first = next(r for r in sim.requests if r.kind == "chat")
        assert first.outcome == "client_closed"  # the upstream request was closed
    finally:
        stalled.close()


async def test_a_generation_past_max_job_time_is_stopped_and_failed(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(max_job_time="2s")
    sim.token_delay = 0.005  # 100,000 tokens: some 8 minutes, as good as never-ending here
    body = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 100_000}}
    started = time.monotonic()
    async with http.post(foreman.url + "/api/chat", json=body) as resp:
        assert resp.status == 200
        job_id = resp.headers["X-Foreman-Job-Id"]
        lines = [json.loads(line) async for line in resp.content if line.strip()]
    elapsed = time.monotonic() - started
    assert 1.8 < elapsed < 4.0
    assert "max_job_time" in lines[-1]["error"]
    assert all("error" not in line for line in lines[:-1]) and len(lines) > 10
    state, error = await _job_row(foreman.settings.db_path, job_id)
    assert state == "failed" and error is not None and "max_job_time" in error
    chat = next(r for r in sim.requests if r.kind == "chat")
    await sim.wait_for(lambda: chat.outcome is not None)
    assert chat.outcome == "client_closed"


async def test_max_job_time_fails_an_async_job_and_its_caller_sees_it(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(max_job_time="1s")
    sim.token_delay = 0.01
    body = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 100_000}}
    async with http.post(foreman.url + "/jobs", json=body) as resp:
        assert resp.status == 202
        job_id = (await resp.json())["job_id"]
    async with http.get(f"{foreman.url}/jobs/{job_id}?wait=5") as resp:
        job = await resp.json()
    assert job["state"] == "failed" and "max_job_time" in job["error"]


async def test_past_max_queue_submits_get_503_and_nothing_queued_is_lost(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(max_queue=5)
    sim.token_delay = 0.02
    long = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 10_000}}
    async with http.post(foreman.url + "/jobs", json=long) as resp:
        busy_id = (await resp.json())["job_id"]
    await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))  # the worker is busy
    small = {"model": "llama3.2", "messages": HELLO}
    queued = []
    for _ in range(5):
        async with http.post(foreman.url + "/jobs", json=small) as resp:
            assert resp.status == 202
            queued.append((await resp.json())["job_id"])
    async with http.post(foreman.url + "/jobs", json=small) as resp:
        assert resp.status == 503
        assert resp.headers["Content-Type"].startswith("application/json")
        assert "maximum pending requests exceeded" in (await resp.json())["error"]
    async with http.post(foreman.url + "/api/chat", json={**small, "stream": False}) as resp:
        assert resp.status == 503
        assert await resp.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
    async with http.post(foreman.url + "/v1/chat/completions", json=small) as resp:
        assert resp.status == 503
        assert "maximum pending requests exceeded" in (await resp.json())["error"]["message"]
    async with http.get(foreman.url + "/healthz") as resp:
        health = await resp.json()
        assert health["max_queue"] == 5 and health["queue"]["queued"] == 5
    async with http.get(foreman.url + "/metrics") as resp:
        assert "foreman_queue_limit 5.0" in await resp.text()
    assert len(read_db(foreman.settings.db_path, "SELECT id FROM jobs")) == 6  # the refused left nothing
    async with http.delete(f"{foreman.url}/jobs/{busy_id}") as resp:
        assert resp.status == 200
    for job_id in queued:
        async with http.get(f"{foreman.url}/jobs/{job_id}?wait=10") as resp:
            assert (await resp.json())["state"] == "done"
