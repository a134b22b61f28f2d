"""foreman as an Ollama server: the official client, streaming, serialisation, disconnects."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time

import aiohttp
import ollama
import pytest

from foreman.server import Daemon
from foreman.simulator import Simulator
from tests.conftest import OllamaFactory, StartForeman, read_db

HELLO = [{"role": "user", "content": "hello there"}]


async def test_official_client_chat_and_generate(ollama_client: OllamaFactory, foreman: Daemon, sim: Simulator) -> None:
    client = ollama_client(foreman.url)
    direct = ollama_client(sim.url)

    reply = await client.chat(model="llama3.2", messages=HELLO)
    expected = await direct.chat(model="llama3.2", messages=HELLO)
    assert reply.message.content == expected.message.content and reply.message.content
    assert reply.done and reply.eval_count == expected.eval_count

    parts = [part async for part in await client.chat(model="llama3.2", messages=HELLO, stream=True)]
    assert "".join(p.message.content for p in parts) == expected.message.content
    assert parts[-1].done and not any(p.done for p in parts[:-1])

    gen = await client.generate(model="llama3.2", prompt="why is the sky blue")
    gen_direct = await direct.generate(model="llama3.2", prompt="why is the sky blue")
    assert gen.response == gen_direct.response and gen.response
    streamed = [p async for p in await client.generate(model="llama3.2", prompt="why is the sky blue", stream=True)]
    assert "".join(p.response for p in streamed) == gen_direct.response


async def test_every_generation_is_a_persisted_job(foreman: Daemon, http: aiohttp.ClientSession, db_path: str) -> None:
    async with http.post(
        foreman.url + "/api/chat", json={"model": "llama3.2", "messages": HELLO, "stream": False}
    ) as resp:
        assert resp.status == 200
        job_id = resp.headers["X-Foreman-Job-Id"]
        body = await resp.json()
    rows = read_db(db_path, "SELECT state, model, attempt FROM jobs WHERE id = ?", (job_id,))
    assert rows == [("done", "llama3.2:latest", 1)]
    completion = read_db(db_path, "SELECT data FROM artifacts WHERE job_id = ? AND name = 'completion'", (job_id,))
    assert completion[0][0].decode() == body["message"]["content"]
    events = read_db(db_path, "SELECT previous_state, state FROM events WHERE job_id = ? ORDER BY seq", (job_id,))
    assert events == [(None, "queued"), ("queued", "loading"), ("loading", "working"), ("working", "done")]


async def test_unknown_model_gets_ollamas_status_and_text(ollama_client: OllamaFactory, foreman: Daemon) -> None:
    client = ollama_client(foreman.url)
    with pytest.raises(ollama.ResponseError) as err:
        await client.chat(model="no-such-model", messages=HELLO)
    assert err.value.status_code == 404
    assert err.value.error == "model 'no-such-model' not found"
    with pytest.raises(ollama.ResponseError) as err:
        await client.generate(model="Nope:7b", prompt="x")
    assert err.value.status_code == 404 and err.value.error == "model 'Nope:7b' not found"


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/chat", b"not json", 400, "invalid character 'o' in literal null (expecting 'u')"),
        ("/api/chat", b"", 400, "missing request body"),
        ("/api/chat", b"{}", 400, "model is required"),
        ("/api/generate", b"{}", 404, "model '' not found"),
        ("/api/chat", b"[1]", 400, "json: cannot unmarshal array into Go value of type api.ChatRequest"),
    ],
)
async def test_bad_bodies_get_json_errors(
    foreman: Daemon, http: aiohttp.ClientSession, path: str, body: bytes, status: int, error: str
) -> None:
    async with http.post(foreman.url + path, data=body) as resp:
        assert resp.status == status
        assert resp.headers["Content-Type"].startswith("application/json")
        payload = await resp.json()
    assert isinstance(payload, dict) and payload["error"]
    if status != 400 or body in (b"", b"{}", b"[1]"):
        assert payload["error"] == error


async def test_streaming_is_incremental(foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession) -> None:
    sim.token_delay = 0.15
    body = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 8}}
    async with http.post(foreman.url + "/api/chat", json=body) as resp:
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        first = await resp.content.readline()
        record = sim.requests[-1]
        # The first line is in the client's hands while the target is still generating.
        assert json.loads(first)["done"] is False
        assert record.ended is None and record.chunks_sent < 8
        rest = [line async for line in resp.content if line.strip()]
    assert json.loads(rest[-1])["done"] is True
    assert record.ended is not None


async def test_eight_concurrent_chats_never_overlap_at_the_target(
    ollama_client: OllamaFactory, foreman: Daemon, sim: Simulator
) -> None:
    sim.token_delay = 0.01
    client = ollama_client(foreman.url)

    async def chat(i: int) -> str:
        reply = await client.chat(model="llama3.2", messages=[{"role": "user", "content": f"q{i}"}])
        return reply.message.content or ""

    answers = await asyncio.gather(*(chat(i) for i in range(8)))
    assert all(answers)
    generations = sorted((r for r in sim.requests if r.kind == "chat"), key=lambda r: r.started)
    assert len(generations) == 8
    for before, after in itertools.pairwise(generations):
        assert before.ended is not None and after.started >= before.ended, "two generations overlapped"


async def test_client_disconnect_cancels_the_job_and_closes_upstream(
    foreman: Daemon, sim: Simulator, http: aiohttp.ClientSession, db_path: str
) -> None:
    sim.token_delay = 0.05
    long = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 400}}
    short = {"model": "llama3.2", "messages": HELLO, "stream": False}
    resp = await http.post(foreman.url + "/api/chat", json=long)
    job_id = resp.headers["X-Foreman-Job-Id"]
    await resp.content.readline()
    waiting = asyncio.ensure_future(http.post(foreman.url + "/api/chat", json=short))
    await sim.wait_for(lambda: len([r for r in sim.requests if r.kind == "chat"]) == 1)
    loop = asyncio.get_running_loop()
    closed_at = loop.time()
    resp.close()  # the client goes away mid-stream
    first = next(r for r in sim.requests if r.kind == "chat")
    await sim.wait_for(lambda: first.client_closed_at is not None, timeout=1.0)
    assert first.client_closed_at is not None and first.client_closed_at - closed_at < 1.0
    # The next queued job starts at once.
    await sim.wait_for(lambda: len([r for r in sim.requests if r.kind == "chat"]) == 2, timeout=1.0)
    second = await waiting
    assert second.status == 200
    second.close()
    assert read_db(db_path, "SELECT state, error FROM jobs WHERE id = ?", (job_id,)) == [
        ("cancelled", "the client disconnected")
    ]


async def test_stream_false_is_one_json_object(foreman: Daemon, http: aiohttp.ClientSession) -> None:
    async with http.post(
        foreman.url + "/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False}
    ) as resp:
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        raw = await resp.read()
    assert b"\n" not in raw and json.loads(raw)["done"] is True


async def test_load_and_unload_requests(ollama_client: OllamaFactory, foreman: Daemon, sim: Simulator) -> None:
    client = ollama_client(foreman.url)
    loaded = await client.generate(model="llama3.2")
    assert loaded.done_reason == "load"
    assert "llama3.2:latest" in sim.loaded
    unloaded = await client.chat(model="llama3.2", messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload"
    await sim.wait_for(lambda: "llama3.2:latest" not in sim.loaded)


async def test_worker_keep_alive_added_only_when_absent(
    ollama_client: OllamaFactory, start_foreman: StartForeman, sim: Simulator
) -> None:
    foreman = await start_foreman(worker_keep_alive="45m")
    client = ollama_client(foreman.url)
    await client.chat(model="llama3.2", messages=HELLO)
    await client.chat(model="llama3.2", messages=HELLO, keep_alive="7m")
    chats = [r for r in sim.requests if r.kind == "chat"]
    assert [r.keep_alive for r in chats] == [2700, "7m"]


async def test_tornado_habits_are_ollamas(
    ollama_client: OllamaFactory, start_foreman: StartForeman, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(max_body="1KiB", token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    async with http.get(foreman.url + "/", headers=auth) as resp:
        assert resp.status == 200 and await resp.text() == "Ollama is running"
        assert "Server" not in resp.headers and "Etag" not in resp.headers
    async with http.head(foreman.url + "/", headers=auth) as resp:
        assert resp.status == 200
    async with http.get(foreman.url + "/nope", headers=auth) as resp:
        assert (resp.status, await resp.text()) == (404, "404 page not found")
    async with http.get(foreman.url + "/api/chat", headers=auth) as resp:
        assert (resp.status, await resp.text()) == (405, "405 method not allowed")
    # Like curl with a big body: Expect 100-continue, so the 413 arrives before the body is sent.
    async with http.post(
        foreman.url + "/api/chat", headers=auth, data=b"{" + b" " * 2000 + b"}", expect100=True
    ) as resp:
        assert resp.status == 413 and "too large" in (await resp.json())["error"]
    async with http.post(foreman.url + "/api/chat", json={"model": "llama3.2"}) as resp:
        assert resp.status == 401 and (await resp.json()) == {"error": "unauthorized"}
    async with http.get(foreman.url + "/healthz") as resp:  # open without the token
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
    client = ollama_client(foreman.url, headers=auth)
    assert (await client.chat(model="llama3.2", messages=HELLO)).message.content


async def test_client_headers_go_upstream_but_not_host_origin_or_credentials(
    start_foreman: StartForeman, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    foreman = await start_foreman(token="s3cret")
    headers = {
        "Authorization": "Bearer s3cret",
        "Origin": "http://localhost:3000",  # a page the browser boundary lets through
        "X-Trace": "abc",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "1",
    }
    for path, body in (
        ("/api/chat", {"model": "llama3.2", "messages": HELLO, "stream": False}),
        ("/api/embed", {"model": "nomic-embed-text", "input": "x"}),
    ):
        async with http.post(foreman.url + path, json=body, headers=headers) as resp:
            assert resp.status == 200
        seen = {k.lower(): v for k, v in sim.requests[-1].headers.items()}
        assert seen["x-trace"] == "abc" and seen["content-type"] == "application/json"
        assert "authorization" not in seen and "origin" not in seen and "x-hop" not in seen
        assert seen["host"] == sim.url.split("//")[1]


def _token_gaps(port: int, tokens: int) -> list[float]:
    """Stream a chat over a raw socket whose ACKs are delayed (as many clients' are), and
    return the gaps between the reads."""
    body = json.dumps({"model": "llama3.2", "messages": HELLO, "options": {"num_predict": tokens}}).encode()
    head = b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body)
    arrivals, received = [], b""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(head + body)
        while not received.endswith(b"0\r\n\r\n"):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)  # Linux re-arms quick ACKs
            data = conn.recv(65536)
            if not data:
                break
            received += data
            arrivals.append(time.perf_counter())
    return [b - a for a, b in itertools.pairwise(arrivals)]


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="needs Linux's TCP_QUICKACK")
async def test_streamed_tokens_are_not_held_back(foreman: Daemon, sim: Simulator) -> None:
    """A token every 10 ms reaches a client that delays its ACKs every 10 ms or so: Nagle's
    algorithm (which Tornado leaves on during a response) would hold one back ~40 ms each
    time the previous one is unacknowledged."""
    sim.token_delay = 0.01
    gaps = await asyncio.to_thread(_token_gaps, int(foreman.url.rsplit(":", 1)[1]), 40)
    assert len(gaps) >= 30  # about one read per token
    assert max(gaps) < 0.03, sorted(gaps)[-3:]


async def test_a_client_that_stops_reading_slows_the_target_not_foreman(foreman: Daemon, sim: Simulator) -> None:
    """Back-pressure end to end: a stream nobody reads fills the client's socket, then foreman
    waits on it, then the target's own socket fills and it stops generating ahead."""
    tokens = 200_000  # ~26 MB of NDJSON, far beyond what the sockets on the way can hold
    body = json.dumps({"model": "llama3.2", "messages": HELLO, "options": {"num_predict": tokens}}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", int(foreman.url.rsplit(":", 1)[1])))
    reader, writer = await asyncio.open_connection(sock=sock, limit=16384)
    writer.write(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    await reader.readline()  # the status line: the stream has begun; nothing more is read
    record = next(r for r in sim.requests if r.kind == "chat")
    sent = -1
    async with asyncio.timeout(20):
        while record.chunks_sent != sent and record.ended is None:  # until the target is held up
            sent = record.chunks_sent
            await asyncio.sleep(0.5)
    assert record.ended is None and record.chunks_sent < tokens, record.chunks_sent
    writer.transport.abort()
    await sim.wait_for(lambda: record.ended is not None)
    assert record.outcome == "client_closed"
