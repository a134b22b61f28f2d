"""foreman.client against a real foreman and the simulated target: every scenario runs with
`Foreman` (blocking: in a thread, so the in-process servers keep running) and `AsyncForeman`."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from foreman.client import AsyncForeman, Busy, FeedEvent, Foreman, ForemanError, NotFound, Unauthorized
from foreman.simulator import Simulator
from tests.conftest import ROOT, SpawnForeman, StartForeman, free_port, read_db, wait_healthy

HELLO = [{"role": "user", "content": "hello there"}]
CHAT = {"model": "llama3.2", "messages": HELLO}

Client = Foreman | AsyncForeman


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def call(obj: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """`obj.name(...)`: awaited for the async client, in a thread for the blocking one."""
    method = getattr(obj, name)
    if inspect.iscoroutinefunction(method):
        return await method(*args, **kwargs)
    return await asyncio.to_thread(method, *args, **kwargs)


async def collect(iterable: Any, seen: Callable[[Any], None] = lambda _: None) -> list[Any]:
    """Every item of a sync or async iterator; `seen` is called with each, in this loop."""
    items: list[Any] = []
    if hasattr(iterable, "__aiter__"):
        async for item in iterable:
            items.append(item)
            seen(item)
        return items
    loop = asyncio.get_running_loop()

    def drain() -> None:
        for item in iterable:
            items.append(item)
            loop.call_soon_threadsafe(seen, item)

    await asyncio.to_thread(drain)
    return items


async def client_for(kind: str, url: str, **kwargs: Any) -> Client:
    return Foreman(url, **kwargs) if kind == "sync" else AsyncForeman(url, **kwargs)


async def close(client: Client) -> None:
    await call(client, "close")


async def test_submit_wait_text_in_three_lines(kind: str, start_foreman: StartForeman) -> None:
    foreman = await start_foreman()
    if kind == "sync":

        def three_lines() -> str | None:
            with Foreman(foreman.url) as fm:
                job = fm.submit({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}).wait(30)
            return job.text

        text = await asyncio.to_thread(three_lines)
    else:
        async with AsyncForeman(foreman.url) as afm:
            job = await (await afm.submit({"model": "llama3.2", "messages": HELLO})).wait(timeout=30)
            text = job.text
    assert text and len(text.split()) >= 3


async def test_a_job_whole_result_artifacts_and_pages(kind: str, start_foreman: StartForeman) -> None:
    foreman = await start_foreman(inline_artifact_max="64")  # nothing much inlined: fetched by URL
    fm = await client_for(kind, foreman.url)
    try:
        job = await call(await call(fm, "submit", CHAT, idempotency_key="k-1"), "wait", 30)
        assert job.state == "done" and job.finished and job.view["result"] is None
        assert job.result is not None and job.result["message"]["content"] == job.text
        assert job.text.encode() == await call(job, "artifact", "completion")
        again = await call(fm, "submit", CHAT, idempotency_key="k-1")
        assert again.id == job.id
        for _ in range(4):
            await call(await call(fm, "submit", {"model": "qwen3", "prompt": "why?"}), "wait", 30)
        listed = await collect(fm.jobs(limit=2))  # three pages
        assert len(listed) == 5 and listed[-1].id == job.id
        assert [j.id for j in await collect(fm.jobs(model="llama3.2", limit=2))] == [job.id]
        fetched = await call(fm, "job", job.id)
        assert fetched.text == job.text and fetched.result == job.result
    finally:
        await close(fm)


async def test_cancel_a_running_job(kind: str, start_foreman: StartForeman, sim: Simulator) -> None:
    foreman = await start_foreman()
    sim.token_delay = 0.05
    fm = await client_for(kind, foreman.url)
    try:
        job = await call(fm, "submit", {**CHAT, "options": {"num_predict": 400}})
        await sim.wait_for(lambda: any(r.kind == "chat" and r.chunks_sent > 2 for r in sim.requests))
        assert (await call(job, "refresh")).state == "working"
        job = await call(job, "cancel")
        assert job.state == "cancelled" and job.error == "cancelled through the job API"
        stalled = next(r for r in sim.requests if r.kind == "chat")
        await sim.wait_for(lambda: stalled.client_closed_at is not None)  # the upstream request closed
        with pytest.raises(ForemanError) as refused:
            await call(job, "cancel")
        assert refused.value.status == 409 and "already cancelled" in refused.value.error
    finally:
        await close(fm)


async def test_refusals_raise_the_named_exceptions(kind: str, start_foreman: StartForeman, sim: Simulator) -> None:
    foreman = await start_foreman(token="s3cret", max_queue="1")
    anonymous = await client_for(kind, foreman.url)
    fm = await client_for(kind, foreman.url, token="s3cret")
    try:
        with pytest.raises(Unauthorized) as unauthorized:
            await call(anonymous, "submit", CHAT)
        assert (unauthorized.value.status, unauthorized.value.error) == (401, "unauthorized")
        with pytest.raises(NotFound) as missing:
            await call(fm, "job", "01NOPE")
        assert (missing.value.status, missing.value.error) == (404, "job 01NOPE not found")
        with pytest.raises(NotFound):
            await call(fm, "submit", {"model": "ghost", "messages": HELLO})
        sim.token_delay = 0.05
        running = await call(fm, "submit", {**CHAT, "options": {"num_predict": 400}})
        await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))
        await call(fm, "submit", CHAT)  # queued: the queue is full
        with pytest.raises(Busy) as busy:
            await call(fm, "submit", CHAT)
        assert busy.value.status == 503 and "server busy" in busy.value.error
        await call(running, "cancel")
    finally:
        await close(anonymous)
        await close(fm)


async def test_events_in_order_with_progress(kind: str, start_foreman: StartForeman, sim: Simulator) -> None:
    foreman = await start_foreman()
    sim.token_delay = 0.03
    fm = await client_for(kind, foreman.url)
    try:
        job = await call(fm, "submit", {**CHAT, "options": {"num_predict": 20}})
        events: list[FeedEvent] = await collect(job.events())
        assert [e.state for e in events if e.kind == "transition"] == ["queued", "loading", "working", "done"]
        assert any(e.kind == "progress" for e in events) and events[-1].terminal
        assert [e.id for e in events if e.kind == "transition"] == [
            row[0] for row in read_db(foreman.settings.db_path, "SELECT id FROM events ORDER BY seq")
        ]
    finally:
        await close(fm)


@pytest.mark.slow
async def test_events_survive_a_restart_of_foreman_mid_job(
    kind: str, sim: Simulator, foreman_process: SpawnForeman, db_path: str, http: aiohttp.ClientSession
) -> None:
    """foreman is killed while the job works; the iterator reconnects to the new process, resumes
    after the last transition it had, and reaches `done` with nothing lost or repeated."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = foreman_process(sim.url, port)
    await wait_healthy(http, url)
    sim.token_delay = 0.05
    fm = await client_for(kind, url)
    try:
        job = await call(fm, "submit", {**CHAT, "options": {"num_predict": 60}})
        progressing = asyncio.Event()
        following = asyncio.ensure_future(
            collect(job.events(), lambda e: progressing.set() if e.kind == "progress" else None)
        )
        await asyncio.wait_for(progressing.wait(), 10)
        proc.kill()
        proc.wait()
        foreman_process(sim.url, port)
        events: list[FeedEvent] = await asyncio.wait_for(following, 40)
    finally:
        await close(fm)
    transitions = [e for e in events if e.kind == "transition"]
    assert [e.state for e in transitions] == ["queued", "loading", "working", "queued", "loading", "working", "done"]
    assert transitions[-1].data["attempt"] == 2
    rows = read_db(db_path, "SELECT id FROM events WHERE job_id = ? ORDER BY seq", (job.id,))
    assert [e.id for e in transitions] == [r[0] for r in rows]  # every event, once, in order


def test_the_client_and_the_webhooks_helpers_import_without_tornado_or_aiohttp() -> None:
    code = (
        "import sys\n"
        "import foreman.client, foreman.webhooks\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tornado', 'aiohttp', 'aiosqlite'))\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr
