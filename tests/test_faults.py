"""The target misbehaving: asleep, resetting, stalling, erroring; foreman killed outright."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Callable

import aiohttp
import ollama
import pytest

from foreman.server import Daemon
from foreman.simulator import Fault, Simulator
from tests.conftest import OllamaFactory, SpawnForeman, StartForeman, free_port, read_db, wait_healthy

HELLO = [{"role": "user", "content": "hello there"}]
NO_STREAM = {"model": "llama3.2", "messages": HELLO, "stream": False}


async def post_chat(http: aiohttp.ClientSession, url: str, body: dict[str, object]) -> tuple[int, str, bytes]:
    async with http.post(url + "/api/chat", json=body) as resp:
        return resp.status, resp.headers.get("X-Foreman-Job-Id", ""), await resp.read()


async def test_sleeping_target_loses_nothing_and_uses_no_attempt(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, db_path: str
) -> None:
    await foreman.poller.poll()
    sim.sleep(2.0)
    jobs = [asyncio.ensure_future(post_chat(http, foreman.url, NO_STREAM)) for _ in range(3)]
    await asyncio.wait_for(foreman.poller.wait_down(), 2)
    async with http.get(foreman.url + "/healthz") as resp:
        health = await resp.json()
    assert health["degraded"] is True and health["queue"]["queued"] >= 2
    results = await asyncio.gather(*jobs)
    assert [status for status, _, _ in results] == [200, 200, 200]
    for _, job_id, _ in results:
        assert read_db(db_path, "SELECT state, attempt FROM jobs WHERE id = ?", (job_id,)) == [("done", 1)]
    assert not foreman.poller.degraded


async def test_reset_before_any_byte_reached_the_client_is_retried(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, db_path: str
) -> None:
    sim.inject(Fault("reset", after_chunks=3))
    status, job_id, body = await post_chat(http, foreman.url, NO_STREAM)
    assert status == 200 and json.loads(body)["done"] is True
    assert read_db(db_path, "SELECT state, attempt FROM jobs WHERE id = ?", (job_id,)) == [("done", 2)]
    assert [r.outcome for r in sim.requests if r.kind == "chat"] == ["reset", "done"]
    events = read_db(db_path, "SELECT state FROM events WHERE job_id = ? ORDER BY seq", (job_id,))
    assert [e[0] for e in events] == ["queued", "loading", "working", "queued", "loading", "working", "done"]


async def test_attempts_run_out(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession, db_path: str
) -> None:
    foreman = await start_foreman(max_attempts=2)
    sim.inject(Fault("reset", after_chunks=1, times=2))
    status, job_id, body = await post_chat(http, foreman.url, NO_STREAM)
    assert status == 502 and "gave up after 2 attempts" in json.loads(body)["error"]
    assert read_db(db_path, "SELECT state, attempt FROM jobs WHERE id = ?", (job_id,)) == [("failed", 2)]


async def test_reset_after_bytes_were_streamed_ends_with_an_error_line(
    ollama_client: OllamaFactory, foreman: Daemon, sim: Simulator, db_path: str
) -> None:
    sim.token_delay = 0.02  # each line is read before the reset (an RST discards unread data)
    sim.inject(Fault("reset", after_chunks=3))
    client = ollama_client(foreman.url)
    seen = []
    with pytest.raises(ollama.ResponseError) as err:
        async for part in await client.chat(model="llama3.2", messages=HELLO, stream=True):
            seen.append(part)
    assert len(seen) == 3 and err.value.status_code == -1
    assert "broke mid-stream" in err.value.error
    assert read_db(db_path, "SELECT state FROM jobs")[0][0] == "failed"


async def test_target_errors_are_relayed_unchanged(
    ollama_client: OllamaFactory, foreman: Daemon, sim: Simulator, db_path: str
) -> None:
    client = ollama_client(foreman.url)
    sim.inject(Fault("status", status=503, message="server busy, please try again."))
    with pytest.raises(ollama.ResponseError) as err:
        await client.chat(model="llama3.2", messages=HELLO)
    assert (err.value.status_code, err.value.error) == (503, "server busy, please try again.")
    sim.inject(Fault("error_line", after_chunks=2, message="runner crashed"))
    with pytest.raises(ollama.ResponseError) as err:
        async for _ in await client.chat(model="llama3.2", messages=HELLO, stream=True):
            pass
    assert err.value.error == "runner crashed"
    for (job_id,) in read_db(db_path, "SELECT id FROM jobs"):
        await foreman.jobs.wait_terminal(job_id, 5)  # the error line went out before the commit
    rows = read_db(db_path, "SELECT state, error, attempt FROM jobs ORDER BY seq")
    assert rows == [("failed", "server busy, please try again.", 1), ("failed", "runner crashed", 1)]


async def test_first_byte_timeout_retries_a_silent_target(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession, db_path: str
) -> None:
    foreman = await start_foreman(first_byte_timeout="300ms")
    sim.inject(Fault("stall", seconds=None))  # stream:false: silence before the first byte
    status, job_id, _ = await post_chat(http, foreman.url, NO_STREAM)
    assert status == 200
    assert read_db(db_path, "SELECT state, attempt FROM jobs WHERE id = ?", (job_id,)) == [("done", 2)]
    stalled = next(r for r in sim.requests if r.kind == "chat")
    await sim.wait_for(lambda: stalled.client_closed_at is not None)  # foreman closed it


async def test_idle_timeout_ends_a_stalled_stream(
    ollama_client: OllamaFactory, start_foreman: StartForeman, sim: Simulator, db_path: str
) -> None:
    foreman = await start_foreman(idle_timeout="300ms")
    sim.token_delay = 0.01
    sim.inject(Fault("stall", after_chunks=2, seconds=None))
    client = ollama_client(foreman.url)
    with pytest.raises(ollama.ResponseError) as err:
        async for _ in await client.chat(model="llama3.2", messages=HELLO, stream=True):
            pass
    assert "no next chunk from the target within 0.3s" in err.value.error
    stalled = next(r for r in sim.requests if r.kind == "chat")
    await sim.wait_for(lambda: stalled.client_closed_at is not None)
    assert read_db(db_path, "SELECT state FROM jobs") == [("failed",)]


@pytest.mark.slow
async def test_kill_9_with_queued_sync_jobs(
    sim: Simulator, foreman_process: SpawnForeman, db_path: str, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    proc = foreman_process(sim.url, port)
    url = f"http://127.0.0.1:{port}"
    await wait_healthy(http, url)
    sim.token_delay = 0.05
    body = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 200}}
    callers = [asyncio.ensure_future(post_chat(http, url, body)) for _ in range(3)]

    def states() -> list[str]:
        return sorted(state for (state,) in read_db(db_path, "SELECT state FROM jobs"))

    await until(lambda: states() == ["queued", "queued", "working"])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for caller in callers:
        with contextlib.suppress(aiohttp.ClientError):
            await caller
    assert states() == ["queued", "queued", "working"]

    foreman_process(sim.url, port)
    await wait_healthy(http, url)
    after = read_db(db_path, "SELECT state, error FROM jobs ORDER BY seq")
    assert after == [("failed", "interrupted by restart")] * 3
    # ...and foreman goes on serving.
    status, _, _ = await post_chat(http, url, NO_STREAM)
    assert status == 200


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """For state outside this process (another process's database): check every 50 ms."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
