"""The event feeds (GET /jobs/{id}/events, GET /events) against a real foreman and the simulated
target, read as any SSE client reads them: over HTTP, line by line."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from foreman.feed import BACKLOG
from foreman.handlers import event_stream
from foreman.server import Daemon
from foreman.simulator import Simulator
from foreman.sse import Message, Parser
from tests.conftest import Receiver, StartForeman

HELLO = [{"role": "user", "content": "hello there"}]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def submit(http: aiohttp.ClientSession, url: str, **extra: Any) -> str:
    body = {"model": "llama3.2", "messages": HELLO, **extra}
    async with http.post(url + "/jobs", json=body) as resp:
        assert resp.status == 202, await resp.text()
        return str((await resp.json())["job_id"])


async def messages(resp: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/event-stream"
    parser = Parser()
    async for line in resp.content:
        message = parser.feed(line.decode())
        if message is not None:
            yield message


async def read_feed(http: aiohttp.ClientSession, url: str, **headers: str) -> list[Message]:
    """Every message of a stream that ends by itself (a job's feed)."""
    async with http.get(url, headers=headers) as resp:
        return [m async for m in messages(resp)]


def transitions(feed: list[Message]) -> list[Message]:
    return [m for m in feed if m.is_transition]


async def test_a_jobs_feed_shows_every_state_and_progress_with_the_webhooks_ids_and_bodies(
    start_foreman: StartForeman, sim: Simulator, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(webhook_secret=SECRET)
    sim.token_delay = 0.05
    job_id = await submit(http, foreman.url, state_webhook_url=receiver.url, options={"num_predict": 40})
    feed = await read_feed(http, f"{foreman.url}/jobs/{job_id}/events")
    # A queued job may get a queue-position progress too (on a busy machine, while it waits).
    feed = [m for m in feed if not (m.event == "progress" and m.json()["state"] == "queued")]
    states = [m.json()["state"] if m.is_transition else m.event for m in feed]
    assert [s for s in states if s != "progress"] == ["queued", "loading", "working", "done"]
    working, done = states.index("working"), states.index("done")
    assert "progress" in states[working:done] and "progress" not in states[:working] + states[done:]
    progress = [m.json() for m in feed if m.event == "progress"]
    assert all(p["job_id"] == job_id and p["state"] == "working" for p in progress)
    assert [p["chunks"] for p in progress] == sorted({p["chunks"] for p in progress})  # only news, in order
    assert all(m.id is None for m in feed if m.event == "progress")  # Last-Event-ID stays a transition's
    stamps = {m.json()["state"]: datetime.fromisoformat(m.json()["timestamp"]) for m in transitions(feed)}
    working_s = (stamps["done"] - stamps["working"]).total_seconds()
    assert working_s > 0.5 and len(progress) <= 4 * working_s + 1  # a few a second, not one per token
    await receiver.wait_for(lambda: len(receiver.accepted()) == 4)
    delivered = {d["headers"]["webhook-id"]: d["body"] for d in receiver.deliveries}
    assert [m.id for m in transitions(feed)] == [d["headers"]["webhook-id"] for d in receiver.deliveries]
    for message in transitions(feed):
        assert message.data.encode() == delivered[message.id]  # the webhook's body, byte for byte


async def test_a_job_without_webhook_gets_the_whole_done_body_live_and_replayed(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.token_delay = 0.02
    job_id = await submit(http, foreman.url, options={"num_predict": 5})
    live = transitions(await read_feed(http, f"{foreman.url}/jobs/{job_id}/events"))
    replayed = transitions(await read_feed(http, f"{foreman.url}/jobs/{job_id}/events"))
    assert [(m.id, m.data) for m in live] == [(m.id, m.data) for m in replayed]
    done = live[-1].json()
    async with http.get(f"{foreman.url}/jobs/{job_id}") as resp:
        view = await resp.json()
    assert done["result"] == view["result"] and done["artifacts"] == view["artifacts"]
    assert list(done) == [
        *("event_id", "job_id", "state", "previous_state", "timestamp", "model", "attempt"),
        *("timings", "swap", "ran_after", "jumped", "eval_count", "tokens_per_s"),  # what it cost
        *("result", "artifacts"),
    ]
    # ...while the outbox keeps only the history of a job nobody is told of (ADR 0030).
    stored = (await foreman.store.outbox.events(job_id))[-1]["payload"]
    assert "result" not in stored and "artifacts" not in stored


async def test_a_dropped_connection_resumed_with_last_event_id_loses_and_repeats_nothing(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.token_delay = 0.05
    job_id = await submit(http, foreman.url, options={"num_predict": 20})
    url = f"{foreman.url}/jobs/{job_id}/events"
    first: list[Message] = []
    async with http.get(url) as resp:
        async for message in messages(resp):
            first.append(message)
            if message.event == "progress":
                break  # the connection goes, mid-job
    seen = transitions(first)
    assert seen[-1].json()["state"] == "working"
    rest = transitions(await read_feed(http, url, **{"Last-Event-ID": seen[-1].id or ""}))
    assert [m.json()["state"] for m in rest] == ["done"]
    history = await foreman.store.outbox.events(job_id)
    assert [m.id for m in seen + rest] == [e["event_id"] for e in history]
    # Resuming after the terminal event: nothing more, and 204 tells an EventSource to stop.
    async with http.get(url, headers={"Last-Event-ID": rest[-1].id or ""}) as resp:
        assert resp.status == 204
    # The query parameter does the same for a client that cannot set headers.
    again = await read_feed(http, f"{url}?last_event_id={seen[0].id}")
    assert [m.id for m in transitions(again)] == [m.id for m in (seen + rest)[1:]]


async def test_a_terminal_job_gets_its_history_and_an_immediate_end(
    foreman: Daemon, http: aiohttp.ClientSession
) -> None:
    job_id = await submit(http, foreman.url)
    async with http.get(f"{foreman.url}/jobs/{job_id}?wait=10") as resp:
        assert (await resp.json())["state"] == "done"
    started = time.monotonic()
    feed = await read_feed(http, f"{foreman.url}/jobs/{job_id}/events")
    assert time.monotonic() - started < 1.0
    assert [m.json()["state"] for m in feed] == ["queued", "loading", "working", "done"]
    async with http.get(f"{foreman.url}/jobs/01NOPE/events") as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "job 01NOPE not found"


async def test_a_cancelled_job_ends_its_feed_and_a_queued_one_shows_its_position(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_stream, "PING_INTERVAL", 0.1)
    sim.token_delay = 0.05
    running = await submit(http, foreman.url, options={"num_predict": 400})
    await sim.wait_for(lambda: any(r.kind == "chat" and r.chunks_sent > 0 for r in sim.requests))
    waiting = await submit(http, foreman.url, model="qwen3")
    feed: list[Message] = []
    async with http.get(f"{foreman.url}/jobs/{waiting}/events") as resp:
        parser = Parser()
        pings = 0
        async for raw in resp.content:
            line = raw.decode()
            pings += line.startswith(": ping")
            message = parser.feed(line)
            if message is not None:
                feed.append(message)
            if pings == 3 and line.startswith(": ping"):  # a quiet feed pings; then the job goes
                async with http.delete(f"{foreman.url}/jobs/{waiting}") as cancel:
                    assert cancel.status == 200
    assert [(m.event, m.json().get("state")) for m in feed] == [
        ("message", "queued"),
        ("progress", "queued"),
        ("message", "cancelled"),
    ]
    assert feed[1].json() == {"job_id": waiting, "state": "queued", "queue_position": 1}
    assert feed[2].json()["error"] == "cancelled through the job API"
    async with http.delete(f"{foreman.url}/jobs/{running}"):
        pass


async def test_the_events_feed_sees_two_concurrent_jobs_and_filters(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.token_delay = 0.02
    every: list[dict[str, Any]] = []
    qwen: list[dict[str, Any]] = []
    ended: list[dict[str, Any]] = []
    ready = asyncio.Event()
    opened = 0

    async def follow(query: str, into: list[dict[str, Any]], until: int) -> None:
        nonlocal opened
        async with http.get(f"{foreman.url}/events{query}") as resp:
            opened += 1
            if opened == 3:
                ready.set()
            async for message in messages(resp):
                if message.is_transition:
                    into.append(message.json())
                if sum(e["state"] in ("done", "failed") for e in into) == until:
                    return

    readers = [
        asyncio.ensure_future(follow("", every, 2)),
        asyncio.ensure_future(follow("?model=qwen3", qwen, 1)),
        asyncio.ensure_future(follow("?state=done,failed", ended, 2)),
    ]
    await asyncio.wait_for(ready.wait(), 5)
    a, b = await asyncio.gather(
        submit(http, foreman.url, options={"num_predict": 10}),
        submit(http, foreman.url, model="qwen3", options={"num_predict": 10}),
    )
    await asyncio.wait_for(asyncio.gather(*readers), 20)
    for job_id in (a, b):
        assert [e["state"] for e in every if e["job_id"] == job_id] == ["queued", "loading", "working", "done"]
    assert {e["job_id"] for e in qwen} == {b} and [e["state"] for e in qwen][-1] == "done"
    assert sorted((e["job_id"], e["state"]) for e in ended) == sorted([(a, "done"), (b, "done")])
    async with http.get(f"{foreman.url}/events?state=paused") as resp:
        assert resp.status == 400 and "paused" in (await resp.json())["error"]
    assert foreman.feed.listeners == 0  # every reader that left was let go


_FEED_CODE = [
    tracemalloc.Filter(True, f"*/foreman/{name}", all_frames=True)
    for name in ("events.py", "feed.py", "sse.py", "handlers/event_stream.py")
]


def _feed_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still held that the feed's code (or the events it builds) allocated."""
    return sum(stat.size for stat in snapshot.filter_traces(_FEED_CODE).statistics("filename"))


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def test_a_reader_that_never_reads_is_dropped_and_memory_stays_flat(
    foreman: Daemon, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real reader that reads its headers and then nothing: the jobs run at full speed, the
    reader's backlog never passes BACKLOG, it is let go, and its last event says why."""
    monkeypatch.setattr(event_stream, "DROP_GRACE", 30.0)
    loop = asyncio.get_running_loop()
    with socket.socket() as stuck:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.setblocking(False)
        await loop.sock_connect(stuck, ("127.0.0.1", foreman.port))
        await loop.sock_sendall(stuck, b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += await asyncio.wait_for(loop.sock_recv(stuck, 1), 5)
        assert head.startswith(b"HTTP/1.1 200")
        for _ in range(100):
            if foreman.feed.listeners:
                break
            await asyncio.sleep(0.01)
        (sub,) = foreman.feed._every
        body = {"model": "llama3.2", "messages": HELLO, "stream": False, "options": {"num_predict": 1}}

        async def one_job() -> None:
            async with http.post(foreman.url + "/api/chat", json=body) as resp:
                assert resp.status == 200

        for _ in range(50):  # warm up before measuring
            await one_job()
        rss_before = _rss_kib()
        jobs = 0
        started = time.monotonic()
        while not sub.ended.is_set():
            await one_job()
            jobs += 1
            assert sub.pending <= BACKLOG and jobs < 3000, (jobs, sub.pending)
        elapsed = time.monotonic() - started
        assert sub.dropped and sub.peak == BACKLOG and sub.pending == 0 and foreman.feed.listeners == 0
        # After the drop, as many jobs again hold nothing more for it: what the feed's code made
        # (event objects, backlogs, frames) does not grow. A reader kept on would hold each of
        # their 4 events (about 1 KiB apiece). The rest of the heap is told, not judged: the
        # simulated target in this process keeps a record of every request.
        tracemalloc.start(3)
        try:
            for _ in range(20):
                await one_job()
            gc.collect()
            before = tracemalloc.take_snapshot()
            for _ in range(250):
                await one_job()
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        rss_after = _rss_kib()
        grown = _feed_bytes(after) - _feed_bytes(before)
        assert grown < 64 * 1024, grown
        print(
            f"dropped after {jobs} jobs ({(jobs + 50) * 4} events) in {elapsed:.1f}s; RSS {rss_before} -> {rss_after}"
            f" KiB; the feed's heap over 250 jobs after the drop: {grown:+d} B"
        )
        # Now it reads: what was on its way, then the last event, then the end of the connection.
        received = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(stuck, 65536), 10):
            received += chunk
    frames = received.split(b"\r\n")
    dropped_at = next(i for i, part in enumerate(frames) if part.startswith(b"event: dropped\n"))
    assert frames[dropped_at + 1 :] in ([b"0", b"", b""], [b""]), frames[dropped_at:]  # the last event, then the end
    dropped = json.loads(frames[dropped_at].split(b"data: ", 1)[1].split(b"\n", 1)[0])
    assert f"more than {BACKLOG} events behind" in dropped["error"]
