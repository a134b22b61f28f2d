"""The benchmarks' fast target (foreman/simulator/fast.py): Ollama's shapes for what benchmarks
and a foreman in front send, keep-alive and pipelined HTTP/1.1, and foreman in front of it."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ollama
import pytest

from foreman.server import Daemon
from foreman.simulator.fast import FastTarget
from tests.conftest import ROOT, read_db, settings_for

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def fast() -> AsyncIterator[FastTarget]:
    target = FastTarget()
    await target.start()
    yield target
    await target.stop()


async def raw_exchange(url: str, requests: bytes, until: bytes, count: int = 1) -> bytes:
    """Send raw request bytes on one connection and read until `until` has come `count` times."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(requests)
    data = b""
    while data.count(until) < count:
        piece = await asyncio.wait_for(reader.read(65536), 5)
        assert piece, data
        data += piece
    writer.close()
    await writer.wait_closed()
    return data


async def test_the_official_client_gets_ollamas_shapes(fast: FastTarget) -> None:
    async with ollama.AsyncClient(host=fast.url) as client:
        assert (await client.ps()).models == []
        whole = await client.chat(model="llama3.2", messages=HELLO, options={"num_predict": 12})
        parts = [
            p
            async for p in await client.chat(model="llama3.2", messages=HELLO, stream=True, options={"num_predict": 12})
        ]
        assert len(parts) == 13 and parts[-1].done and not any(p.done for p in parts[:-1])
        assert "".join(p.message.content for p in parts) == whole.message.content
        assert whole.eval_count == parts[-1].eval_count == 12 and whole.done_reason == "length"
        assert len(whole.message.content.split()) == 12
        again = await client.chat(model="llama3.2", messages=HELLO, options={"num_predict": 12})
        assert again.message.content == whole.message.content  # deterministic

        short = await client.generate(model="llama3.2", prompt="why is the sky blue")
        assert short.done_reason == "stop" and short.eval_count == 8 and short.context
        streamed = [p async for p in await client.generate(model="llama3.2", prompt="why is the sky blue", stream=True)]
        assert "".join(p.response for p in streamed) == short.response

        embedded = await client.embed(model="nomic-embed-text", input=["one", "two"])
        assert len(embedded.embeddings) == 2 and abs(sum(x * x for x in embedded.embeddings[0]) - 1) < 1e-6

        assert (await client.list()).models[0].model == "llama3.2:latest"
        assert {m.model for m in (await client.ps()).models} == {"llama3.2:latest", "nomic-embed-text:latest"}
        with pytest.raises(ollama.ResponseError) as err:
            await client.chat(model="nope", messages=HELLO)
        assert err.value.status_code == 404 and err.value.error == "model 'nope' not found"


async def test_load_and_unload_replies(fast: FastTarget, http: aiohttp.ClientSession) -> None:
    async with http.post(fast.url + "/api/chat", json={"model": "qwen3"}) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json; charset=utf-8"
        load: dict[str, Any] = await resp.json()
    assert list(load) == ["model", "created_at", "message", "done", "done_reason"]
    assert load["model"] == "qwen3" and load["message"] == {"role": "assistant", "content": ""}
    assert load["done"] is True and load["done_reason"] == "load"
    async with http.get(fast.url + "/api/ps") as resp:
        assert [m["model"] for m in (await resp.json())["models"]] == ["qwen3:latest"]
    async with http.post(fast.url + "/api/generate", json={"model": "qwen3", "keep_alive": 0}) as resp:
        assert (await resp.json())["done_reason"] == "unload"
    async with http.get(fast.url + "/api/ps") as resp:
        assert (await resp.json())["models"] == []


async def test_keep_alive_pipelining_head_and_framing(fast: FastTarget) -> None:
    chat = json.dumps({"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 3}}).encode()
    post = b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (len(chat), chat)
    data = await raw_exchange(fast.url, post + b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + post, b"0\r\n\r\n", count=2)
    first, rest = data.split(b"0\r\n\r\n", 1)
    head, body = first.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert b"Content-Type: application/x-ndjson" in head
    lines = re.findall(rb"([0-9a-f]+)\r\n(.*?\n)\r\n", body)
    assert len(lines) == 4 and all(int(size, 16) == len(line) for size, line in lines)
    assert json.loads(lines[-1][1])["done"] is True
    assert rest.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\nContent-Type: text/plain; charset=utf-8\r\n")
    assert b"Ollama is running" not in rest  # HEAD: the length, no body
    assert rest.count(b"HTTP/1.1 200 OK") == 2  # the second chat, on the same connection, after the HEAD

    closing = await raw_exchange(fast.url, b"GET /api/version HTTP/1.1\r\nConnection: close\r\n\r\n", b"}")
    assert b"Connection: close\r\n" in closing and closing.endswith(b'{"version":"0.12.3"}')


async def test_a_large_whole_answer_is_chunked_as_go_sends_it(fast: FastTarget) -> None:
    body = json.dumps({"model": "llama3.2", "messages": HELLO, "stream": False, "options": {"num_predict": 500}})
    data = await raw_exchange(
        fast.url, b"POST /api/chat HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body.encode()), b"0\r\n\r\n"
    )
    assert b"Transfer-Encoding: chunked" in data and b"Content-Length" not in data


async def test_unknown_paths_and_methods_answer_as_gin_does(fast: FastTarget, http: aiohttp.ClientSession) -> None:
    async with http.get(fast.url + "/api/nothing") as resp:
        assert resp.status == 404 and await resp.text() == "404 page not found"
    async with http.get(fast.url + "/api/chat") as resp:
        assert resp.status == 405 and await resp.text() == "405 method not allowed"
    async with http.post(fast.url + "/api/chat", data=b"") as resp:
        assert resp.status == 400 and await resp.json() == {"error": "missing request body"}
    async with http.post(fast.url + "/api/embed", json={"model": "nope", "input": "x"}) as resp:
        assert resp.status == 404 and (await resp.json())["error"] == 'model "nope" not found, try pulling it first'
    async with http.post(fast.url + "/api/chat", json={"model": "llama3.2", "keep_alive": "300"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == 'time: missing unit in duration "300"'


async def test_foreman_in_front_of_the_fast_target(fast: FastTarget, db_path: str, http: aiohttp.ClientSession) -> None:
    daemon = await Daemon.start(settings_for(fast.url, db_path))
    try:
        body = {"model": "llama3.2", "messages": HELLO, "options": {"num_predict": 30}}
        answers = []
        for url in (fast.url, daemon.url, daemon.url):
            async with http.post(url + "/api/chat", json=body) as resp:
                answers.append([json.loads(line)["message"]["content"] async for line in resp.content])
        assert answers[0] == answers[1] == answers[2] and len(answers[0]) == 31
        async with http.post(daemon.url + "/api/chat", json={**body, "stream": False}) as resp:
            job_id = resp.headers["X-Foreman-Job-Id"]
            assert (await resp.json())["message"]["content"] == "".join(answers[0])
        async with http.post(daemon.url + "/api/embed", json={"model": "nomic-embed-text", "input": "x"}) as resp:
            assert resp.status == 200 and len((await resp.json())["embeddings"][0]) == 32
        assert read_db(db_path, "SELECT state FROM jobs WHERE id = ?", (job_id,)) == [("done",)]
    finally:
        await daemon.stop()


def test_the_fast_target_imports_no_tornado() -> None:
    code = (
        "import sys, foreman.simulator.cli, foreman.simulator.fast;"
        "print(sorted(m for m in sys.modules if 'tornado' in m or m == 'foreman.simulator.server'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_simulate_fast_serves_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "foreman", "simulate", "--fast", "--listen", "127.0.0.1:0", "--tokens", "3",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
    match = re.fullmatch(r"fast simulated ollama listening on (http://127\.0\.0\.1:\d+) \((asyncio|uvloop)\)\n", line)
    assert match, line
    async with ollama.AsyncClient(host=match.group(1)) as client:
        assert (await client.generate(model="llama3.2", prompt="x")).eval_count == 3
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 5) == 0
