"""The target client alone (foreman/target.py over foreman/http1.py), against real loopback servers.

The simulated Ollama covers streaming; small raw servers (asyncio.start_server) cover what
Ollama never sends but a target behind a proxy might: bodies ended by close, HEAD answers,
malformed answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from foreman.simulator import Simulator
from foreman.target import TargetAborted, TargetBroken, TargetClient, TargetUnreachable
from tests.conftest import free_port

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback server answering with whatever bytes a test writes; counts its connections."""

    def __init__(self, serve: Serve) -> None:
        self._serve = serve
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()  # a connection was closed by the client
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()
        self.url = ""

    async def __aenter__(self) -> RawServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        server = self

        class Tracked(asyncio.StreamReaderProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                server._transports.add(transport)
                super().connection_made(transport)

        return Tracked(asyncio.StreamReader(), self._handle)

    async def __aexit__(self, *exc: object) -> None:
        # Python 3.11's Server.close() leaves accepted connections open. Every accepted
        # transport is closed here, whether or not its handler ever ran (a handler task
        # cancelled before its first step never reaches its `finally`), or a socket outlives
        # the test's loop and warns in whichever later test the collector happens to run in.
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for transport in self._transports:
            transport.abort()  # type: ignore[attr-defined]
        await asyncio.sleep(0)  # abort's connection_lost runs, and closes the socket
        await self._server.wait_closed()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
            if await reader.read() == b"":
                self.closed.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed.set()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def client(url: str, first_byte: float = 5.0) -> TargetClient:
    return TargetClient(url, first_byte_timeout=first_byte, idle_timeout=5.0, pool_size=2)


@pytest.fixture
async def target(sim: Simulator) -> AsyncIterator[TargetClient]:
    c = client(sim.url)
    yield c
    await c.close()


CHAT = json.dumps({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}).encode()


async def test_a_stream_arrives_as_it_is_generated(target: TargetClient, sim: Simulator) -> None:
    sim.token_delay = 0.05
    body = json.dumps({"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 10}}).encode()
    loop = asyncio.get_running_loop()
    async with target.exchange("POST", "/api/generate", body) as x:
        assert x.status == 200 and ("Content-Type", "application/x-ndjson") in x.headers
        arrivals, lines = [], 0
        async for data in x.chunks():
            arrivals.append(loop.time())
            lines += data.count(b"\n")
    assert lines == 11 and len(arrivals) >= 5
    assert arrivals[-1] - arrivals[0] > 0.3  # pieces came over time, not all at the end


async def test_one_connection_serves_request_after_request() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with RawServer(serve) as server:
        c = client(server.url)
        for _ in range(5):
            assert await c.fetch("GET", "/api/version") == (200, [], b"ok")
        await c.close()
    assert server.connections == 1
    request = server.requests[0].decode()
    assert request.startswith("GET /api/version HTTP/1.1\r\n")
    assert f"Host: {server.url.removeprefix('http://')}\r\n" in request


async def test_a_body_without_length_ends_with_the_connection() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with RawServer(serve) as server:
        c = client(server.url)
        status, headers, body = await c.fetch("GET", "/")
        await c.close()
    assert (status, body) == (200, b"all of it")
    assert headers == []  # Connection is hop-by-hop: not relayed


async def test_a_head_answer_ends_at_its_headers() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n\r\n")
        await asyncio.sleep(10)  # a body would never come

    async with RawServer(serve) as server:
        c = client(server.url)
        async with asyncio.timeout(2):
            status, headers, body = await c.fetch("HEAD", "/")
        await c.close()
    assert (status, headers, body) == (200, [("Content-Type", "text/plain")], b"")


async def test_a_path_prefix_in_the_target_url_is_kept() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async with RawServer(serve) as server:
        c = client(server.url + "/ollama/")
        assert (await c.fetch("GET", "/api/tags"))[0] == 204
        await c.close()
    assert server.requests[0].startswith(b"GET /ollama/api/tags HTTP/1.1\r\n")


async def test_nobody_listening_is_unreachable() -> None:
    c = client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TargetUnreachable):
        await c.fetch("POST", "/api/chat", CHAT)
    await c.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"",  # closed before any byte
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",  # closed mid-body
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # closed before its length
        b"SMTP ready\r\n\r\n",  # not HTTP
    ],
)
async def test_a_broken_or_malformed_answer_is_broken(answer: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with RawServer(serve) as server:
        c = client(server.url)
        with pytest.raises(TargetBroken):
            await c.fetch("POST", "/api/chat", CHAT)
        await c.close()


async def test_no_first_byte_in_time_is_broken_and_closes_the_connection() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await reader.read()  # until the client closes

    async with RawServer(serve) as server:
        c = client(server.url, first_byte=0.2)
        with pytest.raises(TargetBroken, match="no first byte"):
            await c.fetch("POST", "/api/chat", CHAT)
        async with asyncio.timeout(2):
            await server.closed.wait()
        await c.close()


async def test_the_pool_never_opens_more_than_its_size() -> None:
    release = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            await release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with RawServer(serve) as server:
        c = client(server.url)  # pool_size=2
        calls = [asyncio.ensure_future(c.fetch("GET", "/")) for _ in range(5)]
        await asyncio.sleep(0.2)
        assert server.connections == 2 and not any(call.done() for call in calls)
        release.set()
        assert [r[2] for r in await asyncio.gather(*calls)] == [b"ok"] * 5
        assert server.connections == 2
        await c.close()


async def test_a_large_answer_arrives_whole() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB: reading pauses and resumes on the way

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
        await writer.drain()

    async with RawServer(serve) as server:
        c = client(server.url)
        async with c.exchange("GET", "/") as x:
            received = b""
            async for data in x.chunks():
                received += data
                await asyncio.sleep(0)  # a slow reader
        await c.close()
    assert received == payload


@pytest.mark.parametrize(
    ("stop", "error"),
    [
        ("abort", TargetAborted),  # the job was cancelled
        ("close the client", TargetBroken),  # foreman stopping under a running exchange
    ],
)
async def test_stopping_a_stream_midway_closes_its_connection(
    target: TargetClient, sim: Simulator, stop: str, error: type[Exception]
) -> None:
    sim.token_delay = 0.05
    body = json.dumps({"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 200}}).encode()
    with pytest.raises(error):
        async with target.exchange("POST", "/api/generate", body) as x:
            async for _ in x.chunks():
                if stop == "abort":
                    x.abort()
                else:
                    await target.close()
    await sim.wait_for(lambda: sim.requests[-1].ended is not None)
    assert sim.requests[-1].outcome == "client_closed"


async def test_an_interim_answer_is_skipped_for_the_real_one() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in (1, 2):
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nanswer-%d" % n)

    async with RawServer(serve) as server:
        c = client(server.url)
        assert await c.fetch("GET", "/") == (200, [], b"answer-1")
        assert await c.fetch("GET", "/") == (200, [], b"answer-2")  # not the first one's leftovers
        await c.close()


async def test_a_target_not_reading_the_request_still_times_out_at_once() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the head only; the body stays unread in the buffers
        await asyncio.sleep(30)

    async with RawServer(serve) as server:
        c = client(server.url, first_byte=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TargetBroken, match="no first byte"):
            await c.fetch("POST", "/api/chat", b"x" * (64 * 1024 * 1024))
        assert loop.time() - started < 2  # not held up by the unsent part of the body
        await c.close()


async def test_credentials_in_the_target_url_are_sent_as_basic_auth() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async with RawServer(serve) as server:
        c = client(server.url.replace("http://", "http://ollama:s%40cret@"))
        await c.fetch("GET", "/api/tags")
        await c.close()
    head = server.requests[0].decode()
    assert "Authorization: Basic b2xsYW1hOnNAY3JldA==\r\n" in head  # ollama:s@cret
    assert f"Host: {server.url.removeprefix('http://')}\r\n" in head


async def test_bytes_after_a_complete_answer_end_the_connection() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.read_request(reader)
            # The whole answer, then a second one nobody asked for, in one write.
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"
            )

    async with RawServer(serve) as server:
        c = client(server.url)
        assert await c.fetch("GET", "/") == (200, [], b"ok")
        assert await c.fetch("GET", "/") == (200, [], b"ok")  # not the stray 500
        await c.close()
    assert server.connections == 2  # the first connection was not reused


async def test_a_body_ended_by_close_is_not_complete_when_foreman_closed_it() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe first part")
        await asyncio.sleep(30)  # the rest never comes before foreman closes

    async with RawServer(serve) as server:
        c = client(server.url)
        with pytest.raises(TargetBroken):
            async with c.exchange("GET", "/") as x:
                async for _ in x.chunks():
                    await c.close()  # foreman stopping: the body was cut, not finished
                    await asyncio.sleep(0.05)  # the connection's loss is seen before the next read
