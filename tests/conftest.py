"""Shared fixtures: a simulated Ollama on loopback, foreman daemons against it, HTTP clients.

Everything is real: servers on free ports, a fresh SQLite file per test.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import ollama
import pytest
from aiohttp import web

from foreman.config import Settings, load_settings
from foreman.server import Daemon
from foreman.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "foreman.db")


def settings_for(target_url: str, db_path: str, **overrides: Any) -> Settings:
    flags = {
        "ollama_url": target_url,
        "listen": "127.0.0.1:0",
        "db_path": db_path,
        "retry_backoff": "50ms",
        **{k: str(v) for k, v in overrides.items()},
    }
    return load_settings(flags, environ={})


StartForeman = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_foreman(sim: Simulator, db_path: str) -> AsyncIterator[StartForeman]:
    """Start a foreman in this event loop; every one started is stopped after the test."""
    daemons: list[Daemon] = []

    async def start(**overrides: Any) -> Daemon:
        daemon = await Daemon.start(settings_for(sim.url, db_path, **overrides))
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        await daemon.stop()


@pytest.fixture
async def foreman(start_foreman: StartForeman) -> Daemon:
    return await start_foreman()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def read_db(path: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the daemon's database the way an operator would: a separate sqlite3 connection."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SpawnForeman = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def foreman_process(db_path: str) -> Iterator[SpawnForeman]:
    """Run `python -m foreman serve` as a real process (for kill -9 and CLI tests)."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(target_url: str, port: int, **env: str) -> subprocess.Popen[bytes]:
        environ = {
            **os.environ,
            "FOREMAN_OLLAMA_URL": target_url,
            "FOREMAN_LISTEN": f"127.0.0.1:{port}",
            "FOREMAN_DB_PATH": db_path,
            "FOREMAN_RETRY_BACKOFF": "50ms",
            **env,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "foreman", "serve"],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


OllamaFactory = Callable[..., ollama.AsyncClient]


@pytest.fixture
async def ollama_client() -> AsyncIterator[OllamaFactory]:
    """`ollama_client(url, **kw)` gives an official async client, closed after the test."""
    clients: list[ollama.AsyncClient] = []

    def make(host: str, **kwargs: Any) -> ollama.AsyncClient:
        client = ollama.AsyncClient(host=host, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


class Receiver:
    """A real webhook receiver on loopback: records every delivery, answers as told."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.deliveries: list[dict[str, Any]] = []
        self.answers: list[int] = []  # statuses to answer with, in order; then 200
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.answers.pop(0) if self.answers else 200
        async with self._changed:
            self.deliveries.append(
                {
                    "headers": dict(request.headers),
                    "body": body,
                    "status": status,
                    "json": json.loads(body),
                    "at": time.time(),
                }
            )
            self._changed.notify_all()
        return web.Response(status=status, text="ok")

    def accepted(self) -> list[dict[str, Any]]:
        """The events answered 2xx, in arrival order."""
        return [d["json"] for d in self.deliveries if 200 <= d["status"] < 300]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    await hook.start()
    yield hook
    await hook.stop()


async def wait_healthy(http: aiohttp.ClientSession, url: str, timeout: float = 15.0) -> None:
    """A foreman in another process has no event to wait on: ask /healthz every 100 ms."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with http.get(url + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"foreman at {url} never became healthy")
        await asyncio.sleep(0.1)
