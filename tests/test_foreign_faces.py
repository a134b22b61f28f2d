"""/v1/messages and /v1/responses are jobs like /api/chat: serialized and drained by model with
the others, cancelled when their client leaves mid-stream (docs/adr/0027)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import read_db

HELLO = [{"role": "user", "content": "hello there"}]
MESSAGES = {"model": "qwen3", "max_tokens": 400, "stream": True, "messages": HELLO}
RESPONSES = {"model": "qwen3", "input": "hello there", "max_output_tokens": 400, "stream": True}


async def test_a_messages_stream_and_a_chat_stream_run_one_at_a_time_drained_by_model(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    sim.token_delay = 0.01

    async def read_all(path: str, body: dict[str, object]) -> str:
        async with http.post(foreman.url + path, json=body) as resp:
            assert resp.status == 200
            await resp.read()
            return resp.headers["X-Foreman-Job-Id"]

    long_chat = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 40}}
    blocker = asyncio.ensure_future(read_all("/api/chat", long_chat))
    await sim.wait_for(lambda: any(r.kind == "chat" for r in sim.requests))
    messages = asyncio.ensure_future(read_all("/v1/messages", {**MESSAGES, "max_tokens": 8}))
    await asyncio.sleep(0.05)
    chat = asyncio.ensure_future(read_all("/api/chat", {"model": "llama3.2", "messages": HELLO}))
    await asyncio.sleep(0.05)
    later = asyncio.ensure_future(read_all("/v1/messages", {**MESSAGES, "max_tokens": 8}))
    await blocker
    ids = await asyncio.gather(messages, chat, later)
    runs = [(r.path, r.model) for r in sim.requests if r.kind in ("chat", "generate") or r.path == "/v1/messages"]
    # The resident llama3.2 drains first (the chat), then qwen3's two Anthropic jobs together.
    assert [path for path, _ in runs[1:]] == ["/api/chat", "/v1/messages", "/v1/messages"]
    overlaps = [(r.started, r.ended) for r in sim.requests if r.path in ("/api/chat", "/v1/messages")]
    for (_, end), (start, _) in zip(sorted(overlaps), sorted(overlaps)[1:], strict=False):
        assert end is not None and start >= end - 0.001  # one generation at a time
    states = {row[0] for row in read_db(foreman.settings.db_path, "SELECT state FROM jobs WHERE id IN (?, ?, ?)", ids)}
    assert states == {"done"}


@pytest.mark.parametrize(("path", "body"), [("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)])
async def test_a_client_leaving_a_foreign_stream_cancels_its_job(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, path: str, body: dict[str, object]
) -> None:
    sim.token_delay = 0.02
    resp = await http.post(foreman.url + path, json=body)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    job_id = resp.headers["X-Foreman-Job-Id"]
    first = await resp.content.readline()
    assert first.startswith(b"event:")
    resp.close()  # the client goes away mid-stream
    record = next(r for r in sim.requests if r.path == path)
    await sim.wait_for(lambda: record.outcome is not None, timeout=1.0)
    assert record.outcome == "client_closed"
    async with http.get(f"{foreman.url}/jobs/{job_id}?wait=5") as answer:
        job = await answer.json()
    assert job["state"] == "cancelled" and job["endpoint"] == path
    assert json.dumps(job["error"])  # says why


async def test_a_transcription_is_a_job_with_the_targets_answer(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("model", "llama3.2")
        data.add_field("file", b"RIFF....WAVEfmt fake audio", filename="talk.wav", content_type="audio/wav")
        return data

    async with http.post(sim.url + "/v1/audio/transcriptions", data=form()) as resp:
        direct = await resp.json()
    async with http.post(foreman.url + "/v1/audio/transcriptions", data=form()) as resp:
        assert resp.status == 200
        through = await resp.json()
        job_id = resp.headers["X-Foreman-Job-Id"]
    assert through == direct and direct["text"]
    async with http.get(f"{foreman.url}/jobs/{job_id}?wait=5") as resp:
        job = await resp.json()
    assert job["state"] == "done" and job["endpoint"] == "/v1/audio/transcriptions"
    assert next(a for a in job["artifacts"] if a["name"] == "completion")["content"] == direct["text"]


@pytest.mark.parametrize(
    ("endpoint", "body", "text_of"),
    [
        (
            "/v1/messages",
            {"model": "llama3.2", "max_tokens": 16, "messages": HELLO},
            lambda r: "".join(b["text"] for b in r["content"] if b["type"] == "text"),
        ),
        (
            "/v1/responses",
            {"model": "llama3.2", "input": "hello there"},
            lambda r: "".join(p["text"] for i in r["output"] if i["type"] == "message" for p in i["content"]),
        ),
        (
            "/v1/chat/completions",
            {"model": "llama3.2", "messages": HELLO},
            lambda r: r["choices"][0]["message"]["content"],
        ),
    ],
)
async def test_an_async_job_written_in_another_apis_shape(
    foreman: Daemon,
    sim: Simulator,
    http: aiohttp.ClientSession,
    endpoint: str,
    body: dict[str, object],
    text_of: object,
) -> None:
    async with http.post(sim.url + endpoint, json=body) as resp:
        direct = await resp.json()
    async with http.post(foreman.url + "/jobs", json={**body, "endpoint": endpoint}) as resp:
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]
    async with http.get(f"{foreman.url}/jobs/{job_id}?wait=10") as resp:
        job = await resp.json()
    assert job["state"] == "done" and job["endpoint"] == endpoint
    completion = next(a for a in job["artifacts"] if a["name"] == "completion")["content"]
    assert completion == text_of(direct) and completion  # type: ignore[operator]
    assert text_of(job["result"]) == completion  # type: ignore[operator]


async def test_an_unknown_endpoint_for_a_job_is_refused(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.post(foreman.url + "/jobs", json={"model": "llama3.2", "endpoint": "/api/pull"}) as resp:
        assert resp.status == 400 and "endpoint must be one of" in (await resp.json())["error"]
