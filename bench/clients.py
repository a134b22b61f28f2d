"""Which HTTP client should foreman use for the target? (docs/adr/0005, 0021)

Runs the simulated Ollama in a separate process, then, in this process, reads one long
stream (20,000 chunks, no delay) and makes many small non-streamed requests with each
candidate client, measuring this process's CPU time per chunk and per request, and
whether connections are reused. Usage: python bench/clients.py [--chunks N] [--small N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from foreman.target import TargetClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def long_body(chunks: int) -> bytes:
    return json.dumps(
        {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": chunks}}
    ).encode()


SMALL = json.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "stream": False}).encode()


async def tornado_client(url: str, chunks: int, small: int) -> tuple[int, int]:
    client = AsyncHTTPClient(force_instance=True)
    got = 0

    def on_chunk(data: bytes) -> None:
        nonlocal got
        got += data.count(b"\n")

    await client.fetch(
        HTTPRequest(
            url + "/api/chat", method="POST", body=long_body(chunks), streaming_callback=on_chunk, request_timeout=0
        )
    )
    for _ in range(small):
        await client.fetch(HTTPRequest(url + "/api/chat", method="POST", body=SMALL, request_timeout=0))
    client.close()
    return got, small


async def aiohttp_client(url: str, chunks: int, small: int) -> tuple[int, int]:
    got = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        async with session.post(url + "/api/chat", data=long_body(chunks)) as resp:
            while data := await resp.content.readany():
                got += data.count(b"\n")
        for _ in range(small):
            async with session.post(url + "/api/chat", data=SMALL) as resp:
                await resp.read()
    return got, small


async def httpx_client(url: str, chunks: int, small: int) -> tuple[int, int]:
    got = 0
    async with httpx.AsyncClient(timeout=None) as client:
        async with client.stream("POST", url + "/api/chat", content=long_body(chunks)) as resp:
            async for data in resp.aiter_raw():
                got += data.count(b"\n")
        for _ in range(small):
            (await client.post(url + "/api/chat", content=SMALL)).read()
    return got, small


async def foreman_client(url: str, chunks: int, small: int) -> tuple[int, int]:
    got = 0
    client = TargetClient(url, first_byte_timeout=60, idle_timeout=60)
    async with client.exchange("POST", "/api/chat", long_body(chunks)) as x:
        async for data in x.chunks():
            got += data.count(b"\n")
    for _ in range(small):
        await client.fetch("POST", "/api/chat", SMALL)
    await client.close()
    return got, small


CLIENTS: dict[str, Callable[[str, int, int], Awaitable[tuple[int, int]]]] = {
    "tornado simple_httpclient": tornado_client,
    "aiohttp": aiohttp_client,
    "httpx": httpx_client,
    "foreman.http1 (ours)": foreman_client,
}


async def measure(url: str, chunks: int, small: int) -> None:
    print(f"{'client':28} {'µs CPU/chunk':>13} {'µs CPU/small req':>17} {'wall s':>7}")
    for name, run in CLIENTS.items():
        cpu, wall = time.process_time(), time.perf_counter()
        got, _ = await run(url, chunks, 0)
        stream_cpu = time.process_time() - cpu
        cpu = time.process_time()
        await run(url, 1, small)
        small_cpu = time.process_time() - cpu
        print(
            f"{name:28} {stream_cpu / max(got, 1) * 1e6:13.1f} "
            f"{small_cpu / small * 1e6:17.1f} {time.perf_counter() - wall:7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--small", type=int, default=300)
    args = parser.parse_args()
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "foreman", "simulate", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(measure(f"http://127.0.0.1:{port}", args.chunks, args.small))
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
